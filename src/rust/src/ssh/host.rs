//! One held SSH connection to a host, driven by one I/O thread in non-blocking mode.
//!
//! The thread owns the session and everything on it:
//! - a long-lived control shell (`/bin/sh`, whatever the login shell is), which runs our launch, probe and kill
//!   scripts one at a time, each followed by an end marker: a probe costs a round trip, not
//!   a login or the remote user's shell start-up files;
//! - exec channels for the other scripts (reading logs, removing files), which may hang on
//!   the host and so must not hold up the control shell (see `exec`);
//! - the reverse port forward: the server listens on a port it picks, and each connection a
//!   worker makes to it arrives here as a channel that is pumped to the master's loopback
//!   port.
//!
//! Other threads talk to it through a channel of requests plus a waker in its poll set.
//! Measured here before this design was chosen: a script on the held control shell costs
//! ~0.1 ms, a fresh exec channel ~90 ms (the remote user's start-up files), and OpenSSH's
//! default MaxSessions 10 caps the exec/shell channels of one connection.

use std::collections::VecDeque;
use std::io::{ErrorKind, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpStream};
use std::os::fd::{AsRawFd, RawFd};
use std::os::unix::net::UnixStream;
use std::sync::mpsc::{self, Receiver, Sender, TryRecvError};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use ssh2::{BlockDirections, Channel, ExtendedData, Listener, Session};

use super::exec::Scripts;
use crate::error::{Error, Kind, Result};

pub type Reply<T> = Sender<Result<T>>;

pub enum Request {
    /// Run a script in the control shell; reply with its output. A script whose requester
    /// gave up (`cancelled`) before it was sent is never run: a kill that timed out must not
    /// happen later. Nor is one that reaches the shell after its `deadline` (it may sit in
    /// the network during a partition): the shell itself checks the deadline, on the host's
    /// own monotonic clock, before running it (see `guard`).
    Run { script: String, reply: Reply<String>, cancelled: Arc<AtomicBool>, deadline: Option<Instant> },
    /// Run a script that may hang on an exec channel of its own (see `exec`), under the
    /// same rules as `Run`.
    Exec { script: String, reply: Reply<String>, cancelled: Arc<AtomicBool>, deadline: Option<Instant> },
    /// Make sure the server forwards a port of its own to `target_port` on the master's
    /// loopback interface; reply with the server's port.
    Forward { target_port: u16, reply: Reply<u16> },
    Shutdown,
}

/// What other threads may read about a connection.
#[derive(Debug, Default, Clone)]
pub struct Status {
    pub alive: bool,
    pub error: Option<String>,
    pub remote_port: Option<u16>,
    pub tunnels: usize,
}

pub struct HostConnection {
    pub name: String,
    tx: Sender<Request>,
    waker: UnixStream,
    status: Arc<Mutex<Status>>,
    thread: Mutex<Option<JoinHandle<()>>>,
}

const MARKER: &str = "__PARALLELLY_END_";

/// The control shell, as a command line for the remote user's login shell: sh with stderr
/// merged into stdout. It must mean the same in sh, bash, dash, csh/tcsh and fish, so the
/// redirection (which tcsh and fish read differently) sits in a single-quoted sh script.
pub(super) const CONTROL_SHELL: &str = "exec /bin/sh -c 'exec /bin/sh 2>&1'";
/// Bytes a tunnel holds in each direction.
const BUFFER_CAP: usize = 256 * 1024;
/// The most libssh2 puts in one channel packet (it splits writes at 32700 bytes): tunnel
/// data goes to the channel in pieces of this size, not in the remainders of TCP reads.
const PACKET: usize = 32700;
/// Rounds a busy tunnel gets in one pass before the other work of the connection.
const PUMP_ROUNDS: usize = 8;

/// What a guarded script prints instead of running when it reached the shell too late.
pub(super) const WITHDRAWN: &str = "__PARALLELLY_WITHDRAWN__";
/// The first script on every control shell: the host's uptime (its monotonic clock, which
/// wall-clock changes do not move), against which later scripts' deadlines are set.
const CLOCK_SCRIPT: &str = "read -r _pu _pr </proc/uptime 2>/dev/null && echo \"__PARALLELLY_UPTIME_ $_pu\"";

fn parse_uptime(out: &str) -> Option<f64> {
    out.lines()
        .find_map(|l| l.strip_prefix("__PARALLELLY_UPTIME_ "))
        .and_then(|v| v.trim().parse::<f64>().ok())
        .filter(|v| *v > 1.0)
}

