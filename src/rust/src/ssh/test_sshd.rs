//! Tests against a real sshd on 127.0.0.1, started here as tools/ssh-test-hosts.sh starts
//! the suite's hosts: fresh host and user keys, two ports (the second allows one session
//! channel only, MaxSessions 1), logging in as the user running the tests. Skipped, with a
//! note, unless that user is root and sshd and ssh-keygen are installed.

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use super::*;

const SSHD: &str = "/usr/sbin/sshd";

struct Sshd {
    child: Child,
    dir: PathBuf,
    config: PathBuf,
}

fn free_port() -> Option<u16> {
    TcpListener::bind("127.0.0.1:0").ok()?.local_addr().ok().map(|a| a.port())
}

fn keygen(path: &Path) -> Option<()> {
    let ok = Command::new("ssh-keygen").args(["-q", "-t", "ed25519", "-N", "", "-f"]).arg(path).stdin(Stdio::null()).status().ok()?.success();
    ok.then_some(())
}

impl Sshd {
    fn start() -> Option<Sshd> {
        // SAFETY: geteuid() has no preconditions and cannot fail.
        if unsafe { libc::geteuid() } != 0 || !Path::new(SSHD).exists() {
            eprintln!("skipped: a test sshd needs root and {}", SSHD);
            return None;
        }
        // A directory of each server's own: tests run on parallel threads of one process.
        static SERVERS: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
        let n = SERVERS.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let dir = std::env::temp_dir().join(format!("parallelly-test-sshd-{}-{}", std::process::id(), n));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).ok()?;
        std::fs::create_dir_all("/run/sshd").ok()?;
        for key in ["host_key", "id", "id_other"] {
            if keygen(&dir.join(key)).is_none() {
                eprintln!("skipped: ssh-keygen failed");
                let _ = std::fs::remove_dir_all(&dir);
                return None;
            }
        }
        let (p1, p2) = (free_port()?, free_port()?);
        let d = dir.display();
        std::fs::copy(dir.join("id.pub"), dir.join("authorized_keys")).ok()?;
        std::fs::write(
            dir.join("sshd_config"),
            format!(
                "ListenAddress 127.0.0.1:{p1}\nListenAddress 127.0.0.1:{p2}\nHostKey {d}/host_key\nPidFile none\nAuthorizedKeysFile {d}/authorized_keys\nPermitRootLogin prohibit-password\nPasswordAuthentication no\nKbdInteractiveAuthentication no\nUsePAM no\nStrictModes no\nAllowTcpForwarding yes\nMaxSessions 10\nMatch LocalPort {p2}\n  MaxSessions 1\n"
            ),
        )
        .ok()?;
        let host_key = std::fs::read_to_string(dir.join("host_key.pub")).ok()?;
        let host_key: Vec<&str> = host_key.split_whitespace().take(2).collect();
        let host_key = host_key.join(" ");
        std::fs::write(dir.join("known_hosts"), format!("[127.0.0.1]:{p1} {host_key}\n[127.0.0.1]:{p2} {host_key}\n")).ok()?;
        let host = |name: &str, port: u16, id: &str, known: &str| {
            format!("Host {name}\n  HostName 127.0.0.1\n  Port {port}\n  User root\n  IdentityFile {d}/{id}\n  IdentitiesOnly yes\n  UserKnownHostsFile {d}/{known}\n  StrictHostKeyChecking yes\n")
        };
        let config = dir.join("ssh_config");
        std::fs::write(
            &config,
            [host("plain", p1, "id", "known_hosts"), host("single", p2, "id", "known_hosts"), host("wrongkey", p1, "id_other", "known_hosts"), host("stranger", p1, "id", "none")].concat(),
        )
        .ok()?;
        let log = std::fs::File::create(dir.join("sshd.log")).ok()?;
        let child = Command::new(SSHD).arg("-D").arg("-e").arg("-f").arg(dir.join("sshd_config")).stdin(Stdio::null()).stdout(Stdio::null()).stderr(log).spawn().ok()?;
        let server = Sshd { child, dir, config };
        let up = (0..100).any(|_| {
            std::thread::sleep(Duration::from_millis(50));
            [p1, p2].iter().all(|p| std::net::TcpStream::connect(("127.0.0.1", *p)).is_ok())
        });
        if !up {
            eprintln!("skipped: sshd did not start: {}", std::fs::read_to_string(server.dir.join("sshd.log")).unwrap_or_default());
            return None;
        }
        Some(server)
    }

    fn target(&self, host: &str) -> Result<session::Target> {
        let opts = session::Options { user: None, port: None, config_file: Some(&self.config), known_hosts_file: None, accept_new: false, timeout: Duration::from_secs(10), command_line: &[] };
        session::resolve(host, &opts)
    }

    fn connect(&self, host: &str) -> Result<String> {
        connect(&self.target(host)?)
    }
}

