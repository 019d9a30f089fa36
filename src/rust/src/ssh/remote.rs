//! The shell scripts our control shell runs on a remote host, and the parsers of their
//! output. They use POSIX sh builtins and /proc only, so the host needs no R package of ours
//! (and R only to run the workers). A worker is identified by (PID, start time), the start
//! time being field 22 of /proc/PID/stat (clock ticks since the host booted).

/// Quote a string for POSIX sh.
pub fn sh_quote(s: &str) -> String {
    if !s.is_empty() && s.bytes().all(|b| b.is_ascii_alphanumeric() || b"_-./=:,+@%".contains(&b)) {
        return s.to_string();
    }
    format!("'{}'", s.replace('\'', "'\\''"))
}

/// A shell function that prints "PID STATE STARTTIME" for a PID, or "PID - -" if there is
/// no such process. The comm field may hold spaces and parentheses: cut at the last ") ".
const STAT_FN: &str = r#"pstat() { if [ -r /proc/$1/stat ] && read -r l < /proc/$1/stat 2>/dev/null; then l=${l##*) }; set -- $1 $l; echo "$1 $2 ${21}"; else echo "$1 - -"; fi; }"#;

/// Collect the watchdogs (see `launch_script`) that have ended, so that none stays behind
/// as a zombie of the control shell; their PIDs are kept in `$_PW` between scripts.
/// Builtins only (no command substitution): it forks nothing.
const REAP_WATCHDOGS: &str = r#"_pk=; for _w in $_PW; do if read -r _l </proc/$_w/stat 2>/dev/null && _l=${_l##*) } && [ "${_l%% *}" != Z ]; then _pk="$_pk $_w"; else wait $_w 2>/dev/null; fi; done; _PW=$_pk"#;

/// Start workers in the background, each in a subshell with stdin from /dev/null and its
/// output appended to its log file. Each command must end by `exec`ing the worker, so that
/// `$!` is the worker's own PID and the control shell its parent (see `exit_script`);
/// settings go in with `export`, a builtin, so that secrets never appear in any process's
/// arguments. `program` is checked first so that a missing Rscript is reported at once,
/// then the directories of the logs and the temporary directory (`$TMPDIR`, else /tmp)
/// with a one-byte test write (shell builtins only): a full or read-only /tmp is reported
/// as such, rather than as workers that die without a word (R cannot start without its
/// temporary directory).
/// Prints "pid PID START LOG" per worker, "missing PROGRAM" or "unwritable DIR".
pub fn launch_script(program: &str, commands: &[String], logs: &[String]) -> String {
    let mut s = String::new();
    s.push_str(STAT_FN);
    s.push('\n');
    s.push_str(REAP_WATCHDOGS);
    s.push('\n');
    s.push_str(&format!(
        "if ! command -v {p} >/dev/null 2>&1; then echo \"missing {p}\"; else\n",
        p = sh_quote(program)
    ));
    let mut dirs: Vec<String> = Vec::new();
    for log in logs {
        let dir = std::path::Path::new(log).parent().map(|d| d.display().to_string()).unwrap_or_default();
        let dir = if dir.is_empty() { ".".to_string() } else { dir };
        if !dirs.contains(&dir) {
            dirs.push(dir);
        }
    }
    let quoted: Vec<String> = dirs.iter().map(|d| sh_quote(d)).collect();
    s.push_str(&format!(
        "U=; C=; for d in {} \"${{TMPDIR:-/tmp}}\"; do f=\"$d/.parallelly-check-$$\"; C=\"$C $f\"; if {{ printf x >\"$f\"; }} 2>/dev/null && [ -s \"$f\" ]; then :; else U=\"$d\"; fi; done\n",
        quoted.join(" ")
    ));
    s.push_str("if [ -n \"$U\" ]; then echo \"unwritable $U\"; else\n");
    s.push_str("W=\n");
    for (cmd, log) in commands.iter().zip(logs) {
        s.push_str(&format!(
            "( {cmd} ) </dev/null >>{log} 2>&1 &\np=$!; set -- $(pstat $p); W=\"$W $p:$3\"; echo \"pid $p $3 {log}\"\n",
            cmd = cmd,
            log = sh_quote(log)
        ));
    }
    // A watchdog: when this control shell ends (the SSH connection is gone: the master
    // died or lost the host), the workers it started get SIGTERM, even busy ones, but only
    // while they are still those processes (PID and start time), and their logs are
    // removed. It ends by itself once none of its workers runs any more.
    let quoted_logs: Vec<String> = logs.iter().map(|l| sh_quote(l)).collect();
    s.push_str(&format!(
        "( trap '' HUP INT; up() {{ for w in $W; do p=${{w%%:*}}; t=${{w#*:}}; if read -r l </proc/$p/stat 2>/dev/null; then l=${{l##*) }}; set -- $l; [ \"${{20}}\" = \"$t\" ] && [ \"$1\" != Z ] && return 0; fi; done; return 1; }}; while kill -0 $$ 2>/dev/null; do up || exit 0; sleep 2; done; for w in $W; do p=${{w%%:*}}; t=${{w#*:}}; set -- $(pstat $p); [ \"$3\" = \"$t\" ] && [ \"$2\" != Z ] && kill -TERM $p 2>/dev/null; done; rm -f {} ) </dev/null >/dev/null 2>&1 &\n_PW=\"$_PW $!\"\n",
        quoted_logs.join(" ")
    ));
    // The test files go last: `rm` is the script's first process after the workers, so
    // the first worker gets the PID that follows the shell's last one.
    s.push_str("fi; rm -f $C 2>/dev/null; fi");
    s
}

