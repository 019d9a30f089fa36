//! The R-facing module: the only file that uses `extendr_api`'s conversions. Each function
//! here converts plain arguments (R/backend.R has already checked and coerced them), calls one
//! module, and returns either the value or a tagged error list that R/backend.R raises as a
//! classed condition. Nothing here returns `Err` or panics into R. The exception: the two
//! per-message routines of task_wire.rs take R's objects as they are (registered below, in
//! R_init_parallelly_routines()).
#![deny(unsafe_op_in_unsafe_fn)]

use extendr_api::prelude::*;

mod children;
mod drain;
mod error;
mod fds;
mod fork;
mod handshake;
#[cfg(any(test, feature = "fuzzing"))]
pub mod fuzz_entry;
mod launch;
mod loopback;
mod ports;
mod reaper;
mod process;
mod runqueue;
mod spawn;
mod ssh;
mod task_wire;

use error::Error;
use std::time::Duration;

/// An error as a value: `list(kind, message)` of class `parallelly_backend_error`.
fn error_value(e: Error) -> Robj {
    let mut value: Robj = List::from_pairs(vec![
        ("kind", Robj::from(e.kind.as_str())),
        ("message", Robj::from(e.message)),
    ])
    .into();
    match value.set_class(["parallelly_backend_error"]) {
        Ok(v) => v.clone(),
        Err(_) => Robj::from(format!("parallelly backend error: {}", e.kind.as_str())),
    }
}

fn pid_of(x: i32) -> Option<u32> {
    u32::try_from(x).ok().filter(|&p| p > 0)
}

/// Start one worker process without a shell. `output` is a log file path, or "" to share
/// the master's stdout/stderr. Returns `list(pid, start_time)`.
#[extendr]
fn rs_launch(
    program: &str,
    args: Vec<String>,
    env_names: Vec<String>,
    env_values: Vec<String>,
    env_unset: Vec<String>,
    output_mode: &str,
    output_path: &str,
    nice: i32,
) -> Robj {
    let output = match output_mode {
        "inherit" => launch::Output::Inherit,
        "capture" => launch::Output::Capture,
        "file" if !output_path.is_empty() => launch::Output::File(output_path.to_string()),
        other => {
            return error_value(Error::new(
                error::Kind::InvalidArgument,
                format!("output mode '{}' (path '{}') is not one of inherit, capture, file PATH", other, output_path),
            ))
        }
    };
    let spec = launch::LaunchSpec {
        program: program.to_string(),
        args,
        env_set: env_names.into_iter().zip(env_values).collect(),
        env_unset,
        output,
        nice,
    };
    match launch::launch(spec) {
        Ok(l) => List::from_pairs(vec![
            ("pid", Robj::from(l.pid as f64)),
            ("start_time", Robj::from(l.start_time as f64)),
        ])
        .into(),
        Err(e) => error_value(e),
    }
}

/// For each PID: "running", "exited", "signalled", "gone" (exited, status unknown) or
/// "unknown" (not a child of ours), with the exit status or signal number.
#[extendr]
fn rs_child_state(pids: Vec<i32>) -> Robj {
    let states = pids.iter().map(|&pid| match pid_of(pid).and_then(children::state) {
        None => ("unknown", None, None),
        Some(children::State::Running) => ("running", None, None),
        Some(children::State::Exited(children::Exit::Status(c))) => ("exited", Some(c), None),
        Some(children::State::Exited(children::Exit::Signal(s))) => ("signalled", None, Some(s)),
        Some(children::State::Exited(children::Exit::Unknown)) => ("gone", None, None),
    });
    states_value(states, vec![])
}

/// (state, exit status, signal) per process as list(state, status, signal, extra...).
fn states_value<'a>(states: impl Iterator<Item = (&'a str, Option<i32>, Option<i32>)>, extra: Vec<(&str, Robj)>) -> Robj {
    let (mut state, mut status, mut signal) = (Vec::new(), Vec::new(), Vec::new());
    for (st, code, sig) in states {
        state.push(st);
        status.push(code);
        signal.push(sig);
    }
    let mut pairs = vec![("state", Robj::from(state)), ("status", Robj::from(status)), ("signal", Robj::from(signal))];
    pairs.extend(extra);
    List::from_pairs(pairs).into()
}

