//! Descriptors above 2 never reach a program we start: R and other packages open files and
//! sockets without close-on-exec (R's own connections, a server socket), and every worker
//! would inherit them, holding a port or a file open after the master closed it.
//!
//! [`CloseOnExec::apply`] marks every descriptor from 3 on close-on-exec, in a child between
//! fork and exec (or in a forked worker, for what it runs later). Close-on-exec rather than
//! close: the standard library reports a failed exec through a pipe of its own that must
//! stay open until exec, and a forked R worker still holds its R connections by number.

/// Prepared before fork (in the parent), applied in the child: the apply step makes only
/// async-signal-safe system calls.
#[derive(Clone, Copy)]
pub struct CloseOnExec {
    /// The highest descriptor the fallback marks (the open-files limit, capped).
    last_fd: libc::c_int,
}

/// Past this many descriptors the fallback stops (a limit of millions would cost a second).
const FALLBACK_CAP: libc::c_long = 1 << 16;

impl CloseOnExec {
    pub fn prepare() -> CloseOnExec {
        // SAFETY: sysconf() takes a constant and reads no memory of ours.
        let max = unsafe { libc::sysconf(libc::_SC_OPEN_MAX) };
        let last_fd = if max <= 0 { 1024 } else { max.min(FALLBACK_CAP) } as libc::c_int - 1;
        CloseOnExec { last_fd }
    }

    /// Mark descriptors 3 and above close-on-exec. Async-signal-safe.
    pub fn apply(&self) {
        // SAFETY: close_range() (Linux 5.11 for the CLOEXEC flag) takes plain integers and
        // only changes this process's descriptor flags; called through syscall() so that
        // a C library older than the call (glibc < 2.34) still links.
        let rc = unsafe { libc::syscall(libc::SYS_close_range, 3 as libc::c_uint, libc::c_uint::MAX, libc::CLOSE_RANGE_CLOEXEC) };
        if rc == 0 {
            return;
        }
        // An older kernel: one fcntl() per possible descriptor up to the limit.
        mark(3, self.last_fd);
    }
}

/// Mark descriptors `first..=last` close-on-exec, one fcntl() each. Async-signal-safe.
fn mark(first: libc::c_int, last: libc::c_int) {
    for fd in first..=last {
        // SAFETY: fcntl() on a descriptor number that may not be open fails with EBADF
        // and changes nothing; it reads and writes no memory of ours.
        unsafe {
            let flags = libc::fcntl(fd, libc::F_GETFD);
            if flags >= 0 && flags & libc::FD_CLOEXEC == 0 {
                libc::fcntl(fd, libc::F_SETFD, flags | libc::FD_CLOEXEC);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::process::CommandExt;
    use std::process::Command;

    /// A descriptor open without close-on-exec, as R leaves its connections.
    fn inheritable() -> libc::c_int {
        // SAFETY: open() of a constant NUL-terminated path, without O_CLOEXEC on purpose.
        let fd = unsafe { libc::open(c"/dev/null".as_ptr(), libc::O_RDONLY) };
        assert!(fd > 2);
        fd
    }

    fn child_sees(fd: libc::c_int, hygiene: bool) -> bool {
        let mut cmd = Command::new("/bin/sh");
        cmd.args(["-c", &format!("test -e /proc/self/fd/{}", fd)]);
        if hygiene {
            let close = CloseOnExec::prepare();
            // SAFETY: apply() makes only async-signal-safe system calls.
            unsafe {
                cmd.pre_exec(move || {
                    close.apply();
                    Ok(())
                });
            }
        }
        cmd.status().expect("sh").success()
    }

    #[test]
    fn an_inherited_descriptor_does_not_reach_the_program() {
        let fd = inheritable();
        assert!(child_sees(fd, false), "without it, the child inherits the descriptor");
        assert!(!child_sees(fd, true));
        // SAFETY: our own descriptor, closed once.
        unsafe { libc::close(fd) };
    }

    #[test]
    fn the_fallback_marks_every_descriptor() {
        let fd = inheritable();
        // Only this descriptor: the test process's others are not ours to change.
        mark(fd, fd);
        // SAFETY: fcntl() on our own descriptor.
        let flags = unsafe { libc::fcntl(fd, libc::F_GETFD) };
        assert_eq!(flags & libc::FD_CLOEXEC, libc::FD_CLOEXEC);
        // SAFETY: as above.
        unsafe { libc::close(fd) };
    }
}
