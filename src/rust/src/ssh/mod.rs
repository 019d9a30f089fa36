//! The built-in SSH client: one held connection per (user, host, port), shared by every
//! worker on that host and by every probe, kill and launch; no `ssh` program is needed.
//!
//! Requests to a connection's I/O thread are asynchronous: `submit_*` returns a ticket,
//! `poll` collects the answer. R waits in short slices between polls, so a wait on a frozen
//! host stays interruptible and bounded by the caller's timeout.

pub mod algorithms;
pub mod config;
pub mod crypto;
pub mod exec;
pub mod host;
pub mod jump;
pub mod known_hosts;
pub mod openssh_keywords;
pub mod remote;
pub mod session;
#[cfg(test)]
mod test_sshd;

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{Receiver, RecvTimeoutError};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock};
use std::time::{Duration, Instant};

use crate::error::{Error, Kind, Result};
use host::HostConnection;

/// What a pending request will produce once answered.
pub enum Pending {
    Text(Receiver<Result<String>>),
    Port(Receiver<Result<u16>>),
    Probe { rx: Receiver<Result<String>>, pids: Vec<i32>, starts: Vec<f64> },
    Signal { rx: Receiver<Result<String>>, pids: Vec<i32> },
    Launch(Receiver<Result<String>>),
    Exit { rx: Receiver<Result<String>>, pids: Vec<i32> },
    Usage { rx: Receiver<Result<String>>, pids: Vec<i32> },
}

pub enum Answer {
    Text(String),
    Port(u16),
    Probe(Vec<remote::Probe>),
    Signal(Vec<Option<bool>>),
    Launch(Vec<remote::Launched>),
    Exit(Vec<Option<i32>>),
    Usage(Vec<Option<(f64, f64, f64)>>),
}

struct Registry {
    connections: HashMap<String, Arc<HostConnection>>,
    pending: HashMap<u64, (Pending, Option<Arc<AtomicBool>>)>,
    next_ticket: u64,
}

fn registry() -> MutexGuard<'static, Registry> {
    static REGISTRY: OnceLock<Mutex<Registry>> = OnceLock::new();
    REGISTRY
        .get_or_init(|| Mutex::new(Registry { connections: HashMap::new(), pending: HashMap::new(), next_ticket: 1 }))
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// The key of a connection: user@hostname:port after applying the ssh config, and the
/// jump hosts it goes through (" via ...").
pub fn key_of(target: &session::Target) -> String {
    let key = format!("{}@{}:{}", target.user, target.hostname, target.port);
    match &target.via {
        Some(hop) => format!("{} via {}", key, key_of(hop)),
        None => key,
    }
}

/// Reuse the live connection to `target`, or open a new one on a thread of its own (the
/// TCP connect, handshake and authentication block, bounded by the target's timeout):
/// the answer, the connection's key, arrives like any other request's, so that R can wait
/// for it in interruptible slices.
pub fn submit_connect(target: session::Target) -> Result<u64> {
    let (reply, rx) = std::sync::mpsc::channel();
    // Connected already (every probe asks): answered at once, no thread.
    let key = key_of(&target);
    if registry().connections.get(&key).is_some_and(|c| c.is_alive()) {
        let _ = reply.send(Ok(key));
        return Ok(file(Pending::Text(rx), None));
    }
    std::thread::Builder::new()
        .name(format!("parallelly-connect-{}", target.alias))
        .spawn(move || {
            let _ = reply.send(connect(&target));
        })
        .map_err(|e| Error::new(Kind::System, format!("cannot start a thread to connect: {}", e)))?;
    Ok(file(Pending::Text(rx), None))
}

/// Reuse the live connection to `target`, or open a new one.
pub fn connect(target: &session::Target) -> Result<String> {
    let key = key_of(target);
    {
        let mut reg = registry();
        match reg.connections.get(&key) {
            Some(c) if c.is_alive() => return Ok(key),
            Some(_) => {
                // The old connection was lost: the next operation reconnects.
                if let Some(old) = reg.connections.remove(&key) {
                    drop(reg);
                    old.shutdown(Duration::from_millis(100));
                }
            }
            None => {}
        }
    }
    // Connecting blocks (bounded by the target's timeout) without holding the registry.
    let (session, fd) = session::open(target)?;
    let conn = HostConnection::start(target.alias.clone(), session, fd, (target.keepalive, target.keepalive_count_max))?;
    registry().connections.insert(key.clone(), Arc::new(conn));
    Ok(key)
}