pub(super) fn withdrawn(host: &str) -> Error {
    Error::new(
        Kind::Timeout,
        format!("the request to host '{}' was withdrawn: it reached the host after its deadline and was not run", host),
    )
}

/// Wrap `script` so that the control shell runs it only while the host's uptime is below
/// the deadline, translated to the host's clock through `clock` (measured once per
/// connection; both clocks are monotonic, so only their drift over the connection's life
/// matters). The host-side deadline falls a little before ours (by a quarter of the budget,
/// at most 0.5 s), so that a script that does run has time to answer before we give up.
/// /proc/uptime is read with the `read` builtin and compared in hundredths of a second by
/// `[`, which reads numbers in decimal whatever their leading zeros.
pub fn guard(script: &str, deadline: Instant, now: Instant, clock: (Instant, f64)) -> String {
    let budget = deadline.saturating_duration_since(now).as_secs_f64();
    let margin = (budget / 4.0).min(0.5);
    let remote = clock.1 + deadline.saturating_duration_since(clock.0).as_secs_f64() - margin;
    let cs = (remote * 100.0).floor().max(0.0) as u64;
    format!(
        "read -r _pu _pr </proc/uptime 2>/dev/null; _pu=${{_pu%.*}}${{_pu#*.}}\nif [ \"$_pu\" -lt {cs} ] 2>/dev/null; then\n{script}\nelse echo {WITHDRAWN}; fi"
    )
}

fn eagain(e: &ssh2::Error) -> bool {
    matches!(e.code(), ssh2::ErrorCode::Session(-37))
}

impl HostConnection {
    /// Take over an authenticated blocking session: open the control shell, switch to
    /// non-blocking mode and start the I/O thread.
    /// `keepalive`: ServerAliveInterval (seconds, 0: off) and ServerAliveCountMax.
    pub fn start(name: String, session: Session, fd: RawFd, keepalive: (u32, u32)) -> Result<HostConnection> {
        let mut control = session
            .channel_session()
            .map_err(|e| Error::new(Kind::Ssh, format!("cannot open a control channel on host '{}': {}", name, e)))?;
        control
            .handle_extended_data(ExtendedData::Merge)
            .and_then(|_| control.exec(CONTROL_SHELL))
            .map_err(|e| Error::new(Kind::Ssh, format!("cannot start a control shell on host '{}': {}", name, e)))?;
        session.set_blocking(false);
        let (tx, rx) = mpsc::channel();
        let (clock_tx, clock_rx) = mpsc::channel();
        let (waker_rx, waker) =
            UnixStream::pair().map_err(|e| Error::new(Kind::System, format!("cannot create a waker: {}", e)))?;
        let _ = waker_rx.set_nonblocking(true);
        let _ = waker.set_nonblocking(true);
        let status = Arc::new(Mutex::new(Status { alive: true, ..Status::default() }));
        let io = Io {
            name: name.clone(),
            session,
            fd,
            rx,
            waker: waker_rx,
            status: Arc::clone(&status),
            control: Control {
                channel: control,
                queue: VecDeque::from([Queued { script: CLOCK_SCRIPT.to_string(), reply: clock_tx, cancelled: Arc::new(AtomicBool::new(false)), deadline: None }]),
                clock: None,
                clock_rx: Some(clock_rx),
                current: None,
                out: Vec::new(),
                pending_write: Vec::new(),
                next_id: 1,
            },
            scripts: Scripts::default(),
            forward: Forward { listener: None, port: None, target_port: None, waiting: Vec::new(), failed: None },
            pumps: Vec::new(),
            closing: Vec::new(),
            keepalive: (keepalive.0 > 0).then(|| (Duration::from_secs(u64::from(keepalive.0)), keepalive.1)),
            unacked_since: None,
        };
        let thread = std::thread::Builder::new()
            .name(format!("parallelly-ssh-{}", name))
            .spawn(move || io.run())
            .map_err(|e| Error::new(Kind::System, format!("cannot start the SSH I/O thread: {}", e)))?;
        Ok(HostConnection { name, tx, waker, status, thread: Mutex::new(Some(thread)) })
    }

    pub fn status(&self) -> Status {
        self.status.lock().map(|s| s.clone()).unwrap_or_default()
    }

    pub fn is_alive(&self) -> bool {
        self.status().alive
    }

