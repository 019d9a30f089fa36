//! Stopping our own worker processes without making the caller wait.
//!
//! `stopCluster()` has told the workers to finish (DONE) and closed their connections; a
//! worker then needs tens of milliseconds to exit. A reaper thread waits for all of them
//! at once (a pidfd per child, one `poll()`, woken by each exit), reaps each as it exits,
//! terminates those still running after the grace period (SIGTERM, then SIGKILL) and
//! forgets them. Until then they stay in the children registry, so the package's exit and
//! unload hooks see them as running and terminate them; `shutdown()` ends the grace
//! period at once and joins the threads.
//!
//! The PIDs are our unreaped children: such a PID cannot be reused until we reap it, so
//! signalling it reaches the worker we started. Workers forked by a fork server are not our
//! children (the server reaps them): they are waited for and signalled the same way, but
//! through a pidfd opened while their start time matched, which keeps naming that process
//! even if its PID is reused.

use std::os::fd::RawFd;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Mutex, MutexGuard, OnceLock};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crate::children::{self, State};
use crate::process::{self, Liveness};

static SHUTDOWN: AtomicBool = AtomicBool::new(false);

fn threads() -> MutexGuard<'static, Vec<JoinHandle<()>>> {
    static THREADS: OnceLock<Mutex<Vec<JoinHandle<()>>>> = OnceLock::new();
    THREADS.get_or_init(|| Mutex::new(Vec::new())).lock().unwrap_or_else(|p| p.into_inner())
}

/// A pidfd for `pid` (readable once the process has exited), or None where the kernel has
/// no pidfd_open (before Linux 5.3): the wait then polls the registry in short slices.
fn pidfd(pid: u32) -> Option<RawFd> {
    // SAFETY: pidfd_open takes a PID and flags and returns a new descriptor or -1; no
    // memory is passed.
    let fd = unsafe { libc::syscall(libc::SYS_pidfd_open, pid as libc::pid_t, 0 as libc::c_uint) };
    if fd < 0 {
        None
    } else {
        RawFd::try_from(fd).ok()
    }
}

struct Waited {
    pid: u32,
    fd: Option<RawFd>,
    /// Start time (clock ticks since boot) of a process that is not our child.
    stranger_start: Option<u64>,
}

impl Drop for Waited {
    fn drop(&mut self) {
        if let Some(fd) = self.fd {
            // SAFETY: `fd` is the pidfd this value opened and owns; it is closed once.
            unsafe { libc::close(fd) };
        }
    }
}

/// Reap the exited children of `waited` (dropping them, and the other processes that have
/// ended, from it).
fn reap_exited(waited: &mut Vec<Waited>) {
    waited.retain(|w| match w.stranger_start {
        None => children::state(w.pid) == Some(State::Running),
        Some(start) => match w.fd {
            // A pidfd turns readable when its process ends.
            Some(fd) => {
                let mut p = [libc::pollfd { fd, events: libc::POLLIN, revents: 0 }];
                // SAFETY: `p` is a valid one-element array of pollfd; timeout 0 never blocks.
                let ready = unsafe { libc::poll(p.as_mut_ptr(), 1, 0) };
                ready == 0
            }
            None => process::probe(w.pid, start) == Liveness::Alive,
        },
    });
}

/// Wait until every child in `waited` has exited or `deadline` has passed (or shutdown
/// was asked for, unless `ignore_shutdown`), reaping each as it exits.
fn wait_exits(waited: &mut Vec<Waited>, deadline: Instant, ignore_shutdown: bool) {
    loop {
        reap_exited(waited);
        if waited.is_empty() || Instant::now() >= deadline || (!ignore_shutdown && SHUTDOWN.load(Ordering::Relaxed)) {
            return;
        }
        // Woken by an exit; at least every 100 ms to notice a shutdown request.
        let slice = deadline.saturating_duration_since(Instant::now()).min(Duration::from_millis(100));
        let mut fds: Vec<libc::pollfd> =
            waited.iter().filter_map(|w| w.fd).map(|fd| libc::pollfd { fd, events: libc::POLLIN, revents: 0 }).collect();
        if fds.len() < waited.len() {
            // Some child has no pidfd: look again soon.
            let short = slice.min(Duration::from_millis(10));
            if fds.is_empty() {
                std::thread::sleep(short);
                continue;
            }
            poll(&mut fds, short);
        } else {
            poll(&mut fds, slice);
        }
    }
}

