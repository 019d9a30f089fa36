//! The subset of OpenSSH's client configuration (`~/.ssh/config`) that users expect to
//! work: `Host` patterns (with `*`, `?` and `!` negation), `HostName`, `User`, `Port`,
//! `IdentityFile`, `IdentitiesOnly`, `UserKnownHostsFile`, `StrictHostKeyChecking`,
//! `ConnectTimeout` and `HashKnownHosts`. As in OpenSSH, the first value obtained for a keyword wins, and
//! `IdentityFile` accumulates. Unknown keywords are ignored.

use std::path::{Path, PathBuf};

#[derive(Debug, Clone, Default, PartialEq)]
pub struct HostConfig {
    pub hostname: Option<String>,
    pub user: Option<String>,
    pub port: Option<u16>,
    pub identity_files: Vec<String>,
    pub identities_only: Option<bool>,
    pub known_hosts_files: Vec<String>,
    pub strict_host_key_checking: Option<String>,
    pub connect_timeout: Option<u32>,
    pub hash_known_hosts: Option<bool>,
}

/// Match `host` against one `Host` line's patterns: at least one positive pattern must
/// match and no negated pattern may match.
fn host_matches(patterns: &[String], host: &str) -> bool {
    let mut matched = false;
    for p in patterns {
        if let Some(neg) = p.strip_prefix('!') {
            if glob(neg, host) {
                return false;
            }
        } else if glob(p, host) {
            matched = true;
        }
    }
    matched
}

/// `*` and `?` wildcards, case-insensitive as OpenSSH does for host names.
fn glob(pattern: &str, text: &str) -> bool {
    let p: Vec<char> = pattern.to_lowercase().chars().collect();
    let t: Vec<char> = text.to_lowercase().chars().collect();
    let (mut pi, mut ti, mut star, mut mark) = (0usize, 0usize, None::<usize>, 0usize);
    while ti < t.len() {
        if pi < p.len() && (p[pi] == '?' || p[pi] == t[ti]) {
            pi += 1;
            ti += 1;
        } else if pi < p.len() && p[pi] == '*' {
            star = Some(pi);
            mark = ti;
            pi += 1;
        } else if let Some(s) = star {
            pi = s + 1;
            mark += 1;
            ti = mark;
        } else {
            return false;
        }
    }
    while pi < p.len() && p[pi] == '*' {
        pi += 1;
    }
    pi == p.len()
}

/// Split a config line into keyword and arguments (`Key value`, `Key=value`, quoted args).
fn split_line(line: &str) -> Option<(String, Vec<String>)> {
    let line = line.trim();
    if line.is_empty() || line.starts_with('#') {
        return None;
    }
    let (key, rest) = match line.find(|c: char| c.is_whitespace() || c == '=') {
        Some(i) => (&line[..i], line[i..].trim_start_matches(|c: char| c.is_whitespace() || c == '=')),
        None => (line, ""),
    };
    let mut args = Vec::new();
    let mut cur = String::new();
    let mut in_quotes = false;
    let mut has = false;
    for c in rest.chars() {
        match c {
            '"' => {
                in_quotes = !in_quotes;
                has = true;
            }
            c if c.is_whitespace() && !in_quotes => {
                if has {
                    args.push(std::mem::take(&mut cur));
                    has = false;
                }
            }
            c => {
                cur.push(c);
                has = true;
            }
        }
    }
    if has {
        args.push(cur);
    }
    Some((key.to_lowercase(), args))
}

fn yes_no(s: &str) -> Option<bool> {
    match s.to_lowercase().as_str() {
        "yes" | "true" => Some(true),
        "no" | "false" => Some(false),
        _ => None,
    }
}

/// The settings that apply to `host` according to the config text.
pub fn parse(text: &str, host: &str) -> HostConfig {
    let mut cfg = HostConfig::default();
    let mut active = true; // lines before the first Host apply to every host
    for line in text.lines() {
        let Some((key, args)) = split_line(line) else { continue };
        if key == "host" {
            active = host_matches(&args, host);
            continue;
        }
        if key == "match" {
            // Match blocks are not supported: skip their settings rather than misapply them.
            active = false;
            continue;
        }
        if !active || args.is_empty() {
            continue;
        }
        let first = args[0].clone();
        match key.as_str() {
            "hostname" if cfg.hostname.is_none() => cfg.hostname = Some(first),
            "user" if cfg.user.is_none() => cfg.user = Some(first),
            "port" if cfg.port.is_none() => cfg.port = first.parse().ok(),
            "identityfile" => cfg.identity_files.push(first),
            "identitiesonly" if cfg.identities_only.is_none() => cfg.identities_only = yes_no(&first),
            "userknownhostsfile" if cfg.known_hosts_files.is_empty() => cfg.known_hosts_files = args,
            "stricthostkeychecking" if cfg.strict_host_key_checking.is_none() => {
                cfg.strict_host_key_checking = Some(first.to_lowercase())
            }
            "connecttimeout" if cfg.connect_timeout.is_none() => cfg.connect_timeout = first.parse().ok(),
            "hashknownhosts" if cfg.hash_known_hosts.is_none() => cfg.hash_known_hosts = yes_no(&first),
            _ => {}
        }
    }
    cfg
}

