//! Entry points for the fuzz targets in `fuzz/` (tools/fuzz.sh runs them) and for the
//! regression tests that replay their seeds and findings: each feeds arbitrary bytes to a
//! parser of what others send us -- a user's ssh config, a known_hosts file, a remote
//! host's answers to our scripts -- and checks what must hold for any input. A panic here
//! is a finding. Built for the fuzz crate with the `fuzzing` feature, else only in tests.

use std::path::Path;

use crate::handshake::{self, Step};
use crate::ssh::{config, known_hosts, remote};

/// Split `data` into a first line (a parameter such as a host name) and the rest.
fn head_and_rest(data: &[u8]) -> (String, String) {
    let text = String::from_utf8_lossy(data);
    match text.split_once('\n') {
        Some((head, rest)) => (head.to_string(), rest.to_string()),
        None => (text.to_string(), String::new()),
    }
}

/// ssh config text for a host named by the first line. `Include` lines are left out: they
/// read files of this machine, which would make the result depend on it.
pub fn ssh_config(data: &[u8]) {
    let (host, text) = head_and_rest(data);
    let text: String = text
        .lines()
        .filter(|l| !l.trim_start().get(..7).is_some_and(|k| k.eq_ignore_ascii_case("include")))
        .flat_map(|l| [l, "\n"])
        .collect();
    let home = Path::new("/nonexistent-home");
    let ctx = config::Context { host: &host, user: None, local_user: "me", home };
    let mut reader = config::Reader::new(&ctx);
    if reader.read_text(&text, "fuzz", Path::new("/nonexistent-dir"), 0).is_ok() {
        let cfg = reader.cfg;
        let _ = cfg.use_agent();
        if let Some(msg) = cfg.unsupported(&host) {
            assert!(!msg.is_empty());
        }
        for p in &cfg.identity_files {
            let _ = config::expand_path(p, home, &host, "u", "me");
        }
    }
}

/// A known_hosts file as check_host_key() reads it (libssh2's parser), checked for a host
/// named by the first line; and the line we would append for that host and a key made of
/// the rest must be found again by that parser, plain and hashed.
pub fn known_hosts_file(data: &[u8]) {
    let (host, rest) = head_and_rest(data);
    let Ok(session) = ssh2::Session::new() else { return };
    let Ok(mut known) = session.known_hosts() else { return };
    let _ = known.read_str(&rest, ssh2::KnownHostFileKind::OpenSSH);
    // The ssh2 crate panics on a host name with a NUL: resolve() refuses such names
    // before any check (session.rs, a_nul_in_a_name_is_refused_here; found here).
    if !host.contains('\0') {
        let _ = known.check_port(&host, 22, rest.as_bytes());
        let _ = known.check_port(&host, 2222, rest.as_bytes());
    }

    // The names a known_hosts line can hold for us: a host name, or [host]:port.
    let plausible = !host.is_empty() && host.len() < 200 && host.chars().all(|c| c.is_ascii_alphanumeric() || ".-_".contains(c));
    let key = rest.as_bytes();
    if plausible && !key.is_empty() && key.len() < 4096 {
        let name = format!("[{}]:2222", host);
        for salt in [None, Some([7u8; 20])] {
            let line = known_hosts::entry(&name, "ssh-ed25519", key, salt.as_ref());
            assert!(!line.contains('\n'), "{:?}", line);
            let Ok(mut again) = session.known_hosts() else { return };
            // libssh2 refuses a key blob shorter than a real one (an ed25519 key is 51
            // bytes); any longer one must be read back and found.
            match again.read_str(&line, ssh2::KnownHostFileKind::OpenSSH) {
                Err(e) if key.len() >= 64 => panic!("our line {:?}: {}", line, e),
                Err(_) => continue,
                Ok(()) => {}
            }
            assert!(matches!(again.check_port(&host, 2222, key), ssh2::CheckResult::Match), "our line {:?} is not found", line);
        }
    }
}

/// A remote host's output of our launch, probe, signal, usage and exit scripts, for PIDs
/// taken from the first line: every parser gives one answer per PID, whatever the output.
pub fn remote_answers(data: &[u8]) {
    let (head, output) = head_and_rest(data);
    let pids: Vec<i32> = head.split_whitespace().take(64).filter_map(|p| p.parse().ok()).collect();
    let starts: Vec<f64> = pids.iter().map(|&p| f64::from(p) * 3.0).collect();
    let _ = remote::parse_launch(&output);
    assert_eq!(remote::parse_usage(&output, &pids).len(), pids.len());
    assert_eq!(remote::parse_exit(&output, &pids).len(), pids.len());
    assert_eq!(remote::parse_probe(&output, &pids, &starts).len(), pids.len());
    assert_eq!(remote::parse_signal(&output, &pids).len(), pids.len());
}

/// Bytes sent to the master's port by whoever connects, read as R reads them (only what the
/// parser asks for next): each request is for at least one byte and stays within the size
/// cap, and the parse ends in a complete answer, a refusal with a reason, or a request for
/// more than the input holds.
pub fn worker_handshake(data: &[u8]) {
    let mut read = 0;
    loop {
        match handshake::step(&data[..read]) {
            Step::Need(n) => {
                assert!(n > 0 && read + n <= handshake::MAX_BYTES, "asked for {} bytes after {}", n, read);
                if read + n > data.len() {
                    return;
                }
                read += n;
            }
            Step::Done { pid, .. } => {
                assert!(pid > 0);
                return;
            }
            Step::Reject(why) => {
                assert!(!why.is_empty());
                return;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::PathBuf;

    /// Every file under fuzz/seeds/<target> and fuzz/regressions/<target>: the corpus the
    /// fuzzer starts from and each input it ever found to fail, replayed on every test run.
    fn inputs(target: &str) -> Vec<(PathBuf, Vec<u8>)> {
        let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz");
        let mut out = Vec::new();
        for kind in ["seeds", "regressions"] {
            let Ok(dir) = std::fs::read_dir(root.join(kind).join(target)) else { continue };
            for entry in dir.flatten() {
                out.push((entry.path(), std::fs::read(entry.path()).expect("readable")));
            }
        }
        out
    }

    fn replay(target: &str, f: fn(&[u8])) {
        let inputs = inputs(target);
        assert!(!inputs.is_empty(), "no seeds for {} under fuzz/seeds", target);
        for (path, data) in inputs {
            if std::panic::catch_unwind(|| f(&data)).is_err() {
                panic!("{} fails on {}", target, path.display());
            }
        }
    }

    #[test]
    fn ssh_config_seeds_and_findings() {
        replay("ssh_config", ssh_config);
    }

    #[test]
    fn known_hosts_seeds_and_findings() {
        replay("known_hosts", known_hosts_file);
    }

    #[test]
    fn worker_handshake_seeds_and_findings() {
        replay("worker_handshake", worker_handshake);
    }

    #[test]
    fn remote_answers_seeds_and_findings() {
        replay("remote_answers", remote_answers);
    }
}
