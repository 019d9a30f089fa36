//! The master's end of a local worker's task connection, written and read on its
//! descriptor: one `send()` per message, and one exact read per framed reply, where R's
//! connection layer waits in `select()` around every read and write.
//!
//! R keeps the connection object (`node$con`): future calls `socketSelect()` on it, and
//! everything this module cannot do falls back to R's own reads and writes on it. So this
//! module never reads ahead: it reads a framed reply exactly, and leaves anything else
//! (a message in R's plain format) unread on the socket for R.
//!
//! A frame is what `serialize()` makes of a raw vector holding the reply's own
//! serialization: R's native binary header, the flags of an attribute-free raw vector and its
//! length, then the bytes. So a frame is also a valid R serialization (`unserialize()` of it
//! gives the raw vector), and its length is known from a header of fixed shape.
//!
//! Waits are bounded by the caller's slice; a pending partial frame is kept here between
//! calls, keyed by (descriptor, socket inode), so that R can check for interrupts in between.

use std::collections::HashMap;
use std::fs;
use std::os::fd::RawFd;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use crate::error::{Error, Kind, Result};
use crate::loopback::{parse_proc_net_tcp, parse_socket_link};

/// A descriptor and the inode of the socket it was found to be; both must still match
/// before every use (R may have closed the connection and the number been reused).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Socket {
    pub fd: RawFd,
    pub inode: u64,
}

/// (descriptor, socket inode) pairs of a process's open sockets.
fn socket_fds(pid: &str) -> Vec<(RawFd, u64)> {
    let Ok(dir) = fs::read_dir(format!("/proc/{}/fd", pid)) else { return Vec::new() };
    dir.flatten()
        .filter_map(|entry| {
            let link = fs::read_link(entry.path()).ok()?;
            let inode = parse_socket_link(&link.to_string_lossy())?;
            let fd = entry.file_name().to_string_lossy().parse::<RawFd>().ok()?;
            Some((fd, inode))
        })
        .collect()
}

/// The master's descriptor of the TCP connection that worker `pid` (a process on this
/// machine, in this network namespace) holds to this process's port `port`: the socket of
/// ours accepted on `port` whose far end is a socket of the worker's. None if there is not
/// exactly one such descriptor.
pub fn find(pid: u32, port: u16) -> Option<Socket> {
    let mut table = Vec::new();
    for file in ["/proc/self/net/tcp", "/proc/self/net/tcp6"] {
        if let Ok(text) = fs::read_to_string(file) {
            table.extend(parse_proc_net_tcp(&text));
        }
    }
    let established = |inode: u64| table.iter().find(|e| e.inode == inode && e.state == 0x01).copied();
    // The worker's local ports of its connections to `port`.
    let worker_ports: Vec<u16> = socket_fds(&pid.to_string())
        .into_iter()
        .filter_map(|(_, inode)| established(inode))
        .filter(|e| e.remote_port == port)
        .map(|e| e.port)
        .collect();
    let ours: Vec<Socket> = socket_fds("self")
        .into_iter()
        .filter(|&(_, inode)| established(inode).is_some_and(|e| e.port == port && worker_ports.contains(&e.remote_port)))
        .map(|(fd, inode)| Socket { fd, inode })
        .collect();
    match ours.as_slice() {
        [one] => Some(*one),
        _ => None,
    }
}

/// Whether `s.fd` is still the socket it was found to be.
pub fn same(s: Socket) -> bool {
    // SAFETY: fstat() only writes the stat buffer we own; a closed descriptor gives EBADF.
    let mut st: libc::stat = unsafe { std::mem::zeroed() };
    let rc = unsafe { libc::fstat(s.fd, &mut st) };
    rc == 0 && (st.st_mode & libc::S_IFMT) == libc::S_IFSOCK && st.st_ino == s.inode
}

fn errno() -> i32 {
    std::io::Error::last_os_error().raw_os_error().unwrap_or(0)
}

/// Wait up to `wait` for `events` on `fd`; the returned events, or 0 on timeout or EINTR
/// (a signal, e.g. the user's interrupt, which R should see at once).
fn wait_for(fd: RawFd, events: libc::c_short, wait: Duration) -> libc::c_short {
    let mut p = libc::pollfd { fd, events, revents: 0 };
    let ms = i32::try_from(wait.as_millis()).unwrap_or(i32::MAX);
    // SAFETY: one valid pollfd, owned here, for the duration of the call.
    let rc = unsafe { libc::poll(&mut p, 1, ms) };
    if rc > 0 { p.revents } else { 0 }
}