    fn send(&self, req: Request) -> Result<()> {
        if !self.is_alive() {
            let why = self.status().error.unwrap_or_else(|| "closed".to_string());
            return Err(Error::new(Kind::Ssh, format!("the SSH connection to host '{}' is lost: {}", self.name, why)));
        }
        self.tx
            .send(req)
            .map_err(|_| Error::new(Kind::Ssh, format!("the SSH connection to host '{}' is closed", self.name)))?;
        let _ = (&self.waker).write(&[1u8]);
        Ok(())
    }

    /// Queue a control-shell script; the answer arrives on the returned receiver. Setting
    /// the returned flag withdraws the script if it has not been sent to the host yet.
    pub fn submit(&self, script: String, deadline: Option<Instant>) -> Result<(Receiver<Result<String>>, Arc<AtomicBool>)> {
        let (reply, rx) = mpsc::channel();
        let cancelled = Arc::new(AtomicBool::new(false));
        self.send(Request::Run { script, reply, cancelled: Arc::clone(&cancelled), deadline })?;
        Ok((rx, cancelled))
    }

    /// Like `submit`, for a script that may hang: it runs on a channel of its own, and
    /// setting the flag also ends it on the host if it already runs.
    pub fn submit_exec(&self, script: String, deadline: Option<Instant>) -> Result<(Receiver<Result<String>>, Arc<AtomicBool>)> {
        let (reply, rx) = mpsc::channel();
        let cancelled = Arc::new(AtomicBool::new(false));
        self.send(Request::Exec { script, reply, cancelled: Arc::clone(&cancelled), deadline })?;
        Ok((rx, cancelled))
    }

    pub fn forward(&self, target_port: u16) -> Result<Receiver<Result<u16>>> {
        let (reply, rx) = mpsc::channel();
        self.send(Request::Forward { target_port, reply })?;
        Ok(rx)
    }

    /// Stop the I/O thread and close the connection, waiting at most `timeout`.
    pub fn shutdown(&self, timeout: Duration) {
        let _ = self.tx.send(Request::Shutdown);
        let _ = (&self.waker).write(&[1u8]);
        let handle = self.thread.lock().ok().and_then(|mut t| t.take());
        if let Some(handle) = handle {
            let deadline = std::time::Instant::now() + timeout;
            while !handle.is_finished() && std::time::Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(5));
            }
            if handle.is_finished() {
                let _ = handle.join();
            }
        }
    }
}

impl Drop for HostConnection {
    fn drop(&mut self) {
        self.shutdown(Duration::from_secs(2));
    }
}

struct Job {
    id: u64,
    reply: Reply<String>,
}

pub(super) struct Queued {
    pub(super) script: String,
    pub(super) reply: Reply<String>,
    pub(super) cancelled: Arc<AtomicBool>,
    pub(super) deadline: Option<Instant>,
}

struct Control {
    channel: Channel,
    queue: VecDeque<Queued>,
    /// (our instant, the host's uptime in seconds then), measured by the first script; the
    /// host's uptime it gives is never later than the real one (it was read before we saw it).
    clock: Option<(Instant, f64)>,
    clock_rx: Option<Receiver<Result<String>>>,
    current: Option<Job>,
    out: Vec<u8>,
    pending_write: Vec<u8>,
    next_id: u64,
}

struct Forward {
    listener: Option<Listener>,
    port: Option<u16>,
    target_port: Option<u16>,
    waiting: Vec<Reply<u16>>,
    failed: Option<String>,
}

/// One worker's tunnel: a forwarded channel pumped to a loopback TCP connection.
struct Pump {
    channel: Channel,
    tcp: TcpStream,
    to_tcp: Buf,
    to_channel: Buf,
    /// The last channel write would block: it may have left a packet half sent, which
    /// libssh2 finishes only for the same channel's next write (all other sends on the
    /// session get EAGAIN until then), so it is retried whatever is pending.
    write_blocked: bool,
    channel_eof: bool,
    tcp_eof: bool,
    eof_sent: bool,
    failed: bool,
}

/// Bytes on their way through a tunnel in one direction: a fixed buffer (made on first use)
/// read into and written from in place, so that large transfers are not copied around
/// (a Vec drained from the front moved the rest on every write).
struct Buf {
    data: Box<[u8]>,
    start: usize,
    end: usize,
}

impl Buf {
    fn new() -> Buf {
        Buf { data: Box::default(), start: 0, end: 0 }
    }

    fn len(&self) -> usize {
        self.end - self.start
    }

