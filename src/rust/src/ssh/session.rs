//! Opening one SSH connection: resolve the target from the user's ssh config, connect with
//! a deadline, check the server's host key against known_hosts, and authenticate with the
//! agent or identity files, as OpenSSH users expect. Everything here runs in blocking mode
//! with the session timeout set; the I/O thread takes over afterwards.

use std::net::{SocketAddr, TcpStream, ToSocketAddrs};
use std::path::{Path, PathBuf};
use std::time::Duration;

use ssh2::{CheckResult, KnownHostFileKind, Session};

use super::config;
use super::known_hosts;
use crate::error::{Error, Kind, Result};

/// Who and where to connect, after applying the ssh config.
#[derive(Debug, Clone)]
pub struct Target {
    /// The name the user gave (a config alias or a host name).
    pub alias: String,
    pub hostname: String,
    pub port: u16,
    pub user: String,
    pub identity_files: Vec<PathBuf>,
    pub identities_only: bool,
    /// Offer the ssh-agent's keys (false for `IdentityAgent none`).
    pub use_agent: bool,
    /// The agent's socket: `SSH_AUTH_SOCK` as read by resolve() on R's thread (the I/O
    /// threads read no environment variable: R may change them at any moment).
    pub agent_socket: Option<PathBuf>,
    /// `inet` or `inet6` to use only IPv4 or IPv6 addresses (`AddressFamily`).
    pub address_family: Option<String>,
    pub known_hosts: Vec<PathBuf>,
    pub host_keys: HostKeyPolicy,
    /// Record accepted host keys with hashed host names (OpenSSH's HashKnownHosts).
    pub hash_known_hosts: bool,
    pub timeout: Duration,
    /// The jump host to connect through (`ProxyJump`; for a chain, the last hop, which has
    /// the hop before it as its own `via`).
    pub via: Option<Box<Target>>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HostKeyPolicy {
    /// Known hosts only (OpenSSH's StrictHostKeyChecking=yes, our default).
    Strict,
    /// Unknown hosts are added to known_hosts; changed keys are still refused.
    AcceptNew,
    /// No check at all (StrictHostKeyChecking=no in the user's config).
    Off,
}

pub struct Options<'a> {
    pub user: Option<&'a str>,
    pub port: Option<u16>,
    pub config_file: Option<&'a Path>,
    pub known_hosts_file: Option<&'a Path>,
    pub accept_new: bool,
    pub timeout: Duration,
}

const SYSTEM_CONFIG: &str = "/etc/ssh/ssh_config";

// HOME, USER and SSH_AUTH_SOCK are read by resolve() only, which runs on R's thread.
fn home_dir() -> PathBuf {
    std::env::var_os("HOME").map(PathBuf::from).unwrap_or_else(|| PathBuf::from("/"))
}

fn local_user() -> String {
    std::env::var("USER")
        .or_else(|_| std::env::var("LOGNAME"))
        .unwrap_or_else(|_| "root".to_string())
}

/// How many jump hosts a connection may go through (a config whose jump hosts name each
/// other would loop otherwise).
const MAX_JUMPS: usize = 8;

/// Resolve `alias` into a connection target using the ssh config.
pub fn resolve(alias: &str, opts: &Options) -> Result<Target> {
    resolve_hop(alias, opts, 0, false)
}

/// One `ProxyJump` hop, `[user@]host[:port]` or `ssh://[user@]host[:port]`.
fn parse_hop(hop: &str) -> Option<(Option<&str>, &str, Option<u16>)> {
    let hop = hop.strip_prefix("ssh://").unwrap_or(hop);
    let (user, rest) = match hop.rsplit_once('@') {
        Some((u, r)) => (Some(u), r),
        None => (None, hop),
    };
    let (host, port) = if let Some(inner) = rest.strip_prefix('[') {
        let (h, after) = inner.split_once(']')?;
        match after.strip_prefix(':') {
            Some(p) => (h, Some(p.parse().ok().filter(|&p: &u16| p > 0)?)),
            None if after.is_empty() => (h, None),
            None => return None,
        }
    } else {
        match rest.split_once(':') {
            Some((h, p)) => (h, Some(p.parse().ok().filter(|&p: &u16| p > 0)?)),
            None => (rest, None),
        }
    };
    if host.is_empty() || user == Some("") {
        return None;
    }
    Some((user, host, port))
}