impl Drop for Sshd {
    fn drop(&mut self) {
        // Only the sshd we started, by its handle.
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// The answer to `ticket`, waiting at most `secs`.
fn wait(ticket: u64, secs: u64) -> Result<Answer> {
    let deadline = Instant::now() + Duration::from_secs(secs);
    loop {
        if let Some(a) = poll(ticket, Duration::from_millis(20))? {
            return Ok(a);
        }
        if Instant::now() > deadline {
            cancel(ticket);
            return Err(Error::new(Kind::Timeout, format!("no answer to request {} in {} s", ticket, secs)));
        }
    }
}

fn text(a: Result<Answer>) -> String {
    match a {
        Ok(Answer::Text(t)) => t,
        Ok(_) => panic!("not a text answer"),
        Err(e) => panic!("{:?}: {}", e.kind, e.message),
    }
}

fn probe(key: &str, pid: i32, start: f64) -> remote::Probe {
    match wait(submit_probe(key, vec![pid], vec![start], 5.0).expect("probe"), 10) {
        Ok(Answer::Probe(v)) => v[0],
        Ok(_) => panic!("not a probe answer"),
        Err(e) => panic!("probe: {:?}: {}", e.kind, e.message),
    }
}

/// Local PIDs of running processes whose command line holds `token` (the sshd runs here).
fn running(token: &str) -> usize {
    std::fs::read_dir("/proc")
        .into_iter()
        .flatten()
        .flatten()
        .filter(|e| {
            let cmd = std::fs::read(e.path().join("cmdline")).unwrap_or_default();
            let stat = std::fs::read_to_string(e.path().join("stat")).unwrap_or_default();
            !stat.rsplit_once(") ").is_some_and(|(_, r)| r.starts_with('Z')) && String::from_utf8_lossy(&cmd).contains(token)
        })
        .count()
}

fn eventually(cond: impl Fn() -> bool) -> bool {
    (0..200).any(|_| {
        if cond() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(50));
        false
    })
}

#[test]
fn a_held_connection_runs_probes_kills_launches_and_scripts() {
    let Some(server) = Sshd::start() else { return };
    let key = server.connect("plain").expect("connect");
    assert_eq!(server.connect("plain").expect("reuse"), key, "a live connection is reused");
    assert_eq!(list().iter().filter(|c| c.0 == key && c.1).count(), 1);
    // Asking again while connected (as every probe does) is answered at once.
    let again = submit_connect(server.target("plain").expect("target")).expect("submit");
    assert!(matches!(poll(again, Duration::ZERO), Ok(Some(Answer::Text(k))) if k == key));

    // A script on its own channel: its output only, stderr merged.
    assert_eq!(text(wait(submit_script(&key, "echo hi; echo err >&2; exit 3".to_string(), 10.0).expect("script"), 15)), "hi\nerr\n");

    // Launch a worker, probe it, read its usage, kill it, read how it ended.
    let log = server.dir.join("w.log").display().to_string();
    let launched = match wait(submit_launch(&key, "sleep", &["exec sleep 301".to_string()], std::slice::from_ref(&log), 10.0).expect("launch"), 15) {
        Ok(Answer::Launch(v)) => v,
        _ => panic!("no launch answer"),
    };
    let (pid, start) = match launched.as_slice() {
        [remote::Launched::Worker { pid, start, .. }] => (*pid, *start),
        other => panic!("launched {:?}", other),
    };
    assert_eq!(probe(&key, pid, start), remote::Probe::Alive);
    assert_eq!(probe(&key, pid, start + 100.0), remote::Probe::Dead, "another start time is another process");
    assert!(matches!(wait(submit_usage(&key, vec![pid], 5.0).expect("usage"), 10), Ok(Answer::Usage(u)) if u[0].is_some()));
    assert!(matches!(wait(submit_signal(&key, vec![pid], vec![start], 9, 5.0).expect("kill"), 10), Ok(Answer::Signal(v)) if v == [Some(true)]));
    assert!(eventually(|| probe(&key, pid, start) == remote::Probe::Dead));
    assert!(matches!(wait(submit_exit(&key, vec![pid], 5.0).expect("exit"), 10), Ok(Answer::Exit(v)) if v == [Some(137)]));

    // A script that hangs holds up no probe, and withdrawing it ends it on the host.
    let token = format!("parallelly-test-hang-{}", std::process::id());
    let hang = submit_script(&key, format!("sleep 303; : {}", token), 120.0).expect("hang");
    assert!(eventually(|| running(&token) > 0), "the hanging script did not start");
    let me = std::process::id() as i32;
    for _ in 0..5 {
        assert_eq!(probe(&key, me, 0.0), remote::Probe::Alive);
    }
    assert!(matches!(poll(hang, Duration::ZERO), Ok(None)), "the hanging script answered");
    cancel(hang);
    assert!(eventually(|| running(&token) == 0), "the withdrawn script still runs on the host");
    // One past its deadline ends there too, and its requester hears why.
    let late = submit_script(&key, format!("sleep 304; : {}", token), 1.0).expect("late");
    assert_eq!(wait(late, 10).err().map(|e| e.kind), Some(Kind::Timeout));
    assert!(eventually(|| running(&token) == 0), "the late script still runs on the host");

    // A server allowing no channel beside the control shell runs scripts there.
    let single = server.connect("single").expect("connect single");
    assert_ne!(single, key);
    assert_eq!(text(wait(submit_script(&single, "echo one".to_string(), 10.0).expect("script"), 15)), "one\n");
    assert_eq!(probe(&single, me, 0.0), remote::Probe::Alive);
    assert_eq!(text(wait(submit_script(&single, "echo two".to_string(), 10.0).expect("script"), 15)), "two\n");

    // Closing the connection ends a script still running on it.
    let hang = submit_script(&key, format!("sleep 305; : {}", token), 120.0).expect("hang");
    assert!(eventually(|| running(&token) > 0), "the hanging script did not start");
    assert!(close(&key, Duration::from_secs(2)) && close(&single, Duration::from_secs(2)));
    assert_eq!(poll(hang, Duration::from_secs(1)).err().map(|e| e.kind), Some(Kind::Ssh));
    assert!(eventually(|| running(&token) == 0), "a script outlived its connection");
    assert!(!list().iter().any(|c| c.0 == key || c.0 == single));
    assert_eq!(submit_script(&key, "true".to_string(), 1.0).err().map(|e| e.kind), Some(Kind::Ssh));

    // Failures keep their kinds (once closed: a live connection to the same user, host and
    // port would be reused whatever the key).
    assert_eq!(server.connect("wrongkey").err().map(|e| e.kind), Some(Kind::Auth));
    assert_eq!(server.connect("stranger").err().map(|e| e.kind), Some(Kind::HostKey));
}

#[test]
fn the_algorithm_policy_decides_what_is_negotiated() {
    let Some(server) = Sshd::start() else { return };
    use super::algorithms::Policy;
    let negotiated = |t: &session::Target| {
        let (s, _fd) = session::open(t).unwrap_or_else(|e| panic!("{:?}: {}", e.kind, e.message));
        let got = s.methods(ssh2::MethodType::CryptCs).map(str::to_string);
        let _ = s.disconnect(None, "done", None);
        got
    };
    // No policy: OpenSSH's first choice that libssh2 has (never libssh2's CBC ones).
    let t = server.target("plain").expect("target");
    let ours = &t.method_prefs.iter().find(|(p, _)| *p == Policy::Ciphers).expect("ciphers").1;
    assert_eq!(negotiated(&t).as_deref(), ours.split(',').next());
    // A policy: what it allows, in its order.
    for cipher in ["aes256-ctr", "aes128-gcm@openssh.com"] {
        let mut t = server.target("plain").expect("target");
        t.method_prefs.retain(|(p, _)| *p != Policy::Ciphers);
        t.method_prefs.push((Policy::Ciphers, cipher.to_string()));
        assert_eq!(negotiated(&t).as_deref(), Some(cipher));
    }
}

#[test]
fn sessions_run_our_chacha20_poly1305_and_a_policy_can_withhold_it() {
    use ssh2::MethodType;
    use std::io::Read;
    let Some(server) = Sshd::start() else { return };
    let target = server.target("plain").expect("target");
    let before = crypto::calls();
    let (session, _fd) = session::open(&target).expect("open");
    // libssh2 prefers the cipher (and sshd offers it): the session runs it, and every
    // packet goes through our symbols, not libssh2's chacha.c and poly1305.c.
    assert_eq!(session.methods(MethodType::CryptCs), Some(crypto::CIPHER_NAME));
    assert_eq!(session.methods(MethodType::CryptSc), Some(crypto::CIPHER_NAME));
    let mut channel = session.channel_session().expect("channel");
    channel.exec("head -c 1000000 /dev/zero").expect("exec");
    let mut out = Vec::new();
    channel.read_to_end(&mut out).expect("read");
    assert_eq!(out.len(), 1_000_000);
    // At least a length, a payload and a tag per packet of at most 32 KB.
    assert!(crypto::calls() >= before + 3 * (1_000_000 / 32_768), "{} calls", crypto::calls() - before);
    drop(channel);
    drop(session);

    // Where the policy withholds it, another cipher is negotiated with the same server.
    let stream = std::net::TcpStream::connect((target.hostname.as_str(), target.port)).expect("connect");
    let mut session = ssh2::Session::new().expect("session");
    crypto::withhold(&session, None).expect("withhold");
    session.set_tcp_stream(stream);
    session.handshake().expect("handshake");
    let cipher = session.methods(MethodType::CryptCs).expect("a cipher").to_string();
    assert_ne!(cipher, crypto::CIPHER_NAME);
    assert!(!cipher.is_empty());
}