    fn is_empty(&self) -> bool {
        self.start == self.end
    }

    fn pending(&self) -> &[u8] {
        &self.data[self.start..self.end]
    }

    fn consume(&mut self, n: usize) {
        self.start += n;
        if self.start == self.end {
            self.start = 0;
            self.end = 0;
        }
    }

    /// The free space at the end (none when full), moving what is pending to the front
    /// only when the tail is too short for a whole SSH packet.
    fn space(&mut self) -> &mut [u8] {
        if self.data.is_empty() {
            self.data = vec![0u8; BUFFER_CAP].into_boxed_slice();
        }
        if self.data.len() - self.end < PACKET && self.start > 0 {
            self.data.copy_within(self.start..self.end, 0);
            self.end -= self.start;
            self.start = 0;
        }
        &mut self.data[self.end..]
    }

    fn filled(&mut self, n: usize) {
        self.end += n;
    }
}

struct Io {
    name: String,
    session: Session,
    fd: RawFd,
    rx: Receiver<Request>,
    waker: UnixStream,
    status: Arc<Mutex<Status>>,
    control: Control,
    scripts: Scripts,
    forward: Forward,
    pumps: Vec<Pump>,
    /// Channels being closed (non-blocking close must complete before they are dropped).
    closing: Vec<Channel>,
    /// ServerAliveInterval and ServerAliveCountMax (see `check_alive`).
    keepalive: Option<(Duration, u32)>,
    /// Since when sent data has been waiting for the host's acknowledgement.
    unacked_since: Option<Instant>,
}

impl Pump {
    /// Move what can move without waiting, both ways; true when anything moved.
    fn step(&mut self) -> bool {
        let mut progress = false;
        // channel -> tcp: libssh2 copies packets straight into the buffer.
        while !self.channel_eof && !self.failed && self.to_tcp.len() < BUFFER_CAP {
            let space = self.to_tcp.space();
            if space.is_empty() {
                break;
            }
            match self.channel.read(space) {
                Ok(0) => {
                    if self.channel.eof() {
                        self.channel_eof = true;
                        progress = true;
                    }
                    break;
                }
                Ok(n) => {
                    self.to_tcp.filled(n);
                    progress = true;
                }
                Err(e) if e.kind() == ErrorKind::WouldBlock => break,
                Err(_) => self.failed = true,
            }
        }
        while !self.to_tcp.is_empty() && !self.failed {
            match self.tcp.write(self.to_tcp.pending()) {
                Ok(0) => break,
                Ok(n) => {
                    self.to_tcp.consume(n);
                    progress = true;
                }
                Err(e) if e.kind() == ErrorKind::WouldBlock => break,
                Err(_) => self.failed = true,
            }
        }
        if self.channel_eof && self.to_tcp.is_empty() && !self.tcp_eof {
            let _ = self.tcp.shutdown(Shutdown::Write);
        }
        // tcp -> channel: read until the socket is empty or the buffer full, so that the
        // channel gets whole packets.
        let mut tcp_empty = self.tcp_eof;
        while !self.tcp_eof && !self.failed {
            let space = self.to_channel.space();
            if space.is_empty() {
                break;
            }
            match self.tcp.read(space) {
                Ok(0) => {
                    self.tcp_eof = true;
                    tcp_empty = true;
                    progress = true;
                }
                Ok(n) => {
                    self.to_channel.filled(n);
                    progress = true;
                }
                Err(e) if e.kind() == ErrorKind::WouldBlock => {
                    tcp_empty = true;
                    break;
                }
                Err(_) => self.failed = true,
            }
        }
        // A piece shorter than a packet goes only when no more is there to join it. After
        // EAGAIN the same bytes must be offered again: they stay at the head.
        while !self.to_channel.is_empty()
            && !self.failed
            && (self.to_channel.len() >= PACKET || tcp_empty || self.write_blocked)
        {
            let n = self.to_channel.len().min(PACKET);
            match self.channel.write(&self.to_channel.pending()[..n]) {
                Ok(0) => break,
                Ok(n) => {
                    self.to_channel.consume(n);
                    self.write_blocked = false;
                    progress = true;
                }
                Err(e) if e.kind() == ErrorKind::WouldBlock => {
                    self.write_blocked = true;
                    break;
                }
                Err(_) => self.failed = true,
            }
        }
        if self.tcp_eof && self.to_channel.is_empty() && !self.eof_sent {
            match self.channel.send_eof() {
                Ok(()) => {
                    self.eof_sent = true;
                    progress = true;
                }
                Err(e) if eagain(&e) => {}
                Err(_) => self.failed = true,
            }
        }
        progress
    }
}

