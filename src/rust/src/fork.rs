//! The fork server's half of `setup_strategy = "fork"`: fork this R process into a worker
//! that starts clean, and reap the workers forked so far.
//!
//! Runs inside the fork server (one plain R worker per host), never in the master. The child
//! is made to look like a freshly launched worker before it returns to R: its own process
//! group, its own R temporary directory (a sibling's exit must not delete it; R makes it in
//! the child, see forget_temp_dir()), stdin from
//! /dev/null, the server's descriptors above 2 close-on-exec (fds.rs: nothing the worker
//! runs inherits them), default SIGCHLD (so that `system()` works), and a parent-death signal so that
//! it dies with the server, which itself dies with the master.
//!
//! The server reaps its children on a thread of its own (its R thread sits in a blocking
//! read), as each exits: the thread waits in `waitid()` for any child, so that an exited
//! worker is not left a zombie (a killed worker's PID is gone when the master looks). The
//! bookkeeping shared with that thread is a table of atomics, not a lock: a fork can happen
//! while the thread is busy, and a child must never inherit a held lock.

use std::ffi::CStr;
use std::os::raw::c_char;
use std::sync::atomic::{AtomicI32, Ordering};
use std::sync::OnceLock;
use std::thread::Thread;
use std::time::Duration;

use crate::error::{Error, Kind, Result};

/// R's session temporary directory, `char *R_TempDir` (Rembedded.h, the interface for
/// front-ends), which `tempdir()` and `tempfile()` read. Looked up at run time: it is not
/// part of the API for packages, and a fork server is the one place that needs it.
fn r_temp_dir() -> Option<*mut *mut c_char> {
    // SAFETY: dlsym() with RTLD_DEFAULT and a NUL-terminated name only reads; a null
    // result is handled below.
    let p = unsafe { libc::dlsym(libc::RTLD_DEFAULT, c"R_TempDir".as_ptr()) };
    (!p.is_null()).then_some(p as *mut *mut c_char)
}

/// Whether this process can fork clean workers.
pub fn available() -> bool {
    r_temp_dir().is_some()
}

/// The path R_TempDir points at now (None if the symbol or the path is missing): the load
/// time check (R/internals.R) compares it with `tempdir()`, so that a symbol of that name
/// that is not R's session directory any more is never written to.
pub fn temp_dir_now() -> Option<String> {
    let p = r_temp_dir()?;
    // SAFETY: `p` is R's `char *R_TempDir` found by dlsym(); reading the pointer and the
    // NUL-terminated string it points to (R's own, set at start-up) only reads.
    let s = unsafe { *p };
    if s.is_null() {
        return None;
    }
    // SAFETY: non-null, and R keeps it a NUL-terminated C string for the session.
    Some(unsafe { CStr::from_ptr(s) }.to_string_lossy().into_owned())
}

/// Children forked by this process: a PID (0: free slot) and its wait status (RUNNING
/// until reaped). When the table is full, the oldest reaped entry is reused.
const SLOTS: usize = 1024;
const RUNNING: i32 = i32::MIN;
static PIDS: [AtomicI32; SLOTS] = [const { AtomicI32::new(0) }; SLOTS];
static STATUSES: [AtomicI32; SLOTS] = [const { AtomicI32::new(RUNNING) }; SLOTS];
/// A pidfd per child (-1: none, a kernel before Linux 5.3), opened before the child is
/// entered in the table and so before the reaper may reap it: it names that child even
/// after its PID is reused. Used by the R thread only.
static PIDFDS: [AtomicI32; SLOTS] = [const { AtomicI32::new(-1) }; SLOTS];
static NEXT: AtomicI32 = AtomicI32::new(0);
static REAPER: OnceLock<Thread> = OnceLock::new();

