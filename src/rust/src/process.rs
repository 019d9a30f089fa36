//! Probe and signal processes by identity (pid, start time in clock ticks since boot, read
//! from /proc/PID/stat), so that a PID the kernel has handed to another process never reads
//! as our worker. A signal goes through a pidfd opened before the identity check, so it
//! reaches the process that was checked even if that one exits and its PID is reused in
//! between (kill() by PID could hit the newcomer).

use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};

use crate::children::{self, State};
use crate::error::{Error, Kind, Result};

/// A pidfd: a descriptor naming one process for as long as it is open, whatever becomes
/// of its PID.
pub struct Pidfd(OwnedFd);

impl Pidfd {
    /// `Ok(None)` where the kernel has no pidfd_open (before Linux 5.3); an error with
    /// ESRCH when no process has that PID.
    pub fn open(pid: u32) -> std::io::Result<Option<Pidfd>> {
        let pid = libc::pid_t::try_from(pid).map_err(|_| std::io::Error::from_raw_os_error(libc::ESRCH))?;
        // SAFETY: pidfd_open takes a PID and flags and returns a new descriptor or -1; no
        // memory is passed.
        let fd = unsafe { libc::syscall(libc::SYS_pidfd_open, pid, 0 as libc::c_uint) };
        if fd < 0 {
            let err = std::io::Error::last_os_error();
            return if err.raw_os_error() == Some(libc::ENOSYS) { Ok(None) } else { Err(err) };
        }
        // SAFETY: a new descriptor that nothing else owns.
        Ok(Some(Pidfd(unsafe { OwnedFd::from_raw_fd(fd as i32) })))
    }

