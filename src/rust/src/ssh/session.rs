//! Opening one SSH connection: resolve the target from the user's ssh config, connect with
//! a deadline, check the server's host key against known_hosts, and authenticate with the
//! agent or identity files, as OpenSSH users expect. Everything here runs in blocking mode
//! with the session timeout set; the I/O thread takes over afterwards.

use std::net::{SocketAddr, TcpStream, ToSocketAddrs};
use std::path::{Path, PathBuf};
use std::time::Duration;

use ssh2::{CheckResult, KnownHostFileKind, Session};

use super::algorithms::{self, Policy};
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
    /// The user's algorithm policy (Ciphers, MACs, KexAlgorithms) as libssh2 preferences.
    pub method_prefs: Vec<(Policy, String)>,
    /// The host-key algorithms allowed, in order; `host_key_order` says whether the key
    /// types known_hosts holds for the host go first (HostKeyAlgorithms not set).
    pub host_key_algorithms: Vec<String>,
    pub host_key_order: bool,
    /// PubkeyAcceptedAlgorithms: the signature algorithms our keys may use.
    pub pubkey_algorithms: Vec<String>,
    /// What the user's policy allows that libssh2 lacks ("KexAlgorithms a,b", ...): a host
    /// that offers only those fails the handshake, and OpenSSH's client may connect.
    pub lacking: Vec<String>,
    /// `Compression yes`.
    pub compression: bool,
    /// `ServerAliveInterval` in seconds (0: off).
    pub keepalive: u32,
    /// `ServerAliveCountMax` (OpenSSH's default 3): unanswered keepalives before the
    /// connection is declared dead.
    pub keepalive_count_max: u32,
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
    /// Config lines given on the command line (`rshopts`' `-o`, `-i`, `-J`, ...): read
    /// before the config files, so that they win, as OpenSSH's command line does.
    pub command_line: &'a [String],
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
    resolve_checked(alias, opts)?.map_err(|why| Error::new(Kind::Ssh, why))
}

/// Resolve `alias`; the inner error says why the built-in client cannot connect as OpenSSH
/// would (a directive or option it does not implement), so that the host can be handed to
/// the external client. The outer error is a broken setup (a bad value, an Include loop).
pub fn resolve_checked(alias: &str, opts: &Options) -> Result<std::result::Result<Target, String>> {
    match resolve_hop(alias, opts, 0, false) {
        Ok(t) => Ok(Ok(t)),
        Err(Resolve::External(why)) => Ok(Err(why)),
        Err(Resolve::Broken(e)) => Err(e),
    }
}

/// Why a host could not be resolved for the built-in client.
enum Resolve {
    /// OpenSSH would connect, but not the built-in client (the message says why).
    External(String),
    /// The setup is wrong for any client.
    Broken(Error),
}

impl From<Error> for Resolve {
    fn from(e: Error) -> Resolve {
        Resolve::Broken(e)
    }
}

/// The algorithm policy of `cfg` as libssh2 method preferences (what libssh2 lacks left
/// out), or why the built-in client cannot follow it.
type Methods = (Vec<(Policy, String)>, Vec<String>, bool, Vec<String>, Vec<String>);

