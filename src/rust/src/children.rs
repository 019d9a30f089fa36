//! The registry of worker processes this R session started itself (by PID, spawn.rs). It
//! reaps them with `waitpid(pid, WNOHANG)`, so a dead
//! worker never lingers as a zombie that reads as alive, and lets us report how it ended.
//! No SIGCHLD handler is installed: R's own `system()` and `mclapply()` rely on theirs.

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Exit {
    Status(i32),
    Signal(i32),
    /// Reaped by someone else (e.g. a `waitpid(-1)` elsewhere in the process).
    Unknown,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum State {
    Running,
    Exited(Exit),
}

/// The exit of child `pid` once it has ended (reaping it), `None` while it runs.
fn try_wait(pid: u32) -> std::io::Result<Option<Exit>> {
    let mut status = 0;
    // SAFETY: waitpid() on one of our children writes only `status`.
    let rc = unsafe { libc::waitpid(pid as libc::pid_t, &mut status, libc::WNOHANG) };
    if rc == 0 {
        Ok(None)
    } else if rc < 0 {
        Err(std::io::Error::last_os_error())
    } else if libc::WIFSIGNALED(status) {
        Ok(Some(Exit::Signal(libc::WTERMSIG(status))))
    } else if libc::WIFEXITED(status) {
        Ok(Some(Exit::Status(libc::WEXITSTATUS(status))))
    } else {
        Ok(Some(Exit::Unknown))
    }
}

struct Entry {
    exit: Option<Exit>,
    output: Option<Output>,
    /// Launch order, to forget the oldest exited children first.
    seq: u64,
}

/// How many exited children are remembered (for "why did this worker die") before the
/// oldest are forgotten; `R_PARALLELLY_EXITED_CHILDREN_KEPT` overrides it.
fn exited_kept() -> usize {
    std::env::var("R_PARALLELLY_EXITED_CHILDREN_KEPT").ok().and_then(|v| v.parse().ok()).unwrap_or(64)
}

/// The last bytes a child wrote to its stdout and stderr (both into one buffer).
pub type Output = Arc<Mutex<VecDeque<u8>>>;

/// How much of a worker's output is kept: enough for the lines that say why it died.
/// The pipes are drained by one thread for all workers (drain.rs).
pub const OUTPUT_CAP: usize = 16 * 1024;

fn registry() -> MutexGuard<'static, HashMap<u32, Entry>> {
    static REGISTRY: OnceLock<Mutex<HashMap<u32, Entry>>> = OnceLock::new();
    // The process the entries belong to. A forked child (an mclapply() worker, say) inherits
    // the map, but those processes are its siblings, not its children: waiting for them
    // fails there and would read as "exited". Such a child starts with an empty map.
    static OWNER: AtomicU32 = AtomicU32::new(0);
    let lock = REGISTRY.get_or_init(|| Mutex::new(HashMap::new()));
    // A poisoned lock only means another call panicked mid-update; the map is still usable.
    // Only R's main thread takes this lock (the output threads hold their own buffers), so a
    // fork never leaves it held.
    let mut reg = lock.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
    let me = std::process::id();
    if OWNER.swap(me, Ordering::Relaxed) != me {
        reg.clear();
    }
    reg
}

/// Register a child started by spawn.rs (or, in tests, by std's Command: dropping its
/// handle neither waits for it nor kills it).
pub fn register(pid: u32, output: Option<Output>) {
    static SEQ: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let seq = SEQ.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let mut reg = registry();
    reg.insert(pid, Entry { exit: None, output, seq });
    // Reap what has exited, and forget the oldest exited children beyond the cap.
    let mut exited: Vec<(u64, u32)> =
        reg.iter_mut().filter_map(|(p, e)| (refresh(*p, e) != State::Running).then_some((e.seq, *p))).collect();
    let keep = exited_kept();
    if exited.len() > keep {
        exited.sort_unstable();
        for (_, p) in exited.iter().take(exited.len() - keep) {
            reg.remove(p);
        }
    }
}

/// The captured output of a child, if it is ours and its output was captured.
pub fn output(pid: u32) -> Option<String> {
    let reg = registry();
    let out = reg.get(&pid)?.output.as_ref()?;
    let bytes: Vec<u8> = out.lock().unwrap_or_else(|p| p.into_inner()).iter().copied().collect();
    Some(String::from_utf8_lossy(&bytes).into_owned())
}

fn refresh(pid: u32, entry: &mut Entry) -> State {
    if let Some(exit) = entry.exit {
        return State::Exited(exit);
    }
    match try_wait(pid) {
        Ok(None) => State::Running,
        Ok(Some(exit)) => {
            entry.exit = Some(exit);
            State::Exited(exit)
        }
        Err(_) => {
            entry.exit = Some(Exit::Unknown);
            State::Exited(Exit::Unknown)
        }
    }
}

/// The state of one of our children, reaping it if it has exited; `None` if `pid` is not
/// (or is no longer) a child we started.
pub fn state(pid: u32) -> Option<State> {
    registry().get_mut(&pid).map(|e| refresh(pid, e))
}

/// Reap every exited child and return the PIDs of those still running.
pub fn running() -> Vec<u32> {
    let mut reg = registry();
    reg.iter_mut()
        .filter_map(|(pid, e)| (refresh(*pid, e) == State::Running).then_some(*pid))
        .collect()
}

/// Forget an exited child; a running child is kept so that it can still be reaped.
pub fn forget(pid: u32) -> bool {
    let mut reg = registry();
    let exited = match reg.get_mut(&pid) {
        Some(e) => refresh(pid, e) != State::Running,
        None => return false,
    };
    if exited {
        reg.remove(&pid);
    }
    exited
}

pub fn count() -> usize {
    registry().len()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::process::Command;
    use std::time::{Duration, Instant};

    #[test]
    fn reaps_and_reports_exit_status_and_signal() {
        let child = Command::new("sh").args(["-c", "exit 3"]).spawn().expect("sh");
        let pid = child.id();
        register(pid, None);
        let deadline = Instant::now() + Duration::from_secs(5);
        while state(pid) == Some(State::Running) && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(10));
        }
        assert_eq!(state(pid), Some(State::Exited(Exit::Status(3))));
        assert!(forget(pid));
        assert_eq!(state(pid), None);

        let child = Command::new("sleep").arg("30").spawn().expect("sleep");
        let pid = child.id();
        register(pid, None);
        assert_eq!(state(pid), Some(State::Running));
        assert!(!forget(pid), "a running child must be kept");
        // SAFETY: kill() takes no pointers; `pid` is the test's own sleeping child.
        unsafe { libc::kill(pid as i32, libc::SIGKILL) };
        let deadline = Instant::now() + Duration::from_secs(5);
        while state(pid) == Some(State::Running) && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(10));
        }
        assert_eq!(state(pid), Some(State::Exited(Exit::Signal(libc::SIGKILL))));
        assert!(forget(pid));
    }
}
