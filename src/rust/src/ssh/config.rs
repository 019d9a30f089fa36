//! The part of OpenSSH's client configuration (`~/.ssh/config`, then `/etc/ssh/ssh_config`)
//! that the built-in client implements, read as OpenSSH reads it: `Host` patterns (`*`, `?`,
//! `!` negation), `Match` (`host`, `originalhost`, `user`, `localuser`, `all`, each
//! negatable with `!`), `Include` (globs, relative to `~/.ssh` or `/etc/ssh`, also inside
//! `Host`/`Match` blocks, nested at most 16 deep), and the keywords `HostName`, `User`,
//! `Port`, `IdentityFile`, `IdentitiesOnly`, `IdentityAgent` (`none` or `SSH_AUTH_SOCK`),
//! `AddressFamily`, `ProxyJump`, `UserKnownHostsFile`, `StrictHostKeyChecking`, `ConnectTimeout` and
//! `HashKnownHosts`. The first value obtained for a keyword wins; `IdentityFile`
//! accumulates.
//!
//! Keywords that would change where or how OpenSSH connects, and that this client does not
//! implement, are never ignored: their first value is kept (see [`REFUSED`]) and
//! [`HostConfig::unsupported`] turns an effective one into an error naming the host, the
//! keyword, where it was set and the remedy (`rshcmd = "ssh"`, the external OpenSSH client).
//! Other keywords do not change where or how we connect and are ignored (see the help).

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use super::algorithms::Policy;
use super::openssh_keywords;

/// How deep `Include` may nest (OpenSSH's limit too); deeper means a loop, most likely.
pub const MAX_INCLUDE_DEPTH: usize = 16;

/// The name under which config lines from the command line (`rshopts`) are read.
pub const COMMAND_LINE: &str = "rshopts";

/// The remedy named in every refusal.
pub const REMEDY: &str = "use rshcmd = \"ssh\" (the external OpenSSH client) for this host, or remove the directive";

/// Keywords we do not implement although they change where or how to connect, each with the
/// value(s) that leave it without effect and why it cannot be ignored. Their first value (in
/// an applying block) is recorded and refused by [`HostConfig::unsupported`].
pub const REFUSED: &[(&str, &[&str], &str)] = &[
    // The connection would go through a program of the user's instead of a TCP connect.
    ("ProxyCommand", &["none"], "the connection would go through this command"),
    // The host name would be rewritten (and the config read again) before connecting.
    ("CanonicalizeHostname", &["no", "none"], "the host name would be canonicalized before connecting"),
    // The known_hosts entry to check would be another one: a wrong key could be trusted.
    ("HostKeyAlias", &["none"], "the host key would be looked up under another name"),
    // Host keys would be checked by the user's program.
    ("KnownHostsCommand", &["none"], "host keys would be obtained from this command"),
    // Keys the user has revoked would be trusted.
    ("RevokedHostKeys", &["none"], "host keys listed in this file would be refused"),
    // The connection would leave from another local address or interface.
    ("BindAddress", &[], "the connection would leave from this address"),
    ("BindInterface", &[], "the connection would leave from this interface"),
    // The user authenticates with a certificate or a hardware token.
    ("CertificateFile", &["none"], "this certificate would be offered"),
    ("PKCS11Provider", &["none"], "keys from this PKCS#11 provider would be offered"),
    // An agent socket other than $SSH_AUTH_SOCK.
    ("IdentityAgent", &["none", "SSH_AUTH_SOCK", "$SSH_AUTH_SOCK"], "the keys of this agent would be offered"),
    // The session would run the user's command, not ours.
    ("RemoteCommand", &["none"], "this command would run on the host"),
    // A tun device forwarded through the connection.
    ("Tunnel", &["no"], "a tunnel device would be forwarded"),
    // Forwardings the user expects the connection to set up (unless ClearAllForwardings).
    ("LocalForward", &[], "this port would be forwarded"),
    ("RemoteForward", &[], "this port would be forwarded from the host"),
    ("DynamicForward", &[], "a SOCKS proxy would listen here"),
    // Run locally after connecting (only when PermitLocalCommand is yes).
    ("LocalCommand", &["none"], "this command would run locally after connecting"),
    // A shared master connection (sites with 2FA log in once through it).
    ("ControlMaster", &["no"], "a shared master connection would be set up"),
    ("ControlPath", &["none"], "the connection would go through this master socket"),
    // What the remote side would get from the connection.
    ("ForwardAgent", &["no"], "the agent would be forwarded to the host"),
    ("ForwardX11", &["no"], "X11 would be forwarded to the host"),
    ("RequestTTY", &["no", "auto"], "a terminal would be requested"),
    ("SessionType", &["default"], "the session would not run a command"),
    ("SetEnv", &[], "these variables would be set on the host"),
    // Host keys would be looked up in DNS too.
    ("VerifyHostKeyDNS", &["no"], "host keys would be checked against DNS"),
];

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
    /// `any`, `inet` or `inet6`.
    pub address_family: Option<String>,
    /// `ProxyJump`'s value (`none` included) and where it was set.
    pub proxy_jump: Option<(String, String)>,
    /// The first value and origin ("FILE line N") of each keyword in [`REFUSED`] (by its
    /// lower-case name), and of the keywords that decide whether they take effect.
    pub refused: HashMap<String, (Vec<String>, String)>,
    /// A `Match` line we cannot evaluate (why, as a message): the rest is undetermined.
    pub unsupported_match: Option<String>,
    /// The first value and origin of each algorithm keyword (by [`Policy`]).
    pub algorithms: Vec<(Policy, String, String)>,
    /// `Compression yes`.
    pub compression: Option<bool>,
    /// `ServerAliveInterval` (seconds, 0: off) and `ServerAliveCountMax`.
    pub server_alive_interval: Option<u32>,
    pub server_alive_count_max: Option<u32>,
    /// `IgnoreUnknown`: keywords (patterns) that are not an error if OpenSSH does not know them.
    pub ignore_unknown: Option<String>,
}