/// TRUE/FALSE/NA per (pid, start time); a start time of 0 skips the identity check.
#[extendr]
fn rs_probe(pids: Vec<i32>, start_times: Vec<f64>) -> Robj {
    let values = pids.iter().enumerate().map(|(i, &pid)| {
        let start = start_times.get(i).copied().unwrap_or(0.0);
        let start = if start.is_finite() && start > 0.0 { start as u64 } else { 0 };
        match pid_of(pid).map(|p| process::probe(p, start)) {
            Some(process::Liveness::Alive) => Rbool::true_value(),
            Some(process::Liveness::Dead) => Rbool::false_value(),
            Some(process::Liveness::Unknown) | None => Rbool::na_value(),
        }
    });
    Logicals::from_values(values).into()
}

/// Start time (clock ticks since boot) of a PID, or NA.
#[extendr]
fn rs_start_time(pid: i32) -> Robj {
    match pid_of(pid).and_then(process::start_time) {
        Some(t) => Robj::from(t as f64),
        None => Robj::from(Rfloat::na()),
    }
}

/// Send a signal to (pid, start time); FALSE when no such process runs.
#[extendr]
fn rs_signal(pid: i32, start_time: f64, signal: i32) -> Robj {
    let Some(pid) = pid_of(pid) else {
        return error_value(Error::new(error::Kind::InvalidArgument, format!("invalid PID {}", pid)));
    };
    let start = if start_time.is_finite() && start_time > 0.0 { start_time as u64 } else { 0 };
    match process::signal(pid, start, signal) {
        Ok(sent) => Robj::from(sent),
        Err(e) => error_value(e),
    }
}

/// PIDs of the children we started that are still running (reaping the others).
#[extendr]
fn rs_running_children() -> Robj {
    let pids: Vec<i32> = children::running().into_iter().filter_map(|p| i32::try_from(p).ok()).collect();
    Robj::from(pids)
}

/// The last output a child of ours wrote (when it was captured), or NA.
#[extendr]
fn rs_child_output(pid: i32) -> Robj {
    match pid_of(pid).and_then(children::output) {
        Some(s) => Robj::from(s),
        None => Robj::from(Rstr::na()),
    }
}

/// Resource use per PID: list(rss bytes, cpu seconds, uptime seconds), NA when not running.
#[extendr]
fn rs_usage(pids: Vec<i32>) -> Robj {
    let usage: Vec<Option<(f64, f64, f64)>> = pids.iter().map(|&p| pid_of(p).and_then(process::usage)).collect();
    List::from_pairs(vec![
        ("rss", Robj::from(usage.iter().map(|u| u.map(|u| u.0)).collect::<Vec<_>>())),
        ("cpu", Robj::from(usage.iter().map(|u| u.map(|u| u.1)).collect::<Vec<_>>())),
        ("uptime", Robj::from(usage.iter().map(|u| u.map(|u| u.2)).collect::<Vec<_>>())),
    ])
    .into()
}

/// Drop the handle of an exited child; FALSE if it still runs or is unknown.
#[extendr]
fn rs_forget_child(pid: i32) -> bool {
    pid_of(pid).map(children::forget).unwrap_or(false)
}

/// Number of child handles held (for leak tests).
#[extendr]
fn rs_child_count() -> i32 {
    i32::try_from(children::count()).unwrap_or(i32::MAX)
}

/// Whether a TCP port can be bound and listened on right now (all interfaces, IPv4).
#[extendr]
fn rs_port_is_free(port: i32) -> Robj {
    match u16::try_from(port) {
        Ok(p) => Robj::from(ports::is_free(p)),
        Err(_) => Robj::from(Rbool::na_value()),
    }
}