fn algorithm_policy(cfg: &config::HostConfig, alias: &str) -> std::result::Result<Methods, String> {
    let probe = Session::new().map_err(|e| format!("cannot create an SSH session: {}", e))?;
    let mut prefs = Vec::new();
    let mut lists = Vec::new();
    let mut lacking = Vec::new();
    for policy in Policy::ALL {
        let set = cfg.algorithm(policy);
        let wanted = algorithms::effective(policy, set.map(|s| s.0));
        // Certificates (host or user) are for the external client.
        let have: Vec<&str> =
            probe.supported_algs(methods_of(policy)[0]).unwrap_or_default().into_iter().filter(|a| !a.contains("-cert-")).collect();
        let usable = algorithms::restrict(&wanted, &have);
        let all: Vec<&str> = probe.supported_algs(methods_of(policy)[0]).unwrap_or_default();
        let missing: Vec<&str> = wanted.iter().map(String::as_str).filter(|a| !all.contains(a)).collect();
        if policy != Policy::Pubkey && !missing.is_empty() {
            lacking.push(format!("{} {}", policy.name(), missing.join(",")));
        }
        let refuse = || {
            let (value, origin) = set.unwrap_or(("(default)", "OpenSSH's default"));
            let origin = if origin.starts_with(config::COMMAND_LINE) { "an ssh option in rshopts" } else { origin };
            format!(
                "host '{}': '{} {}' ({}) allows only algorithms the built-in SSH client does not implement ({})",
                alias, policy.name(), value, origin, wanted.join(",")
            )
        };
        match policy {
            // Only RSA keys have signature algorithms to choose in libssh2.
            Policy::Pubkey => {
                let rsa = algorithms::restrict(&wanted, &["rsa-sha2-512", "rsa-sha2-256", "ssh-rsa"]);
                if !rsa.is_empty() && !usable.is_empty() {
                    prefs.push((policy, algorithms::restrict(&rsa, &have).join(",")));
                }
                lists.push(wanted.clone());
            }
            _ if usable.is_empty() => return Err(refuse()),
            Policy::HostKey => lists.push(usable),
            _ => prefs.push((policy, usable.join(","))),
        }
    }
    let pubkey = lists.pop().unwrap_or_default();
    let host_keys = lists.pop().unwrap_or_default();
    Ok((prefs.into_iter().filter(|(_, p)| !p.is_empty()).collect(), host_keys, cfg.algorithm(Policy::HostKey).is_none(), pubkey, lacking))
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
fn resolve_hop(alias: &str, opts: &Options, jumps: usize, chained: bool) -> std::result::Result<Target, Resolve> {
    let home = home_dir();
    let config_path = opts.config_file.map(Path::to_path_buf).unwrap_or_else(|| home.join(".ssh").join("config"));
    let local = local_user();
    // As OpenSSH reads them: the user's file, then the system-wide one (Debian's says
    // HashKnownHosts yes), into one set of settings where the first value wins.
    let ctx = config::Context { host: alias, user: opts.user, local_user: &local, home: &home };
    let mut reader = config::Reader::new(&ctx);
    let config_error = |msg: String| Error::new(Kind::Ssh, msg);
    if !opts.command_line.is_empty() && jumps == 0 {
        reader.read_text(&opts.command_line.join("\n"), config::COMMAND_LINE, &home.join(".ssh"), 0).map_err(config_error)?;
    }
    reader.read_file(&config_path, &home.join(".ssh")).map_err(config_error)?;
    reader.read_file(Path::new(SYSTEM_CONFIG), Path::new("/etc/ssh")).map_err(config_error)?;
    let cfg = reader.cfg;
    if let Some(msg) = cfg.unsupported(alias) {
        return Err(Resolve::External(msg));
    }
    let (method_prefs, host_key_algorithms, host_key_order, pubkey_algorithms, lacking) =
        algorithm_policy(&cfg, alias).map_err(Resolve::External)?;
    let user = opts.user.map(str::to_string).or(cfg.user.clone()).unwrap_or_else(|| local.clone());
    let hostname_raw = cfg.hostname.clone().unwrap_or_else(|| alias.to_string());
    let hostname = hostname_raw.replace("%h", alias);
    // libssh2 takes names as C strings (and the ssh2 crate panics on a NUL in one).
    if hostname.contains('\0') || user.contains('\0') {
        return Err(Resolve::Broken(Error::new(Kind::Ssh, format!("host '{}': the ssh config's HostName or User holds a NUL character: fix the config file", alias.replace('\0', "\\0")))));
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
            Some("no") | Some("false") | Some("off") => HostKeyPolicy::Off,
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
            return Err(Resolve::Broken(Error::new(
                Kind::Ssh,
                format!(
                    "host '{}': the ssh config's ProxyJump ({}) leads through more than {} jump hosts: check that the jump hosts do not name each other",
                    alias, origin, MAX_JUMPS
                ),
            )));
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
            let hop_opts = Options { user: hop_user, port: hop_port, command_line: &[], ..*opts };
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
        method_prefs,
        host_key_algorithms,
        host_key_order,
        pubkey_algorithms,
        lacking,
        compression: cfg.compression.unwrap_or(false),
        keepalive: cfg.server_alive_interval.unwrap_or(0),
        keepalive_count_max: cfg.server_alive_count_max.unwrap_or(3),
    })
}

