//! Scripts that may hang (reading a worker's log, removing logs or temporary directories:
//! whatever R sends with `backend_ssh_submit_script`) run on exec channels of their own, so
//! that a `tail` or `rm -rf` stuck on a dead file system never holds up the probes, kills
//! and launches of the control shell.
//!
//! Each script is bounded, on the host as well as here:
//! - its channel runs `/bin/sh` (as the control shell does, whatever the login shell is),
//!   which reads the wrapped script (`wrap`) from stdin and keeps stdin open: the script runs
//!   in a process group of its own (`setsid`), and a watcher reading stdin kills that group
//!   when stdin ends, that is when we close the channel (withdrawn, past its deadline) or
//!   the connection goes;
//! - past its deadline a timer on the host kills the group too (a partition may keep our
//!   close from arriving); a script that reaches the host too late does not run (`guard`);
//! - whatever the script left behind in its group is killed once it ends.
//!
//! Where `setsid` is missing, the watcher and the timer kill the channel's whole process
//! group instead (sshd made the channel's shell a group leader): the script, its children
//! and the channel's shell; what a script that ended by itself left behind stays (the
//! timer's `sleep` ends 2 s past the deadline).
//!
//! At most `MAX_OPEN` script channels are open per connection (OpenSSH's MaxSessions 10
//! counts them with the control shell); more wait their turn, bounded by their deadlines.
//! A server that refuses a second session channel (MaxSessions 1) gets the scripts on its
//! control shell, as before.

use std::collections::VecDeque;
use std::io::{ErrorKind, Read, Write};
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use ssh2::{Channel, ExtendedData, Session};

use super::host::{guard, Queued, CONTROL_SHELL, WITHDRAWN};
use crate::error::{Error, Kind};

/// Script channels open at once per connection.
pub const MAX_OPEN: usize = 4;
/// How long to wait before trying again when the server refuses a channel while others of
/// ours are open (it frees slots lazily).
const RETRY: Duration = Duration::from_millis(50);
/// Output kept per script; more is dropped (our scripts print a few lines).
const OUTPUT_CAP: usize = 4 * 1024 * 1024;

const BEGIN: &str = "__PARALLELLY_BEGIN_";

/// libssh2's LIBSSH2_ERROR_CHANNEL_FAILURE: the server refused to open the channel.
fn refused(e: &ssh2::Error) -> bool {
    matches!(e.code(), ssh2::ErrorCode::Session(-21))
}

fn eagain(e: &ssh2::Error) -> bool {
    matches!(e.code(), ssh2::ErrorCode::Session(-37))
}

/// The stdin of a script channel's `/bin/sh`: one `{ ... }` group (parsed whole before it
/// runs, so that nothing is read from stdin after it), which prints `BEGIN` (what the login
/// shell's start-up files print comes before it), then runs `script` as described above.
/// `deadline`/`clock` as for `guard`; without a deadline there is no timer.
pub fn wrap(script: &str, deadline: Option<Instant>, now: Instant, clock: Option<(Instant, f64)>) -> String {
    let job = super::remote::sh_quote(script);
    let timer = match deadline {
        // A second beyond ours: normally our close arrives first.
        Some(d) => format!(
            "$_s /bin/sh -c \"sleep {}; kill -KILL $_k 2>/dev/null\" </dev/null >/dev/null 2>&1 3<&- & _t=$!\n",
            d.saturating_duration_since(now).as_secs() + 2
        ),
        None => "_t=\n".to_string(),
    };
    let body = format!(
        "if command -v setsid >/dev/null 2>&1; then _s=setsid; else _s=; fi\n\
         $_s /bin/sh -c {job} 3<&- 2>&1 & _p=$!\n\
         if [ -n \"$_s\" ]; then _k=\"-$_p $_p\"; else _k=0; fi\n\
         ( while read -r _x; do :; done; kill -KILL $_k 2>/dev/null ) <&3 >/dev/null 2>&1 & _e=$!\n\
         exec 3<&-\n\
         {timer}\
         wait $_p; _rc=$?\n\
         [ -n \"$_s\" ] && kill -KILL -$_p 2>/dev/null; [ -n \"$_t\" ] && kill -KILL -$_t $_t 2>/dev/null; kill $_e 2>/dev/null\n\
         exit $_rc"
    );
    let body = match (deadline, clock) {
        (Some(d), Some(clock)) => guard(&body, d, now, clock),
        _ => body,
    };
    format!("{{\nexec 3<&0 </dev/null\necho {BEGIN}\n{body}\n}}\n")
}