/// SSH connections belong to the process that opened them. In a forked child (an
/// `mclapply()` worker, say) their I/O threads do not exist, and a lock one of them held at
/// the fork is never released there: every SSH call of a child is refused (or, for closing,
/// does nothing) before it touches any of that state.
static SSH_OWNER: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);

fn ssh_here() -> error::Result<()> {
    let owner = SSH_OWNER.load(std::sync::atomic::Ordering::Relaxed);
    if owner == 0 || owner == std::process::id() {
        return Ok(());
    }
    Err(Error::new(
        error::Kind::Ssh,
        format!("SSH connections belong to the R process that opened them (PID {}), not to this forked child (PID {}); ask from that process", owner, std::process::id()),
    ))
}

fn ticket_value(r: error::Result<u64>) -> Robj {
    match r {
        Ok(t) => Robj::from(t as f64),
        Err(e) => error_value(e),
    }
}

fn non_empty(s: &str) -> Option<&str> {
    if s.is_empty() { None } else { Some(s) }
}

/// Start opening (or reuse) the held SSH connection to `host`. Empty strings and 0 mean
/// "from the ssh config / default". Returns `list(ticket, host, hostname, user, port)`; the
/// ticket's answer (rs_ssh_poll) is the connection's key.
#[extendr]
fn rs_ssh_connect(host: &str, user: &str, port: i32, config_file: &str, known_hosts: &str, accept_new: bool, timeout: f64, command_line: Vec<String>) -> Robj {
    if let Err(e) = ssh_here() {
        return error_value(e);
    }
    let _ = SSH_OWNER.compare_exchange(0, std::process::id(), std::sync::atomic::Ordering::Relaxed, std::sync::atomic::Ordering::Relaxed);
    let timeout = if timeout.is_finite() && timeout > 0.0 { timeout } else { 120.0 };
    let opts = ssh::session::Options {
        user: non_empty(user),
        port: u16::try_from(port).ok().filter(|&p| p > 0),
        config_file: non_empty(config_file).map(std::path::Path::new),
        known_hosts_file: non_empty(known_hosts).map(std::path::Path::new),
        accept_new,
        timeout: std::time::Duration::from_secs_f64(timeout.min(86_400.0)),
        command_line: &command_line,
    };
    let target = match ssh::session::resolve(host, &opts) {
        Ok(t) => t,
        Err(e) => return error_value(e),
    };
    // Here, on R's thread, so that the connection's thread reads no environment variable:
    // libssh2's and OpenSSL's one-time set-up read some (OPENSSL_CONF, ...).
    ssh2::init();
    let _ = ssh::crypto::allowed();
    let (host, hostname, user, port) = (target.alias.clone(), target.hostname.clone(), target.user.clone(), target.port);
    match ssh::submit_connect(target) {
        Ok(ticket) => List::from_pairs(vec![
            ("ticket", Robj::from(ticket as f64)),
            ("host", Robj::from(host)),
            ("hostname", Robj::from(hostname)),
            ("user", Robj::from(user)),
            ("port", Robj::from(i32::from(port))),
        ])
        .into(),
        Err(e) => error_value(e),
    }
}

/// The next step in reading a connecting worker's answer to the handshake (handshake.rs),
/// given the bytes read so far: an integer (read exactly that many more), `list(pid, token)`
/// when complete (token "" if it was no string), or a string saying why it is refused.
#[extendr]
fn rs_handshake_step(bytes: Raw) -> Robj {
    match handshake::step(bytes.as_slice()) {
        handshake::Step::Need(n) => Robj::from(i32::try_from(n).unwrap_or(i32::MAX)),
        handshake::Step::Done { pid, token } => {
            List::from_pairs(vec![("pid", Robj::from(pid)), ("token", Robj::from(token.unwrap_or_default()))]).into()
        }
        handshake::Step::Reject(why) => Robj::from(why),
    }
}