enum Fatal {
    Shutdown,
    Lost(String),
}

impl Io {
    fn run(mut self) {
        let outcome = loop {
            if let Err(f) = self.check_alive() {
                break f;
            }
            match self.pass() {
                Ok(true) => continue,
                Ok(false) => {}
                Err(f) => break f,
            }
            if let Err(f) = self.wait() {
                break f;
            }
        };
        let why = match outcome {
            Fatal::Shutdown => "closed".to_string(),
            Fatal::Lost(why) => why,
        };
        self.fail_all(&why);
        self.session.set_blocking(true);
        self.session.set_timeout(1000);
        let _ = self.session.disconnect(None, "parallelly: connection closed", None);
        if let Ok(mut s) = self.status.lock() {
            s.alive = false;
            s.error = Some(why);
            s.tunnels = 0;
        }
    }

    /// With keepalives on: the connection is dead once data we sent (a keepalive at least,
    /// one every interval) has gone unacknowledged, with no acknowledgement at all, for
    /// interval x count -- interval x (count + 1) after the host went silent at most, as
    /// OpenSSH's ServerAliveCountMax. Told by the kernel's TCP state: libssh2 queues the
    /// server's answers to keepalives and would take one for the answer to a later forward
    /// request, so keepalives ask for none. (A host behind a jump host has no TCP socket
    /// here: its keepalives are sent, not counted.)
    fn check_alive(&mut self) -> std::result::Result<(), Fatal> {
        let Some((interval, count)) = self.keepalive else { return Ok(()) };
        let Some((unacked, since_ack)) = tcp_ack_state(self.fd) else { return Ok(()) };
        if unacked == 0 {
            self.unacked_since = None;
            return Ok(());
        }
        let now = Instant::now();
        let waiting = now.saturating_duration_since(*self.unacked_since.get_or_insert(now));
        let limit = interval * count.max(1);
        if waiting >= limit && since_ack >= limit {
            return Err(Fatal::Lost(format!(
                "the host acknowledged nothing for {:.0} s: {} keepalive messages {} s apart went unanswered (ServerAliveInterval {}, ServerAliveCountMax {})",
                since_ack.as_secs_f64(),
                count,
                interval.as_secs(),
                interval.as_secs(),
                count
            )));
        }
        Ok(())
    }

    /// One pass over all work; Ok(true) when anything moved.
    fn pass(&mut self) -> std::result::Result<bool, Fatal> {
        let mut progress = self.drain_requests()?;
        progress |= self.control_step()?;
        progress |= self.script_step();
        progress |= self.forward_step()?;
        progress |= self.pump_step();
        progress |= self.close_step();
        if let Ok(mut s) = self.status.lock() {
            s.tunnels = self.pumps.len();
            s.remote_port = self.forward.port;
        }
        Ok(progress)
    }

    fn drain_requests(&mut self) -> std::result::Result<bool, Fatal> {
        let mut progress = false;
        loop {
            match self.rx.try_recv() {
                Ok(Request::Run { script, reply, cancelled, deadline }) => {
                    self.control.queue.push_back(Queued { script, reply, cancelled, deadline });
                    progress = true;
                }
                Ok(Request::Exec { script, reply, cancelled, deadline }) => {
                    self.scripts.push(Queued { script, reply, cancelled, deadline });
                    progress = true;
                }
                Ok(Request::Forward { target_port, reply }) => {
                    self.forward.target_port = Some(target_port);
                    match (&self.forward.failed, self.forward.port) {
                        (Some(why), _) => {
                            let _ = reply.send(Err(Error::new(Kind::Ssh, why.clone())));
                        }
                        (None, Some(port)) => {
                            let _ = reply.send(Ok(port));
                        }
                        (None, None) => self.forward.waiting.push(reply),
                    }
                    progress = true;
                }
                Ok(Request::Shutdown) | Err(TryRecvError::Disconnected) => return Err(Fatal::Shutdown),
                Err(TryRecvError::Empty) => return Ok(progress),
            }
        }
    }

