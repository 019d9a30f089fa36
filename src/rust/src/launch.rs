//! Start local worker processes directly (no shell), each in its own process group so that
//! a Ctrl-C typed at the master's terminal does not reach the workers (as with R's
//! `system("... &")`, whose background jobs ignore SIGINT), and each set to receive SIGTERM
//! when the master dies, so that no worker outlives it. No descriptor of the master's
//! above 2 reaches a worker (see fds.rs).

use std::fs::OpenOptions;
use std::os::unix::process::CommandExt;
use std::process::{Command, Stdio};
use std::sync::Arc;

use crate::children;
use crate::drain;
use crate::error::{Error, Kind, Result};
use crate::process;

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
    let mut cmd = Command::new(&spec.program);
    cmd.args(&spec.args).stdin(Stdio::null()).process_group(0);
    for name in &spec.env_unset {
        cmd.env_remove(name);
    }
    for (name, value) in &spec.env_set {
        cmd.env(name, value);
    }
    match &spec.output {
        Output::Inherit => {
            cmd.stdout(Stdio::inherit()).stderr(Stdio::inherit());
        }
        Output::File(path) => {
            let open = || OpenOptions::new().create(true).append(true).open(path);
            let out = open().map_err(|e| {
                Error::new(Kind::Launch, format!("cannot open worker log file '{}': {}", path, e))
            })?;
            let err = open().map_err(|e| {
                Error::new(Kind::Launch, format!("cannot open worker log file '{}': {}", path, e))
            })?;
            cmd.stdout(out).stderr(err);
        }
        Output::Capture => {
            cmd.stdout(Stdio::piped()).stderr(Stdio::piped());
        }
    }
    let nice = spec.nice;
    let master = std::process::id();
    let close_on_exec = crate::fds::CloseOnExec::prepare();
    // SAFETY: only async-signal-safe system calls run between fork and exec.
    unsafe {
        cmd.pre_exec(move || {
            // The worker gets SIGTERM when the master dies, even while it is busy in a long
            // task (an idle worker would notice the closed socket, a busy one would not).
            libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGTERM as libc::c_ulong, 0, 0, 0);
            // The master may have died before prctl() took effect.
            if libc::getppid() as u32 != master {
                libc::_exit(1);
            }
            if nice > 0 {
                libc::nice(nice);
            }
            close_on_exec.apply();
            Ok(())
        });
    }
    let mut child = cmd.spawn().map_err(|e| {
        let why = match e.kind() {
            std::io::ErrorKind::NotFound => "no such file or directory".to_string(),
            std::io::ErrorKind::PermissionDenied => "permission denied (is it executable?)".to_string(),
            _ => e.to_string(),
        };
        Error::new(Kind::Launch, format!("cannot run '{}': {}", spec.program, why))
    })?;
    let pid = child.id();
    let start_time = process::start_time(pid).unwrap_or(0);
    let output = match spec.output {
        Output::Capture => {
            let buffer = children::Output::default();
            if let Some(out) = child.stdout.take() {
                drain::add(out, Arc::clone(&buffer));
            }
            if let Some(err) = child.stderr.take() {
                drain::add(err, Arc::clone(&buffer));
            }
            Some(buffer)
        }
        _ => None,
    };
    children::register(child, output);
    Ok(Launched { pid, start_time })
}
