//! Start local worker processes directly (no shell), each in its own process group so that
//! a Ctrl-C typed at the master's terminal does not reach the workers (as with R's
//! `system("... &")`, whose background jobs ignore SIGINT), and each set to receive SIGTERM
//! when the master dies, so that no worker outlives it. No descriptor of the master's
//! above 2 reaches a worker (see fds.rs). The process is made without copying the master's
//! memory map (spawn.rs).

use std::fs::{File, OpenOptions};
use std::os::fd::{FromRawFd, OwnedFd};
use std::sync::Arc;

use crate::children;
use crate::drain;
use crate::error::{Error, Kind, Result};
use crate::process;
use crate::spawn::{self, Spawn};

/// Where a worker's own stdout and stderr go (R-level output is redirected by the worker
/// itself through its `OUT=` argument; this catches what comes before that or bypasses it).
pub enum Output {
    /// Share the master's stdout/stderr (`outfile = NULL`).
    Inherit,
    /// Append to this file.
    File(String),
    /// Keep the last part in memory (see `children::output`), for diagnosing a death.
    Capture,
}

pub struct LaunchSpec {
    pub program: String,
    pub args: Vec<String>,
    pub env_set: Vec<(String, String)>,
    pub env_unset: Vec<String>,
    pub output: Output,
    /// Niceness increment, 0 for none.
    pub nice: i32,
}

pub struct Launched {
    pub pid: u32,
    /// Clock ticks since boot, as `process::start_time()` reports it; 0 if unknown.
    pub start_time: u64,
}

pub fn launch(spec: LaunchSpec) -> Result<Launched> {
    let open_log = |path: &str| {
        OpenOptions::new().create(true).append(true).open(path).map(OwnedFd::from).map_err(|e| {
            Error::new(Kind::Launch, format!("cannot open worker log file '{}': {}", path, e))
        })
    };
    let null = File::open("/dev/null")
        .map(OwnedFd::from)
        .map_err(|e| Error::new(Kind::Launch, format!("cannot open /dev/null: {}", e)))?;
    // Captured output: one pipe each for stdout and stderr, read by the drain thread.
    let mut readers = Vec::new();
    let (stdout, stderr) = match &spec.output {
        Output::Inherit => (None, None),
        Output::File(path) => (Some(open_log(path)?), Some(open_log(path)?)),
        Output::Capture => {
            let (r1, w1) = pipe()?;
            let (r2, w2) = pipe()?;
            readers.push(r1);
            readers.push(r2);
            (Some(w1), Some(w2))
        }
    };
    let pid = spawn::spawn(Spawn {
        program: spec.program.clone(),
        args: spec.args,
        env_set: spec.env_set,
        env_unset: spec.env_unset,
        stdio: [Some(null), stdout, stderr],
        nice: spec.nice,
    })
    .map_err(|e| {
        let why = match e.kind() {
            std::io::ErrorKind::NotFound => "no such file or directory".to_string(),
            std::io::ErrorKind::PermissionDenied => "permission denied (is it executable?)".to_string(),
            _ => e.to_string(),
        };
        Error::new(Kind::Launch, format!("cannot run '{}': {}", spec.program, why))
    })?;
    let start_time = process::start_time(pid).unwrap_or(0);
    let output = if readers.is_empty() {
        None
    } else {
        let buffer = children::Output::default();
        for r in readers {
            drain::add(r, Arc::clone(&buffer));
        }
        Some(buffer)
    };
    children::register(pid, output);
    Ok(Launched { pid, start_time })
}

/// A pipe (read end, write end), both close-on-exec.
fn pipe() -> Result<(OwnedFd, OwnedFd)> {
    let mut fds = [0; 2];
    // SAFETY: pipe2() writes two new descriptors into `fds`.
    if unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) } != 0 {
        return Err(Error::new(Kind::Launch, format!("cannot create a pipe: {}", std::io::Error::last_os_error())));
    }
    // SAFETY: both descriptors were just created and are owned by nobody else.
    Ok(unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) })
}