/// Whether the built-in client can reach `host` as OpenSSH would with the user's ssh config
/// and the command-line config lines: "" if so, else why not (the external client is then
/// needed). A broken setup (a bad value, an Include loop) is an error.
#[extendr]
fn rs_ssh_plan(host: &str, user: &str, port: i32, config_file: &str, command_line: Vec<String>) -> Robj {
    let opts = ssh::session::Options {
        user: non_empty(user),
        port: u16::try_from(port).ok().filter(|&p| p > 0),
        config_file: non_empty(config_file).map(std::path::Path::new),
        known_hosts_file: None,
        accept_new: false,
        timeout: std::time::Duration::from_secs(1),
        command_line: &command_line,
    };
    match ssh::session::resolve_checked(host, &opts) {
        Ok(Ok(_)) => Robj::from(""),
        Ok(Err(why)) => Robj::from(why),
        Err(e) => error_value(e),
    }
}

#[extendr]
fn rs_ssh_submit_script(key: &str, script: &str, timeout: f64) -> Robj {
    ticket_value(ssh_here().and_then(|_| ssh::submit_script(key, script.to_string(), timeout)))
}

#[extendr]
fn rs_ssh_submit_forward(key: &str, target_port: i32) -> Robj {
    match u16::try_from(target_port) {
        Ok(p) => ticket_value(ssh_here().and_then(|_| ssh::submit_forward(key, p))),
        Err(_) => error_value(Error::new(error::Kind::InvalidArgument, format!("invalid port {}", target_port))),
    }
}

#[extendr]
fn rs_ssh_submit_probe(key: &str, pids: Vec<i32>, starts: Vec<f64>, timeout: f64) -> Robj {
    ticket_value(ssh_here().and_then(|_| ssh::submit_probe(key, pids, starts, timeout)))
}

#[extendr]
fn rs_ssh_submit_signal(key: &str, pids: Vec<i32>, starts: Vec<f64>, signal: i32, timeout: f64) -> Robj {
    ticket_value(ssh_here().and_then(|_| ssh::submit_signal(key, pids, starts, signal, timeout)))
}

#[extendr]
fn rs_ssh_submit_launch(key: &str, program: &str, commands: Vec<String>, logs: Vec<String>, timeout: f64) -> Robj {
    ticket_value(ssh_here().and_then(|_| ssh::submit_launch(key, program, &commands, &logs, timeout)))
}

#[extendr]
fn rs_ssh_submit_exit(key: &str, pids: Vec<i32>, timeout: f64) -> Robj {
    ticket_value(ssh_here().and_then(|_| ssh::submit_exit(key, pids, timeout)))
}

#[extendr]
fn rs_ssh_submit_usage(key: &str, pids: Vec<i32>, timeout: f64) -> Robj {
    ticket_value(ssh_here().and_then(|_| ssh::submit_usage(key, pids, timeout)))
}

/// NULL while pending; otherwise the answer, in the one shape of its kind of request
/// (R/backend.R's typed wait functions check it): a string (script, connect), an integer
/// (forward), logicals (probe, signal), integers (exit), or a list (launch, usage).
#[extendr]
fn rs_ssh_poll(ticket: f64, wait_ms: f64) -> Robj {
    if let Err(e) = ssh_here() {
        return error_value(e);
    }
    let wait = std::time::Duration::from_secs_f64((wait_ms.clamp(0.0, 10_000.0)) / 1000.0);
    match ssh::poll(ticket as u64, wait) {
        Ok(None) => Robj::from(()),
        Ok(Some(answer)) => answer_value(answer),
        Err(e) => error_value(e),
    }
}