/// Connect, verify the host key and authenticate. Returns the blocking session and the
/// raw fd of its transport (a TCP socket, or for a host behind a jump host the socket
/// pair that carries the jump host's channel), owned by the session.
pub fn open(target: &Target) -> Result<(Session, std::os::fd::RawFd)> {
    use std::os::fd::AsRawFd;
    let mut session = Session::new().map_err(|e| Error::new(Kind::Ssh, format!("cannot create an SSH session: {}", e)))?;
    session.set_timeout(u32::try_from(target.timeout.as_millis()).unwrap_or(u32::MAX));
    let fd = match &target.via {
        Some(hop) => {
            let stream = super::jump::connect_via(hop, &target.hostname, target.port, &target.alias)?;
            let fd = stream.as_raw_fd();
            session.set_tcp_stream(stream);
            fd
        }
        None => {
            let stream = tcp_connect(target)?;
            let _ = stream.set_nodelay(true);
            let fd = stream.as_raw_fd();
            session.set_tcp_stream(stream);
            fd
        }
    };
    apply_policy(&session, target)?;
    let name = format!("{}:{}", target.hostname, target.port);
    session.handshake().map_err(|e| {
        let msg = format!("SSH handshake with host '{}' ({}{}) failed: {}", target.alias, name, via_text(target), e);
        // No algorithm in common (LIBSSH2_ERROR_KEX_FAILURE, _METHOD_NOT_SUPPORTED,
        // _ALGO_UNSUPPORTED) while the policy allows some libssh2 lacks: the host may want
        // just those.
        let no_common = matches!(e.code(), ssh2::ErrorCode::Session(-5 | -33 | -51));
        if no_common && !target.lacking.is_empty() {
            return Error::new(
                Kind::NoCommonAlgorithm,
                format!("{}; the ssh config allows algorithms the built-in SSH client does not implement ({}), which the host may require", msg, target.lacking.join("; ")),
            );
        }
        Error::new(Kind::Ssh, msg)
    })?;
    check_host_key(&session, target)?;
    authenticate(&session, target)?;
    // ServerAliveInterval: from now on (the I/O thread sends them when due, and counts
    // the unacknowledged ones: see host.rs, check_alive).
    if target.keepalive > 0 {
        session.set_keepalive(false, target.keepalive);
    }
    Ok((session, fd))
}

/// The libssh2 methods a policy sets (both directions where there are two).
fn methods_of(policy: Policy) -> &'static [ssh2::MethodType] {
    use ssh2::MethodType as M;
    match policy {
        Policy::Ciphers => &[M::CryptCs, M::CryptSc],
        Policy::Macs => &[M::MacCs, M::MacSc],
        Policy::Kex => &[M::Kex],
        Policy::HostKey => &[M::HostKey],
        Policy::Pubkey => &[M::SignAlgo],
    }
}