/// `jumps` counts the hops already on the way; `chained` says the route to this host is
/// given by a `ProxyJump` list (as OpenSSH's `-J` does), so its own `ProxyJump` is not used.
fn resolve_hop(alias: &str, opts: &Options, jumps: usize, chained: bool) -> Result<Target> {
    let home = home_dir();
    let config_path = opts.config_file.map(Path::to_path_buf).unwrap_or_else(|| home.join(".ssh").join("config"));
    let local = local_user();
    // As OpenSSH reads them: the user's file, then the system-wide one (Debian's says
    // HashKnownHosts yes), into one set of settings where the first value wins.
    let ctx = config::Context { host: alias, user: opts.user, local_user: &local, home: &home };
    let mut reader = config::Reader::new(&ctx);
    let config_error = |msg: String| Error::new(Kind::Ssh, msg);
    reader.read_file(&config_path, &home.join(".ssh")).map_err(config_error)?;
    reader.read_file(Path::new(SYSTEM_CONFIG), Path::new("/etc/ssh")).map_err(config_error)?;
    let cfg = reader.cfg;
    if let Some(msg) = cfg.unsupported(alias) {
        return Err(Error::new(Kind::Ssh, msg));
    }
    let user = opts.user.map(str::to_string).or(cfg.user.clone()).unwrap_or_else(|| local.clone());
    let hostname_raw = cfg.hostname.clone().unwrap_or_else(|| alias.to_string());
    let hostname = hostname_raw.replace("%h", alias);
    // libssh2 takes names as C strings (and the ssh2 crate panics on a NUL in one).
    if hostname.contains('\0') || user.contains('\0') {
        return Err(Error::new(Kind::Ssh, format!("host '{}': the ssh config's HostName or User holds a NUL character: fix the config file", alias.replace('\0', "\\0"))));
    }
    let port = opts.port.or(cfg.port).unwrap_or(22);
    let expand = |p: &str| config::expand_path(p, &home, &hostname, &user, &local);
    let mut identity_files: Vec<PathBuf> = cfg.identity_files.iter().map(|p| expand(p)).collect();
    if identity_files.is_empty() {
        for name in ["id_ed25519", "id_ecdsa", "id_rsa"] {
            identity_files.push(home.join(".ssh").join(name));
        }
    }
    let known_hosts: Vec<PathBuf> = match opts.known_hosts_file {
        Some(p) => vec![p.to_path_buf()],
        None if !cfg.known_hosts_files.is_empty() => cfg.known_hosts_files.iter().map(|p| expand(p)).collect(),
        None => vec![home.join(".ssh").join("known_hosts")],
    };
    let host_keys = if opts.accept_new {
        HostKeyPolicy::AcceptNew
    } else {
        match cfg.strict_host_key_checking.as_deref() {
            Some("accept-new") => HostKeyPolicy::AcceptNew,
            Some("no") | Some("off") => HostKeyPolicy::Off,
            _ => HostKeyPolicy::Strict,
        }
    };
    let hash_known_hosts = cfg.hash_known_hosts;
    let timeout = match cfg.connect_timeout {
        Some(s) if s > 0 => opts.timeout.min(Duration::from_secs(u64::from(s))),
        _ => opts.timeout,
    };
    let mut via: Option<Box<Target>> = None;
    if let Some((value, origin)) = cfg.proxy_jump.as_ref().filter(|(v, _)| !chained && !v.eq_ignore_ascii_case("none")) {
        let hops: Vec<&str> = value.split(',').collect();
        if jumps + hops.len() > MAX_JUMPS {
            return Err(Error::new(
                Kind::Ssh,
                format!(
                    "host '{}': the ssh config's ProxyJump ({}) leads through more than {} jump hosts: check that the jump hosts do not name each other",
                    alias, origin, MAX_JUMPS
                ),
            ));
        }
        for (i, hop) in hops.iter().enumerate() {
            let (hop_user, hop_host, hop_port) = parse_hop(hop).ok_or_else(|| {
                Error::new(
                    Kind::Ssh,
                    format!(
                        "host '{}': the ssh config sets 'ProxyJump {}' ({}), whose '{}' is not [user@]host[:port]",
                        alias, value, origin, hop
                    ),
                )
            })?;
            let hop_opts = Options { user: hop_user, port: hop_port, ..*opts };
            // The first hop is reached as configured for it (its own ProxyJump included);
            // each later one through the hop before it.
            let mut t = resolve_hop(hop_host, &hop_opts, jumps + i + 1, i > 0)?;
            if i > 0 {
                t.via = via.take();
            }
            via = Some(Box::new(t));
        }
    }
    Ok(Target {
        via,
        alias: alias.to_string(),
        hostname,
        port,
        user,
        identity_files,
        identities_only: cfg.identities_only.unwrap_or(false),
        use_agent: cfg.use_agent(),
        agent_socket: std::env::var_os("SSH_AUTH_SOCK").filter(|s| !s.is_empty()).map(PathBuf::from),
        address_family: cfg.address_family.clone(),
        known_hosts,
        host_keys,
        hash_known_hosts: hash_known_hosts.unwrap_or(false),
        timeout,
    })
}

