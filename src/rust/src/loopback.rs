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

/// The socket inode behind a descriptor's /proc link ("socket:[12345]").
pub fn parse_socket_link(link: &str) -> Option<u64> {
    link.strip_prefix("socket:[")?.strip_suffix(']')?.parse().ok()
}

/// The socket descriptors of this process, in fd order. Each one is then asked about
/// itself (getsockname() and friends): reading /proc/net/tcp instead costs milliseconds on
/// a machine with many connections, every one of them formatted by the kernel.
fn socket_fds() -> Result<Vec<RawFd>> {
    let dir = fs::read_dir("/proc/self/fd").map_err(|e| Error::new(Kind::System, format!("cannot list /proc/self/fd: {}", e)))?;
    let mut fds = Vec::new();
    for entry in dir.flatten() {
        let Ok(link) = fs::read_link(entry.path()) else { continue };
        if parse_socket_link(&link.to_string_lossy()).is_none() {
            continue;
        }
        if let Ok(fd) = entry.file_name().to_string_lossy().parse::<RawFd>() {
            fds.push(fd);
        }
    }
    fds.sort_unstable();
    Ok(fds)
}

/// What a TCP socket descriptor is: its local port, its peer's port (None when not
/// connected) and whether it listens. None for anything but an IPv4/IPv6 stream socket.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct TcpSocket {
    port: u16,
    peer_port: Option<u16>,
    listening: bool,
}

fn port_of(addr: &libc::sockaddr_storage) -> Option<u16> {
    match addr.ss_family as libc::c_int {
        // SAFETY: the family says which struct the kernel wrote into the storage, which is
        // large and aligned enough for either.
        libc::AF_INET => Some(u16::from_be(unsafe { (*(addr as *const _ as *const libc::sockaddr_in)).sin_port })),
        // SAFETY: as above.
        libc::AF_INET6 => Some(u16::from_be(unsafe { (*(addr as *const _ as *const libc::sockaddr_in6)).sin6_port })),
        _ => None,
    }
}

fn int_option(fd: RawFd, level: libc::c_int, name: libc::c_int) -> Option<libc::c_int> {
    let mut value: libc::c_int = 0;
    let mut len = std::mem::size_of::<libc::c_int>() as libc::socklen_t;
    // SAFETY: `value` and `len` outlive the call; the kernel writes at most `len` bytes.
    let rc = unsafe { libc::getsockopt(fd, level, name, &mut value as *mut _ as *mut libc::c_void, &mut len) };
    (rc == 0).then_some(value)
}

fn tcp_socket(fd: RawFd) -> Option<TcpSocket> {
    if int_option(fd, libc::SOL_SOCKET, libc::SO_TYPE)? != libc::SOCK_STREAM {
        return None;
    }
    let address = |peer: bool| {
        // SAFETY: an all-zero sockaddr_storage is a valid value of the plain C struct.
        let mut addr: libc::sockaddr_storage = unsafe { std::mem::zeroed() };
        let mut len = std::mem::size_of::<libc::sockaddr_storage>() as libc::socklen_t;
        let ptr = &mut addr as *mut _ as *mut libc::sockaddr;
        // SAFETY: `addr` and `len` outlive the call; the kernel writes at most `len` bytes.
        let rc = unsafe { if peer { libc::getpeername(fd, ptr, &mut len) } else { libc::getsockname(fd, ptr, &mut len) } };
        if rc == 0 { port_of(&addr) } else { None }
    };
    Some(TcpSocket {
        port: address(false)?,
        peer_port: address(true),
        listening: int_option(fd, libc::SOL_SOCKET, libc::SO_ACCEPTCONN)? != 0,
    })
}

/// Our descriptor that listens on `port`.
fn listening_fd(port: u16) -> Result<RawFd> {
    socket_fds()?
        .into_iter()
        .find(|&fd| tcp_socket(fd).is_some_and(|s| s.listening && s.port == port))
        .ok_or_else(|| Error::new(Kind::System, format!("no socket of this process listens on port {}", port)))
}

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
    socket_fds()?
        .into_iter()
        .filter(|&fd| {
            tcp_socket(fd).is_some_and(|s| {
                !s.listening && s.peer_port.is_some() && port == if end == End::Local { s.port } else { s.peer_port.unwrap_or(0) }
            })
        })
        .map(|fd| Ok((fd, nodelay(fd)?)))
        .collect()
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

    #[test]
    fn recognises_socket_links() {
        assert_eq!(parse_socket_link("socket:[4242]"), Some(4242));
        assert_eq!(parse_socket_link("pipe:[4242]"), None);
        assert_eq!(parse_socket_link("socket:[42"), None);
        assert_eq!(parse_socket_link("socket:[-1]"), None);
    }

    #[test]
    fn finds_only_the_listener_on_its_port() {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
        let port = listener.local_addr().expect("addr").port();
        let client = TcpStream::connect(("127.0.0.1", port)).expect("connect");
        let (_accepted, _) = listener.accept().expect("accept");
        // The accepted connection has the same local port: it must not be taken for the listener.
        assert_eq!(listening_fd(port).expect("listener"), listener.as_raw_fd());
        assert_eq!(tcp_socket(client.as_raw_fd()).map(|s| s.peer_port), Some(Some(port)));
        let file = std::fs::File::open("/proc/self/status").expect("file");
        assert_eq!(tcp_socket(file.as_raw_fd()), None);
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