#[derive(Debug, PartialEq)]
pub enum Launched {
    Worker { pid: i32, start: f64, log: String },
    Missing(String),
    /// A directory the workers need (for logs or as R's temporary directory) is full or
    /// not writable.
    Unwritable(String),
}

pub fn parse_launch(output: &str) -> Vec<Launched> {
    output
        .lines()
        .filter_map(|line| match fields(line).as_slice() {
            ["pid", pid, rest @ ..] => Some(Launched::Worker {
                pid: pid.parse().ok()?,
                start: rest.first().and_then(|t| t.parse().ok()).unwrap_or(0.0),
                log: rest.get(1).unwrap_or(&"").to_string(),
            }),
            // The rest of the line: a path may hold spaces.
            ["missing", ..] => Some(Launched::Missing(tail_after(line, "missing"))),
            ["unwritable", ..] => Some(Launched::Unwritable(tail_after(line, "unwritable"))),
            _ => None,
        })
        .collect()
}

/// The fields of one line of a script's output.
fn fields(line: &str) -> Vec<&str> {
    line.split_whitespace().collect()
}

/// What follows the first word `tag` of `line`, trimmed.
fn tail_after(line: &str, tag: &str) -> String {
    line.trim_start().strip_prefix(tag).unwrap_or("").trim().to_string()
}

/// The one parser of per-PID output: every line of exactly `width` fields whose first is a
/// PID becomes a typed record through `record` (None: a malformed line, skipped). Returns,
/// for each of `pids` in order, the record of its last well-formed line, if any.
fn per_pid<T: Clone>(output: &str, pids: &[i32], width: usize, record: impl Fn(&[&str]) -> Option<T>) -> Vec<Option<T>> {
    let mut seen = std::collections::HashMap::new();
    for line in output.lines() {
        let f = fields(line);
        if f.len() != width {
            continue;
        }
        if let (Ok(pid), Some(r)) = (f[0].parse::<i32>(), record(&f[1..])) {
            seen.insert(pid, r);
        }
    }
    pids.iter().map(|p| seen.get(p).cloned()).collect()
}