    /// Send `signal` to the process; `Ok(false)` when it has exited.
    pub fn send(&self, signal: i32) -> std::io::Result<bool> {
        // SAFETY: pidfd_send_signal takes the pidfd we own, a signal number, a null
        // siginfo (as kill() would send) and no flags.
        let rc = unsafe { libc::syscall(libc::SYS_pidfd_send_signal, self.0.as_raw_fd(), signal, std::ptr::null::<libc::siginfo_t>(), 0) };
        if rc == 0 {
            return Ok(true);
        }
        let err = std::io::Error::last_os_error();
        if err.raw_os_error() == Some(libc::ESRCH) { Ok(false) } else { Err(err) }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Liveness {
    Alive,
    Dead,
    Unknown,
}

/// What /proc/PID/stat says of a process. Start times are clock ticks since boot (field
/// 22), the unit the remote probes (and ps) use: exact, so no slack is needed.
struct Stat {
    gone: bool,
    cpu_ticks: u64,
    start_ticks: u64,
    rss_pages: u64,
}

/// `None` when no such process exists (or /proc cannot be read).
fn stat(pid: u32) -> Option<Stat> {
    let text = std::fs::read_to_string(format!("/proc/{}/stat", pid)).ok()?;
    parse_stat(&text)
}

/// Fields after the command name, which is in parentheses and may itself hold spaces or
/// parentheses: hence the last ')'.
fn parse_stat(text: &str) -> Option<Stat> {
    let rest = &text[text.rfind(')')? + 1..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // fields[0] is field 3 (state); field N is fields[N - 3].
    let num = |n: usize| fields.get(n - 3).and_then(|f| f.parse::<u64>().ok());
    Some(Stat {
        gone: matches!(fields.first(), Some(&"Z") | Some(&"X") | Some(&"x")),
        cpu_ticks: num(14)? + num(15)?,
        start_ticks: num(22)?,
        rss_pages: num(24)?,
    })
}

fn clock_ticks_per_second() -> f64 {
    // SAFETY: sysconf() only reads a system constant.
    let ticks = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    if ticks > 0 { ticks as f64 } else { 100.0 }
}

fn page_size() -> f64 {
    // SAFETY: sysconf() only reads a system constant.
    let size = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
    if size > 0 { size as f64 } else { 4096.0 }
}

/// Seconds since boot.
fn uptime() -> Option<f64> {
    let text = std::fs::read_to_string("/proc/uptime").ok()?;
    text.split_whitespace().next()?.parse().ok()
}

/// Resource use of a running process: (RSS bytes, CPU seconds, seconds since it started).
pub fn usage(pid: u32) -> Option<(f64, f64, f64)> {
    let st = stat(pid).filter(|st| !st.gone)?;
    let hz = clock_ticks_per_second();
    let up = uptime().map(|u| (u - st.start_ticks as f64 / hz).max(0.0)).unwrap_or(f64::NAN);
    Some((st.rss_pages as f64 * page_size(), st.cpu_ticks as f64 / hz, up))
}

/// Start time of `pid` in clock ticks since boot, if such a process exists.
pub fn start_time(pid: u32) -> Option<u64> {
    stat(pid).map(|st| st.start_ticks)
}

/// Whether the process (`pid`, `expected_start`) is running. An `expected_start` of 0
/// skips the identity check.
pub fn probe(pid: u32, expected_start: u64) -> Liveness {
    // Our own children are reaped first: otherwise an exited worker is a zombie with a PID.
    if let Some(State::Exited(_)) = children::state(pid) {
        return Liveness::Dead;
    }
    match stat(pid) {
        None if std::path::Path::new("/proc/self/stat").exists() => Liveness::Dead,
        None => Liveness::Unknown,
        Some(st) if st.gone => Liveness::Dead,
        Some(st) if expected_start != 0 && st.start_ticks != expected_start => Liveness::Dead,
        Some(_) => Liveness::Alive,
    }
}

/// Send `signal` to (`pid`, `expected_start`). `Ok(false)` when no such process runs.
pub fn signal(pid: u32, expected_start: u64, signal: i32) -> Result<bool> {
    if !(1..=64).contains(&signal) {
        return Err(Error::new(Kind::InvalidArgument, format!("signal {} is out of range 1..64", signal)));
    }
    let pid_i = i32::try_from(pid)
        .map_err(|_| Error::new(Kind::InvalidArgument, format!("PID {} is out of range", pid)))?;
    if pid_i <= 1 {
        return Err(Error::new(Kind::InvalidArgument, format!("refusing to signal PID {}", pid)));
    }
    let cannot = |err: std::io::Error| Error::new(Kind::System, format!("cannot signal process {}: {}", pid, err));
    // Opened first, checked after: the pidfd then names the process that was checked.
    let fd = match Pidfd::open(pid) {
        Ok(fd) => fd,
        Err(e) if e.raw_os_error() == Some(libc::ESRCH) => return Ok(false),
        Err(e) => return Err(cannot(e)),
    };
    if probe(pid, expected_start) != Liveness::Alive {
        return Ok(false);
    }
    if let Some(fd) = fd {
        return fd.send(signal).map_err(cannot);
    }
    // No pidfds (Linux before 5.3): kill() by PID, right after the check.
    // SAFETY: kill(2) with a positive PID signals exactly that process.
    let rc = unsafe { libc::kill(pid_i, signal) };
    if rc == 0 {
        return Ok(true);
    }
    let err = std::io::Error::last_os_error();
    match err.raw_os_error() {
        Some(libc::ESRCH) => Ok(false),
        _ => Err(cannot(err)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn own_process_is_alive_and_identity_is_checked() {
        let me = std::process::id();
        let start = start_time(me).expect("own start time");
        assert_eq!(probe(me, start), Liveness::Alive);
        assert_eq!(probe(me, 0), Liveness::Alive);
        assert_eq!(probe(me, start + 1), Liveness::Dead, "wrong start time must read as dead");
        let (rss, cpu, up) = usage(me).expect("own usage");
        assert!(rss > 0.0 && cpu >= 0.0 && up >= 0.0);
    }

    #[test]
    fn stat_lines_with_odd_command_names_parse() {
        let line = "42 (a) b (c)) S 1 42 42 0 -1 4194560 100 0 0 0 7 3 0 0 20 0 1 0 123456 1000 250 18446744073709551615";
        let st = parse_stat(line).expect("parses");
        assert!(!st.gone);
        assert_eq!(st.cpu_ticks, 10);
        assert_eq!(st.start_ticks, 123456);
        assert_eq!(st.rss_pages, 250);
        assert!(parse_stat("42 (x) Z 1 42 42 0 -1 0 0 0 0 0 0 0 0 0 20 0 1 0 9 0 0").unwrap().gone);
        assert!(parse_stat("garbage").is_none());
    }

    #[test]
    fn signals_reach_the_identified_process_and_never_a_later_one() {
        use std::process::Command;
        let mut child = Command::new("sleep").arg("30").spawn().expect("sleep");
        let pid = child.id();
        let start = start_time(pid).expect("start time");
        assert_eq!(signal(pid, start + 1, libc::SIGTERM).ok(), Some(false), "another start time is another process");
        let fd = Pidfd::open(pid).expect("pidfd_open").expect("this kernel has pidfds");
        assert_eq!(signal(pid, start, libc::SIGKILL).ok(), Some(true));
        let status = child.wait().expect("wait");
        assert_eq!(std::os::unix::process::ExitStatusExt::signal(&status), Some(libc::SIGKILL));
        // Reaped: its PID is free for the kernel to hand out again, but the pidfd still
        // names the process that ended, so nothing can be hit through it.
        assert_eq!(fd.send(libc::SIGTERM).ok(), Some(false));
        assert_eq!(signal(pid, start, libc::SIGTERM).ok(), Some(false));
    }

    #[test]
    fn signal_arguments_are_checked() {
        assert!(signal(std::process::id(), 0, 0).is_err());
        assert!(signal(std::process::id(), 0, 65).is_err());
        assert!(signal(1, 0, 15).is_err());
        // signal 0 is rejected above, so probe a non-existent PID through `probe`
        assert_eq!(probe(u32::MAX - 1, 0), Liveness::Dead);
    }
}