fn poll(fds: &mut [libc::pollfd], timeout: Duration) {
    let ms = libc::c_int::try_from(timeout.as_millis()).unwrap_or(libc::c_int::MAX).max(1);
    // SAFETY: `fds` is a valid, exclusively borrowed slice of pollfd and its length is
    // passed with it; poll only writes the `revents` fields.
    unsafe { libc::poll(fds.as_mut_ptr(), fds.len() as libc::nfds_t, ms) };
}

fn signal(waited: &[Waited], sig: libc::c_int) {
    for w in waited {
        match (w.stranger_start, w.fd) {
            (None, _) => {
                // SAFETY: kill() takes plain integers. The PID is our unreaped child (see the
                // module comment), so it names the worker we started.
                unsafe { libc::kill(w.pid as libc::pid_t, sig) };
            }
            (Some(_), Some(fd)) => {
                // SAFETY: pidfd_send_signal takes the pidfd we own, a signal number, a null
                // siginfo (as kill() would send) and no flags.
                unsafe { libc::syscall(libc::SYS_pidfd_send_signal, fd, sig, std::ptr::null::<libc::siginfo_t>(), 0) };
            }
            (Some(start), None) => {
                let _ = process::signal(w.pid, start, sig);
            }
        }
    }
}

/// Wait up to `grace` for the children `pids` (told to finish already) to exit, then
/// SIGTERM those left, SIGKILL them after `term_grace`, and forget them all, on a thread
/// of its own. PIDs that are not our running children are only forgotten.
pub fn stop_in_background(pids: Vec<u32>, grace: Duration, term_grace: Duration) {
    let mut waited: Vec<Waited> = pids.iter().map(|&pid| Waited { pid, fd: None, stranger_start: None }).collect();
    reap_exited(&mut waited);
    if waited.is_empty() {
        for pid in pids {
            children::forget(pid);
        }
        return;
    }
    for w in waited.iter_mut() {
        w.fd = pidfd(w.pid);
    }
    spawn_stopper(waited, grace, term_grace, pids);
}

/// The same for processes that are not our children (`(pid, start time)`, e.g. workers
/// forked by a fork server, which reaps them): waited for until they end, then terminated.
/// Those not running (as that process) are left alone.
pub fn stop_strangers_in_background(procs: Vec<(u32, u64)>, grace: Duration, term_grace: Duration) {
    let mut waited = Vec::new();
    for (pid, start) in procs {
        let fd = pidfd(pid);
        // Opened first, checked after: the pidfd then names the process that was checked.
        let w = Waited { pid, fd, stranger_start: Some(start) };
        if process::probe(pid, start) == Liveness::Alive {
            waited.push(w);
        }
    }
    if !waited.is_empty() {
        spawn_stopper(waited, grace, term_grace, Vec::new());
    }
}

/// Wait for `waited` on a thread of its own (see stop_in_background()); `forget`: our
/// children to drop from the registry at the end.
fn spawn_stopper(mut waited: Vec<Waited>, grace: Duration, term_grace: Duration, forget: Vec<u32>) {
    let pids = forget;
    let run = move || {
        wait_exits(&mut waited, Instant::now() + grace, false);
        if !waited.is_empty() {
            signal(&waited, libc::SIGTERM);
            wait_exits(&mut waited, Instant::now() + term_grace, true);
        }
        if !waited.is_empty() {
            signal(&waited, libc::SIGKILL);
            wait_exits(&mut waited, Instant::now() + Duration::from_secs(2), true);
        }
        drop(waited);
        for pid in pids {
            children::forget(pid);
        }
    };
    let mut list = threads();
    list.retain(|h| !h.is_finished());
    // No thread to be had: the exit and unload hooks still terminate and reap them.
    if let Ok(handle) = std::thread::Builder::new().name("parallelly-reaper".into()).spawn(run) {
        list.push(handle);
    }
}