/// Fork. Returns the child's PID in the server, and 0 in the child, which is ready to run
/// a worker by then.
pub fn fork_worker() -> Result<u32> {
    let Some(temp_dir) = r_temp_dir() else {
        return Err(Error::new(Kind::Launch, "this R does not expose R_TempDir: cannot give a forked worker its own temporary directory".to_string()));
    };
    // SAFETY: getpid() cannot fail and touches no memory.
    let parent = unsafe { libc::getpid() };
    let close_on_exec = crate::fds::CloseOnExec::prepare();
    // Pending output would otherwise be written twice, once by each process.
    // SAFETY: fflush(NULL) flushes every open stdio stream; it takes no pointer of ours.
    unsafe { libc::fflush(std::ptr::null_mut()) };
    // SAFETY: the fork server's R thread is the only thread that runs R; the child runs
    // only async-signal-safe calls and atomics (become_fresh_worker) before R continues, and
    // takes no lock another thread could have held (the reaper uses atomics only).
    let pid = unsafe { libc::fork() };
    if pid < 0 {
        return Err(Error::new(Kind::Launch, format!("fork() failed: {}", std::io::Error::last_os_error())));
    }
    if pid == 0 {
        close_on_exec.apply();
        become_fresh_worker(parent, temp_dir);
        return Ok(0);
    }
    // SAFETY: pidfd_open takes a PID and flags; no memory is passed. The child is not in
    // the table yet, so the reaper leaves it unreaped (WNOWAIT): the PID is still its own.
    let fd = unsafe { libc::syscall(libc::SYS_pidfd_open, pid, 0 as libc::c_uint) };
    remember(pid, i32::try_from(fd).unwrap_or(-1));
    // A reaper with no child to wait for sleeps: wake it for this one. (unpark() is an
    // atomic and a futex wake-up, no lock.)
    REAPER.get_or_init(start_reaper).unpark();
    Ok(pid as u32)
}

fn start_reaper() -> Thread {
    std::thread::Builder::new()
        .name("parallelly-reaper".into())
        .spawn(reaper_loop)
        .map(|h| h.thread().clone())
        // No thread: the R thread still reaps at each request (exit_statuses(), running()).
        .unwrap_or_else(|_| std::thread::current())
}

/// Wait for any child to exit and reap it if it is ours. `WNOWAIT` leaves a child that is
/// not ours (R's own, e.g. of `system()`) for its owner to reap.
fn reaper_loop() {
    loop {
        // SAFETY: waitid() writes only to `info`, a live local that it fills in.
        let mut info: libc::siginfo_t = unsafe { std::mem::zeroed() };
        // SAFETY: as above; P_ALL with id 0 waits for any child, blocking.
        let rc = unsafe { libc::waitid(libc::P_ALL, 0, &mut info, libc::WEXITED | libc::WNOWAIT) };
        if rc == 0 {
            // SAFETY: waitid() returned a child's state, so `info` holds its PID.
            let pid = unsafe { info.si_pid() };
            if !reap_one(pid) {
                // Not ours (or reaped meanwhile by the R thread): it stays for its owner;
                // do not spin on it.
                std::thread::park_timeout(Duration::from_millis(100));
            }
        } else if std::io::Error::last_os_error().raw_os_error() == Some(libc::ECHILD) {
            // No children: sleep until the next fork wakes us.
            std::thread::park_timeout(Duration::from_secs(1));
        }
    }
}

/// Reap `pid` if it is a running child of ours; whether it was reaped here.
fn reap_one(pid: i32) -> bool {
    pid > 0 && (0..SLOTS).find(|&i| PIDS[i].load(Ordering::Acquire) == pid).is_some_and(reap_slot)
}

/// Reap the child in slot `i` if it is running and has exited; whether it was reaped.
fn reap_slot(i: usize) -> bool {
    let pid = PIDS[i].load(Ordering::Acquire);
    if pid <= 0 || STATUSES[i].load(Ordering::Acquire) != RUNNING {
        return false;
    }
    let mut wstatus: libc::c_int = 0;
    // SAFETY: waitpid() writes only to `wstatus`, a live local; WNOHANG never blocks.
    if unsafe { libc::waitpid(pid, &mut wstatus, libc::WNOHANG) } != pid {
        return false;
    }
    STATUSES[i].store(wstatus, Ordering::Release);
    true
}

fn close_pidfd(i: usize) {
    let fd = PIDFDS[i].swap(-1, Ordering::AcqRel);
    if fd >= 0 {
        // SAFETY: a pidfd this table owns, taken out of it, closed once.
        unsafe { libc::close(fd) };
    }
}

fn remember(pid: i32, pidfd: i32) {
    // A reused PID: the entry of the earlier child of that PID goes.
    for (i, slot) in PIDS.iter().enumerate() {
        if slot.load(Ordering::Acquire) == pid {
            slot.store(0, Ordering::Release);
            close_pidfd(i);
        }
    }
    // A free slot, else the next reaped one in turn (never one still running).
    for _ in 0..2 * SLOTS {
        let i = (NEXT.fetch_add(1, Ordering::Relaxed) as usize) % SLOTS;
        let old = PIDS[i].load(Ordering::Acquire);
        if old == 0 || STATUSES[i].load(Ordering::Acquire) != RUNNING {
            close_pidfd(i);
            STATUSES[i].store(RUNNING, Ordering::Release);
            PIDFDS[i].store(pidfd, Ordering::Release);
            PIDS[i].store(pid, Ordering::Release);
            return;
        }
    }
    // No slot (more than SLOTS children running): the pidfd has no owner.
    if pidfd >= 0 {
        // SAFETY: the pidfd opened for this child, not stored anywhere; closed once.
        unsafe { libc::close(pidfd) };
    }
}