impl HostConfig {
    fn first(&self, key: &str) -> Option<&str> {
        self.refused.get(key).and_then(|(v, _)| v.first()).map(String::as_str)
    }

    /// The ssh agent to use: false for `IdentityAgent none`.
    pub fn use_agent(&self) -> bool {
        self.first("identityagent") != Some("none")
    }

    /// The value of an algorithm keyword and where it was set, if set.
    pub fn algorithm(&self, policy: Policy) -> Option<(&str, &str)> {
        self.algorithms.iter().find(|(p, _, _)| *p == policy).map(|(_, v, o)| (v.as_str(), o.as_str()))
    }

    /// An error message if a directive we do not implement applies to `host`.
    pub fn unsupported(&self, host: &str) -> Option<String> {
        if let Some(msg) = &self.unsupported_match {
            return Some(msg.clone());
        }
        for (name, inert, why) in REFUSED {
            let key = name.to_lowercase();
            let Some((values, origin)) = self.refused.get(&key) else { continue };
            let value = values.join(" ");
            if inert.iter().any(|v| v.eq_ignore_ascii_case(&value)) {
                continue;
            }
            if key.ends_with("forward") && self.first("clearallforwardings").and_then(yes_no) == Some(true) {
                continue;
            }
            if key == "localcommand" && self.first("permitlocalcommand").and_then(yes_no) != Some(true) {
                continue;
            }
            let source = if origin.starts_with(COMMAND_LINE) {
                "rshopts set".to_string()
            } else {
                "the ssh config sets".to_string()
            };
            let origin = if origin.starts_with(COMMAND_LINE) { "as an ssh option" } else { origin.as_str() };
            return Some(format!(
                "host '{}': {} '{} {}' ({}), which the built-in SSH client does not implement ({}); {}",
                host, source, name, value, origin, why, REMEDY
            ));
        }
        None
    }
}

/// Who is connecting where: what `Host` and `Match` lines are matched against.
pub struct Context<'a> {
    /// The name the user gave (an alias or a host name).
    pub host: &'a str,
    /// A user given outside the config (`user =`, `-l`): it wins, and `Match user` sees it.
    pub user: Option<&'a str>,
    pub local_user: &'a str,
    pub home: &'a Path,
}