fn answer_value(answer: ssh::Answer) -> Robj {
    let tri = |v: Option<bool>| match v {
        Some(true) => Rbool::true_value(),
        Some(false) => Rbool::false_value(),
        None => Rbool::na_value(),
    };
    match answer {
        ssh::Answer::Text(t) => Robj::from(t),
        ssh::Answer::Port(p) => Robj::from(i32::from(p)),
        ssh::Answer::Probe(v) => Logicals::from_values(v.into_iter().map(|p| match p {
            ssh::remote::Probe::Alive => Rbool::true_value(),
            ssh::remote::Probe::Dead => Rbool::false_value(),
            ssh::remote::Probe::Unknown => Rbool::na_value(),
        }))
        .into(),
        ssh::Answer::Signal(v) => Logicals::from_values(v.into_iter().map(tri)).into(),
        ssh::Answer::Launch(v) => launch_value(v),
        ssh::Answer::Exit(v) => Robj::from(v),
        ssh::Answer::Usage(v) => List::from_pairs(vec![
            ("rss", Robj::from(v.iter().map(|u| u.map(|u| u.0)).collect::<Vec<_>>())),
            ("cpu", Robj::from(v.iter().map(|u| u.map(|u| u.1)).collect::<Vec<_>>())),
            ("uptime", Robj::from(v.iter().map(|u| u.map(|u| u.2)).collect::<Vec<_>>())),
        ])
        .into(),
    }
}

/// list(pid, start_time, log) of the started workers, and the missing programs and
/// unwritable directories reported instead.
fn launch_value(v: Vec<ssh::remote::Launched>) -> Robj {
    let mut pid = Vec::new();
    let mut start = Vec::new();
    let mut log = Vec::new();
    let mut missing = Vec::new();
    let mut unwritable = Vec::new();
    for l in v {
        match l {
            ssh::remote::Launched::Worker { pid: p, start: s, log: g } => {
                pid.push(p);
                start.push(s);
                log.push(g);
            }
            ssh::remote::Launched::Missing(m) => missing.push(m),
            ssh::remote::Launched::Unwritable(d) => unwritable.push(d),
        }
    }
    List::from_pairs(vec![
        ("pid", Robj::from(pid)),
        ("start_time", Robj::from(start)),
        ("log", Robj::from(log)),
        ("missing", Robj::from(missing)),
        ("unwritable", Robj::from(unwritable)),
    ])
    .into()
}

#[extendr]
fn rs_ssh_cancel(ticket: f64) {
    if ssh_here().is_ok() {
        ssh::cancel(ticket as u64);
    }
}

#[extendr]
fn rs_ssh_close(key: &str, wait: f64) -> bool {
    let wait = if wait.is_finite() && wait > 0.0 { wait.min(2.0) } else { 2.0 };
    ssh_here().is_ok() && ssh::close(key, std::time::Duration::from_secs_f64(wait))
}

#[extendr]
fn rs_ssh_close_all() {
    if ssh_here().is_ok() {
        ssh::close_all();
    }
}

/// The held connections: list(key, alive, remote_port, tunnels).
#[extendr]
fn rs_ssh_connections() -> Robj {
    let l = if ssh_here().is_ok() { ssh::list() } else { Vec::new() };
    List::from_pairs(vec![
        ("key", Robj::from(l.iter().map(|c| c.0.clone()).collect::<Vec<_>>())),
        ("alive", Robj::from(l.iter().map(|c| c.1).collect::<Vec<_>>())),
        ("remote_port", Robj::from(l.iter().map(|c| c.2.map(i32::from)).collect::<Vec<_>>())),
        ("tunnels", Robj::from(l.iter().map(|c| i32::try_from(c.3).unwrap_or(i32::MAX)).collect::<Vec<_>>())),
        // Why a lost connection was lost ("" while it is alive).
        ("error", Robj::from(l.iter().map(|c| c.4.clone().unwrap_or_default()).collect::<Vec<_>>())),
    ])
    .into()
}

/// How many times libssh2 has called this library's ChaCha20-Poly1305 (ssh/crypto.rs) in
/// this process: the tests read it to prove the linked library runs that code.
#[extendr]
fn rs_ssh_crypto_calls() -> f64 {
    ssh::crypto::calls() as f64
}