/// Read and apply the config file at `path`; a missing file is an empty config.
pub fn load(path: &Path, host: &str) -> std::io::Result<HostConfig> {
    match std::fs::read_to_string(path) {
        Ok(text) => Ok(parse(&text, host)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(HostConfig::default()),
        Err(e) => Err(e),
    }
}

/// Expand `~` and the tokens `%h` (host name), `%r` (remote user), `%u` (local user) and
/// `%%` in a path from the config.
pub fn expand_path(path: &str, home: &Path, host: &str, remote_user: &str, local_user: &str) -> PathBuf {
    let mut out = String::new();
    let mut chars = path.chars().peekable();
    while let Some(c) = chars.next() {
        if c == '%' {
            match chars.next() {
                Some('h') => out.push_str(host),
                Some('r') => out.push_str(remote_user),
                Some('u') => out.push_str(local_user),
                Some('d') => out.push_str(&home.to_string_lossy()),
                Some('%') => out.push('%'),
                Some(other) => {
                    out.push('%');
                    out.push(other);
                }
                None => out.push('%'),
            }
        } else {
            out.push(c);
        }
    }
    if out == "~" {
        return home.to_path_buf();
    }
    if let Some(rest) = out.strip_prefix("~/") {
        return home.join(rest);
    }
    PathBuf::from(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    const CONFIG: &str = "
# global
ConnectTimeout 7
Host web*.example.org !web3.example.org
    HostName %h.internal
    User alice
    Port 2200
    IdentityFile ~/.ssh/id_web
Host=db
    HostName=10.0.0.5
    User \"bob smith\"
Host *
    User carol
    IdentityFile ~/.ssh/id_default
    StrictHostKeyChecking accept-new
Match host foo
    User mallory
";

    #[test]
    fn first_value_wins_and_identity_files_accumulate() {
        let c = parse(CONFIG, "web1.example.org");
        assert_eq!(c.hostname.as_deref(), Some("%h.internal"));
        assert_eq!(c.user.as_deref(), Some("alice"));
        assert_eq!(c.port, Some(2200));
        assert_eq!(c.identity_files, vec!["~/.ssh/id_web", "~/.ssh/id_default"]);
        assert_eq!(c.connect_timeout, Some(7));
        assert_eq!(c.strict_host_key_checking.as_deref(), Some("accept-new"));
    }

    #[test]
    fn negation_equals_sign_and_quotes() {
        let c = parse(CONFIG, "web3.example.org");
        assert_eq!(c.user.as_deref(), Some("carol"));
        assert_eq!(c.port, None);
        let d = parse(CONFIG, "DB");
        assert_eq!(d.hostname.as_deref(), Some("10.0.0.5"));
        assert_eq!(d.user.as_deref(), Some("bob smith"));
        let f = parse(CONFIG, "foo");
        assert_eq!(f.user.as_deref(), Some("carol"), "Match blocks must not apply");
    }

    #[test]
    fn globs() {
        assert!(glob("*", "anything"));
        assert!(glob("n?.remote.org", "n1.remote.org"));
        assert!(!glob("n?.remote.org", "n10.remote.org"));
        assert!(glob("*.org", "a.b.org"));
        assert!(!glob("*.org", "a.b.com"));
        assert!(glob("a*b*c", "aXXbYYc"));
    }

    #[test]
    fn paths_expand() {
        let home = Path::new("/home/u");
        assert_eq!(expand_path("~/.ssh/id_%h", home, "h1", "r", "l"), PathBuf::from("/home/u/.ssh/id_h1"));
        assert_eq!(expand_path("/k/%r-%u-%%", home, "h", "r", "l"), PathBuf::from("/k/r-l-%"));
    }

    #[test]
    fn garbage_never_panics() {
        for text in ["Host", "Port", "Port x\nHost *\nPort 99999999", "=\n==\n\"\n", "Host \"unterminated"] {
            let _ = parse(text, "h");
        }
    }
}
