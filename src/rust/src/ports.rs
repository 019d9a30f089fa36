//! TCP port probing for `freePort()`.

use std::net::{Ipv4Addr, SocketAddrV4, TcpListener};

/// True when `port` can be bound on all IPv4 interfaces and listened on. std's listener sets
/// SO_REUSEADDR, like R's own server sockets, so a port in TIME_WAIT counts as free.
pub fn is_free(port: u16) -> bool {
    if port == 0 {
        return false;
    }
    TcpListener::bind(SocketAddrV4::new(Ipv4Addr::UNSPECIFIED, port)).is_ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_bound_port_is_not_free() {
        let l = TcpListener::bind("0.0.0.0:0").expect("bind");
        let port = l.local_addr().expect("addr").port();
        assert!(!is_free(port));
        drop(l);
        // Other tests fork in parallel, and a child holds copies of our fds until it execs:
        // allow the port a moment to become free.
        let free = (0..100).any(|_| {
            let f = is_free(port);
            if !f {
                std::thread::sleep(std::time::Duration::from_millis(10));
            }
            f
        });
        assert!(free);
        assert!(!is_free(0));
    }
}