/// Reap the children that have exited (each only by its own PID: others are not ours).
fn reap() {
    for i in 0..SLOTS {
        reap_slot(i);
    }
}

/// In the child, before any R code runs again. Failures here end the child at once: a
/// worker that shares its parent's temporary directory or outlives the master is worse
/// than one that never connects (the master then reports it exited).
fn become_fresh_worker(parent: libc::pid_t, temp_dir: *mut *mut c_char) {
    // SAFETY: plain system calls on this process (no memory of ours is passed except the
    // NUL-terminated "/dev/null"); a failure of any of them leaves a usable process.
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
    // Nothing of the server's bookkeeping belongs to the child (and no reaper runs here).
    for i in 0..SLOTS {
        PIDS[i].store(0, Ordering::Relaxed);
        STATUSES[i].store(RUNNING, Ordering::Relaxed);
        close_pidfd(i);
    }
    forget_temp_dir(temp_dir);
}

/// Point R's session temporary directory at a path that does not exist, so that the
/// child's `tempdir(check = TRUE)` makes a new one. R keeps a second, private copy of the
/// path (the one it deletes at exit): only R's own re-initialisation updates both, which is
/// why the directory is not simply swapped here.
fn forget_temp_dir(temp_dir: *mut *mut c_char) {
    static GONE: &CStr = c"/nonexistent/parallelly-forked-worker";
    // SAFETY: `temp_dir` is R's `char *R_TempDir` found by dlsym(); R only reads the string
    // it points to (and replaces the pointer when it makes a new directory), and GONE is a
    // static that lives as long as the process.
    unsafe { *temp_dir = GONE.as_ptr() as *mut c_char };
}

/// End this process at once, running nothing of R's exit: for a forked worker whose R
/// could not make a temporary directory of its own, where R's exit would delete the
/// server's.
pub fn exit_now(status: i32) -> ! {
    // SAFETY: _exit() takes no pointers and never returns; skipping atexit handlers and
    // stdio flushing is the point (the parent's buffers were flushed before fork()).
    unsafe { libc::_exit(status) }
}

/// The wait status of each of `pids` (reaping first): None if it is not one of ours,
/// Some(None) while it runs, Some(Some(status)) once it exited.
pub fn exit_statuses(pids: &[u32]) -> Vec<Option<Option<i32>>> {
    reap();
    pids.iter()
        .map(|&p| {
            let p = i32::try_from(p).ok()?;
            let i = (0..SLOTS).find(|&i| p > 0 && PIDS[i].load(Ordering::Acquire) == p)?;
            let status = STATUSES[i].load(Ordering::Acquire);
            Some(if status == RUNNING { None } else { Some(status) })
        })
        .collect()
}

/// Children forked by this process that have not been seen to exit.
pub fn running() -> usize {
    reap();
    (0..SLOTS).filter(|&i| PIDS[i].load(Ordering::Acquire) > 0 && STATUSES[i].load(Ordering::Acquire) == RUNNING).count()
}

/// Send `signal` to every child forked by this process that has not been seen to exit,
/// through its pidfd (the reaper thread may reap it at any moment, freeing its PID); how
/// many were signalled.
pub fn signal_running(signal: i32) -> usize {
    reap();
    let mut n = 0;
    for i in 0..SLOTS {
        let pid = PIDS[i].load(Ordering::Acquire);
        if pid > 0 && STATUSES[i].load(Ordering::Acquire) == RUNNING {
            let fd = PIDFDS[i].load(Ordering::Acquire);
            let rc = if fd >= 0 {
                // SAFETY: pidfd_send_signal takes the pidfd this table owns, a signal
                // number, a null siginfo (as kill() would send) and no flags.
                unsafe { libc::syscall(libc::SYS_pidfd_send_signal, fd, signal, std::ptr::null::<libc::siginfo_t>(), 0) }
            } else {
                // No pidfds (Linux before 5.3): by PID, just checked as unreaped.
                // SAFETY: kill() takes plain integers.
                i64::from(unsafe { libc::kill(pid, signal) })
            };
            if rc == 0 {
                n += 1;
            }
        }
    }
    n
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