fn connection(key: &str) -> Result<Arc<HostConnection>> {
    registry()
        .connections
        .get(key)
        .cloned()
        .ok_or_else(|| Error::new(Kind::Ssh, format!("no SSH connection '{}' is open", key)))
}

fn file(pending: Pending, cancel: Option<Arc<AtomicBool>>) -> u64 {
    let mut reg = registry();
    let ticket = reg.next_ticket;
    reg.next_ticket += 1;
    reg.pending.insert(ticket, (pending, cancel));
    ticket
}

/// The deadline of a request its caller waits `timeout` seconds for (none if not positive):
/// past it, the request is never run, not even if it already reached the host's network.
fn deadline(timeout: f64) -> Option<Instant> {
    (timeout.is_finite() && timeout > 0.0).then(|| Instant::now() + Duration::from_secs_f64(timeout.min(1e6)))
}

pub fn submit_script(key: &str, script: String, timeout: f64) -> Result<u64> {
    // Not on the control shell: a script that hangs must not hold up later probes.
    let (rx, cancel) = connection(key)?.submit_exec(script, deadline(timeout))?;
    Ok(file(Pending::Text(rx), Some(cancel)))
}

pub fn submit_forward(key: &str, target_port: u16) -> Result<u64> {
    let rx = connection(key)?.forward(target_port)?;
    Ok(file(Pending::Port(rx), None))
}

pub fn submit_probe(key: &str, pids: Vec<i32>, starts: Vec<f64>, timeout: f64) -> Result<u64> {
    let (rx, cancel) = connection(key)?.submit(remote::probe_script(&pids), deadline(timeout))?;
    Ok(file(Pending::Probe { rx, pids, starts }, Some(cancel)))
}

pub fn submit_signal(key: &str, pids: Vec<i32>, starts: Vec<f64>, signal: i32, timeout: f64) -> Result<u64> {
    if !(1..=64).contains(&signal) {
        return Err(Error::new(Kind::InvalidArgument, format!("signal {} is out of range 1..64", signal)));
    }
    let (rx, cancel) = connection(key)?.submit(remote::signal_script(&pids, &starts, signal), deadline(timeout))?;
    Ok(file(Pending::Signal { rx, pids }, Some(cancel)))
}

pub fn submit_exit(key: &str, pids: Vec<i32>, timeout: f64) -> Result<u64> {
    let (rx, cancel) = connection(key)?.submit(remote::exit_script(&pids), deadline(timeout))?;
    Ok(file(Pending::Exit { rx, pids }, Some(cancel)))
}

pub fn submit_usage(key: &str, pids: Vec<i32>, timeout: f64) -> Result<u64> {
    let (rx, cancel) = connection(key)?.submit(remote::usage_script(&pids), deadline(timeout))?;
    Ok(file(Pending::Usage { rx, pids }, Some(cancel)))
}

pub fn submit_launch(key: &str, program: &str, commands: &[String], logs: &[String], timeout: f64) -> Result<u64> {
    let (rx, cancel) = connection(key)?.submit(remote::launch_script(program, commands, logs), deadline(timeout))?;
    Ok(file(Pending::Launch(rx), Some(cancel)))
}

/// Wait up to `wait` for the answer to `ticket`; `Ok(None)` while it is still pending.
pub fn poll(ticket: u64, wait: Duration) -> Result<Option<Answer>> {
    let (pending, cancel) = registry()
        .pending
        .remove(&ticket)
        .ok_or_else(|| Error::new(Kind::InvalidArgument, format!("unknown SSH request {}", ticket)))?;
    fn take<T>(rx: &Receiver<Result<T>>, wait: Duration) -> Option<Result<T>> {
        match rx.recv_timeout(wait) {
            Ok(r) => Some(r),
            Err(RecvTimeoutError::Timeout) => None,
            Err(RecvTimeoutError::Disconnected) => {
                Some(Err(Error::new(Kind::Ssh, "the SSH connection closed before answering".to_string())))
            }
        }
    }
    let answer = match &pending {
        Pending::Text(rx) => take(rx, wait).map(|r| r.map(Answer::Text)),
        Pending::Port(rx) => take(rx, wait).map(|r| r.map(Answer::Port)),
        Pending::Probe { rx, pids, starts } => {
            take(rx, wait).map(|r| r.map(|out| Answer::Probe(remote::parse_probe(&out, pids, starts))))
        }
        Pending::Signal { rx, pids } => take(rx, wait).map(|r| r.map(|out| Answer::Signal(remote::parse_signal(&out, pids)))),
        Pending::Launch(rx) => take(rx, wait).map(|r| r.map(|out| Answer::Launch(remote::parse_launch(&out)))),
        Pending::Exit { rx, pids } => take(rx, wait).map(|r| r.map(|out| Answer::Exit(remote::parse_exit(&out, pids)))),
        Pending::Usage { rx, pids } => take(rx, wait).map(|r| r.map(|out| Answer::Usage(remote::parse_usage(&out, pids)))),
    };
    match answer {
        None => {
            registry().pending.insert(ticket, (pending, cancel));
            Ok(None)
        }
        Some(r) => r.map(Some),
    }
}