/// Reads config files into one [`HostConfig`] (user file first, then the system one).
pub struct Reader<'a> {
    ctx: &'a Context<'a>,
    pub cfg: HostConfig,
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

/// A comma-separated pattern list as `Match` takes it (`a*,!b`).
fn list_matches(list: &str, text: &str, ignore_case: bool) -> bool {
    let mut matched = false;
    for p in list.split(',').filter(|p| !p.is_empty()) {
        if let Some(neg) = p.strip_prefix('!') {
            if wildmatch(neg, text, ignore_case) {
                return false;
            }
        } else if wildmatch(p, text, ignore_case) {
            matched = true;
        }
    }
    matched
}

/// `*` and `?` wildcards, case-insensitive as OpenSSH does for host names.
fn glob(pattern: &str, text: &str) -> bool {
    wildmatch(pattern, text, true)
}

pub(crate) fn wildmatch(pattern: &str, text: &str, ignore_case: bool) -> bool {
    let lower = |s: &str| if ignore_case { s.to_lowercase() } else { s.to_string() };
    let p: Vec<char> = lower(pattern).chars().collect();
    let t: Vec<char> = lower(text).chars().collect();
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


impl<'a> Reader<'a> {
    pub fn new(ctx: &'a Context<'a>) -> Reader<'a> {
        Reader { ctx, cfg: HostConfig::default() }
    }

    /// Read the config file at `path` (a missing file is an empty config); relative
    /// `Include` paths are taken relative to `include_dir` (`~/.ssh` or `/etc/ssh`).
    pub fn read_file(&mut self, path: &Path, include_dir: &Path) -> Result<(), String> {
        match std::fs::read_to_string(path) {
            Ok(text) => self.read_text(&text, &path.display().to_string(), include_dir, 0),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(format!("host '{}': cannot read ssh config file '{}': {}", self.ctx.host, path.display(), e)),
        }
    }

    /// Read config text; `name` says where it came from in messages.
    pub fn read_text(&mut self, text: &str, name: &str, include_dir: &Path, depth: usize) -> Result<(), String> {
        // Lines before the first Host or Match apply (an included file starts afresh too; it
        // is only read at all from a block that applies).
        let mut active = true;
        for (n, line) in text.lines().enumerate() {
            let Some((key, args)) = split_line(line) else { continue };
            let origin = format!("{} line {}", name, n + 1);
            // As OpenSSH: a keyword it does not know is an error wherever it stands (in a
            // block that applies or not), unless an IgnoreUnknown read before lists it.
            if !openssh_keywords::known(&key) {
                let ignored = self.cfg.ignore_unknown.as_deref().is_some_and(|list| list_matches(list, &key, true));
                if !ignored {
                    return Err(self.unknown_keyword(line, name, &origin));
                }
                continue;
            }
            match key.as_str() {
                "host" => active = host_matches(&args, self.ctx.host),
                "match" => {
                    active = match self.match_line(&args, &origin) {
                        Ok(a) => a,
                        // Undetermined from here on: what follows is not applied, and the
                        // host is one the built-in client cannot serve as OpenSSH would.
                        Err(msg) => {
                            self.cfg.unsupported_match.get_or_insert(msg);
                            false
                        }
                    }
                }
                "include" if active => {
                    for pattern in &args {
                        for file in include_files(pattern, include_dir, self.ctx.home) {
                            if depth + 1 > MAX_INCLUDE_DEPTH {
                                return Err(format!(
                                    "host '{}': the ssh config's Include is nested more than {} deep ({}, including '{}'): check for an Include loop",
                                    self.ctx.host, MAX_INCLUDE_DEPTH, origin, file.display()
                                ));
                            }
                            let text = std::fs::read_to_string(&file).map_err(|e| {
                                format!("host '{}': cannot read '{}' (Include at {}): {}", self.ctx.host, file.display(), origin, e)
                            })?;
                            self.read_text(&text, &file.display().to_string(), include_dir, depth + 1)?;
                        }
                    }
                }
                _ if active && !args.is_empty() => {
                    let written = line.trim().split(|c: char| c.is_whitespace() || c == '=').next().unwrap_or(&key);
                    self.apply(&key, written, args, &origin)?
                }
                _ => {}
            }
        }
        Ok(())
    }

    /// The error for a line whose keyword OpenSSH does not know.
    fn unknown_keyword(&self, line: &str, name: &str, origin: &str) -> String {
        let line = line.trim();
        let keyword = line.split(|c: char| c.is_whitespace() || c == '=').next().unwrap_or(line);
        let source = if name == COMMAND_LINE {
            format!("rshopts has the ssh option '-o {}'", line)
        } else {
            format!("the ssh config has '{}' ({})", line, origin)
        };
        format!(
            "host '{}': {}, but '{}' is no keyword of OpenSSH's ssh_config (ssh refuses it too: \"Bad configuration option\"); check the spelling, or list it in an 'IgnoreUnknown' line before it",
            self.ctx.host, source, keyword
        )
    }

    /// Whether the block a `Match` line starts applies. Criteria are and-ed, each may be
    /// negated with `!`; evaluation stops at the first one that fails, so an unsupported
    /// criterion after a failed one does no harm.
    fn match_line(&self, args: &[String], origin: &str) -> Result<bool, String> {
        let refuse = |what: &str| {
            format!(
                "host '{}': the ssh config has 'Match {}' ({}), which the built-in SSH client does not support (it knows Match host, originalhost, user, localuser and all, each negatable with '!'); {}",
                self.ctx.host, what, origin, REMEDY
            )
        };
        if args.is_empty() {
            return Err(refuse(""));
        }
        let mut i = 0;
        while i < args.len() {
            let raw = args[i].as_str();
            let (negate, criterion) = match raw.strip_prefix('!') {
                Some(c) => (true, c.to_lowercase()),
                None => (false, raw.to_lowercase()),
            };
            let result = if criterion == "all" {
                i += 1;
                true
            } else {
                let subject = match criterion.as_str() {
                    "host" => self.hostname_so_far(),
                    "originalhost" => self.ctx.host.to_string(),
                    "user" => self.user_so_far(),
                    "localuser" => self.ctx.local_user.to_string(),
                    _ => return Err(refuse(&args[i..].join(" "))),
                };
                let Some(list) = args.get(i + 1) else {
                    return Err(refuse(&format!("{} (without a pattern)", raw)));
                };
                i += 2;
                list_matches(list, &subject, matches!(criterion.as_str(), "host" | "originalhost"))
            };
            if result == negate {
                return Ok(false);
            }
        }
        Ok(true)
    }

    /// The host name as obtained so far (what `Match host` looks at).
    fn hostname_so_far(&self) -> String {
        match &self.cfg.hostname {
            Some(h) => h.replace("%h", self.ctx.host),
            None => self.ctx.host.to_string(),
        }
    }

    fn user_so_far(&self) -> String {
        self.ctx.user.map(str::to_string).or_else(|| self.cfg.user.clone()).unwrap_or_else(|| self.ctx.local_user.to_string())
    }

    fn apply(&mut self, key: &str, written: &str, args: Vec<String>, origin: &str) -> Result<(), String> {
        let cfg = &mut self.cfg;
        let first = args[0].clone();
        let bad = |what: &str| {
            if origin.starts_with(COMMAND_LINE) {
                format!("host '{}': rshopts sets the ssh option {} to '{}', which is not {}", self.ctx.host, written, first, what)
            } else {
                format!("host '{}': the ssh config sets {} '{}' ({}), which is not {}", self.ctx.host, written, first, origin, what)
            }
        };
        let yes_or_no = |v: &str| yes_no(v).ok_or_else(|| bad("yes or no"));
        match key {
            "hostname" if cfg.hostname.is_none() => cfg.hostname = Some(first),
            "user" if cfg.user.is_none() => cfg.user = Some(first),
            "port" if cfg.port.is_none() => {
                cfg.port = Some(first.parse().ok().filter(|&p| p > 0).ok_or_else(|| bad("a port number (1-65535)"))?)
            }
            "identityfile" => cfg.identity_files.push(first),
            "identitiesonly" if cfg.identities_only.is_none() => cfg.identities_only = Some(yes_or_no(&first)?),
            "userknownhostsfile" if cfg.known_hosts_files.is_empty() => cfg.known_hosts_files = args,
            "stricthostkeychecking" if cfg.strict_host_key_checking.is_none() => {
                let value = first.to_lowercase();
                if !matches!(value.as_str(), "yes" | "no" | "true" | "false" | "ask" | "accept-new" | "off") {
                    return Err(bad("yes, no, ask, accept-new or off"));
                }
                cfg.strict_host_key_checking = Some(value)
            }
            "connecttimeout" if cfg.connect_timeout.is_none() => {
                cfg.connect_timeout = Some(first.parse().map_err(|_| bad("a number of seconds"))?)
            }
            "hashknownhosts" if cfg.hash_known_hosts.is_none() => cfg.hash_known_hosts = Some(yes_or_no(&first)?),
            "batchmode" => {
                yes_or_no(&first)?;
            }
            "ignoreunknown" if cfg.ignore_unknown.is_none() => cfg.ignore_unknown = Some(first),
            "compression" if cfg.compression.is_none() => {
                cfg.compression = Some(yes_no(&first).ok_or_else(|| bad("yes or no"))?)
            }
            "serveraliveinterval" if cfg.server_alive_interval.is_none() => {
                cfg.server_alive_interval = Some(first.parse().map_err(|_| bad("a number of seconds"))?)
            }
            "serveralivecountmax" if cfg.server_alive_count_max.is_none() => {
                cfg.server_alive_count_max = Some(first.parse().map_err(|_| bad("a count"))?)
            }
            k if Policy::ALL.iter().any(|p| p.keywords().contains(&k)) => {
                let policy = *Policy::ALL.iter().find(|p| p.keywords().contains(&k)).expect("found above");
                if cfg.algorithm(policy).is_none() {
                    cfg.algorithms.push((policy, first, origin.to_string()));
                }
            }
            "proxyjump" if cfg.proxy_jump.is_none() => cfg.proxy_jump = Some((first, origin.to_string())),
            "addressfamily" if cfg.address_family.is_none() => {
                let family = first.to_lowercase();
                if !matches!(family.as_str(), "any" | "inet" | "inet6") {
                    return Err(bad("any, inet or inet6"));
                }
                cfg.address_family = Some(family)
            }
            _ => {
                let refused = REFUSED.iter().any(|(name, _, _)| name.eq_ignore_ascii_case(key));
                if refused || key == "clearallforwardings" || key == "permitlocalcommand" {
                    cfg.refused.entry(key.to_string()).or_insert_with(|| (args, origin.to_string()));
                }
            }
        }
        Ok(())
    }
}