    fn control_step(&mut self) -> std::result::Result<bool, Fatal> {
        let c = &mut self.control;
        let mut progress = false;
        if c.current.is_none() && c.pending_write.is_empty() {
            if let Some(rx) = &c.clock_rx {
                // The answer to the first script: the host's uptime when it ran.
                match rx.try_recv() {
                    Ok(r) => {
                        c.clock = r.ok().and_then(|out| parse_uptime(&out)).map(|up| (Instant::now(), up));
                        c.clock_rx = None;
                    }
                    Err(TryRecvError::Disconnected) => c.clock_rx = None,
                    Err(TryRecvError::Empty) => {}
                }
            }
            let now = Instant::now();
            while let Some(q) = c.queue.front() {
                if q.cancelled.load(Ordering::SeqCst) {
                    c.queue.pop_front();
                } else if q.deadline.is_some_and(|d| d <= now) {
                    if let Some(q) = c.queue.pop_front() {
                        let _ = q.reply.send(Err(withdrawn(&self.name)));
                    }
                } else {
                    break;
                }
                progress = true;
            }
            if let Some(q) = c.queue.pop_front() {
                let id = c.next_id;
                c.next_id += 1;
                let script = match (q.deadline, c.clock) {
                    (Some(d), Some(clock)) => guard(&q.script, d, now, clock),
                    _ => q.script,
                };
                let reply = q.reply;
                c.pending_write = format!("{}\necho; echo {}{}__\n", script, MARKER, id).into_bytes();
                c.current = Some(Job { id, reply });
                c.out.clear();
                progress = true;
            }
        }
        while !c.pending_write.is_empty() {
            match c.channel.write(&c.pending_write) {
                Ok(0) => break,
                Ok(n) => {
                    c.pending_write.drain(..n);
                    progress = true;
                }
                Err(e) if e.kind() == ErrorKind::WouldBlock => break,
                Err(e) => return Err(Fatal::Lost(format!("writing to the control shell failed: {}", e))),
            }
        }
        let mut buf = [0u8; 16384];
        loop {
            match c.channel.read(&mut buf) {
                Ok(0) => {
                    if c.channel.eof() {
                        return Err(Fatal::Lost("the control shell on the host exited".to_string()));
                    }
                    break;
                }
                Ok(n) => {
                    c.out.extend_from_slice(&buf[..n]);
                    progress = true;
                }
                Err(e) if e.kind() == ErrorKind::WouldBlock => break,
                Err(e) => return Err(Fatal::Lost(format!("reading from the control shell failed: {}", e))),
            }
        }
        if let Some(job) = &c.current {
            let marker = format!("\n{}{}__\n", MARKER, job.id);
            if let Some(pos) = find(&c.out, marker.as_bytes()) {
                let text = String::from_utf8_lossy(&c.out[..pos]).into_owned();
                if let Some(job) = c.current.take() {
                    let answer = if text.lines().any(|l| l == WITHDRAWN) { Err(withdrawn(&self.name)) } else { Ok(text) };
                    let _ = job.reply.send(answer);
                }
                c.out.drain(..pos + marker.len());
                progress = true;
            }
        }
        Ok(progress)
    }

    /// Scripts on exec channels of their own; they wait for the host's clock, and go to
    /// the control shell if the server gives them no channel.
    fn script_step(&mut self) -> bool {
        let c = &mut self.control;
        let clock = if c.clock_rx.is_some() { None } else { Some(c.clock) };
        self.scripts.step(&self.name, &self.session, clock, &mut self.closing, &mut c.queue)
    }

    fn forward_step(&mut self) -> std::result::Result<bool, Fatal> {
        let f = &mut self.forward;
        let mut progress = false;
        if f.listener.is_none() && f.failed.is_none() && f.target_port.is_some() {
            match self.session.channel_forward_listen(0, Some("127.0.0.1"), None) {
                Ok((listener, port)) => {
                    f.listener = Some(listener);
                    f.port = Some(port);
                    for reply in f.waiting.drain(..) {
                        let _ = reply.send(Ok(port));
                    }
                    progress = true;
                }
                Err(e) if eagain(&e) => {}
                Err(e) => {
                    let why = format!("host '{}' refused the reverse tunnel (remote port forwarding): {}. Allow it in the server's sshd_config (AllowTcpForwarding yes), or use revtunnel = FALSE", self.name, e);
                    for reply in f.waiting.drain(..) {
                        let _ = reply.send(Err(Error::new(Kind::Ssh, why.clone())));
                    }
                    f.failed = Some(why);
                    progress = true;
                }
            }
        }
        let Some(listener) = f.listener.as_mut() else { return Ok(progress) };
        loop {
            match listener.accept() {
                Ok(mut channel) => {
                    progress = true;
                    let target = f.target_port.unwrap_or(0);
                    let addr = SocketAddr::from(([127, 0, 0, 1], target));
                    match TcpStream::connect_timeout(&addr, Duration::from_secs(2)) {
                        Ok(tcp) => {
                            let _ = tcp.set_nonblocking(true);
                            let _ = tcp.set_nodelay(true);
                            self.pumps.push(Pump {
                                channel,
                                tcp,
                                to_tcp: Buf::new(),
                                to_channel: Buf::new(),
                                write_blocked: false,
                                channel_eof: false,
                                tcp_eof: false,
                                eof_sent: false,
                                failed: false,
                            });
                        }
                        Err(_) => {
                            // Nobody listens on the master's port (setup over): refuse the worker.
                            let _ = channel.close();
                            self.closing.push(channel);
                        }
                    }
                }
                Err(e) if eagain(&e) => break,
                Err(e) => return Err(Fatal::Lost(format!("accepting a tunnelled connection failed: {}", e))),
            }
        }
        Ok(progress)
    }