/// The script's output from what its channel printed, or why there is none.
pub fn unwrap(host: &str, out: &[u8]) -> crate::error::Result<String> {
    let text = String::from_utf8_lossy(out);
    let marker = format!("{BEGIN}\n");
    let Some(pos) = text.find(&marker) else {
        let said = text.trim();
        return Err(Error::new(
            Kind::Ssh,
            format!("the shell for a script on host '{}' did not start{}", host, if said.is_empty() { String::new() } else { format!(": {}", said) }),
        ));
    };
    let rest = &text[pos + marker.len()..];
    if rest.lines().any(|l| l == WITHDRAWN) {
        return Err(super::host::withdrawn(host));
    }
    Ok(rest.to_string())
}

enum Stage {
    Exec,
    Write,
    Read,
}

struct Running {
    job: Queued,
    channel: Channel,
    stage: Stage,
    input: Vec<u8>,
    out: Vec<u8>,
    /// The last libssh2 call on this channel returned EAGAIN: it must be called again
    /// before the channel may be closed.
    busy: bool,
}

#[derive(Default)]
pub struct Scripts {
    queue: VecDeque<Queued>,
    /// The job whose channel is being opened (libssh2 opens one channel at a time, and an
    /// open that returned EAGAIN must be completed).
    opening: Option<Queued>,
    running: Vec<Running>,
    retry_at: Option<Instant>,
    /// The server allows no session channel beside the control shell.
    refused: bool,
}

fn abandoned(q: &Queued, now: Instant) -> bool {
    q.cancelled.load(Ordering::SeqCst) || q.deadline.is_some_and(|d| d <= now)
}

/// Answer a job that will not run (a cancelled one's requester is gone: no answer).
fn withdraw(host: &str, q: &Queued) {
    if !q.cancelled.load(Ordering::SeqCst) {
        let _ = q.reply.send(Err(super::host::withdrawn(host)));
    }
}

impl Scripts {
    pub(super) fn push(&mut self, q: Queued) {
        self.queue.push_back(q);
    }

    /// Advance every script; `clock` is the control shell's (None until measured, Some(None)
    /// if it could not be). Channels to close go to `closing`; scripts the server will not
    /// give a channel to go to `control`. Ok(true) when anything moved.
    pub(super) fn step(
        &mut self,
        host: &str,
        session: &Session,
        clock: Option<Option<(Instant, f64)>>,
        closing: &mut Vec<Channel>,
        control: &mut VecDeque<Queued>,
    ) -> bool {
        let now = Instant::now();
        let mut progress = false;
        let before = self.queue.len();
        self.queue.retain(|q| {
            let gone = abandoned(q, now);
            if gone {
                withdraw(host, q);
            }
            !gone
        });
        progress |= before != self.queue.len();
        if self.refused {
            progress |= !self.queue.is_empty();
            control.extend(self.queue.drain(..));
        }
        // Scripts wait for the host's clock, which their deadlines are set against.
        let clock = match clock {
            Some(c) => c,
            None => return progress | self.advance(host, now, None, closing),
        };
        let may_open = self.opening.is_some()
            || (!self.queue.is_empty() && self.running.len() < MAX_OPEN && self.retry_at.is_none_or(|t| t <= now));
        if may_open {
            progress |= self.open(host, session, now, closing, control);
        }
        progress | self.advance(host, now, clock, closing)
    }

    fn open(&mut self, host: &str, session: &Session, now: Instant, closing: &mut Vec<Channel>, control: &mut VecDeque<Queued>) -> bool {
        let Some(job) = self.opening.take().or_else(|| self.queue.pop_front()) else { return false };
        match session.channel_session() {
            Ok(mut channel) => {
                self.retry_at = None;
                if abandoned(&job, now) {
                    withdraw(host, &job);
                    closing.push(channel);
                } else {
                    channel.handle_extended_data(ExtendedData::Merge).ok();
                    self.running.push(Running { job, channel, stage: Stage::Exec, input: Vec::new(), out: Vec::new(), busy: false });
                }
                true
            }
            Err(e) if eagain(&e) => {
                self.opening = Some(job);
                false
            }
            Err(e) if refused(&e) && self.running.is_empty() => {
                // Not even one channel beside the control shell: that shell runs them.
                self.refused = true;
                control.push_back(job);
                control.extend(self.queue.drain(..));
                true
            }
            Err(e) if refused(&e) => {
                self.queue.push_front(job);
                self.retry_at = Some(now + RETRY);
                false
            }
            Err(e) => {
                let _ = job.reply.send(Err(Error::new(Kind::Ssh, format!("cannot open a channel for a script on host '{}': {}", host, e))));
                true
            }
        }
    }