/// Connect, verify the host key and authenticate. Returns the blocking session and the
/// raw fd of its transport (a TCP socket, or for a host behind a jump host the socket
/// pair that carries the jump host's channel), owned by the session.
pub fn open(target: &Target) -> Result<(Session, std::os::fd::RawFd)> {
    use std::os::fd::AsRawFd;
    let mut session = Session::new().map_err(|e| Error::new(Kind::Ssh, format!("cannot create an SSH session: {}", e)))?;
    session.set_timeout(u32::try_from(target.timeout.as_millis()).unwrap_or(u32::MAX));
    let (fd, peer) = match &target.via {
        Some(hop) => {
            let stream = super::jump::connect_via(hop, &target.hostname, target.port, &target.alias)?;
            let fd = stream.as_raw_fd();
            session.set_tcp_stream(stream);
            (fd, None)
        }
        None => {
            let stream = tcp_connect(target)?;
            let _ = stream.set_nodelay(true);
            let peer = stream.peer_addr().ok();
            let fd = stream.as_raw_fd();
            session.set_tcp_stream(stream);
            (fd, peer)
        }
    };
    super::crypto::withhold_if_not_allowed(&session, None).map_err(|e| Error::new(Kind::Ssh, format!("SSH to host '{}': {}", target.alias, e)))?;
    let name = format!("{}:{}", target.hostname, target.port);
    session.handshake().map_err(|e| {
        Error::new(Kind::Ssh, format!("SSH handshake with host '{}' ({}{}) failed: {}", target.alias, name, via_text(target), e))
    })?;
    check_host_key(&session, target, peer)?;
    authenticate(&session, target)?;
    Ok((session, fd))
}

/// " via jump host 'b'" for a target behind a jump host, else "".
pub fn via_text(target: &Target) -> String {
    match &target.via {
        Some(hop) => format!(" via jump host '{}'", hop.alias),
        None => String::new(),
    }
}