    fn pump_step(&mut self) -> bool {
        let mut progress = false;
        for p in self.pumps.iter_mut() {
            // A busy tunnel moves up to a buffer each way per round; a few rounds per pass
            // spare the other steps' reads of the transport while data streams.
            for _ in 0..PUMP_ROUNDS {
                if !p.step() {
                    break;
                }
                progress = true;
            }
        }
        // Retire finished or failed tunnels; their channels are closed before being dropped.
        let mut i = 0;
        while i < self.pumps.len() {
            let p = &self.pumps[i];
            let done = p.failed || (p.channel_eof && p.tcp_eof && p.to_tcp.is_empty() && p.to_channel.is_empty());
            if done {
                let p = self.pumps.swap_remove(i);
                let _ = p.tcp.shutdown(Shutdown::Both);
                self.closing.push(p.channel);
                progress = true;
            } else {
                i += 1;
            }
        }
        progress
    }

    fn close_step(&mut self) -> bool {
        let before = self.closing.len();
        self.closing.retain_mut(|ch| matches!(ch.close().and_then(|_| ch.wait_close()), Err(e) if eagain(&e)));
        before != self.closing.len()
    }

    /// Sleep in poll(2) until the server, a tunnel, or another thread has something for us.
    fn wait(&mut self) -> std::result::Result<(), Fatal> {
        let mut fds = vec![
            libc::pollfd { fd: self.waker.as_raw_fd(), events: libc::POLLIN, revents: 0 },
            libc::pollfd { fd: self.fd, events: libc::POLLIN | libc::POLLRDHUP, revents: 0 },
        ];
        if matches!(self.session.block_directions(), BlockDirections::Outbound | BlockDirections::Both)
            || !self.control.pending_write.is_empty()
        {
            fds[1].events |= libc::POLLOUT;
        }
        for p in &self.pumps {
            let mut events = 0;
            if !p.tcp_eof && p.to_channel.len() < BUFFER_CAP {
                events |= libc::POLLIN;
            }
            if !p.to_tcp.is_empty() {
                events |= libc::POLLOUT;
            }
            fds.push(libc::pollfd { fd: p.tcp.as_raw_fd(), events, revents: 0 });
        }
        // ServerAliveInterval: libssh2 sends a keepalive only when one is due (never when off).
        let _ = self.session.keepalive_send();
        // A short cap bounds the cost of a wake-up that libssh2's buffering could hide.
        let timeout_ms = if self.closing.is_empty() { 200 } else { 10 };
        // SAFETY: fds is a valid, initialised array of pollfd for the duration of the call.
        let rc = unsafe { libc::poll(fds.as_mut_ptr(), fds.len() as libc::nfds_t, timeout_ms) };
        if rc < 0 {
            let e = std::io::Error::last_os_error();
            if e.kind() != ErrorKind::Interrupted {
                return Err(Fatal::Lost(format!("poll failed: {}", e)));
            }
        }
        if fds[0].revents & libc::POLLIN != 0 {
            let mut sink = [0u8; 64];
            while matches!((&self.waker).read(&mut sink), Ok(n) if n > 0) {}
        }
        if fds[1].revents & (libc::POLLHUP | libc::POLLERR | libc::POLLRDHUP) != 0 {
            // Let one more pass read what arrived before the hang-up, then give up.
            let _ = self.pass();
            return Err(Fatal::Lost("the server closed the connection".to_string()));
        }
        Ok(())
    }