    fn advance(&mut self, host: &str, now: Instant, clock: Option<(Instant, f64)>, closing: &mut Vec<Channel>) -> bool {
        let mut progress = false;
        let mut i = 0;
        while i < self.running.len() {
            let r = &mut self.running[i];
            let mut done: Option<crate::error::Result<String>> = None;
            let mut close = false;
            if !r.busy && abandoned(&r.job, now) {
                // Closing ends the script on the host (its watcher sees stdin end).
                withdraw(host, &r.job);
                close = true;
            } else {
                match r.stage {
                    Stage::Exec => match r.channel.exec(CONTROL_SHELL) {
                        Ok(()) => {
                            r.busy = false;
                            r.input = wrap(&r.job.script, r.job.deadline, now, clock).into_bytes();
                            r.stage = Stage::Write;
                            progress = true;
                        }
                        Err(e) if eagain(&e) => r.busy = true,
                        Err(e) => {
                            done = Some(Err(Error::new(Kind::Ssh, format!("cannot start a shell for a script on host '{}': {}", host, e))));
                        }
                    },
                    Stage::Write => loop {
                        if r.input.is_empty() {
                            r.stage = Stage::Read;
                            break;
                        }
                        // After EAGAIN the same bytes are offered again: they stay at the head.
                        match r.channel.write(&r.input) {
                            Ok(0) => break,
                            Ok(n) => {
                                r.input.drain(..n);
                                r.busy = false;
                                progress = true;
                            }
                            Err(e) if e.kind() == ErrorKind::WouldBlock => {
                                r.busy = true;
                                break;
                            }
                            Err(e) => {
                                done = Some(Err(Error::new(Kind::Ssh, format!("sending a script to host '{}' failed: {}", host, e))));
                                break;
                            }
                        }
                    },
                    Stage::Read => {}
                }
                if matches!(r.stage, Stage::Read) && done.is_none() {
                    let mut buf = [0u8; 16384];
                    loop {
                        match r.channel.read(&mut buf) {
                            Ok(0) => {
                                if r.channel.eof() {
                                    done = Some(unwrap(host, &r.out));
                                }
                                break;
                            }
                            Ok(n) => {
                                let room = OUTPUT_CAP.saturating_sub(r.out.len());
                                r.out.extend_from_slice(&buf[..n.min(room)]);
                                progress = true;
                            }
                            Err(e) if e.kind() == ErrorKind::WouldBlock => break,
                            Err(e) => {
                                done = Some(Err(Error::new(Kind::Ssh, format!("reading a script's output from host '{}' failed: {}", host, e))));
                                break;
                            }
                        }
                    }
                }
            }
            if let Some(answer) = done {
                let _ = r.job.reply.send(answer);
                close = true;
            }
            if close {
                let r = self.running.swap_remove(i);
                closing.push(r.channel);
                progress = true;
            } else {
                i += 1;
            }
        }
        progress
    }