/// Write `bytes[from..]` to the socket, waiting up to `wait` in all for it to take them.
/// Returns how many of `bytes` have been written in all (less than its length if the wait
/// ran out or a signal came). An error means the socket failed (the peer is gone).
pub fn send(s: Socket, bytes: &[u8], from: usize, wait: Duration) -> Result<usize> {
    let deadline = Instant::now() + wait;
    let mut off = from.min(bytes.len());
    while off < bytes.len() {
        let rest = &bytes[off..];
        // SAFETY: the buffer is a live slice of `rest.len()` bytes; MSG_NOSIGNAL keeps a
        // closed peer from raising SIGPIPE in R's process.
        let n = unsafe { libc::send(s.fd, rest.as_ptr().cast(), rest.len(), libc::MSG_NOSIGNAL | libc::MSG_DONTWAIT) };
        if n > 0 {
            off += n as usize;
            continue;
        }
        let e = errno();
        if n < 0 && (e == libc::EAGAIN || e == libc::EWOULDBLOCK || e == libc::EINTR) {
            let now = Instant::now();
            if now >= deadline || e == libc::EINTR {
                break;
            }
            if wait_for(s.fd, libc::POLLOUT, deadline - now) == 0 {
                break;
            }
            continue;
        }
        return Err(Error::new(Kind::System, format!("writing to the worker's socket failed: {}", std::io::Error::from_raw_os_error(e))));
    }
    Ok(off)
}

/// A spare buffer for messages, so that the common small message allocates nothing.
static SPARE: Mutex<Vec<u8>> = Mutex::new(Vec::new());

/// Buffers larger than this are not kept.
const KEEP_CAPACITY: usize = 1 << 20;

/// A buffer to serialize a message into (empty).
pub fn take_buffer() -> Vec<u8> {
    SPARE.lock().map(|mut b| std::mem::take(&mut *b)).unwrap_or_default()
}

/// Give a buffer back once its bytes are used.
pub fn return_buffer(mut buf: Vec<u8>) {
    if buf.capacity() <= KEEP_CAPACITY {
        buf.clear();
        if let Ok(mut spare) = SPARE.lock() {
            if spare.capacity() < buf.capacity() {
                *spare = buf;
            }
        }
    }
}

/// Messages partly written when their wait ran out: the bytes and how many are written.
static UNSENT: Mutex<Option<HashMap<Socket, (Vec<u8>, usize)>>> = Mutex::new(None);

/// Write a whole message, waiting up to `wait`: how many bytes are left (kept here for
/// send_more() when not 0).
pub fn send_message(s: Socket, bytes: Vec<u8>, wait: Duration) -> Result<usize> {
    finish(s, bytes, 0, wait)
}

/// Go on writing the message send_message() left unfinished on `s`: bytes left.
pub fn send_more(s: Socket, wait: Duration) -> Result<usize> {
    let pending = UNSENT.lock().ok().and_then(|mut g| g.as_mut().and_then(|m| m.remove(&s)));
    match pending {
        Some((bytes, off)) => finish(s, bytes, off, wait),
        None => Ok(0),
    }
}

fn finish(s: Socket, bytes: Vec<u8>, off: usize, wait: Duration) -> Result<usize> {
    let off = send(s, &bytes, off, wait)?;
    let left = bytes.len() - off;
    if left == 0 {
        return_buffer(bytes);
    } else if let Ok(mut g) = UNSENT.lock() {
        g.get_or_insert_with(HashMap::new).insert(s, (bytes, off));
    }
    Ok(left)
}

/// What a look at the next bytes on the socket found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Header {
    /// Too few bytes yet to tell.
    Incomplete,
    /// Not a frame: a message in R's plain format (or garbage), for R to read.
    NotFrame,
    /// A frame: its header's length and the length of the reply it carries.
    Frame { header: usize, len: usize },
}

/// Classify the first bytes of a message (see the module's description of a frame).
pub fn parse_header(b: &[u8]) -> Header {
    let int = |at: usize| -> Option<i32> { b.get(at..at + 4).map(|x| i32::from_ne_bytes([x[0], x[1], x[2], x[3]])) };
    if b.len() < 2 {
        return Header::Incomplete;
    }
    if &b[..2] != b"B\n" {
        return Header::NotFrame;
    }
    let Some(version) = int(2) else { return Header::Incomplete };
    let at = match version {
        2 => 14,
        3 => match int(14) {
            None => return Header::Incomplete,
            Some(n) if (0..=64).contains(&n) => 18 + n as usize,
            Some(_) => return Header::NotFrame,
        },
        _ => return Header::NotFrame,
    };
    let (Some(flags), Some(len)) = (int(at), int(at + 4)) else { return Header::Incomplete };
    // RAWSXP (24) with no attributes, not an object.
    if flags & 0xFF != 24 || flags & 0x300 != 0 {
        return Header::NotFrame;
    }
    match len {
        -1 => match (int(at + 8), int(at + 12)) {
            (Some(hi), Some(lo)) => {
                let len = ((hi as u32 as u64) << 32) | lo as u32 as u64;
                match usize::try_from(len) {
                    Ok(len) => Header::Frame { header: at + 16, len },
                    Err(_) => Header::NotFrame,
                }
            }
            _ => Header::Incomplete,
        },
        n if n >= 0 => Header::Frame { header: at + 8, len: n as usize },
        _ => Header::NotFrame,
    }
}