/// The user's algorithm policy and compression, set before the handshake.
fn apply_policy(session: &Session, target: &Target) -> Result<()> {
    let refused = |what: &str, prefs: &str, e: ssh2::Error| {
        Error::new(Kind::Ssh, format!("host '{}': libssh2 refused the {} preference '{}': {}", target.alias, what, prefs, e))
    };
    for (policy, prefs) in &target.method_prefs {
        for method in methods_of(*policy) {
            session.method_pref(*method, prefs).map_err(|e| refused(policy.name(), prefs, e))?;
        }
    }
    let host_keys = host_key_preference(session, target);
    if !host_keys.is_empty() {
        let prefs = host_keys.join(",");
        session.method_pref(ssh2::MethodType::HostKey, &prefs).map_err(|e| refused("host key", &prefs, e))?;
    }
    // Where the system's crypto policy (FIPS) forbids our ChaCha20-Poly1305, it is taken out
    // of the user's cipher list too (ssh/crypto.rs): never offered, whatever the config says.
    let ciphers = target.method_prefs.iter().find(|(policy, _)| matches!(policy, Policy::Ciphers)).map(|(_, prefs)| prefs.as_str());
    super::crypto::withhold_if_not_allowed(session, ciphers).map_err(|e| Error::new(Kind::Ssh, format!("SSH to host '{}': {}", target.alias, e)))?;
    session.set_compress(target.compression);
    Ok(())
}

/// The host-key algorithms to ask for, in order: with HostKeyAlgorithms unset, those for
/// the key types known_hosts already holds for the host first, as OpenSSH orders them, so
/// that a host known by one key type is never reported unknown because another was chosen.
pub fn host_key_preference(session: &Session, target: &Target) -> Vec<String> {
    if !target.host_key_order {
        return target.host_key_algorithms.clone();
    }
    let known = known_key_types(session, target);
    algorithms::order_by_known_types(&target.host_key_algorithms, &known)
}

