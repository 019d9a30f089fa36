//! The fork server's half of `setup_strategy = "fork"`: fork this R process into a worker
//! that starts clean, and reap the workers forked so far.
//!
//! Runs inside the fork server (one plain R worker per host), never in the master. The child
//! is made to look like a freshly launched worker before it returns to R: its own process
//! group, its own R temporary directory (a sibling's exit must not delete it; R makes it in
//! the child, see forget_temp_dir()), stdin from
//! /dev/null, default SIGCHLD (so that `system()` works), and a parent-death signal so that
//! it dies with the server, which itself dies with the master.

use std::collections::HashMap;
use std::ffi::CStr;
use std::os::raw::c_char;
use std::sync::Mutex;

use crate::error::{Error, Kind, Result};

extern "C" {
    /// R's session temporary directory (Rembedded.h); `tempdir()` and `tempfile()` read it.
    static mut R_TempDir: *mut c_char;
}

/// Children forked by this process: PID -> wait status once reaped (None while running).
static FORKED: Mutex<Option<HashMap<u32, Option<i32>>>> = Mutex::new(None);

/// Fork. Returns the child's PID in the server, and 0 in the child, which is ready to run
/// a worker by then.
pub fn fork_worker() -> Result<u32> {
    let parent = unsafe { libc::getpid() };
    // Pending output would otherwise be written twice, once by each process.
    unsafe { libc::fflush(std::ptr::null_mut()) };
    let pid = unsafe { libc::fork() };
    if pid < 0 {
        return Err(Error::new(Kind::Launch, format!("fork() failed: {}", std::io::Error::last_os_error())));
    }
    if pid == 0 {
        become_fresh_worker(parent);
        return Ok(0);
    }
    let pid = pid as u32;
    if let Ok(mut map) = FORKED.lock() {
        map.get_or_insert_with(HashMap::new).insert(pid, None);
    }
    Ok(pid)
}

/// In the child, before any R code runs again. Failures here end the child at once: a
/// worker that shares its parent's temporary directory or outlives the master is worse
/// than one that never connects (the master then reports it exited).
fn become_fresh_worker(parent: libc::pid_t) {
    unsafe {
        libc::setpgid(0, 0);
        libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGTERM as libc::c_ulong, 0, 0, 0);
        // The server may have died between fork() and prctl(): then nobody would signal us.
        if libc::getppid() != parent {
            libc::_exit(1);
        }
        libc::signal(libc::SIGCHLD, libc::SIG_DFL);
        let fd = libc::open(c"/dev/null".as_ptr(), libc::O_RDONLY);
        if fd >= 0 {
            libc::dup2(fd, 0);
            libc::close(fd);
        }
    }
    // Nothing of the server's bookkeeping belongs to the child.
    if let Ok(mut map) = FORKED.lock() {
        *map = None;
    }
    forget_temp_dir();
}

/// Point R's session temporary directory at a path that does not exist, so that the
/// child's `tempdir(check = TRUE)` makes a new one. R keeps a second, private copy of the
/// path (the one it deletes at exit): only R's own re-initialisation updates both, which is
/// why the directory is not simply swapped here.
fn forget_temp_dir() {
    static GONE: &CStr = c"/nonexistent/parallelly-forked-worker";
    unsafe { R_TempDir = GONE.as_ptr() as *mut c_char };
}

/// Reap the children that have exited and return the wait status of each of `pids`:
/// None if it is not one of ours, Some(None) while it runs, Some(Some(status)) once it exited.
pub fn exit_statuses(pids: &[u32]) -> Vec<Option<Option<i32>>> {
    let Ok(mut guard) = FORKED.lock() else { return vec![None; pids.len()] };
    let map = guard.get_or_insert_with(HashMap::new);
    for (pid, status) in map.iter_mut() {
        if status.is_none() {
            let mut wstatus: libc::c_int = 0;
            let r = unsafe { libc::waitpid(*pid as libc::pid_t, &mut wstatus, libc::WNOHANG) };
            if r == *pid as libc::pid_t {
                *status = Some(wstatus);
            }
        }
    }
    pids.iter().map(|p| map.get(p).copied()).collect()
}

/// Children forked by this process that have not been seen to exit.
pub fn running() -> usize {
    exit_statuses(&[]);
    FORKED.lock().ok().and_then(|g| g.as_ref().map(|m| m.values().filter(|s| s.is_none()).count())).unwrap_or(0)
}

/// Decode a wait status: (exit code, signal).
pub fn decode(status: i32) -> (Option<i32>, Option<i32>) {
    if libc::WIFEXITED(status) {
        (Some(libc::WEXITSTATUS(status)), None)
    } else if libc::WIFSIGNALED(status) {
        (None, Some(libc::WTERMSIG(status)))
    } else {
        (None, None)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decodes_exit_codes_and_signals() {
        assert_eq!(decode(3 << 8), (Some(3), None));
        assert_eq!(decode(9), (None, Some(9)));
    }
}