/// A TCP connection to the target, within its timeout.
fn tcp_connect(target: &Target) -> Result<TcpStream> {
    let name = format!("{}:{}", target.hostname, target.port);
    let addrs: Vec<_> = (target.hostname.as_str(), target.port)
        .to_socket_addrs()
        .map_err(|e| {
            Error::new(Kind::Dns, format!("cannot resolve host name '{}' (host '{}'): {}", target.hostname, target.alias, e))
        })?
        .filter(|a: &SocketAddr| match target.address_family.as_deref() {
            Some("inet") => a.is_ipv4(),
            Some("inet6") => a.is_ipv6(),
            _ => true,
        })
        .collect();
    if addrs.is_empty() {
        return Err(Error::new(Kind::Dns, format!("host name '{}' (host '{}') resolves to no address", target.hostname, target.alias)));
    }
    let mut last_err = None;
    let mut stream = None;
    for addr in &addrs {
        match TcpStream::connect_timeout(addr, target.timeout) {
            Ok(s) => {
                stream = Some(s);
                break;
            }
            Err(e) => last_err = Some(e),
        }
    }
    let stream = match stream {
        Some(s) => s,
        None => {
            let e = last_err.map(|e| e.to_string()).unwrap_or_default();
            let kind = if e.contains("timed out") { Kind::Timeout } else { Kind::Connect };
            return Err(Error::new(kind, format!("cannot connect to host '{}' ({}): {}", target.alias, name, e)));
        }
    };
    Ok(stream)
}

fn check_host_key(session: &Session, target: &Target, peer: Option<SocketAddr>) -> Result<()> {
    if target.host_keys == HostKeyPolicy::Off {
        return Ok(());
    }
    let (key, key_type) = session
        .host_key()
        .ok_or_else(|| Error::new(Kind::HostKey, format!("host '{}' sent no host key", target.alias)))?;
    let mut known = session
        .known_hosts()
        .map_err(|e| Error::new(Kind::HostKey, format!("cannot check host keys: {}", e)))?;
    for file in &target.known_hosts {
        if file.exists() {
            known.read_file(file, KnownHostFileKind::OpenSSH).map_err(|e| {
                Error::new(Kind::HostKey, format!("cannot read known_hosts file '{}': {}", file.display(), e))
            })?;
        }
    }
    let file_list = target.known_hosts.iter().map(|p| p.display().to_string()).collect::<Vec<_>>().join(", ");
    match known.check_port(&target.hostname, target.port, key) {
        CheckResult::Match => Ok(()),
        CheckResult::Mismatch => Err(Error::new(
            Kind::HostKey,
            format!(
                "the host key of host '{}' ({}:{}) has CHANGED since it was recorded in {}: this may be an attack, or the host was reinstalled. If you trust the new key, remove the old entry (ssh-keygen -R '{}') and connect again",
                target.alias, target.hostname, target.port, file_list, known_hosts_name(target)
            ),
        )),
        CheckResult::NotFound if target.host_keys == HostKeyPolicy::AcceptNew => {
            let file = target.known_hosts.first().cloned().ok_or_else(|| {
                Error::new(Kind::HostKey, format!("no known_hosts file to record the host key of '{}' in", target.alias))
            })?;
            let type_name = key_type_name(key_type).ok_or_else(|| {
                Error::new(Kind::HostKey, format!("host '{}' uses a host key type that cannot be recorded", target.alias))
            })?;
            let cannot = |e: std::io::Error| {
                Error::new(Kind::HostKey, format!("cannot add the host key of '{}' to '{}': {}", target.alias, file.display(), e))
            };
            let mut keys = vec![(type_name, key.to_vec())];
            // The host's keys of other types too, as OpenSSH learns them (UpdateHostKeys), so
            // that a client negotiating another type later finds its key. Those that
            // contradict a recorded key are left out.
            if let Some(peer) = peer {
                for (other_type, other_key) in other_host_keys(peer, target, type_name) {
                    if matches!(known.check_port(&target.hostname, target.port, &other_key), CheckResult::NotFound) {
                        keys.push((other_type, other_key));
                    }
                }
            }
            for (type_name, key) in keys {
                let salt = if target.hash_known_hosts { Some(known_hosts::random_salt().map_err(cannot)?) } else { None };
                let line = known_hosts::entry(&known_hosts_name(target), type_name, &key, salt.as_ref());
                known_hosts::append(&file, &line).map_err(cannot)?;
            }
            Ok(())
        }
        CheckResult::NotFound => Err(Error::new(
            Kind::HostKey,
            format!(
                "the host key of host '{}' ({}:{}) is unknown: it is not in {}. Add it to known_hosts (e.g. with 'ssh-keyscan -p {} {} >> ~/.ssh/known_hosts' after checking its fingerprint), or accept new host keys with options(parallelly.ssh.acceptNewHostKeys = TRUE)",
                target.alias, target.hostname, target.port, file_list, target.port, target.hostname
            ),
        )),
        CheckResult::Failure => Err(Error::new(Kind::HostKey, format!("cannot check the host key of host '{}'", target.alias))),
    }
}

