//! `ProxyJump`: reach a host through a jump host. We open a connection of its own to the
//! jump host (its own config block applies, and it may itself be behind another jump host),
//! ask it for a direct-tcpip channel to the target, and hand the target's SSH session one end
//! of a Unix socket pair; a thread pumps bytes between the other end and the channel. libssh2
//! needs a real file descriptor for its transport, hence the socket pair.
//!
//! The pump ends, and the jump connection with it, when the target's session closes its end
//! (it is dropped with the target's connection) or the channel ends (the target's sshd closed
//! the connection, or the jump host went away).

use std::io::{ErrorKind, Read, Write};
use std::os::fd::{AsRawFd, RawFd};
use std::os::unix::net::UnixStream;
use std::time::{Duration, Instant};

use ssh2::{BlockDirections, Channel, Session};

use super::session::{self, Target};
use crate::error::{Error, Kind, Result};

/// Connect to `hop` and return a stream that carries a TCP connection from it to
/// `host:port` (the target named `alias`).
pub fn connect_via(hop: &Target, host: &str, port: u16, alias: &str) -> Result<UnixStream> {
    let (session, fd) = session::open(hop).map_err(|e| {
        Error::new(e.kind, format!("host '{}' is reached through jump host '{}' (ProxyJump): {}", alias, hop.alias, e.message))
    })?;
    let channel = session.channel_direct_tcpip(host, port, None).map_err(|e| {
        Error::new(
            Kind::Connect,
            format!(
                "jump host '{}' could not connect to host '{}' ({}:{}) for us (ProxyJump): {}",
                hop.alias, alias, host, port, e
            ),
        )
    })?;
    let (ours, theirs) = UnixStream::pair()
        .map_err(|e| Error::new(Kind::System, format!("cannot create a socket pair for ProxyJump: {}", e)))?;
    theirs
        .set_nonblocking(true)
        .map_err(|e| Error::new(Kind::System, format!("cannot set up the ProxyJump socket: {}", e)))?;
    session.set_blocking(false);
    std::thread::Builder::new()
        .name(format!("parallelly-jump-{}", hop.alias))
        .spawn(move || pump(session, channel, theirs, fd))
        .map_err(|e| Error::new(Kind::System, format!("cannot start the ProxyJump thread: {}", e)))?;
    Ok(ours)
}

fn would_block(e: &std::io::Error) -> bool {
    e.kind() == ErrorKind::WouldBlock
}

/// Copy bytes both ways between `sock` and `channel` until both directions have ended or
/// either side fails; then close the channel and the jump connection.
fn pump(session: Session, mut channel: Channel, mut sock: UnixStream, ssh_fd: RawFd) {
    let mut buf = vec![0u8; 32 * 1024];
    let mut to_channel: Vec<u8> = Vec::new();
    let mut to_sock: Vec<u8> = Vec::new();
    let (mut sock_eof, mut eof_sent, mut channel_eof) = (false, false, false);
    let mut closing_since: Option<Instant> = None;
    loop {
        let mut progress = false;
        // Socket -> channel. A write that would block is retried with the same bytes (as
        // libssh2 requires) before anything new is read.
        if to_channel.is_empty() && !sock_eof {
            match sock.read(&mut buf) {
                Ok(0) => sock_eof = true,
                Ok(n) => to_channel.extend_from_slice(&buf[..n]),
                Err(e) if would_block(&e) => {}
                Err(_) => break,
            }
            progress |= sock_eof || !to_channel.is_empty();
        }
        if !to_channel.is_empty() {
            match channel.write(&to_channel) {
                Ok(n) => {
                    to_channel.drain(..n);
                    progress |= n > 0;
                }
                Err(e) if would_block(&e) => {}
                Err(_) => break,
            }
        }
        if sock_eof && to_channel.is_empty() && !eof_sent {
            match channel.send_eof() {
                Ok(()) => {
                    eof_sent = true;
                    progress = true;
                }
                Err(e) if matches!(e.code(), ssh2::ErrorCode::Session(-37)) => {}
                Err(_) => break,
            }
        }
        // Channel -> socket. The channel is read last in a pass, so that a pass without
        // progress leaves nothing buffered in libssh2 for poll to miss.
        if !to_sock.is_empty() {
            match sock.write(&to_sock) {
                Ok(n) => {
                    to_sock.drain(..n);
                    progress |= n > 0;
                }
                Err(e) if would_block(&e) => {}
                Err(_) => break, // the target's session is gone
            }
        }
        if to_sock.is_empty() && !channel_eof {
            match channel.read(&mut buf) {
                Ok(0) => {
                    if channel.eof() {
                        channel_eof = true;
                        let _ = sock.shutdown(std::net::Shutdown::Write);
                        progress = true;
                    }
                }
                Ok(n) => {
                    to_sock.extend_from_slice(&buf[..n]);
                    progress = true;
                }
                Err(e) if would_block(&e) => {}
                Err(_) => break,
            }
        }
        if channel_eof && (sock_eof || to_sock.is_empty() && eof_sent) {
            break;
        }
        if sock_eof && eof_sent {
            // The target's session is gone: give its sshd a moment to close the channel.
            let since = *closing_since.get_or_insert_with(Instant::now);
            if since.elapsed() > Duration::from_secs(5) {
                break;
            }
        }
        if progress {
            continue;
        }
        let mut sock_events = 0;
        if to_channel.is_empty() && !sock_eof {
            sock_events |= libc::POLLIN;
        }
        if !to_sock.is_empty() {
            sock_events |= libc::POLLOUT;
        }
        // Incoming data is waited for only when there is room for it (else poll would return
        // at once while the target's side is slow), or when a write may need a window adjust.
        let mut ssh_events = 0;
        if (to_sock.is_empty() && !channel_eof) || !to_channel.is_empty() || eof_sent {
            ssh_events |= libc::POLLIN;
        }
        if matches!(session.block_directions(), BlockDirections::Outbound | BlockDirections::Both) {
            ssh_events |= libc::POLLOUT;
        }
        let mut fds = [
            libc::pollfd { fd: sock.as_raw_fd(), events: sock_events, revents: 0 },
            libc::pollfd { fd: ssh_fd, events: ssh_events, revents: 0 },
        ];
        // SAFETY: fds is a valid, initialised array of two pollfd for the duration of the
        // call, and both descriptors stay open (owned by `sock` and `session`) meanwhile. The
        // timeout bounds the wait should libssh2 ever hold data that poll cannot see.
        let n = unsafe { libc::poll(fds.as_mut_ptr(), fds.len() as libc::nfds_t, 200) };
        if n < 0 && std::io::Error::last_os_error().kind() != ErrorKind::Interrupted {
            break;
        }
        if fds[1].revents & (libc::POLLERR | libc::POLLNVAL) != 0 {
            break;
        }
        if fds[1].revents & libc::POLLHUP != 0 && fds[1].revents & libc::POLLIN == 0 {
            break; // the jump host closed the connection and nothing is left to read
        }
    }
    // Close in blocking mode with a short timeout (a drop in non-blocking mode can leak).
    session.set_blocking(true);
    session.set_timeout(2000);
    let _ = channel.close();
    let _ = channel.wait_close();
    drop(channel);
    let _ = session.disconnect(None, "jump done", None);
}