/// What a receive gives.
#[derive(Debug, PartialEq, Eq)]
pub enum Received {
    /// Nothing complete within the wait (or a signal came): ask again.
    Pending,
    /// The reply carried by one frame (R's serialization of it).
    Frame(Vec<u8>),
    /// The next message is not a frame: it is left unread, for R's own read.
    NotFrame,
    /// The connection ended or failed, before or inside a frame: R's own read of the
    /// connection reports it the way it always does.
    Broken,
}

/// A frame being read: the reply's bytes so far.
struct Partial {
    buf: Vec<u8>,
    filled: usize,
}

static PARTIAL: Mutex<Option<HashMap<Socket, Partial>>> = Mutex::new(None);

fn take_partial(s: Socket) -> Option<Partial> {
    PARTIAL.lock().ok()?.as_mut()?.remove(&s)
}

fn keep_partial(s: Socket, p: Partial) {
    if let Ok(mut guard) = PARTIAL.lock() {
        guard.get_or_insert_with(HashMap::new).insert(s, p);
    }
}

/// Forget a partial frame and an unfinished message of `s` (R reads and writes from now on).
pub fn forget(s: Socket) {
    let _ = take_partial(s);
    if let Ok(mut g) = UNSENT.lock() {
        if let Some(m) = g.as_mut() {
            m.remove(&s);
        }
    }
}

/// Largest header: "B\n", three ints, the encoding's length and name (at most 64), the flags
/// and a long length.
const MAX_HEADER: usize = 2 + 12 + 4 + 64 + 4 + 12;

/// Receive the next frame, waiting up to `wait`. Reads nothing but a whole frame header and
/// then exactly the frame's bytes.
pub fn recv(s: Socket, wait: Duration) -> Received {
    let deadline = Instant::now() + wait;
    let mut partial = match take_partial(s) {
        Some(p) => p,
        None => match read_header(s, deadline) {
            Ok(Some(len)) => {
                let mut buf = take_buffer();
                buf.resize(len, 0);
                Partial { buf, filled: 0 }
            }
            Ok(None) => return Received::Pending,
            Err(r) => return r,
        },
    };
    while partial.filled < partial.buf.len() {
        let rest = &mut partial.buf[partial.filled..];
        // SAFETY: `rest` is a live, writable slice of `rest.len()` bytes.
        let n = unsafe { libc::recv(s.fd, rest.as_mut_ptr().cast(), rest.len(), libc::MSG_DONTWAIT) };
        if n > 0 {
            partial.filled += n as usize;
            continue;
        }
        let e = errno();
        if n == 0 || !(e == libc::EAGAIN || e == libc::EWOULDBLOCK || e == libc::EINTR) {
            return Received::Broken;
        }
        let now = Instant::now();
        if e == libc::EINTR || now >= deadline || wait_for(s.fd, libc::POLLIN, deadline - now) == 0 {
            keep_partial(s, partial);
            return Received::Pending;
        }
    }
    Received::Frame(partial.buf)
}