/// The probe or signal script for `pids` (kind "probe" or "signal"), for running through
/// an external SSH client.
#[extendr]
fn rs_remote_script(kind: &str, pids: Vec<i32>, starts: Vec<f64>, signal: i32) -> Robj {
    match kind {
        "probe" => Robj::from(ssh::remote::probe_script(&pids)),
        "signal" if (1..=64).contains(&signal) => Robj::from(ssh::remote::signal_script(&pids, &starts, signal)),
        _ => error_value(Error::new(error::Kind::InvalidArgument, format!("no remote script '{}' (signal {})", kind, signal))),
    }
}

/// Parse the output of a probe or signal script: TRUE/FALSE/NA per PID.
#[extendr]
fn rs_remote_parse(kind: &str, output: &str, pids: Vec<i32>, starts: Vec<f64>) -> Robj {
    let tri = |v: Option<bool>| match v {
        Some(true) => Rbool::true_value(),
        Some(false) => Rbool::false_value(),
        None => Rbool::na_value(),
    };
    match kind {
        "probe" => Logicals::from_values(ssh::remote::parse_probe(output, &pids, &starts).into_iter().map(|p| match p {
            ssh::remote::Probe::Alive => Rbool::true_value(),
            ssh::remote::Probe::Dead => Rbool::false_value(),
            ssh::remote::Probe::Unknown => Rbool::na_value(),
        }))
        .into(),
        "signal" => Logicals::from_values(ssh::remote::parse_signal(output, &pids).into_iter().map(tri)).into(),
        _ => error_value(Error::new(error::Kind::InvalidArgument, format!("no remote script '{}'", kind))),
    }
}

/// Re-bind the socket this process listens on at `port` to 127.0.0.1 only (same
/// descriptor, so R's server connection keeps working). TRUE, or an error.
#[extendr]
fn rs_rebind_loopback(port: i32) -> Robj {
    let Ok(port) = u16::try_from(port) else {
        return error_value(Error::new(error::Kind::InvalidArgument, format!("invalid port {}", port)));
    };
    match loopback::rebind_to_loopback(port) {
        Ok(()) => Robj::from(true),
        Err(e) => error_value(e),
    }
}

/// TCP_NODELAY of this process's established connections on `port`: accepted on it
/// (`remote = FALSE`, the master's side) or opened to it (`remote = TRUE`):
/// list(fd = descriptors, nodelay = logicals).
#[extendr]
fn rs_connections_nodelay(port: i32, remote: bool) -> Robj {
    let Ok(port) = u16::try_from(port) else {
        return error_value(Error::new(error::Kind::InvalidArgument, format!("invalid port {}", port)));
    };
    let end = if remote { loopback::End::Remote } else { loopback::End::Local };
    match loopback::connections_nodelay(port, end) {
        Ok(v) => list!(fd = v.iter().map(|x| x.0).collect::<Vec<i32>>(), nodelay = v.iter().map(|x| x.1).collect::<Vec<bool>>()).into(),
        Err(e) => error_value(e),
    }
}

/// Hand our children `pids` (told to finish already) to a reaper thread: it waits up to
/// `grace` seconds for their exits, then terminates the rest (SIGKILL `term_grace` seconds
/// after SIGTERM), reaps and forgets them all. Returns at once.
#[extendr]
fn rs_stop_in_background(pids: Vec<i32>, grace: f64, term_grace: f64) {
    let secs = |x: f64| Duration::from_secs_f64(if x.is_finite() && x > 0.0 { x.min(3600.0) } else { 0.0 });
    let pids: Vec<u32> = pids.iter().filter_map(|&p| pid_of(p)).collect();
    reaper::stop_in_background(pids, secs(grace), secs(term_grace));
}

/// The same for processes that are not our children (workers forked by a fork server,
/// which reaps them), named by PID and start time (clock ticks since boot).
#[extendr]
fn rs_stop_strangers_in_background(pids: Vec<i32>, start_times: Vec<f64>, grace: f64, term_grace: f64) {
    let secs = |x: f64| Duration::from_secs_f64(if x.is_finite() && x > 0.0 { x.min(3600.0) } else { 0.0 });
    let procs: Vec<(u32, u64)> = pids
        .iter()
        .zip(start_times.iter())
        .filter_map(|(&p, &s)| Some((pid_of(p)?, (s.is_finite() && s > 0.0).then_some(s as u64)?)))
        .collect();
    reaper::stop_strangers_in_background(procs, secs(grace), secs(term_grace));
}