/// The key types that known_hosts lists for the target (hashed names included), matched
/// by libssh2 as it matches the host key itself: a line's names match the host when a
/// key that is surely not its own reads as a mismatch rather than as unknown.
fn known_key_types(session: &Session, target: &Target) -> Vec<String> {
    let mut types: Vec<String> = Vec::new();
    for file in &target.known_hosts {
        let Ok(text) = std::fs::read_to_string(file) else { continue };
        for line in text.lines() {
            let fields: Vec<&str> = line.split_whitespace().collect();
            // host-patterns key-type base64 [comment]; markers (@cert-authority, @revoked) skipped.
            if fields.len() < 3 || fields[0].starts_with('#') || fields[0].starts_with('@') {
                continue;
            }
            let key_type = fields[1];
            if types.iter().any(|t| t == key_type) || algorithms::algorithms_for_key_type(key_type).is_empty() {
                continue;
            }
            let Ok(mut one) = session.known_hosts() else { continue };
            if one.read_str(&fields[..3].join(" "), KnownHostFileKind::OpenSSH).is_err() {
                continue;
            }
            if matches!(one.check_port(&target.hostname, target.port, b"not-a-key"), CheckResult::Mismatch) {
                types.push(key_type.to_string());
            }
        }
    }
    types
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

fn check_host_key(session: &Session, target: &Target) -> Result<()> {
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
            // Only the key this session proved (OpenSSH learns other types only over an
            // authenticated session, through UpdateHostKeys, which libssh2 lacks); a later
            // connection asks for the recorded type first (see host_key_preference()).
            let salt = if target.hash_known_hosts { Some(known_hosts::random_salt().map_err(cannot)?) } else { None };
            let line = known_hosts::entry(&known_hosts_name(target), type_name, key, salt.as_ref());
            known_hosts::append(&file, &line).map_err(cannot)?;
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

/// The name a known_hosts line uses for the target: `host`, or `[host]:port` off port 22.
fn known_hosts_name(target: &Target) -> String {
    if target.port == 22 {
        target.hostname.clone()
    } else {
        format!("[{}]:{}", target.hostname, target.port)
    }
}

/// The key type a public key blob names (its first SSH string).
fn blob_key_type(blob: &[u8]) -> Option<&str> {
    let len = u32::from_be_bytes(blob.get(..4)?.try_into().ok()?) as usize;
    std::str::from_utf8(blob.get(4..4usize.checked_add(len)?)?).ok()
}

/// Whether PubkeyAcceptedAlgorithms lets a key of `key_type` be offered.
fn key_type_accepted(target: &Target, key_type: &str) -> bool {
    let algs = algorithms::algorithms_for_key_type(key_type);
    // A type we do not map (a security key, say): offered, the server decides.
    target.pubkey_algorithms.is_empty() || algs.is_empty() || algs.iter().any(|a| target.pubkey_algorithms.iter().any(|p| p == a))
}

/// The type of an identity file's key, from its `.pub` file when there is one.
fn identity_key_type(key: &Path) -> Option<String> {
    let mut pub_path = key.as_os_str().to_owned();
    pub_path.push(".pub");
    let text = std::fs::read_to_string(PathBuf::from(pub_path)).ok()?;
    text.split_whitespace().next().map(str::to_string)
}

/// Log in with a key held by the agent at `socket` (given, so that libssh2 does not read
/// SSH_AUTH_SOCK itself on this thread), offering only the key types PubkeyAcceptedAlgorithms
/// lets through (the others are noted in `skipped`); whether it worked.
fn agent_login(session: &Session, target: &Target, socket: &Path, skipped: &mut Vec<String>) -> bool {
    let Ok(mut agent) = session.agent() else { return false };
    if agent.set_identity_path(socket).is_err() || agent.connect().is_err() || agent.list_identities().is_err() {
        return false;
    }
    let mut ok = false;
    for identity in agent.identities().unwrap_or_default() {
        let key_type = blob_key_type(identity.blob()).unwrap_or("").to_string();
        if !key_type_accepted(target, &key_type) {
            skipped.push(format!("the agent's {} key", key_type));
            continue;
        }
        if agent.userauth(&target.user, &identity).is_ok() && session.authenticated() {
            ok = true;
            break;
        }
    }
    let _ = agent.disconnect();
    ok
}

fn authenticate(session: &Session, target: &Target) -> Result<()> {
    let mut tried = Vec::new();
    let mut skipped = Vec::new();
    if let Some(socket) = target.agent_socket.as_deref().filter(|_| target.use_agent && !target.identities_only) {
        tried.push("ssh-agent".to_string());
        if agent_login(session, target, socket, &mut skipped) {
            return Ok(());
        }
    }
    let mut problems = Vec::new();
    for key in &target.identity_files {
        if !key.exists() {
            continue;
        }
        if let Some(key_type) = identity_key_type(key).filter(|t| !key_type_accepted(target, t)) {
            skipped.push(format!("{} ({})", key.display(), key_type));
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
    if !skipped.is_empty() {
        problems.push(format!("not offered by PubkeyAcceptedAlgorithms: {}", skipped.join(", ")));
    }
    let tried = if tried.is_empty() { "no keys (no ssh-agent, no identity file found)".to_string() } else { tried.join(", ") };
    let extra = if problems.is_empty() { String::new() } else { format!("; {}", problems.join("; ")) };
    // What else the host would take: a password or prompts need the external client.
    let methods = session.auth_methods(&target.user).map(str::to_string).unwrap_or_default();
    let prompts = methods.split(',').any(|m| matches!(m, "password" | "keyboard-interactive"));
    let accepts = if methods.is_empty() { String::new() } else { format!("; the host accepts: {}", methods) };
    Err(Error::new(
        if prompts { Kind::AuthPrompt } else { Kind::Auth },
        format!(
            "authentication as user '{}' on host '{}' ({}:{}) failed; tried {}{}{}. Check the user, the key in the server's authorized_keys, and IdentityFile in ~/.ssh/config",
            target.user, target.alias, target.hostname, target.port, tried, extra, accepts
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
        Options { user: None, port: None, config_file: Some(config), known_hosts_file: None, accept_new: false, timeout: Duration::from_secs(30), command_line: &[] }
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

    /// `ssh -G -F config host` of the installed OpenSSH, as keyword -> values.
    fn openssh_g(config: &Path, host: &str) -> Option<std::collections::HashMap<String, Vec<String>>> {
        let out = std::process::Command::new("ssh").args(["-G", "-F"]).arg(config).arg(host).output().ok()?;
        assert!(out.status.success(), "ssh -G {}: {}", host, String::from_utf8_lossy(&out.stderr));
        let mut map = std::collections::HashMap::<String, Vec<String>>::new();
        for line in String::from_utf8_lossy(&out.stdout).lines() {
            if let Some((k, v)) = line.split_once(' ') {
                map.entry(k.to_string()).or_default().push(v.to_string());
            }
        }
        Some(map)
    }

    /// What we resolve for a host agrees with `ssh -G`: user, port, host name, identity
    /// files, and the algorithm lists after `+`, `-` and `^` (relative to the defaults, so
    /// compared where the installed OpenSSH is the 9.2 whose defaults we follow).
    #[test]
    fn resolved_settings_agree_with_ssh_dash_g() {
        let Ok(v) = std::process::Command::new("ssh").arg("-V").output() else { return };
        let same_defaults = String::from_utf8_lossy(&v.stderr).starts_with("OpenSSH_9.2");
        let home = home_dir();
        let cfg = ConfigFile::new(
            "dash-g",
            "Host web*\n  HostName %h.internal\n  User alice\n  Port 2200\n  IdentityFile ~/.ssh/id_web\n  Ciphers aes256-ctr,aes128-ctr\n  MACs hmac-sha2-256\n\
             Match originalhost alias1\n  HostName real1.example.org\nMatch host real1.example.org\n  Port 2202\n  KexAlgorithms -diffie-hellman*,ecdh-sha2-nistp521\n\
             Host db\n  HostName 10.0.0.5\n  User bob\n  Ciphers ^aes256-ctr\n  MACs +hmac-sha1\n  HostKeyAlgorithms -ssh-rsa*,ecdsa*\n\
             Host *\n  IdentityFile ~/.ssh/id_default\n  IdentityFile /keys/shared\n  PubkeyAcceptedAlgorithms ^rsa-sha2-512\n",
        );
        for host in ["web1", "alias1", "db", "other"] {
            let Some(g) = openssh_g(&cfg.0, host) else { return };
            let one = |k: &str| g.get(k).and_then(|v| v.first()).cloned().unwrap_or_default();
            let t = resolve(host, &options(&cfg.0)).expect("resolve");
            assert_eq!(t.user, one("user"), "user of {}", host);
            assert_eq!(t.port.to_string(), one("port"), "port of {}", host);
            assert_eq!(t.hostname, one("hostname"), "hostname of {}", host);
            let files: Vec<PathBuf> = g["identityfile"].iter().map(|f| match f.strip_prefix("~/") {
                Some(rest) => home.join(rest),
                None => PathBuf::from(f),
            }).collect();
            assert_eq!(t.identity_files, files, "identity files of {}", host);
            // The algorithm lists as the config reader and algorithms.rs make them.
            let ctx = config::Context { host, user: None, local_user: &local_user(), home: &home };
            let mut reader = config::Reader::new(&ctx);
            reader.read_file(&cfg.0, &home.join(".ssh")).expect("read");
            for policy in Policy::ALL {
                let set = reader.cfg.algorithm(policy).map(|a| a.0);
                if !same_defaults && set.is_none_or(|v| v.starts_with(['+', '-', '^'])) {
                    continue;
                }
                let ours = algorithms::effective(policy, set).join(",");
                assert_eq!(ours, one(&policy.name().to_lowercase()), "{} of {}", policy.name(), host);
            }
        }
    }

    #[test]
    fn what_the_policy_allows_and_libssh2_lacks_is_known() {
        let cfg = ConfigFile::new("lacking", "Host narrow\n  KexAlgorithms curve25519-sha256\n  Ciphers aes256-ctr\n  MACs hmac-sha2-256\n  HostKeyAlgorithms ssh-ed25519\n");
        // OpenSSH's defaults hold a post-quantum key exchange libssh2 does not implement.
        let t = resolve("wide", &options(&cfg.0)).expect("resolve");
        assert!(t.lacking.iter().any(|l| l.starts_with("KexAlgorithms ") && l.contains("sntrup761x25519-sha512@openssh.com")), "{:?}", t.lacking);
        assert!(t.lacking.iter().all(|l| !l.contains("curve25519-sha256,") && !l.starts_with("PubkeyAcceptedAlgorithms")), "{:?}", t.lacking);
        assert_eq!(resolve("narrow", &options(&cfg.0)).expect("resolve").lacking, Vec::<String>::new());
    }

    #[test]
    fn command_line_lines_win_and_decide_which_client() {
        let cfg = ConfigFile::new("cmdline", "Host web\n  Port 2200\n  Ciphers aes128-ctr\n  IdentityFile /keys/cfg\n");
        let lines = ["Port 2201".to_string(), "IdentityFile /keys/cli".to_string(), "Compression yes".to_string(),
                     "ServerAliveInterval 30".to_string(), "Ciphers ^aes256-ctr".to_string()];
        let o = Options { command_line: &lines, ..options(&cfg.0) };
        let t = resolve("web", &o).expect("resolve");
        assert_eq!(t.port, 2201, "the command line wins over the config");
        assert_eq!(t.identity_files, vec![PathBuf::from("/keys/cli"), PathBuf::from("/keys/cfg")]);
        assert!(t.compression);
        assert_eq!(t.keepalive, 30);
        let ciphers = &t.method_prefs.iter().find(|(p, _)| *p == Policy::Ciphers).expect("ciphers").1;
        assert!(ciphers.starts_with("aes256-ctr,"), "{}", ciphers);
        assert!(!ciphers.contains("cbc"), "OpenSSH's default has no CBC cipher: {}", ciphers);
        // The config alone: its one cipher, both directions.
        let t = resolve("web", &options(&cfg.0)).expect("resolve");
        assert_eq!(t.method_prefs.iter().find(|(p, _)| *p == Policy::Ciphers).map(|c| c.1.as_str()), Some("aes128-ctr"));
        // What only OpenSSH's client can do: a reason, not an error.
        for (line, words) in [("ProxyCommand nc %h %p", "rshopts set 'ProxyCommand nc %h %p'"), ("Ciphers twofish-cbc", "an ssh option in rshopts"),
                              ("ControlPath /tmp/cm", "ControlPath"), ("ForwardAgent yes", "ForwardAgent")] {
            let lines = [line.to_string()];
            let o = Options { command_line: &lines, ..options(&cfg.0) };
            let why = resolve_checked("web", &o).expect("no broken setup").expect_err(line);
            assert!(why.contains(words) && why.contains("host 'web'"), "{}", why);
        }
        // A bad value is an error for any client.
        let lines = ["ServerAliveInterval soon".to_string()];
        assert!(resolve_checked("web", &Options { command_line: &lines, ..options(&cfg.0) }).is_err());
    }

    #[test]
    fn offered_keys_follow_pubkey_accepted_algorithms() {
        let mut t = target_at("h", 22, Duration::from_secs(1));
        assert!(key_type_accepted(&t, "ssh-ed25519"), "no policy: everything");
        t.pubkey_algorithms = algorithms::effective(Policy::Pubkey, Some("-ssh-ed25519"));
        assert!(!key_type_accepted(&t, "ssh-ed25519"));
        assert!(key_type_accepted(&t, "ssh-rsa"));
        t.pubkey_algorithms = algorithms::effective(Policy::Pubkey, Some("ssh-ed25519"));
        assert!(!key_type_accepted(&t, "ssh-rsa"));
        let mut blob = 11u32.to_be_bytes().to_vec();
        blob.extend_from_slice(b"ssh-ed25519\0\0\0\x20");
        assert_eq!(blob_key_type(&blob), Some("ssh-ed25519"));
        assert_eq!(blob_key_type(&[0, 0, 0, 99, b'x']), None);
    }

    fn target_at(hostname: &str, port: u16, timeout: Duration) -> Target {
        Target { timeout, ..crate::ssh::tests::target("t", "u", hostname, port) }
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
