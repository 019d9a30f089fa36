//! Whether every core of this machine is taken right now: the threads that are runnable at
//! this instant (the kernel's count, the fourth field of /proc/loadavg, "runnable/total")
//! against the cores online. The master's short spin before a blocking read (R/spinWait.R)
//! asks this every few polls: a spin on a machine with no idle core holds a core the worker
//! it waits for needs. One open, read and close of a one-line file: a few microseconds.

use std::fs::File;
use std::io::Read;
use std::sync::OnceLock;

/// More threads runnable than there are cores online (so some wait for one): Some(true);
/// None where the count cannot be read.
pub fn cores_taken() -> Option<bool> {
    let runnable = runnable_threads()?;
    Some(runnable > online_cores()?)
}

/// Threads runnable (running or waiting for a core) on this machine now, this one included.
pub fn runnable_threads() -> Option<u32> {
    let mut buf = [0u8; 128];
    let n = File::open("/proc/loadavg").and_then(|mut f| f.read(&mut buf)).ok()?;
    parse_runnable(&buf[..n])
}

/// The runnable count of a /proc/loadavg line: "0.52 0.58 0.59 3/467 12345".
fn parse_runnable(line: &[u8]) -> Option<u32> {
    let text = std::str::from_utf8(line).ok()?;
    let field = text.split_ascii_whitespace().nth(3)?;
    let (runnable, _total) = field.split_once('/')?;
    runnable.parse().ok()
}

/// Cores online (read once: the count the kernel's runnable threads share).
fn online_cores() -> Option<u32> {
    static CORES: OnceLock<Option<u32>> = OnceLock::new();
    *CORES.get_or_init(|| {
        // SAFETY: sysconf() only reads a system constant.
        let n = unsafe { libc::sysconf(libc::_SC_NPROCESSORS_ONLN) };
        u32::try_from(n).ok().filter(|&n| n > 0)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_runnable_count() {
        assert_eq!(parse_runnable(b"0.52 0.58 0.59 3/467 12345\n"), Some(3));
        assert_eq!(parse_runnable(b"0.00 0.01 0.05 12/1024 1\n"), Some(12));
        assert_eq!(parse_runnable(b"0.52 0.58 0.59\n"), None);
        assert_eq!(parse_runnable(b"0.52 0.58 0.59 x/467 1\n"), None);
        assert_eq!(parse_runnable(b""), None);
    }

    #[test]
    fn counts_this_thread_among_the_runnable() {
        // This thread is running while it reads: at least one.
        assert!(runnable_threads().unwrap() >= 1);
        assert!(online_cores().unwrap() >= 1);
        assert!(cores_taken().is_some());
    }
}
