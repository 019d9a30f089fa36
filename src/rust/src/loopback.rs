//! Loopback-only listening for the master's server socket.
//!
//! R 4.2's `serverSocket(port)` binds every interface, so during setup anyone on the
//! network could connect to the master. When every worker reaches the master from this
//! machine (local workers, or remote ones through a reverse tunnel, whose far end connects
//! to 127.0.0.1), the backend swaps the socket under R's descriptor for one bound to
//! 127.0.0.1 on the same port: R keeps its connection object and accepts from the new
//! socket without knowing.

use std::fs;
use std::os::fd::RawFd;

use crate::error::{Error, Kind, Result};

/// One line of /proc/net/tcp: local port, remote port, state (0x0A is LISTEN), socket inode.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TcpEntry {
    pub port: u16,
    pub remote_port: u16,
    pub state: u8,
    pub inode: u64,
}

const LISTEN: u8 = 0x0A;

/// Parse /proc/net/tcp; lines that do not have the expected shape are skipped.
pub fn parse_proc_net_tcp(text: &str) -> Vec<TcpEntry> {
    text.lines()
        .skip(1)
        .filter_map(|line| {
            let fields: Vec<&str> = line.split_whitespace().collect();
            if fields.len() < 10 {
                return None;
            }
            let (_, port) = fields[1].split_once(':')?;
            let (_, remote_port) = fields[2].split_once(':')?;
            Some(TcpEntry {
                port: u16::from_str_radix(port, 16).ok()?,
                remote_port: u16::from_str_radix(remote_port, 16).ok()?,
                state: u8::from_str_radix(fields[3], 16).ok()?,
                inode: fields[9].parse().ok()?,
            })
        })
        .collect()
}

/// The socket inode behind a descriptor's /proc link ("socket:[12345]").
pub fn parse_socket_link(link: &str) -> Option<u64> {
    link.strip_prefix("socket:[")?.strip_suffix(']')?.parse().ok()
}

/// The descriptors of this process whose socket inode is one of `inodes`, in fd order.
fn fds_of_inodes(inodes: &[u64]) -> Result<Vec<RawFd>> {
    let dir = fs::read_dir("/proc/self/fd").map_err(|e| Error::new(Kind::System, format!("cannot list /proc/self/fd: {}", e)))?;
    let mut fds = Vec::new();
    for entry in dir.flatten() {
        let Ok(link) = fs::read_link(entry.path()) else { continue };
        let Some(inode) = parse_socket_link(&link.to_string_lossy()) else { continue };
        if inodes.contains(&inode) {
            if let Ok(fd) = entry.file_name().to_string_lossy().parse::<RawFd>() {
                fds.push(fd);
            }
        }
    }
    fds.sort_unstable();
    Ok(fds)
}

/// The IPv4 and IPv6 TCP sockets of this network namespace that `keep` selects.
fn tcp_inodes(keep: impl Fn(&TcpEntry) -> bool) -> Result<Vec<u64>> {
    let mut inodes = Vec::new();
    for file in ["/proc/net/tcp", "/proc/net/tcp6"] {
        match fs::read_to_string(file) {
            Ok(text) => inodes.extend(parse_proc_net_tcp(&text).iter().filter(|e| keep(e)).map(|e| e.inode)),
            // IPv6 may be disabled; IPv4 must be there.
            Err(_) if file.ends_with('6') => {}
            Err(e) => return Err(Error::new(Kind::System, format!("cannot read {}: {}", file, e))),
        }
    }
    Ok(inodes)
}

/// Our descriptor that listens on `port` (IPv4).
fn listening_fd(port: u16) -> Result<RawFd> {
    let inodes = tcp_inodes(|e| e.port == port && e.state == LISTEN)?;
    fds_of_inodes(&inodes)?
        .into_iter()
        .next()
        .ok_or_else(|| Error::new(Kind::System, format!("no socket of this process listens on port {}", port)))
}

const ESTABLISHED: u8 = 0x01;

/// Which end of a connection `port` names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum End {
    /// Connections accepted on our port `port` (the master's side).
    Local,
    /// Connections we opened to port `port` (a worker's side).
    Remote,
}