/// The known_hosts name of a host key type.
fn key_type_name(key_type: ssh2::HostKeyType) -> Option<&'static str> {
    match key_type {
        ssh2::HostKeyType::Rsa => Some("ssh-rsa"),
        ssh2::HostKeyType::Dss => Some("ssh-dss"),
        ssh2::HostKeyType::Ecdsa256 => Some("ecdsa-sha2-nistp256"),
        ssh2::HostKeyType::Ecdsa384 => Some("ecdsa-sha2-nistp384"),
        ssh2::HostKeyType::Ecdsa521 => Some("ecdsa-sha2-nistp521"),
        ssh2::HostKeyType::Ed25519 => Some("ssh-ed25519"),
        _ => None,
    }
}

/// The host's keys of types other than `have`: one short handshake per type (as
/// ssh-keyscan does), each asking for that type only; types the host lacks are skipped.
fn other_host_keys(peer: SocketAddr, target: &Target, have: &str) -> Vec<(&'static str, Vec<u8>)> {
    const TYPES: [(&str, &str); 5] = [
        ("ssh-ed25519", "ssh-ed25519"),
        ("ecdsa-sha2-nistp256", "ecdsa-sha2-nistp256"),
        ("ecdsa-sha2-nistp384", "ecdsa-sha2-nistp384"),
        ("ecdsa-sha2-nistp521", "ecdsa-sha2-nistp521"),
        ("ssh-rsa", "rsa-sha2-512,rsa-sha2-256,ssh-rsa"),
    ];
    let timeout = target.timeout.min(Duration::from_secs(5));
    let mut found = Vec::new();
    for (name, algorithms) in TYPES {
        if name == have {
            continue;
        }
        let Ok(stream) = TcpStream::connect_timeout(&peer, timeout) else { continue };
        let Ok(mut session) = Session::new() else { continue };
        session.set_timeout(u32::try_from(timeout.as_millis()).unwrap_or(u32::MAX));
        if session.method_pref(ssh2::MethodType::HostKey, algorithms).is_err() {
            continue;
        }
        if super::crypto::withhold_if_not_allowed(&session, None).is_err() {
            continue;
        }
        session.set_tcp_stream(stream);
        if session.handshake().is_err() {
            continue;
        }
        if let Some((key, key_type)) = session.host_key() {
            if key_type_name(key_type) == Some(name) {
                found.push((name, key.to_vec()));
            }
        }
        let _ = session.disconnect(None, "host key recorded", None);
    }
    found
}

/// The name a known_hosts line uses for the target: `host`, or `[host]:port` off port 22.
fn known_hosts_name(target: &Target) -> String {
    if target.port == 22 {
        target.hostname.clone()
    } else {
        format!("[{}]:{}", target.hostname, target.port)
    }
}