/// Wait for and consume a frame's header: Ok(Some(length of the reply)), Ok(None) if the
/// wait ran out first, or the answer to give when the next message is no frame.
fn read_header(s: Socket, deadline: Instant) -> std::result::Result<Option<usize>, Received> {
    let mut head = [0u8; MAX_HEADER];
    loop {
        let now = Instant::now();
        let revents = wait_for(s.fd, libc::POLLIN | libc::POLLRDHUP, deadline.saturating_duration_since(now));
        if revents == 0 {
            return Ok(None);
        }
        // SAFETY: `head` is a live, writable buffer of MAX_HEADER bytes; MSG_PEEK leaves
        // the bytes on the socket.
        let n = unsafe { libc::recv(s.fd, head.as_mut_ptr().cast(), head.len(), libc::MSG_PEEK | libc::MSG_DONTWAIT) };
        if n == 0 {
            return Err(Received::Broken);
        }
        if n < 0 {
            let e = errno();
            if e == libc::EAGAIN || e == libc::EWOULDBLOCK || e == libc::EINTR {
                if e == libc::EINTR {
                    return Ok(None);
                }
                continue;
            }
            return Err(Received::Broken);
        }
        match parse_header(&head[..n as usize]) {
            Header::NotFrame => return Err(Received::NotFrame),
            Header::Frame { header, len } => {
                // The header is on the socket (we just saw it): consume exactly it.
                // SAFETY: as above, `header` <= n <= MAX_HEADER bytes into `head`.
                let got = unsafe { libc::recv(s.fd, head.as_mut_ptr().cast(), header, libc::MSG_DONTWAIT) };
                if got != header as isize {
                    return Err(Received::Broken);
                }
                return Ok(Some(len));
            }
            Header::Incomplete => {
                // The rest of the header is on its way, unless the peer is gone: then R's
                // read of what is there reports it.
                if revents & (libc::POLLRDHUP | libc::POLLHUP | libc::POLLERR) != 0 {
                    return Err(Received::NotFrame);
                }
                if Instant::now() >= deadline {
                    return Ok(None);
                }
                std::thread::sleep(Duration::from_micros(200));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;
    use std::net::{TcpListener, TcpStream};
    use std::os::fd::AsRawFd;

    fn frame_of(payload: &[u8]) -> Vec<u8> {
        // R 4.x, version 3, native encoding "UTF-8": what serialize(raw, NULL, xdr = FALSE) makes.
        let mut v = b"B\n".to_vec();
        for i in [3i32, 0x040202, 0x030500, 5] {
            v.extend(i.to_ne_bytes());
        }
        v.extend(b"UTF-8");
        v.extend(24i32.to_ne_bytes());
        v.extend((payload.len() as i32).to_ne_bytes());
        v.extend(payload);
        v
    }

    fn inode_of(fd: RawFd) -> u64 {
        let mut st: libc::stat = unsafe { std::mem::zeroed() };
        // SAFETY: test descriptor, stat buffer owned here.
        assert_eq!(unsafe { libc::fstat(fd, &mut st) }, 0);
        st.st_ino
    }

    #[test]
    fn headers() {
        assert_eq!(parse_header(b"B"), Header::Incomplete);
        assert_eq!(parse_header(b"X\n\0\0\0\x03"), Header::NotFrame);
        let f = frame_of(&[1, 2, 3]);
        assert_eq!(parse_header(&f), Header::Frame { header: f.len() - 3, len: 3 });
        assert_eq!(parse_header(&f[..f.len() - 6]), Header::Incomplete);
        let mut list = f.clone();
        let at = f.len() - 3 - 8;
        list[at..at + 4].copy_from_slice(&(19i32 | 0x200).to_ne_bytes());
        assert_eq!(parse_header(&list), Header::NotFrame);
    }

    #[test]
    fn reads_exactly_one_frame_and_leaves_the_rest() {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let mut peer = TcpStream::connect(listener.local_addr().unwrap()).unwrap();
        let (ours, _) = listener.accept().unwrap();
        let s = Socket { fd: ours.as_raw_fd(), inode: inode_of(ours.as_raw_fd()) };
        assert!(same(s));
        assert_eq!(recv(s, Duration::from_millis(20)), Received::Pending);
        let big: Vec<u8> = (0..200_000u32).map(|i| (i % 251) as u8).collect();
        let mut bytes = frame_of(&big);
        // Then a message in R's plain format: a list with attributes.
        let mut plain = frame_of(b"plain");
        let at = plain.len() - 5 - 8;
        plain[at..at + 4].copy_from_slice(&(19i32 | 0x200).to_ne_bytes());
        bytes.extend(&plain);
        let writer = std::thread::spawn(move || {
            for chunk in bytes.chunks(30_000) {
                peer.write_all(chunk).unwrap();
                std::thread::sleep(Duration::from_millis(5));
            }
            peer
        });
        let got = loop {
            match recv(s, Duration::from_millis(2)) {
                Received::Pending => continue,
                other => break other,
            }
        };
        assert_eq!(got, Received::Frame(big));
        let peer = writer.join().unwrap();
        assert_eq!(recv(s, Duration::from_millis(200)), Received::NotFrame);
        let mut rest = [0u8; 64];
        // SAFETY: test buffer.
        let n = unsafe { libc::recv(s.fd, rest.as_mut_ptr().cast(), rest.len(), libc::MSG_DONTWAIT) };
        assert_eq!(&rest[..n as usize], &plain[..]);
        drop(peer);
        assert_eq!(recv(s, Duration::from_millis(200)), Received::Broken);
        let sent = send(s, b"x", 0, Duration::from_millis(10));
        assert!(matches!(sent, Err(_) | Ok(1)));
    }

    #[test]
    fn finds_its_own_connection() {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let _peer = TcpStream::connect(("127.0.0.1", port)).unwrap();
        let (ours, _) = listener.accept().unwrap();
        // Both ends are in this process: the worker's end is ours too, so two descriptors
        // of this process are candidates for "the master's end"? No: only the accepted one
        // has local port `port`.
        let found = find(std::process::id(), port).unwrap();
        assert_eq!(found.fd, ours.as_raw_fd());
        assert!(same(found));
        drop(ours);
        assert!(!same(found) || find(std::process::id(), port).is_none());
    }
}