/// Forget a request whose answer is no longer wanted (e.g. after a timeout); a script not
/// yet sent to the host is withdrawn.
pub fn cancel(ticket: u64) {
    if let Some((_, Some(flag))) = registry().pending.remove(&ticket) {
        flag.store(true, Ordering::SeqCst);
    }
}

/// Close the connection `key`, waiting at most `wait` for its I/O thread to finish (a host
/// that stopped answering may keep it longer: it then finishes on its own, bounded by the
/// session's disconnect timeout).
pub fn close(key: &str, wait: Duration) -> bool {
    let conn = registry().connections.remove(key);
    match conn {
        Some(c) => {
            c.shutdown(wait);
            true
        }
        None => false,
    }
}

pub fn close_all() {
    let conns: Vec<_> = registry().connections.drain().map(|(_, c)| c).collect();
    for c in conns {
        c.shutdown(Duration::from_secs(2));
    }
    registry().pending.clear();
}

/// (key, alive, remote port, tunnels) of every held connection.
pub fn list() -> Vec<(String, bool, Option<u16>, usize, Option<String>)> {
    registry()
        .connections
        .iter()
        .map(|(k, c)| {
            let s = c.status();
            (k.clone(), s.alive, s.remote_port, s.tunnels, s.error)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::mpsc;

    pub(super) fn target(alias: &str, user: &str, hostname: &str, port: u16) -> session::Target {
        session::Target {
            alias: alias.to_string(),
            hostname: hostname.to_string(),
            port,
            user: user.to_string(),
            identity_files: Vec::new(),
            identities_only: true,
            use_agent: false,
            agent_socket: None,
            address_family: None,
            known_hosts: Vec::new(),
            host_keys: session::HostKeyPolicy::Strict,
            hash_known_hosts: false,
            timeout: Duration::from_secs(5),
            via: None,
            method_prefs: Vec::new(),
            host_key_algorithms: Vec::new(),
            host_key_order: true,
            pubkey_algorithms: Vec::new(),
            lacking: Vec::new(),
            compression: false,
            keepalive: 0,
            keepalive_count_max: 3,
        }
    }

    #[test]
    fn a_key_names_user_host_port_and_the_route() {
        let mut t = target("web", "alice", "web.example.org", 2200);
        assert_eq!(key_of(&t), "alice@web.example.org:2200");
        let mut hop = target("j2", "me", "j2", 22);
        hop.via = Some(Box::new(target("j1", "jumper", "bastion", 22)));
        t.via = Some(Box::new(hop));
        assert_eq!(key_of(&t), "alice@web.example.org:2200 via me@j2:22 via jumper@bastion:22");
    }

    #[test]
    fn only_positive_finite_timeouts_set_a_deadline() {
        for t in [0.0, -1.0, f64::NAN, f64::INFINITY, f64::NEG_INFINITY] {
            assert!(deadline(t).is_none(), "{}", t);
        }
        let d = deadline(2.0).expect("deadline");
        assert!(d > Instant::now() + Duration::from_secs(1) && d <= Instant::now() + Duration::from_secs(2));
        // Huge ones are capped rather than overflowing.
        assert!(deadline(1e300).is_some());
    }

    #[test]
    fn a_ticket_is_pending_until_answered_then_gone() {
        let (tx, rx) = mpsc::channel();
        let ticket = file(Pending::Text(rx), None);
        assert!(matches!(poll(ticket, Duration::ZERO), Ok(None)));
        assert!(matches!(poll(ticket, Duration::from_millis(10)), Ok(None)), "still pending after a wait");
        tx.send(Ok("out".to_string())).expect("send");
        assert!(matches!(poll(ticket, Duration::ZERO), Ok(Some(Answer::Text(t))) if t == "out"));
        // Answered once: the ticket is gone.
        assert_eq!(poll(ticket, Duration::ZERO).err().map(|e| e.kind), Some(Kind::InvalidArgument));
        // Errors arrive as errors; a sender gone without answering is a lost connection.
        let (tx, rx) = mpsc::channel::<Result<String>>();
        let ticket = file(Pending::Text(rx), None);
        tx.send(Err(Error::new(Kind::Timeout, "late"))).expect("send");
        assert_eq!(poll(ticket, Duration::ZERO).err().map(|e| e.kind), Some(Kind::Timeout));
        let (tx, rx) = mpsc::channel::<Result<String>>();
        let ticket = file(Pending::Text(rx), None);
        drop(tx);
        assert_eq!(poll(ticket, Duration::ZERO).err().map(|e| e.kind), Some(Kind::Ssh));
    }

    #[test]
    fn answers_are_parsed_by_the_kind_of_request() {
        let (tx, rx) = mpsc::channel();
        let probe = file(Pending::Probe { rx, pids: vec![5, 6, 7], starts: vec![100.0, 0.0, 0.0] }, None);
        tx.send(Ok("5 S 100\n6 Z 1\n".to_string())).expect("send");
        assert!(matches!(poll(probe, Duration::ZERO), Ok(Some(Answer::Probe(v))) if v == [remote::Probe::Alive, remote::Probe::Dead, remote::Probe::Unknown]));
        let (tx, rx) = mpsc::channel();
        let signal = file(Pending::Signal { rx, pids: vec![5, 6] }, None);
        tx.send(Ok("5 1\n6 0\n".to_string())).expect("send");
        assert!(matches!(poll(signal, Duration::ZERO), Ok(Some(Answer::Signal(v))) if v == [Some(true), Some(false)]));
        let (tx, rx) = mpsc::channel();
        let launch = file(Pending::Launch(rx), None);
        tx.send(Ok("pid 9 42 /tmp/w.log\n".to_string())).expect("send");
        assert!(matches!(poll(launch, Duration::ZERO), Ok(Some(Answer::Launch(v))) if v.len() == 1));
        let (tx, rx) = mpsc::channel();
        let exit = file(Pending::Exit { rx, pids: vec![9] }, None);
        tx.send(Ok("9 137\n".to_string())).expect("send");
        assert!(matches!(poll(exit, Duration::ZERO), Ok(Some(Answer::Exit(v))) if v == [Some(137)]));
        let (tx, rx) = mpsc::channel();
        let usage = file(Pending::Usage { rx, pids: vec![9] }, None);
        tx.send(Ok("9 - - - -\n".to_string())).expect("send");
        assert!(matches!(poll(usage, Duration::ZERO), Ok(Some(Answer::Usage(v))) if v == [None]));
        let (tx, rx) = mpsc::channel();
        let port = file(Pending::Port(rx), None);
        tx.send(Ok(4242)).expect("send");
        assert!(matches!(poll(port, Duration::ZERO), Ok(Some(Answer::Port(4242)))));
    }

    #[test]
    fn cancelling_withdraws_the_request_and_forgets_the_ticket() {
        let (_tx, rx) = mpsc::channel::<Result<String>>();
        let flag = Arc::new(AtomicBool::new(false));
        let ticket = file(Pending::Text(rx), Some(Arc::clone(&flag)));
        cancel(ticket);
        assert!(flag.load(Ordering::SeqCst), "the I/O thread was not told");
        assert_eq!(poll(ticket, Duration::ZERO).err().map(|e| e.kind), Some(Kind::InvalidArgument));
        cancel(ticket); // twice, or unknown: nothing happens
        cancel(u64::MAX);
    }

    #[test]
    fn requests_for_no_connection_fail_cleanly() {
        let key = "nobody@nowhere.invalid:1";
        for r in [
            submit_script(key, "true".to_string(), 1.0),
            submit_probe(key, vec![1], vec![0.0], 1.0),
            submit_exit(key, vec![1], 1.0),
            submit_usage(key, vec![1], 1.0),
            submit_launch(key, "R", &[], &[], 1.0),
            submit_forward(key, 1),
        ] {
            assert_eq!(r.err().map(|e| e.kind), Some(Kind::Ssh));
        }
        // The signal is checked before the connection.
        for s in [0, 65, -9] {
            assert_eq!(submit_signal(key, vec![1], vec![0.0], s, 1.0).err().map(|e| e.kind), Some(Kind::InvalidArgument));
        }
        assert_eq!(submit_signal(key, vec![1], vec![0.0], 15, 1.0).err().map(|e| e.kind), Some(Kind::Ssh));
        assert!(!close(key, Duration::from_secs(2)));
        assert!(!list().iter().any(|c| c.0 == key));
    }
}