/// Whether TCP_NODELAY is set on a socket descriptor.
pub fn nodelay(fd: RawFd) -> Result<bool> {
    let mut value: libc::c_int = 0;
    let mut len = std::mem::size_of::<libc::c_int>() as libc::socklen_t;
    // SAFETY: `value` and `len` outlive the call; the kernel writes at most `len` bytes
    // into `value` and updates `len`.
    let rc = unsafe { libc::getsockopt(fd, libc::IPPROTO_TCP, libc::TCP_NODELAY, &mut value as *mut _ as *mut libc::c_void, &mut len) };
    if rc < 0 {
        return Err(Error::new(Kind::System, format!("getsockopt(TCP_NODELAY) on descriptor {}: {}", fd, std::io::Error::last_os_error())));
    }
    Ok(value != 0)
}

/// The established TCP connections of this process on `port` (the `end` it names), as
/// (descriptor, TCP_NODELAY set), in descriptor order.
pub fn connections_nodelay(port: u16, end: End) -> Result<Vec<(RawFd, bool)>> {
    let inodes = tcp_inodes(|e| e.state == ESTABLISHED && port == if end == End::Local { e.port } else { e.remote_port })?;
    fds_of_inodes(&inodes)?.into_iter().map(|fd| Ok((fd, nodelay(fd)?))).collect()
}