    fn fail_all(&mut self, why: &str) {
        let err = || Error::new(Kind::Ssh, format!("the SSH connection to host '{}' is lost: {}", self.name, why));
        if let Some(job) = self.control.current.take() {
            let _ = job.reply.send(Err(err()));
        }
        for q in self.control.queue.drain(..) {
            let _ = q.reply.send(Err(err()));
        }
        self.scripts.fail_all(err);
        for reply in self.forward.waiting.drain(..) {
            let _ = reply.send(Err(err()));
        }
        for p in self.pumps.drain(..) {
            let _ = p.tcp.shutdown(Shutdown::Both);
        }
    }
}

/// Bytes written to a TCP socket that the peer has not acknowledged yet (sent or still
/// queued: a local firewall drop keeps them queued), and the time since the last
/// acknowledgement arrived; None if `fd` is no TCP socket.
fn tcp_ack_state(fd: RawFd) -> Option<(u32, Duration)> {
    // SAFETY: tcp_info is plain old data, for which all-zero bytes are a valid value.
    let mut info: libc::tcp_info = unsafe { std::mem::zeroed() };
    let mut len = std::mem::size_of::<libc::tcp_info>() as libc::socklen_t;
    // SAFETY: info and len are valid for writes and len holds info's size.
    let rc = unsafe { libc::getsockopt(fd, libc::IPPROTO_TCP, libc::TCP_INFO, (&mut info as *mut libc::tcp_info).cast(), &mut len) };
    if rc != 0 {
        return None;
    }
    let mut queued: libc::c_int = 0;
    // SAFETY: TIOCOUTQ writes one int to a valid pointer.
    if unsafe { libc::ioctl(fd, libc::TIOCOUTQ, &mut queued) } != 0 {
        return None;
    }
    Some((u32::try_from(queued).unwrap_or(0), Duration::from_millis(u64::from(info.tcpi_last_ack_recv))))
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    if needle.is_empty() || haystack.len() < needle.len() {
        return None;
    }
    haystack.windows(needle.len()).position(|w| w == needle)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn uptime() -> f64 {
        let out = std::process::Command::new("/bin/sh").arg("-c").arg(CLOCK_SCRIPT).output().expect("sh");
        parse_uptime(&String::from_utf8_lossy(&out.stdout)).expect("uptime")
    }

    fn run(script: &str) -> String {
        let out = std::process::Command::new("/bin/sh").arg("-c").arg(script).output().expect("sh");
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    #[test]
    fn the_hosts_clock_is_read_from_the_first_scripts_output_only() {
        assert_eq!(parse_uptime("motd\n__PARALLELLY_UPTIME_ 1234.56\n"), Some(1234.56));
        for bad in ["", "__PARALLELLY_UPTIME_ x", "__PARALLELLY_UPTIME_ 0.5", " __PARALLELLY_UPTIME_ 99", "__PARALLELLY_UPTIME_"] {
            assert_eq!(parse_uptime(bad), None, "{:?}", bad);
        }
        assert!(parse_uptime(&run(CLOCK_SCRIPT)).is_some());
    }

    #[test]
    fn end_markers_are_found_anywhere_in_the_output() {
        assert_eq!(find(b"abc\n__M1__\n", b"\n__M1__\n"), Some(3));
        assert_eq!(find(b"__M", b"__M1__"), None);
        assert_eq!(find(b"abc", b""), None);
        assert_eq!(find(b"xx__M1__\n__M1__\n", b"__M1__\n"), Some(2));
    }

    #[test]
    fn a_guarded_script_runs_before_its_deadline_only() {
        let clock = (Instant::now(), uptime());
        let now = Instant::now();
        let soon = guard("echo ran", now + Duration::from_secs(5), now, clock);
        assert_eq!(run(&soon).trim(), "ran");
        // The same script reaching the shell after its deadline is not run.
        let late = guard("echo ran", now + Duration::from_millis(400), now, clock);
        std::thread::sleep(Duration::from_millis(450));
        assert_eq!(run(&late).trim(), WITHDRAWN);
        // A clock measured late (the host's uptime read before we saw it) only moves the
        // host's deadline earlier.
        let skewed = (Instant::now() + Duration::from_secs(10), uptime());
        let now = Instant::now();
        assert_eq!(run(&guard("echo ran", now + Duration::from_secs(5), now, skewed)).trim(), WITHDRAWN);
    }
}