/// Number of reaper threads still at work.
#[extendr]
fn rs_reapers_active() -> i32 {
    i32::try_from(reaper::active()).unwrap_or(i32::MAX)
}

/// End the reapers' grace periods now and wait up to `timeout` seconds for them; then stop
/// the output-draining thread (its workers are gone by then). TRUE if no thread is left.
#[extendr]
fn rs_reapers_shutdown(timeout: f64) -> bool {
    let t = if timeout.is_finite() && timeout > 0.0 { timeout.min(60.0) } else { 0.0 };
    let reapers = reaper::shutdown(Duration::from_secs_f64(t));
    let drain = drain::shutdown(Duration::from_secs(1));
    reapers && drain
}

/// Task numbers of a node (R/nodeTraffic.R keeps them in the node's state).
#[extendr]
fn rs_task_numbers() -> Robj {
    // SAFETY: on R's main thread (a .Call); the Robj protects the new pointer.
    unsafe { Robj::from_sexp(task_wire::new_numbers()) }
}

/// The task numbers as a named integer vector (for tests and debugging); NULL for anything
/// that does not hold them.
#[extendr]
fn rs_task_numbers_value(numbers: Robj) -> Robj {
    // SAFETY: on R's main thread; the reference is dropped before `numbers`.
    let n = match unsafe { task_wire::numbers_of(numbers.get()) } {
        Some(n) => n.clone(),
        None => return Robj::from(()),
    };
    let mut v: Robj = Robj::from(vec![n.sent, n.read, n.stale_below, n.aborts]);
    let _ = v.set_names(["sent", "read", "stale_below", "aborts"]);
    v
}

/// Remember base's eval() and lapply(), whose tasks may carry their names (R/nodeTraffic.R).
#[extendr]
fn rs_task_wire_functions(eval: Robj, lapply: Robj) {
    // SAFETY: the SEXPs are only stored as addresses to compare with; base's functions live
    // as long as the session.
    unsafe { task_wire::set_wire_functions(eval.get(), lapply.get()) };
}

/// R's initialisation of the package's library (src/entrypoint.c): extendr's routines, and
/// the two per-message routines of task_wire.rs, which take R's objects as they are.
#[no_mangle]
pub extern "C" fn R_init_parallelly_routines(info: *mut extendr_api::DllInfo) {
    use extendr_api::metadata::{Arg, Func};
    let arg = |name| Arg { name, arg_type: "SEXP", default: None };
    let routine = |c_name, args: Vec<Arg>, func_ptr| Func {
        doc: "",
        rust_name: c_name,
        mod_name: "parallelly",
        r_name: c_name,
        c_name,
        args,
        return_type: "SEXP",
        func_ptr,
        hidden: true,
        invisible: None,
    };
    let mut metadata = get_parallelly_metadata();
    metadata.functions.push(routine(
        "wrap__rs_number_task",
        ["numbers", "data", "aborts", "wire_ok", "final_answer"].map(arg).into(),
        task_wire::number_task_call as *const u8,
    ));
    metadata.functions.push(routine("wrap__rs_accept_message", ["numbers", "msg"].map(arg).into(), task_wire::accept_message_call as *const u8));
    // SAFETY: R calls this once, with its DllInfo for this library; the routines' pointers
    // are functions of the arity registered.
    unsafe { extendr_api::register_call_methods(info, metadata) };
}

/// Whether more threads are runnable on this machine now than it has cores online; NA where
/// the count cannot be read (R/spinWait.R stands its spin down when TRUE).
#[extendr]
fn rs_cores_taken() -> Rbool {
    match runqueue::cores_taken() {
        Some(taken) => Rbool::from(taken),
        None => Rbool::na(),
    }
}