    /// The connection is gone: answer every script with `err`.
    pub(super) fn fail_all(&mut self, err: impl Fn() -> Error) {
        for q in self.queue.drain(..).chain(self.opening.take()) {
            let _ = q.reply.send(Err(err()));
        }
        for r in self.running.drain(..) {
            let _ = r.job.reply.send(Err(err()));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;
    use std::process::{Command, Stdio};

    /// Start the wrapped `script` as a script channel's shell would: /bin/sh reading it from
    /// a stdin that stays open until the returned child's stdin is dropped.
    fn start(script: &str, deadline: Option<Instant>) -> std::process::Child {
        shell(&wrap(script, deadline, Instant::now(), None))
    }

    fn shell(text: &str) -> std::process::Child {
        let mut sh = Command::new("/bin/sh").stdin(Stdio::piped()).stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().expect("sh");
        sh.stdin.as_mut().expect("stdin").write_all(text.as_bytes()).expect("write");
        sh
    }

    /// What the shell printed until it ended; its stdin stays open meanwhile.
    fn output_of(mut sh: std::process::Child) -> Vec<u8> {
        let mut out = Vec::new();
        sh.stdout.take().expect("stdout").read_to_end(&mut out).expect("read");
        let _ = sh.wait();
        out
    }

    /// PIDs of running processes whose command line holds `token`.
    fn running(token: &str) -> Vec<u32> {
        let mut pids = Vec::new();
        for entry in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
            let Ok(pid) = entry.file_name().to_string_lossy().parse::<u32>() else { continue };
            let cmd = std::fs::read(entry.path().join("cmdline")).unwrap_or_default();
            let stat = std::fs::read_to_string(entry.path().join("stat")).unwrap_or_default();
            let zombie = stat.rsplit_once(") ").is_some_and(|(_, r)| r.starts_with('Z'));
            if !zombie && String::from_utf8_lossy(&cmd).contains(token) {
                pids.push(pid);
            }
        }
        pids
    }

    fn eventually(cond: impl Fn() -> bool) -> bool {
        (0..100).any(|_| {
            if cond() {
                return true;
            }
            std::thread::sleep(Duration::from_millis(50));
            false
        })
    }

    fn token(name: &str) -> String {
        format!("parallelly-exec-test-{}-{}", std::process::id(), name)
    }

    #[test]
    fn output_comes_after_the_start_up_noise_with_stderr_merged() {
        let mut sh = start("echo out; echo err >&2; exit 3", None);
        let mut out = String::new();
        sh.stdout.take().expect("stdout").read_to_string(&mut out).expect("read");
        // The script ended by itself although stdin is still open.
        assert_eq!(sh.wait().expect("wait").code(), Some(3));
        assert_eq!(unwrap("h", format!("motd from .bashrc\n{}", out).as_bytes()).expect("output"), "out\nerr\n");
        drop(sh.stdin.take());
    }

    #[test]
    fn closing_stdin_ends_the_script_and_its_children() {
        let t = token("close");
        let mut sh = start(&format!("sleep 300; echo {}", t), None);
        assert!(eventually(|| !running(&t).is_empty()), "the script did not start");
        drop(sh.stdin.take());
        assert!(eventually(|| running(&t).is_empty()), "the script outlived its channel");
        assert!(sh.wait().is_ok());
    }

    #[test]
    fn without_setsid_closing_stdin_ends_the_channels_group() {
        use std::os::unix::process::CommandExt;
        // A PATH with `sleep` but no `setsid`; a group of its own, as sshd gives a channel.
        let t = token("nosetsid");
        let dir = std::env::temp_dir().join(&t);
        std::fs::create_dir_all(&dir).expect("dir");
        let sleep = ["/usr/bin/sleep", "/bin/sleep"].into_iter().find(|p| Path::new(p).exists()).expect("sleep");
        std::os::unix::fs::symlink(sleep, dir.join("sleep")).expect("symlink");
        let mut sh = Command::new("/bin/sh")
            .env("PATH", &dir)
            .process_group(0)
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .spawn()
            .expect("sh");
        // The script's child holds the token too, and must end with it.
        let text = wrap(&format!("/bin/sh -c 'sleep 300; : {}'; :", t), None, Instant::now(), None);
        sh.stdin.as_mut().expect("stdin").write_all(text.as_bytes()).expect("write");
        assert!(eventually(|| running(&t).len() == 2), "the script did not start");
        drop(sh.stdin.take());
        assert!(eventually(|| running(&t).is_empty()), "the script outlived its channel");
        assert!(sh.wait().is_ok());
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn what_a_script_leaves_behind_in_its_group_is_killed_when_it_ends() {
        let t = token("left");
        let mut sh = start(&format!("sh -c 'sleep 300; : {}' & echo started", t), None);
        let mut out = String::new();
        sh.stdout.take().expect("stdout").read_to_string(&mut out).expect("read");
        assert!(out.ends_with("started\n"), "{}", out);
        assert!(eventually(|| running(&t).is_empty()), "a background process of the script was left running");
        drop(sh.stdin.take());
        let _ = sh.wait();
    }

    #[test]
    fn the_host_ends_a_script_past_its_deadline_by_itself() {
        // Stdin stays open (our close never arrived): the timer ends it (deadline + 2 s).
        let t = token("timer");
        let mut sh = start(&format!("sleep 300; echo {}", t), Some(Instant::now() + Duration::from_millis(200)));
        assert!(eventually(|| !running(&t).is_empty()), "the script did not start");
        assert!((0..120).any(|_| {
            std::thread::sleep(Duration::from_millis(50));
            running(&t).is_empty()
        }), "the script outlived its deadline");
        let mut out = String::new();
        sh.stdout.take().expect("stdout").read_to_string(&mut out).expect("read");
        assert!(sh.wait().is_ok());
        drop(sh.stdin.take());
    }

    #[test]
    fn a_script_reaching_the_host_late_is_not_run() {
        let clock = {
            let up = std::fs::read_to_string("/proc/uptime").expect("uptime");
            (Instant::now(), up.split_whitespace().next().and_then(|v| v.parse::<f64>().ok()).expect("uptime"))
        };
        let now = Instant::now();
        let late = wrap("echo ran", Some(now + Duration::from_millis(100)), now, Some(clock));
        std::thread::sleep(Duration::from_millis(150));
        assert_eq!(unwrap("h", &output_of(shell(&late))).err().map(|e| e.kind), Some(Kind::Timeout));
        let soon = wrap("echo ran", Some(Instant::now() + Duration::from_secs(10)), Instant::now(), Some(clock));
        assert_eq!(unwrap("h", &output_of(shell(&soon))).expect("ran"), "ran\n");
    }

    #[test]
    fn a_shell_that_never_started_is_an_error() {
        let e = unwrap("h", b"/bin/sh: not found\n").expect_err("no marker");
        assert_eq!(e.kind, Kind::Ssh);
        assert!(e.message.contains("host 'h'") && e.message.contains("not found"), "{}", e.message);
    }
}