/// Number of reaper threads still at work.
pub fn active() -> usize {
    let mut list = threads();
    list.retain(|h| !h.is_finished());
    list.len()
}

/// End every grace period now (the children left are terminated) and wait up to `timeout`
/// for the threads to finish. TRUE if none is left.
pub fn shutdown(timeout: Duration) -> bool {
    SHUTDOWN.store(true, Ordering::Relaxed);
    let deadline = Instant::now() + timeout;
    let mut list = std::mem::take(&mut *threads());
    while !list.is_empty() && Instant::now() < deadline {
        list.retain(|h| !h.is_finished());
        std::thread::sleep(Duration::from_millis(5));
    }
    let done = list.is_empty();
    // Threads that overran the deadline stay registered (they are not detached silently).
    threads().extend(list);
    SHUTDOWN.store(false, Ordering::Relaxed);
    done
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::process::Command;

    #[test]
    fn waits_for_exits_and_terminates_stragglers() {
        let quick = Command::new("sh").args(["-c", "sleep 0.2"]).spawn().expect("sh");
        let slow = Command::new("sleep").arg("30").spawn().expect("sleep");
        let (q, s) = (quick.id(), slow.id());
        children::register(q, None);
        children::register(s, None);
        let t0 = Instant::now();
        stop_in_background(vec![q, s], Duration::from_millis(500), Duration::from_millis(500));
        assert!(t0.elapsed() < Duration::from_millis(100), "the caller does not wait");
        let deadline = Instant::now() + Duration::from_secs(10);
        while (children::state(q).is_some() || children::state(s).is_some()) && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(10));
        }
        // Both reaped and forgotten: the quick one exited, the slow one was terminated.
        assert_eq!(children::state(q), None);
        assert_eq!(children::state(s), None);
        assert!(t0.elapsed() < Duration::from_secs(3));
        // SAFETY: signal 0 only checks for existence.
        assert_ne!(unsafe { libc::kill(s as i32, 0) }, 0, "no process left");
    }

    #[test]
    fn terminates_processes_that_are_not_registered_children() {
        // Not in the children registry: waited for by pidfd and start time, as forked workers are.
        let mut quick = Command::new("sh").args(["-c", "sleep 0.2"]).spawn().expect("sh");
        let mut slow = Command::new("sleep").arg("30").spawn().expect("sleep");
        let (q, s) = (quick.id(), slow.id());
        let start = |pid| process::start_time(pid).expect("start time");
        let t0 = Instant::now();
        stop_strangers_in_background(vec![(q, start(q)), (s, start(s))], Duration::from_millis(500), Duration::from_millis(500));
        assert!(t0.elapsed() < Duration::from_millis(100), "the caller does not wait");
        // (This test is their parent: reaping them is its part, as it is the fork server's.)
        assert!(quick.wait().expect("wait").success());
        let status = slow.wait().expect("wait");
        assert!(t0.elapsed() < Duration::from_secs(3), "terminated after the grace period");
        use std::os::unix::process::ExitStatusExt;
        assert_eq!(status.signal(), Some(libc::SIGTERM));
    }

    #[test]
    fn leaves_a_process_whose_start_time_differs_alone() {
        let mut other = Command::new("sleep").arg("30").spawn().expect("sleep");
        let pid = other.id();
        let start = process::start_time(pid).expect("start time");
        stop_strangers_in_background(vec![(pid, start + 1)], Duration::from_millis(0), Duration::from_millis(0));
        std::thread::sleep(Duration::from_millis(300));
        assert!(other.try_wait().expect("try_wait").is_none(), "still running");
        other.kill().expect("kill");
        other.wait().expect("wait");
    }
}