/// The cores this process may run on (its CPU affinity and cgroup CPU quota), cheaply: no
/// shell, unlike parallel::detectCores(). 1 when it cannot be told.
#[extendr]
fn rs_usable_cores() -> i32 {
    std::thread::available_parallelism().map_or(1, |n| i32::try_from(n.get()).unwrap_or(i32::MAX))
}

/// Whether this process can fork clean workers (see fork.rs).
#[extendr]
fn rs_can_fork() -> bool {
    fork::available()
}

/// The path R's `R_TempDir` points at (found with dlsym()), or NULL: the load-time check of
/// that symbol (R/internals.R).
#[extendr]
fn rs_r_temp_dir() -> Robj {
    match fork::temp_dir_now() {
        Some(path) => Robj::from(path),
        None => Robj::from(()),
    }
}

/// In a fork server: fork into a clean worker. The PID in the server, 0 in the child.
#[extendr]
fn rs_fork_worker() -> Robj {
    match fork::fork_worker() {
        Ok(pid) => Robj::from(pid as f64),
        Err(e) => error_value(e),
    }
}

/// In a forked worker whose R has no temporary directory of its own: end at once (R's exit
/// would delete the server's directory).
#[extendr]
fn rs_exit_now(status: i32) {
    fork::exit_now(status);
}

/// In a fork server: how each forked PID ended, like rs_child_state(); reaps them.
#[extendr]
fn rs_forked_state(pids: Vec<i32>) -> Robj {
    let wanted: Vec<u32> = pids.iter().map(|&p| pid_of(p).unwrap_or(0)).collect();
    let states = fork::exit_statuses(&wanted).into_iter().map(|s| match s.map(|s| s.map(fork::decode)) {
        None => ("unknown", None, None),
        Some(None) => ("running", None, None),
        Some(Some((Some(c), _))) => ("exited", Some(c), None),
        Some(Some((None, Some(k)))) => ("signalled", None, Some(k)),
        Some(Some((None, None))) => ("gone", None, None),
    });
    let running = i32::try_from(fork::running()).unwrap_or(i32::MAX);
    states_value(states, vec![("running", Robj::from(running))])
}

/// In a fork server: signal every forked worker not yet reaped; how many.
#[extendr]
fn rs_forked_signal_all(signal: i32) -> i32 {
    if !(1..=64).contains(&signal) {
        return 0;
    }
    i32::try_from(fork::signal_running(signal)).unwrap_or(i32::MAX)
}

extendr_module! {
    mod parallelly;
    fn rs_launch;
    fn rs_child_state;
    fn rs_probe;
    fn rs_start_time;
    fn rs_signal;
    fn rs_running_children;
    fn rs_forget_child;
    fn rs_child_output;
    fn rs_usage;
    fn rs_child_count;
    fn rs_port_is_free;
    fn rs_fork_worker;
    fn rs_can_fork;
    fn rs_r_temp_dir;
    fn rs_cores_taken;
    fn rs_task_numbers;
    fn rs_task_numbers_value;
    fn rs_task_wire_functions;
    fn rs_usable_cores;
    fn rs_rebind_loopback;
    fn rs_connections_nodelay;
    fn rs_stop_in_background;
    fn rs_stop_strangers_in_background;
    fn rs_reapers_active;
    fn rs_reapers_shutdown;
    fn rs_forked_state;
    fn rs_forked_signal_all;
    fn rs_exit_now;
    fn rs_ssh_connect;
    fn rs_ssh_plan;
    fn rs_handshake_step;
    fn rs_ssh_submit_script;
    fn rs_ssh_submit_forward;
    fn rs_ssh_submit_probe;
    fn rs_ssh_submit_signal;
    fn rs_ssh_submit_launch;
    fn rs_ssh_submit_exit;
    fn rs_ssh_submit_usage;
    fn rs_ssh_poll;
    fn rs_ssh_cancel;
    fn rs_ssh_close;
    fn rs_ssh_close_all;
    fn rs_ssh_connections;
    fn rs_ssh_crypto_calls;
    fn rs_remote_script;
    fn rs_remote_parse;
}