/// The files an `Include` argument names: `~` expanded, relative to `dir`, `*` and `?`
/// expanded in every path component (in lexical order, hidden files only for a pattern
/// starting with '.'); names that match nothing give nothing, as in OpenSSH.
fn include_files(pattern: &str, dir: &Path, home: &Path) -> Vec<PathBuf> {
    let path = if pattern == "~" {
        home.to_path_buf()
    } else if let Some(rest) = pattern.strip_prefix("~/") {
        home.join(rest)
    } else {
        dir.join(pattern) // an absolute pattern replaces dir
    };
    let mut found = vec![PathBuf::new()];
    for part in path.components() {
        let part = part.as_os_str().to_string_lossy().to_string();
        if !part.contains(['*', '?']) {
            found = found.into_iter().map(|p| p.join(&part)).collect();
            continue;
        }
        let mut next = Vec::new();
        for base in &found {
            let Ok(entries) = std::fs::read_dir(base) else { continue };
            let mut names: Vec<String> = entries
                .filter_map(|e| e.ok())
                .map(|e| e.file_name().to_string_lossy().to_string())
                .filter(|n| (part.starts_with('.') || !n.starts_with('.')) && wildmatch(&part, n, false))
                .collect();
            names.sort();
            next.extend(names.into_iter().map(|n| base.join(n)));
        }
        found = next;
    }
    found.into_iter().filter(|p| p.is_file()).collect()
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
";

    fn read(text: &str, host: &str) -> Result<HostConfig, String> {
        read_as(text, host, None, Path::new("/nonexistent"))
    }

    fn read_as(text: &str, host: &str, user: Option<&str>, dir: &Path) -> Result<HostConfig, String> {
        let ctx = Context { host, user, local_user: "me", home: dir };
        let mut r = Reader::new(&ctx);
        r.read_text(text, "config", dir, 0)?;
        Ok(r.cfg)
    }

    fn parse(text: &str, host: &str) -> HostConfig {
        read(text, host).unwrap()
    }

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
    }

    #[test]
    fn globs() {
        assert!(glob("*", "anything"));
        assert!(glob("n?.remote.org", "n1.remote.org"));
        assert!(!glob("n?.remote.org", "n10.remote.org"));
        assert!(glob("*.org", "a.b.org"));
        assert!(!glob("*.org", "a.b.com"));
        assert!(glob("a*b*c", "aXXbYYc"));
        assert!(!wildmatch("Conf", "conf", false));
    }

    #[test]
    fn paths_expand() {
        let home = Path::new("/home/u");
        assert_eq!(expand_path("~/.ssh/id_%h", home, "h1", "r", "l"), PathBuf::from("/home/u/.ssh/id_h1"));
        assert_eq!(expand_path("/k/%r-%u-%%", home, "h", "r", "l"), PathBuf::from("/k/r-l-%"));
    }

    #[test]
    fn garbage_never_panics() {
        for text in ["Host", "Port", "Host *\nPort 99999999", "=\n==\n\"\n", "Host \"unterminated", "Match", "Match !", "Include"] {
            let _ = read(text, "h");
        }
        assert!(read("Port x", "h").unwrap_err().contains("Port 'x'"));
        assert!(read("Host other\nPort x", "h").is_ok(), "a block that does not apply is not checked");
    }

    #[test]
    fn match_forms() {
        let text = "
Match originalhost alias1
    HostName real1.example.org
Match host real1.example.org user bob
    Port 2201
Match host real1.example.org
    Port 2202
Match !localuser me
    User other
Match user !root,b*
    IdentityFile id_b
Match originalhost alias1 exec \"false\"
    User never
Match all
    User carol
";
        let c = read_as(text, "alias1", Some("bob"), Path::new("/")).unwrap().unsupported("alias1").unwrap();
        assert!(c.contains("'Match exec \"false\"'") || c.contains("Match exec false"), "{}", c);
        let text = text.replace("Match originalhost alias1 exec \"false\"", "Match originalhost nomatch exec \"false\"");
        let c = read_as(&text, "alias1", Some("bob"), Path::new("/")).unwrap();
        assert_eq!(c.hostname.as_deref(), Some("real1.example.org"));
        assert_eq!(c.port, Some(2201), "Match host sees the HostName so far, Match user the -l user");
        assert_eq!(c.identity_files, vec!["id_b"]);
        assert_eq!(c.user.as_deref(), Some("carol"), "!localuser me must not match");
        let d = read_as(&text, "alias2", None, Path::new("/")).unwrap();
        assert_eq!(d.hostname, None);
        assert_eq!(d.port, None);
        assert_eq!(d.user.as_deref(), Some("carol"));
        assert!(d.identity_files.is_empty(), "user 'carol' was not known when Match user was read");
        for bad in ["Match canonical", "Match final", "Match localnetwork 10.0.0.0/8", "Match tagged x", "Match host", "Match"] {
            let e = read(bad, "h").unwrap().unsupported("h").unwrap();
            assert!(e.contains("host 'h'") && e.contains("rshcmd = \"ssh\""), "{}", e);
        }
    }

    #[test]
    fn algorithm_keywords_and_keepalive_first_value_wins() {
        let c = parse("Host h\n  Ciphers aes256-ctr\n  PubkeyAcceptedKeyTypes -ssh-rsa\nHost *\n  Ciphers +aes128-cbc\n  MACs ^hmac-sha1\n  Compression yes\n  ServerAliveInterval 15\n  ServerAliveCountMax 2\n", "h");
        assert_eq!(c.algorithm(Policy::Ciphers), Some(("aes256-ctr", "config line 2")));
        assert_eq!(c.algorithm(Policy::Pubkey).map(|a| a.0), Some("-ssh-rsa"));
        assert_eq!(c.algorithm(Policy::Macs).map(|a| a.0), Some("^hmac-sha1"));
        assert_eq!(c.algorithm(Policy::Kex), None);
        assert_eq!((c.compression, c.server_alive_interval, c.server_alive_count_max), (Some(true), Some(15), Some(2)));
        assert!(read("ServerAliveInterval x", "h").is_err());
        assert!(read("Compression maybe", "h").is_err());
    }

    #[test]
    fn unknown_keywords_are_refused_as_openssh_does() {
        let e = read("Host other\n  UseKeychain yes\n", "h").unwrap_err();
        assert!(e.starts_with("host 'h'") && e.contains("'UseKeychain'") && e.contains("config line 2") && e.contains("Bad configuration option"), "{}", e);
        assert!(read("IgnoreUnknown usekeychain,Other*\nHost *\n  UseKeychain yes\n  OtherThing 1\n", "h").is_ok());
        assert!(read("IgnoreUnknown Other*\nUseKeychain yes\n", "h").is_err());
        assert!(read("UseKeychain yes\nIgnoreUnknown UseKeychain\n", "h").is_err(), "IgnoreUnknown must come first");
        let ctx = Context { host: "h", user: None, local_user: "me", home: Path::new("/") };
        let mut r = Reader::new(&ctx);
        let e = r.read_text("Bogus=1", COMMAND_LINE, Path::new("/"), 0).unwrap_err();
        assert!(e.contains("rshopts has the ssh option '-o Bogus=1'") && e.contains("'Bogus'"), "{}", e);
        // Known to OpenSSH, not implemented, harmless: ignored as before.
        assert!(read("SendEnv LANG\nGSSAPIAuthentication yes\nProtocol 2\nTag x\n", "h").is_ok());
        for bad in ["IdentitiesOnly maybe", "HashKnownHosts 2", "BatchMode sure", "StrictHostKeyChecking perhaps"] {
            let e = read(bad, "h").unwrap_err();
            assert!(e.contains(bad.split(' ').next().unwrap()) && e.starts_with("host 'h'"), "{}", e);
        }
        let mut r = Reader::new(&ctx);
        let e = r.read_text("BatchMode maybe", COMMAND_LINE, Path::new("/"), 0).unwrap_err();
        assert!(e.contains("rshopts sets the ssh option BatchMode to 'maybe', which is not yes or no"), "{}", e);
    }

    #[test]
    fn includes() {
        let dir = std::env::temp_dir().join(format!("parallelly-config-test-{}", std::process::id()));
        std::fs::create_dir_all(dir.join("conf.d")).unwrap();
        std::fs::write(dir.join("conf.d/10-a.conf"), "Host a\n  Port 1001\nHost *\n  User from-10\n").unwrap();
        std::fs::write(dir.join("conf.d/20-b.conf"), "User from-20\nPort 2002\n").unwrap();
        std::fs::write(dir.join("conf.d/.hidden.conf"), "HostName hidden\n").unwrap();
        std::fs::write(dir.join("conf.d/notes.txt"), "HostName txt\n").unwrap();
        std::fs::write(dir.join("only-b"), "HostName b.example.org\nMatch originalhost b\n  IdentityFile id_b\n").unwrap();
        std::fs::write(dir.join("loop"), "Include loop\n").unwrap();
        let text = "Host b\n  Include only-b\nHost *\n  Include conf.d/*.conf missing-file nodir/*.conf\n";
        let a = read_as(text, "a", None, &dir).unwrap();
        assert_eq!((a.port, a.user.as_deref(), a.hostname.as_deref()), (Some(1001), Some("from-10"), None));
        let b = read_as(text, "b", None, &dir).unwrap();
        assert_eq!(b.hostname.as_deref(), Some("b.example.org"), "Include inside a Host block");
        assert_eq!(b.identity_files, vec!["id_b"]);
        assert_eq!((b.port, b.user.as_deref()), (Some(2002), Some("from-10")));
        // Relative to the include dir, absolute, and ~.
        let abs = format!("Include {}\n", dir.join("conf.d/20-b.conf").display());
        assert_eq!(read_as(&abs, "x", None, Path::new("/")).unwrap().port, Some(2002));
        assert_eq!(read_as("Include ~/conf.d/2*", "x", None, &dir).unwrap().port, Some(2002));
        let e = read_as("Include loop", "x", None, &dir).unwrap_err();
        assert!(e.contains("nested more than 16") && e.contains("loop"), "{}", e);
        let e = read_as("Include only-b\n", "x", None, &dir);
        assert!(e.is_ok());
        std::fs::write(dir.join("refuses"), "ProxyCommand nc %h %p\n").unwrap();
        let c = read_as("Host p\n  Include refuses\n", "p", None, &dir).unwrap();
        let msg = c.unsupported("p").unwrap();
        assert!(msg.contains("refuses line 1"), "{}", msg);
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn refused_directives() {
        let text = "
Host direct
    ProxyJump none
    ProxyCommand none
    Tunnel no
    LocalForward 8080 localhost:80
    ClearAllForwardings yes
    LocalCommand echo hi
    IdentityAgent none
Host agent
    IdentityAgent SSH_AUTH_SOCK
Host cmd
    ProxyCommand none
    LocalCommand echo hi
    PermitLocalCommand yes
Host *
    ProxyCommand nc %h %p
    Compression yes
    ServerAliveInterval 10
    ForwardAgent no
";
        let c = parse(text, "direct");
        assert_eq!(c.proxy_jump.as_ref().map(|j| j.0.as_str()), Some("none"));
        assert_eq!(c.unsupported("direct"), None, "'none' and the like first: nothing to refuse");
        assert!(!c.use_agent());
        let a = parse(text, "agent");
        assert!(a.use_agent());
        let msg = a.unsupported("agent").unwrap();
        assert!(msg.starts_with("host 'agent'") && msg.contains("ProxyCommand nc %h %p") && msg.contains("config line 17"), "{}", msg);
        assert!(msg.contains("rshcmd = \"ssh\""), "{}", msg);
        let msg = parse(text, "cmd").unsupported("cmd").unwrap();
        assert!(msg.contains("LocalCommand echo hi"), "{}", msg);
        for line in ["ProxyCommand ssh -W %h:%p b", "HostKeyAlias x", "CanonicalizeHostname yes", "BindAddress 10.0.0.1",
                     "RemoteCommand top", "Tunnel yes", "RemoteForward 80 localhost:80", "DynamicForward 1080",
                     "IdentityAgent /tmp/agent.sock", "CertificateFile ~/.ssh/id-cert.pub", "KnownHostsCommand x",
                     "RevokedHostKeys ~/.ssh/revoked", "ControlMaster auto", "ControlPath ~/.ssh/cm-%r@%h:%p",
                     "ForwardAgent yes", "RequestTTY force", "SetEnv A=1", "VerifyHostKeyDNS yes"] {
            let keyword = line.split(' ').next().unwrap();
            let msg = parse(line, "h").unsupported("h").unwrap_or_else(|| panic!("{} not refused", line));
            assert!(msg.contains(keyword), "{}", msg);
        }
        for line in ["ControlMaster no", "ControlPath none", "ForwardAgent no", "RequestTTY auto", "SendEnv LANG LC_*", "GSSAPIAuthentication yes"] {
            assert_eq!(parse(line, "h").unsupported("h"), None, "{}", line);
        }
        assert_eq!(parse("AddressFamily inet6", "h").address_family.as_deref(), Some("inet6"));
        assert!(read("AddressFamily ipx", "h").is_err());
    }
}