/// Print "PID RSS_BYTES CPU_SECONDS UPTIME_SECONDS" for each running PID ("PID - - -" for
/// others), from /proc/PID/stat (utime, stime, starttime), /proc/PID/statm and /proc/uptime.
pub fn usage_script(pids: &[i32]) -> String {
    let list: Vec<String> = pids.iter().map(|p| p.to_string()).collect();
    format!(
        r#"hz=$(getconf CLK_TCK 2>/dev/null || echo 100); pg=$(getconf PAGESIZE 2>/dev/null || echo 4096); read -r up rest < /proc/uptime
for p in {}; do if read -r l < /proc/$p/stat 2>/dev/null && read -r sz res rest < /proc/$p/statm 2>/dev/null; then l=${{l##*) }}; set -- $l; echo "$p $((res * pg)) $(( (${{12}} + ${{13}}) * 100 / hz )) ${{up%%.*}} $(( ${{20}} * 100 / hz ))"; else echo "$p - - - -"; fi; done"#,
        list.join(" ")
    )
}

/// (rss bytes, cpu seconds, uptime seconds) per PID, None when not running.
pub fn parse_usage(output: &str, pids: &[i32]) -> Vec<Option<(f64, f64, f64)>> {
    per_pid(output, pids, 5, |f| {
        let n: Vec<f64> = f.iter().map(|v| v.parse::<f64>().ok()).collect::<Option<_>>()?;
        // cpu and start are in hundredths of a second; uptime in whole seconds.
        Some((n[0], n[1] / 100.0, (n[2] - n[3] / 100.0).max(0.0)))
    })
}

/// How each PID ended, for workers this control shell started (it is their parent and
/// keeps their status): "PID STATUS" (the shell's $?, 128 + N after signal N) for those no
/// longer running, "PID -" for those still running. Never waits on a running process.
pub fn exit_script(pids: &[i32]) -> String {
    let list: Vec<String> = pids.iter().map(|p| p.to_string()).collect();
    format!(
        "{}\nfor p in {}; do set -- $(pstat $p); if [ \"$2\" = - ] || [ \"$2\" = Z ]; then wait $p 2>/dev/null; echo \"$p $?\"; else echo \"$p -\"; fi; done",
        STAT_FN,
        list.join(" ")
    )
}

/// Exit status per PID (None while running or unknown).
pub fn parse_exit(output: &str, pids: &[i32]) -> Vec<Option<i32>> {
    per_pid(output, pids, 2, |f| f[0].parse::<i32>().ok())
}

/// Print "PID STATE START" for each PID.
pub fn probe_script(pids: &[i32]) -> String {
    let list: Vec<String> = pids.iter().map(|p| p.to_string()).collect();
    format!("{}\n{}\nfor p in {}; do pstat $p; done", STAT_FN, REAP_WATCHDOGS, list.join(" "))
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Probe {
    Alive,
    Dead,
    Unknown,
}

/// A process as the probe script saw it.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Seen {
    /// No such process.
    Gone,
    /// A zombie or a dead process not yet reaped.
    Ended,
    /// Running (any other state), with its start time if it reads as a number.
    Running(Option<f64>),
}

/// Alive when the process exists, is not a zombie, and (if `expected` is non-zero) started
/// at the expected time.
pub fn parse_probe(output: &str, pids: &[i32], expected: &[f64]) -> Vec<Probe> {
    let seen = per_pid(output, pids, 3, |f| {
        Some(match f[0] {
            "-" => Seen::Gone,
            "Z" | "X" => Seen::Ended,
            _ => Seen::Running(f[1].parse().ok()),
        })
    });
    seen.into_iter()
        .enumerate()
        .map(|(i, s)| {
            let want = expected.get(i).copied().unwrap_or(0.0);
            match s {
                None | Some(Seen::Running(None)) => Probe::Unknown,
                Some(Seen::Gone | Seen::Ended) => Probe::Dead,
                Some(Seen::Running(Some(start))) if want > 0.0 && (start - want).abs() > 0.5 => Probe::Dead,
                Some(Seen::Running(Some(_))) => Probe::Alive,
            }
        })
        .collect()
}

/// Signal each (PID, start) that is still that process; print "PID 1" when sent, "PID 0"
/// when not.
pub fn signal_script(pids: &[i32], expected: &[f64], signal: i32) -> String {
    let mut s = String::from(STAT_FN);
    s.push('\n');
    for (i, pid) in pids.iter().enumerate() {
        let want = expected.get(i).copied().unwrap_or(0.0);
        let want = if want > 0.0 { format!("{:.0}", want) } else { "-".to_string() };
        s.push_str(&format!(
            "set -- $(pstat {pid}); if [ \"$2\" != - ] && [ \"$2\" != Z ] && {{ [ {want} = - ] || [ \"$3\" = {want} ]; }} && kill -{signal} {pid} 2>/dev/null; then echo \"{pid} 1\"; else echo \"{pid} 0\"; fi\n",
        ));
    }
    s
}

/// Whether each PID was signalled (None: no answer for it).
pub fn parse_signal(output: &str, pids: &[i32]) -> Vec<Option<bool>> {
    per_pid(output, pids, 2, |f| Some(f[0] == "1"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::process::Command;

    fn is_root() -> bool {
        // SAFETY: geteuid() has no preconditions and cannot fail.
        unsafe { libc::geteuid() == 0 }
    }

    fn sh(script: &str) -> String {
        let out = Command::new("/bin/sh").arg("-c").arg(script).output().expect("sh");
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    #[test]
    fn quoting_survives_the_shell() {
        for s in ["plain", "with space", "it's", "$HOME", "a\"b", "", "x;rm -rf /", "`id`"] {
            assert_eq!(sh(&format!("printf %s {}", sh_quote(s))), s);
        }
    }

    #[test]
    fn probe_and_signal_a_real_process() {
        let mut child = Command::new("sleep").arg("30").spawn().expect("sleep");
        let pid = child.id() as i32;
        let out = sh(&probe_script(&[pid, 999_999_999]));
        let start: f64 = out.lines().next().and_then(|l| l.split_whitespace().nth(2)).and_then(|s| s.parse().ok()).expect("start");
        assert_eq!(parse_probe(&out, &[pid, 999_999_999], &[start, 0.0]), vec![Probe::Alive, Probe::Dead]);
        assert_eq!(parse_probe(&out, &[pid], &[start + 100.0]), vec![Probe::Dead], "a wrong start time is another process");
        // A wrong start time must not be signalled.
        assert_eq!(parse_signal(&sh(&signal_script(&[pid], &[start + 100.0], 9)), &[pid]), vec![Some(false)]);
        assert!(child.try_wait().expect("wait").is_none());
        assert_eq!(parse_signal(&sh(&signal_script(&[pid], &[start], 9)), &[pid]), vec![Some(true)]);
        let status = child.wait().expect("wait");
        assert!(!status.success());
    }

    #[test]
    fn launch_reports_pids_and_missing_programs() {
        use std::io::{BufRead, BufReader};
        let dir = std::env::temp_dir().join(format!("parallelly-test-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("dir");
        let log = dir.join("w.log").display().to_string();
        // The launching shell stays up (as the control shell does) while we look.
        let script = format!("{}\nsleep 3", launch_script("sleep", &["export T=1; exec sleep 30".to_string()], std::slice::from_ref(&log)));
        let mut shell = Command::new("/bin/sh").arg("-c").arg(script).stdout(std::process::Stdio::piped()).spawn().expect("sh");
        let mut first = String::new();
        BufReader::new(shell.stdout.take().expect("stdout")).read_line(&mut first).expect("line");
        match parse_launch(&first).first() {
            Some(Launched::Worker { pid, start, log: l }) => {
                assert!(*pid > 0);
                assert!(*start > 0.0);
                assert_eq!(l, &log);
                let probe = sh(&probe_script(&[*pid]));
                assert_eq!(parse_probe(&probe, &[*pid], &[*start]), vec![Probe::Alive]);
                // When the launching shell ends, its watchdog ends the worker.
                let _ = shell.wait();
                let gone = (0..60).any(|_| {
                    std::thread::sleep(std::time::Duration::from_millis(100));
                    parse_probe(&sh(&probe_script(&[*pid])), &[*pid], &[*start]) == vec![Probe::Dead]
                });
                assert!(gone, "the watchdog did not end the worker");
            }
            other => panic!("unexpected {:?} from {:?}", other, first),
        }
        let out = sh(&launch_script("/no/such/Rscript", &["x".to_string()], std::slice::from_ref(&log)));
        assert_eq!(parse_launch(&out), vec![Launched::Missing("/no/such/Rscript".to_string())]);
        // A log directory that cannot be written to: reported, nothing started.
        let readonly = dir.join("readonly");
        std::fs::create_dir_all(&readonly).expect("mkdir");
        let bad_log = readonly.join("w.log").display().to_string();
        let script = launch_script("sleep", &["exec sleep 30".to_string()], &[bad_log]);
        let out = sh(&format!("chmod 500 {d}; {s}; chmod 700 {d}", d = sh_quote(&readonly.display().to_string()), s = script));
        if is_root() {
            // root writes anyway: the check passes and one worker starts; end it.
            for l in parse_launch(&out) {
                if let Launched::Worker { pid, .. } = l {
                    let _ = sh(&format!("kill {}", pid));
                }
            }
        } else {
            assert_eq!(parse_launch(&out), vec![Launched::Unwritable(readonly.display().to_string())]);
        }
        let out = sh(&format!("TMPDIR=/proc; export TMPDIR\n{}", launch_script("sleep", &["exec sleep 30".to_string()], &[log])));
        assert_eq!(parse_launch(&out), vec![Launched::Unwritable("/proc".to_string())]);
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn exit_status_of_a_child_of_the_shell() {
        let out = sh(&format!(
            "{}\n(exec sleep 30) & a=$!; (exec sh -c 'exit 3') & b=$!; sleep 0.3; kill -9 $a; sleep 0.2; {}",
            STAT_FN,
            "for p in $a $b; do set -- $(pstat $p); if [ \"$2\" = - ] || [ \"$2\" = Z ]; then wait $p 2>/dev/null; echo \"$p $?\"; else echo \"$p -\"; fi; done"
        ));
        let statuses: Vec<i32> = out.lines().filter_map(|l| l.split_whitespace().nth(1)?.parse().ok()).collect();
        assert_eq!(statuses, vec![137, 3], "output: {}", out);
        assert_eq!(parse_exit("12 137\n13 -\n", &[12, 13, 14]), vec![Some(137), None, None]);
    }

    #[test]
    fn usage_of_this_process() {
        let me = std::process::id() as i32;
        let out = sh(&usage_script(&[me, 999_999_999]));
        let u = parse_usage(&out, &[me, 999_999_999]);
        let (rss, cpu, up) = u[0].expect("own usage");
        assert!(rss > 1e6, "rss {}", rss);
        assert!(cpu >= 0.0 && up >= 0.0, "cpu {} uptime {}", cpu, up);
        assert_eq!(u[1], None);
    }

    #[test]
    fn malformed_lines_are_skipped_and_the_last_good_line_wins() {
        // Wrong widths, non-numbers, out-of-range PIDs and noise around good lines.
        let out = "7 R 100\n7 R\n7 R 100 extra\nx R 100\n99999999999 R 1\n8 Z 5\n\n   \n9 S notanumber\n10 - -\r\n";
        assert_eq!(
            parse_probe(out, &[7, 8, 9, 10, 11], &[100.0, 0.0, 0.0, 0.0, 0.0]),
            vec![Probe::Alive, Probe::Dead, Probe::Unknown, Probe::Dead, Probe::Unknown]
        );
        // A later line for the same PID replaces an earlier one; a malformed one does not.
        assert_eq!(parse_probe("7 R 100\n7 R 300\n7 R\n", &[7], &[100.0]), vec![Probe::Dead]);
        assert_eq!(parse_exit("5 0\n5 -\n6 x\n6 1 2\n-1 4\n", &[5, 6, -1]), vec![Some(0), None, Some(4)]);
        assert_eq!(parse_signal("3 1\n4 0\n5 yes\n6\n3 1 1\n", &[3, 4, 5, 6]), vec![Some(true), Some(false), Some(false), None]);
        assert_eq!(
            parse_usage("1 4096 250 1000 5000\n2 - - - -\n3 1 2 3\n4 1 2 3 4 5\n5 1 x 10 0\n", &[1, 2, 3, 4, 5]),
            vec![Some((4096.0, 2.5, 950.0)), None, None, None, None]
        );
        assert_eq!(
            parse_launch("pid 12 345 /tmp/a.log\npid x 1 /tmp/b\npid\npid 13\n  missing /opt/R 4/bin/Rscript\nunwritable\nnoise\n\u{2028}\u{85}missing x\n"),
            vec![
                Launched::Worker { pid: 12, start: 345.0, log: "/tmp/a.log".to_string() },
                Launched::Worker { pid: 13, start: 0.0, log: String::new() },
                Launched::Missing("/opt/R 4/bin/Rscript".to_string()),
                Launched::Unwritable(String::new()),
                Launched::Missing("x".to_string()),
            ]
        );
    }

    #[test]
    fn parsers_never_panic_on_garbage() {
        for out in ["", "\n\n", "pid", "pid x y", "1 2", "1 2 3 4", "a b c", "missing", "\u{0}\u{1}"] {
            let _ = parse_launch(out);
            let _ = parse_probe(out, &[1, 2], &[0.0]);
            let _ = parse_signal(out, &[1]);
            let _ = parse_usage(out, &[1]);
            let _ = parse_exit(out, &[1]);
        }
    }
}