/// Log in with a key held by the agent at `socket` (given, so that libssh2 does not read
/// SSH_AUTH_SOCK itself on this thread); whether it worked.
fn agent_login(session: &Session, user: &str, socket: &Path) -> bool {
    let Ok(mut agent) = session.agent() else { return false };
    if agent.set_identity_path(socket).is_err() || agent.connect().is_err() || agent.list_identities().is_err() {
        return false;
    }
    let ok = agent.identities().unwrap_or_default().iter().any(|id| agent.userauth(user, id).is_ok() && session.authenticated());
    let _ = agent.disconnect();
    ok
}

fn authenticate(session: &Session, target: &Target) -> Result<()> {
    let mut tried = Vec::new();
    if let Some(socket) = target.agent_socket.as_deref().filter(|_| target.use_agent && !target.identities_only) {
        tried.push("ssh-agent".to_string());
        if agent_login(session, &target.user, socket) {
            return Ok(());
        }
    }
    let mut problems = Vec::new();
    for key in &target.identity_files {
        if !key.exists() {
            continue;
        }
        tried.push(key.display().to_string());
        match session.userauth_pubkey_file(&target.user, None, key, None) {
            Ok(()) if session.authenticated() => return Ok(()),
            Ok(()) => {}
            Err(e) => {
                let msg = e.message().to_string();
                if msg.contains("decrypt") || msg.contains("passphrase") || msg.contains("Unable to extract public key") {
                    problems.push(format!("{} may need a passphrase (add it to ssh-agent)", key.display()));
                }
            }
        }
    }
    let tried = if tried.is_empty() { "no keys (no ssh-agent, no identity file found)".to_string() } else { tried.join(", ") };
    let extra = if problems.is_empty() { String::new() } else { format!("; {}", problems.join("; ")) };
    Err(Error::new(
        Kind::Auth,
        format!(
            "authentication as user '{}' on host '{}' ({}:{}) failed; tried {}{}. Check the user, the key in the server's authorized_keys, and IdentityFile in ~/.ssh/config",
            target.user, target.alias, target.hostname, target.port, tried, extra
        ),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A config file of its own for one test; removed when dropped.
    struct ConfigFile(PathBuf);

    impl ConfigFile {
        fn new(name: &str, text: &str) -> ConfigFile {
            let dir = std::env::temp_dir().join(format!("parallelly-session-{}-{}", std::process::id(), name));
            std::fs::create_dir_all(&dir).expect("dir");
            let path = dir.join("config");
            std::fs::write(&path, text).expect("config");
            ConfigFile(path)
        }
    }

    impl Drop for ConfigFile {
        fn drop(&mut self) {
            if let Some(dir) = self.0.parent() {
                let _ = std::fs::remove_dir_all(dir);
            }
        }
    }

    fn options(config: &Path) -> Options<'_> {
        Options { user: None, port: None, config_file: Some(config), known_hosts_file: None, accept_new: false, timeout: Duration::from_secs(30) }
    }

    #[test]
    fn the_config_resolves_into_a_target() {
        let cfg = ConfigFile::new(
            "resolve",
            "Host web\n  HostName %h.example.org\n  Port 2200\n  User alice\n  IdentityFile /keys/%r@%h\n  IdentitiesOnly yes\n  ConnectTimeout 5\n  UserKnownHostsFile /kh/%h\n  StrictHostKeyChecking accept-new\n  AddressFamily inet\nHost loose\n  StrictHostKeyChecking no\n",
        );
        let t = resolve("web", &options(&cfg.0)).expect("resolve");
        assert_eq!((t.alias.as_str(), t.hostname.as_str(), t.port, t.user.as_str()), ("web", "web.example.org", 2200, "alice"));
        assert_eq!(t.identity_files, vec![PathBuf::from("/keys/alice@web.example.org")]);
        assert!(t.identities_only);
        assert_eq!(t.known_hosts, vec![PathBuf::from("/kh/web.example.org")]);
        assert_eq!(t.host_keys, HostKeyPolicy::AcceptNew);
        assert_eq!(t.address_family.as_deref(), Some("inet"));
        // ConnectTimeout only shortens the caller's timeout.
        assert_eq!(t.timeout, Duration::from_secs(5));
        assert!(t.via.is_none());
        // What the caller gives wins over the config.
        let kh = PathBuf::from("/other/known_hosts");
        let o = Options { user: Some("bob"), port: Some(22), known_hosts_file: Some(&kh), timeout: Duration::from_secs(2), ..options(&cfg.0) };
        let t = resolve("web", &o).expect("resolve");
        assert_eq!((t.user.as_str(), t.port, t.timeout), ("bob", 22, Duration::from_secs(2)));
        assert_eq!(t.known_hosts, vec![kh]);
        assert_eq!(t.host_keys, HostKeyPolicy::AcceptNew);
        assert_eq!(resolve("loose", &options(&cfg.0)).expect("resolve").host_keys, HostKeyPolicy::Off);
        // A host the config does not name: the name itself, port 22, strict host keys.
        let t = resolve("plain.example.org", &Options { accept_new: false, ..options(&cfg.0) }).expect("resolve");
        assert_eq!((t.hostname.as_str(), t.port, t.host_keys), ("plain.example.org", 22, HostKeyPolicy::Strict));
        assert_eq!(resolve("plain.example.org", &Options { accept_new: true, ..options(&cfg.0) }).expect("resolve").host_keys, HostKeyPolicy::AcceptNew);
    }

    #[test]
    fn proxy_jump_chains_resolve_in_order_and_loops_are_refused() {
        let cfg = ConfigFile::new(
            "jump",
            "Host inner\n  HostName 10.0.0.5\n  ProxyJump j1,me@j2:2022\nHost j1\n  HostName bastion.example.org\n  User jumper\nHost loop1\n  ProxyJump loop2\nHost loop2\n  ProxyJump loop1\nHost bad\n  ProxyJump me@:22\nHost direct\n  ProxyJump none\n",
        );
        let t = resolve("inner", &options(&cfg.0)).expect("resolve");
        // The last hop is the target's `via`; the first hop is the last hop's.
        let last = t.via.as_deref().expect("via");
        assert_eq!((last.hostname.as_str(), last.user.as_str(), last.port), ("j2", "me", 2022));
        let first = last.via.as_deref().expect("first hop");
        assert_eq!((first.hostname.as_str(), first.user.as_str()), ("bastion.example.org", "jumper"));
        assert!(first.via.is_none());
        assert_eq!(via_text(&t), " via jump host 'j2'");
        assert_eq!(via_text(first), "");
        for (host, words) in [("loop1", "more than 8 jump hosts"), ("bad", "is not [user@]host[:port]")] {
            match resolve(host, &options(&cfg.0)) {
                Err(e) => {
                    assert_eq!(e.kind, Kind::Ssh);
                    assert!(e.message.contains(words) && e.message.contains(host), "{}", e.message);
                }
                Ok(t) => panic!("{} resolved to {:?}", host, t),
            }
        }
        assert!(resolve("direct", &options(&cfg.0)).expect("resolve").via.is_none());
    }

    #[test]
    fn a_nul_in_a_name_is_refused_here() {
        // Found by fuzzing (fuzz/regressions/known_hosts): the ssh2 crate panics on a host
        // name with a NUL when it checks known_hosts.
        let cfg = ConfigFile::new("nul", "Host h\n  HostName a\0b\nHost u\n  User x\0y\n");
        for host in ["h", "u"] {
            let e = resolve(host, &options(&cfg.0)).expect_err("NUL");
            assert_eq!(e.kind, Kind::Ssh);
            assert!(e.message.contains("NUL character"), "{}", e.message);
        }
    }

    #[test]
    fn unsupported_directives_and_unreadable_configs_are_errors() {
        let cfg = ConfigFile::new("refused", "Host proxied\n  ProxyCommand nc %h %p\n");
        let e = resolve("proxied", &options(&cfg.0)).expect_err("ProxyCommand");
        assert_eq!(e.kind, Kind::Ssh);
        assert!(e.message.contains("ProxyCommand"), "{}", e.message);
        // A missing config file is no error (OpenSSH reads none then); a directory is.
        let missing = cfg.0.with_file_name("absent");
        assert!(resolve("x", &options(&missing)).is_ok());
        let dir = cfg.0.parent().expect("dir").to_path_buf();
        assert!(resolve("x", &options(&dir)).is_err());
    }

    fn target_at(hostname: &str, port: u16, timeout: Duration) -> Target {
        Target {
            alias: "t".to_string(),
            hostname: hostname.to_string(),
            port,
            user: "u".to_string(),
            identity_files: Vec::new(),
            identities_only: true,
            use_agent: false,
            agent_socket: None,
            address_family: None,
            known_hosts: Vec::new(),
            host_keys: HostKeyPolicy::Strict,
            hash_known_hosts: false,
            timeout,
            via: None,
        }
    }

    #[test]
    fn connection_failures_map_to_their_kinds() {
        // Nobody listens: refused.
        let port = {
            let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
            l.local_addr().expect("addr").port()
        };
        let e = open(&target_at("127.0.0.1", port, Duration::from_secs(5))).err().expect("refused");
        assert_eq!(e.kind, Kind::Connect, "{}", e.message);
        assert!(e.message.contains("host 't'"), "{}", e.message);
        // A name that is no host name.
        let e = open(&target_at("no such host", 22, Duration::from_secs(5))).err().expect("dns");
        assert_eq!(e.kind, Kind::Dns, "{}", e.message);
        // Only IPv6 wanted, only an IPv4 address known.
        let t = Target { address_family: Some("inet6".to_string()), ..target_at("127.0.0.1", port, Duration::from_secs(5)) };
        assert_eq!(open(&t).err().expect("family").kind, Kind::Dns);
        // A server that is no SSH server: the handshake fails, naming the host.
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        let port = listener.local_addr().expect("addr").port();
        let server = std::thread::spawn(move || {
            if let Ok((mut s, _)) = listener.accept() {
                use std::io::Write;
                let _ = s.write_all(b"HTTP/1.0 400 Bad Request\r\n\r\n");
            }
        });
        let e = open(&target_at("127.0.0.1", port, Duration::from_secs(5))).err().expect("handshake");
        assert_eq!(e.kind, Kind::Ssh, "{}", e.message);
        assert!(e.message.contains("handshake with host 't'"), "{}", e.message);
        let _ = server.join();
    }

    #[test]
    fn known_hosts_names_and_key_types() {
        assert_eq!(known_hosts_name(&target_at("h", 22, Duration::from_secs(1))), "h");
        assert_eq!(known_hosts_name(&target_at("h", 2222, Duration::from_secs(1))), "[h]:2222");
        assert_eq!(key_type_name(ssh2::HostKeyType::Ed25519), Some("ssh-ed25519"));
        assert_eq!(key_type_name(ssh2::HostKeyType::Unknown), None);
    }

    #[test]
    fn proxy_jump_hops() {
        assert_eq!(parse_hop("bastion"), Some((None, "bastion", None)));
        assert_eq!(parse_hop("me@bastion:2222"), Some((Some("me"), "bastion", Some(2222))));
        assert_eq!(parse_hop("ssh://me@bastion:22"), Some((Some("me"), "bastion", Some(22))));
        assert_eq!(parse_hop("[::1]:2200"), Some((None, "::1", Some(2200))));
        for bad in ["", "@h", "h:", "h:0", "h:x", "[::1", "[::1]x"] {
            assert_eq!(parse_hop(bad), None, "{}", bad);
        }
    }
}