/// Re-bind the socket this process listens on at `port` to 127.0.0.1 only, keeping its
/// descriptor number.
pub fn rebind_to_loopback(port: u16) -> Result<()> {
    let fd = listening_fd(port)?;
    let sys = |what: &str| Error::new(Kind::System, format!("{}: {}", what, std::io::Error::last_os_error()));
    // SAFETY: plain socket calls on descriptors this function owns (`new`) or found as R's
    // listening socket (`fd`); the only pointers passed are to live locals (`one`, `addr`,
    // `bound` with `len`) with their exact sizes, and getsockname() writes at most `len`
    // bytes into the zeroed `bound`.
    unsafe {
        let new = libc::socket(libc::AF_INET, libc::SOCK_STREAM | libc::SOCK_CLOEXEC, 0);
        if new < 0 {
            return Err(sys("socket()"));
        }
        let one: libc::c_int = 1;
        libc::setsockopt(new, libc::SOL_SOCKET, libc::SO_REUSEADDR, &one as *const _ as *const libc::c_void, std::mem::size_of::<libc::c_int>() as libc::socklen_t);
        // dup2 closes the all-interfaces socket (freeing the port) and puts the new one in
        // its place; the port is bound again right after.
        if libc::dup2(new, fd) < 0 {
            let e = sys("dup2()");
            libc::close(new);
            return Err(e);
        }
        libc::close(new);
        libc::fcntl(fd, libc::F_SETFD, libc::FD_CLOEXEC);
        let addr = libc::sockaddr_in {
            sin_family: libc::AF_INET as libc::sa_family_t,
            sin_port: port.to_be(),
            sin_addr: libc::in_addr { s_addr: u32::from(std::net::Ipv4Addr::LOCALHOST).to_be() },
            sin_zero: [0; 8],
        };
        // A child forked a moment ago (by another thread) may still hold the old socket
        // until it execs: the port is then busy for a few milliseconds.
        let mut tries = 0;
        while libc::bind(fd, &addr as *const _ as *const libc::sockaddr, std::mem::size_of::<libc::sockaddr_in>() as libc::socklen_t) < 0 {
            let busy = std::io::Error::last_os_error().raw_os_error() == Some(libc::EADDRINUSE);
            tries += 1;
            if !busy || tries > 100 {
                return Err(sys(&format!("bind(127.0.0.1:{})", port)));
            }
            std::thread::sleep(std::time::Duration::from_millis(10));
        }
        if libc::listen(fd, libc::SOMAXCONN) < 0 {
            return Err(sys("listen()"));
        }
        // Read the address back: the load-time check (R/internals.R) relies on it.
        let mut bound: libc::sockaddr_in = std::mem::zeroed();
        let mut len = std::mem::size_of::<libc::sockaddr_in>() as libc::socklen_t;
        if libc::getsockname(fd, &mut bound as *mut _ as *mut libc::sockaddr, &mut len) < 0 {
            return Err(sys("getsockname()"));
        }
        let ip = std::net::Ipv4Addr::from(u32::from_be(bound.sin_addr.s_addr));
        if bound.sin_family != libc::AF_INET as libc::sa_family_t || !ip.is_loopback() || u16::from_be(bound.sin_port) != port {
            return Err(Error::new(Kind::System, format!("descriptor {} listens on {}:{} after re-binding, not 127.0.0.1:{}", fd, ip, u16::from_be(bound.sin_port), port)));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::{TcpListener, TcpStream};
    use std::os::fd::AsRawFd;

    const SAMPLE: &str = "  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode\n   0: 00000000:2B67 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 4242 1 0000000000000000 100 0 0 10 0\n   1: 0100007F:9C40 0100007F:2B67 01 00000000:00000000 00:00000000 00000000     0        0 4343 1 0000000000000000 20 4 30 10 -1\n";

    #[test]
    fn parses_listeners_and_connections() {
        let e = parse_proc_net_tcp(SAMPLE);
        assert_eq!(e, vec![TcpEntry { port: 11111, remote_port: 0, state: 0x0A, inode: 4242 }, TcpEntry { port: 40000, remote_port: 11111, state: 1, inode: 4343 }]);
        assert_eq!(parse_socket_link("socket:[4242]"), Some(4242));
        assert_eq!(parse_socket_link("pipe:[4242]"), None);
        assert_eq!(parse_socket_link("socket:[42"), None);
    }

    /// Property: any text, however mangled, parses without panicking into entries whose
    /// fields all came from the text (here: no entry from a text without a colon).
    #[test]
    fn garbage_never_panics() {
        let mut seed: u64 = 0x9E3779B97F4A7C15;
        let mut next = || {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            seed
        };
        let alphabet: Vec<char> = "0123456789ABCDEFabcdef: []\n\tsocket:x-\u{e9}".chars().collect();
        for _ in 0..5000 {
            let len = (next() % 300) as usize;
            let mut text: String = (0..len).map(|_| alphabet[(next() % alphabet.len() as u64) as usize]).collect();
            // Also mutate real input: truncate or splice it.
            if next() % 2 == 0 {
                let cut = (next() as usize) % SAMPLE.len();
                text = format!("{}{}", &SAMPLE[..cut], text);
            }
            let entries = parse_proc_net_tcp(&text);
            if !text.contains(':') {
                assert!(entries.is_empty());
            }
            let _ = parse_socket_link(&text);
        }
    }

    #[test]
    fn rebinds_a_listener_to_loopback_only() {
        let listener = TcpListener::bind("0.0.0.0:0").expect("bind");
        let port = listener.local_addr().expect("addr").port();
        let fd = listener.as_raw_fd();
        rebind_to_loopback(port).expect("rebind");
        // Same descriptor, now bound to 127.0.0.1.
        let addr = listener.local_addr().expect("addr");
        assert_eq!(addr.ip(), std::net::Ipv4Addr::LOCALHOST);
        assert_eq!(addr.port(), port);
        assert_eq!(listener.as_raw_fd(), fd);
        assert!(TcpStream::connect(("127.0.0.1", port)).is_ok());
        assert!(TcpStream::connect(("127.0.0.2", port)).is_err());
        assert!(rebind_to_loopback(1).is_err());
    }

    #[test]
    fn reads_and_sets_nodelay_on_live_connections() {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
        let port = listener.local_addr().expect("addr").port();
        let client = TcpStream::connect(("127.0.0.1", port)).expect("connect");
        let (accepted, _) = listener.accept().expect("accept");
        assert_eq!(connections_nodelay(port, End::Local).expect("local"), vec![(accepted.as_raw_fd(), false)]);
        assert_eq!(connections_nodelay(port, End::Remote).expect("remote"), vec![(client.as_raw_fd(), false)]);
        accepted.set_nodelay(true).expect("set");
        assert_eq!(connections_nodelay(port, End::Local).expect("local"), vec![(accepted.as_raw_fd(), true)]);
        assert!(!nodelay(client.as_raw_fd()).expect("client"));
        assert!(nodelay(-1).is_err());
        let file = std::fs::File::open("/proc/self/status").expect("file");
        assert!(nodelay(file.as_raw_fd()).is_err());
    }
}
