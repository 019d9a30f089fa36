//! The user's algorithm policy (`Ciphers`, `MACs`, `KexAlgorithms`, `HostKeyAlgorithms`,
//! `PubkeyAcceptedAlgorithms`), computed as OpenSSH computes it from its defaults and the
//! `+` (append), `-` (remove) and `^` (put first) forms with `*`/`?` patterns, and the
//! ordering of host-key algorithms by the key types known_hosts holds for a host. What the
//! built-in client then offers is that list restricted to what libssh2 implements; a policy
//! that leaves libssh2 nothing sends the host to the external client.

/// Which list a keyword sets.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Policy {
    Ciphers,
    Macs,
    Kex,
    HostKey,
    Pubkey,
}

impl Policy {
    pub const ALL: [Policy; 5] = [Policy::Ciphers, Policy::Macs, Policy::Kex, Policy::HostKey, Policy::Pubkey];

    /// The config keyword (lower case) and its older alias, if any.
    pub fn keywords(self) -> &'static [&'static str] {
        match self {
            Policy::Ciphers => &["ciphers"],
            Policy::Macs => &["macs"],
            Policy::Kex => &["kexalgorithms"],
            Policy::HostKey => &["hostkeyalgorithms"],
            Policy::Pubkey => &["pubkeyacceptedalgorithms", "pubkeyacceptedkeytypes"],
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Policy::Ciphers => "Ciphers",
            Policy::Macs => "MACs",
            Policy::Kex => "KexAlgorithms",
            Policy::HostKey => "HostKeyAlgorithms",
            Policy::Pubkey => "PubkeyAcceptedAlgorithms",
        }
    }

    /// OpenSSH 9.2's default list (`ssh -G`).
    fn default_list(self) -> &'static [&'static str] {
        match self {
            Policy::Ciphers => &[
                "chacha20-poly1305@openssh.com", "aes128-ctr", "aes192-ctr", "aes256-ctr",
                "aes128-gcm@openssh.com", "aes256-gcm@openssh.com",
            ],
            Policy::Macs => &[
                "umac-64-etm@openssh.com", "umac-128-etm@openssh.com", "hmac-sha2-256-etm@openssh.com",
                "hmac-sha2-512-etm@openssh.com", "hmac-sha1-etm@openssh.com", "umac-64@openssh.com",
                "umac-128@openssh.com", "hmac-sha2-256", "hmac-sha2-512", "hmac-sha1",
            ],
            // Debian 12's 9.2p1 (security updates) also has the post-quantum KEX's standard
            // name, first (found by comparing with `ssh -G`: session.rs).
            Policy::Kex => &[
                "sntrup761x25519-sha512", "sntrup761x25519-sha512@openssh.com", "curve25519-sha256", "curve25519-sha256@libssh.org",
                "ecdh-sha2-nistp256", "ecdh-sha2-nistp384", "ecdh-sha2-nistp521",
                "diffie-hellman-group-exchange-sha256", "diffie-hellman-group16-sha512",
                "diffie-hellman-group18-sha512", "diffie-hellman-group14-sha256",
            ],
            Policy::HostKey | Policy::Pubkey => &[
                "ssh-ed25519-cert-v01@openssh.com", "ecdsa-sha2-nistp256-cert-v01@openssh.com",
                "ecdsa-sha2-nistp384-cert-v01@openssh.com", "ecdsa-sha2-nistp521-cert-v01@openssh.com",
                "sk-ssh-ed25519-cert-v01@openssh.com", "sk-ecdsa-sha2-nistp256-cert-v01@openssh.com",
                "rsa-sha2-512-cert-v01@openssh.com", "rsa-sha2-256-cert-v01@openssh.com", "ssh-ed25519",
                "ecdsa-sha2-nistp256", "ecdsa-sha2-nistp384", "ecdsa-sha2-nistp521", "sk-ssh-ed25519@openssh.com",
                "sk-ecdsa-sha2-nistp256@openssh.com", "rsa-sha2-512", "rsa-sha2-256",
            ],
        }
    }

    /// Every algorithm OpenSSH 9.2 knows for the list (`ssh -Q`): what patterns expand to.
    fn known(self) -> &'static [&'static str] {
        match self {
            Policy::Ciphers => &[
                "3des-cbc", "aes128-cbc", "aes192-cbc", "aes256-cbc", "aes128-ctr", "aes192-ctr", "aes256-ctr",
                "aes128-gcm@openssh.com", "aes256-gcm@openssh.com", "chacha20-poly1305@openssh.com",
            ],
            Policy::Macs => &[
                "hmac-sha1", "hmac-sha1-96", "hmac-sha2-256", "hmac-sha2-512", "hmac-md5", "hmac-md5-96",
                "umac-64@openssh.com", "umac-128@openssh.com", "hmac-sha1-etm@openssh.com",
                "hmac-sha1-96-etm@openssh.com", "hmac-sha2-256-etm@openssh.com", "hmac-sha2-512-etm@openssh.com",
                "hmac-md5-etm@openssh.com", "hmac-md5-96-etm@openssh.com", "umac-64-etm@openssh.com",
                "umac-128-etm@openssh.com",
            ],
            Policy::Kex => &[
                "diffie-hellman-group1-sha1", "diffie-hellman-group14-sha1", "diffie-hellman-group14-sha256",
                "diffie-hellman-group16-sha512", "diffie-hellman-group18-sha512",
                "diffie-hellman-group-exchange-sha1", "diffie-hellman-group-exchange-sha256", "ecdh-sha2-nistp256",
                "ecdh-sha2-nistp384", "ecdh-sha2-nistp521", "curve25519-sha256", "curve25519-sha256@libssh.org",
                "sntrup761x25519-sha512", "sntrup761x25519-sha512@openssh.com",
            ],
            Policy::HostKey | Policy::Pubkey => &[
                "ssh-ed25519", "ssh-ed25519-cert-v01@openssh.com", "sk-ssh-ed25519@openssh.com",
                "sk-ssh-ed25519-cert-v01@openssh.com", "ecdsa-sha2-nistp256", "ecdsa-sha2-nistp256-cert-v01@openssh.com",
                "ecdsa-sha2-nistp384", "ecdsa-sha2-nistp384-cert-v01@openssh.com", "ecdsa-sha2-nistp521",
                "ecdsa-sha2-nistp521-cert-v01@openssh.com", "sk-ecdsa-sha2-nistp256@openssh.com",
                "sk-ecdsa-sha2-nistp256-cert-v01@openssh.com", "webauthn-sk-ecdsa-sha2-nistp256@openssh.com",
                "ssh-dss", "ssh-dss-cert-v01@openssh.com", "ssh-rsa", "ssh-rsa-cert-v01@openssh.com",
                "rsa-sha2-256", "rsa-sha2-256-cert-v01@openssh.com", "rsa-sha2-512", "rsa-sha2-512-cert-v01@openssh.com",
            ],
        }
    }
}

/// A comma-separated pattern list matches `name` (OpenSSH's match_pattern_list: `!`
/// negates, a negated match wins).
fn pattern_list_matches(list: &str, name: &str) -> bool {
    let mut matched = false;
    for p in list.split(',').filter(|p| !p.is_empty()) {
        if let Some(neg) = p.strip_prefix('!') {
            if super::config::wildmatch(neg, name, false) {
                return false;
            }
        } else if super::config::wildmatch(p, name, false) {
            matched = true;
        }
    }
    matched
}

/// The effective list for a keyword's value (`None`: the default), as OpenSSH assembles it.
pub fn effective(policy: Policy, value: Option<&str>) -> Vec<String> {
    let default: Vec<String> = policy.default_list().iter().map(|s| s.to_string()).collect();
    let Some(value) = value else { return default };
    let patterns: Vec<String> = if let Some(removed) = value.strip_prefix('-') {
        return default.into_iter().filter(|a| !pattern_list_matches(removed, a)).collect();
    } else if let Some(added) = value.strip_prefix('+') {
        default.iter().cloned().chain(added.split(',').map(str::to_string)).collect()
    } else if let Some(first) = value.strip_prefix('^') {
        first.split(',').map(str::to_string).chain(default.iter().cloned()).collect()
    } else {
        value.split(',').map(str::to_string).collect()
    };
    // Each pattern names the known algorithms it matches, in the order given, once each.
    let mut out: Vec<String> = Vec::new();
    for p in patterns.iter().filter(|p| !p.is_empty()) {
        let mut names: Vec<String> =
            policy.known().iter().filter(|a| super::config::wildmatch(p, a, false)).map(|a| a.to_string()).collect();
        if names.is_empty() && !p.contains(['*', '?']) {
            names.push(p.clone()); // unknown to us: kept, so that it is reported, not dropped
        }
        for n in names {
            if !out.contains(&n) {
                out.push(n);
            }
        }
    }
    out
}

/// The host-key algorithms that verify keys of the known_hosts type `key_type`.
pub fn algorithms_for_key_type(key_type: &str) -> Vec<&'static str> {
    match key_type {
        "ssh-rsa" => vec!["rsa-sha2-512", "rsa-sha2-256", "ssh-rsa"],
        "ssh-ed25519" => vec!["ssh-ed25519"],
        "ecdsa-sha2-nistp256" => vec!["ecdsa-sha2-nistp256"],
        "ecdsa-sha2-nistp384" => vec!["ecdsa-sha2-nistp384"],
        "ecdsa-sha2-nistp521" => vec!["ecdsa-sha2-nistp521"],
        "ssh-dss" => vec!["ssh-dss"],
        _ => Vec::new(),
    }
}

/// `list` with the algorithms for the key types already known for the host first (as
/// OpenSSH does when HostKeyAlgorithms is not set), each group in its own order.
pub fn order_by_known_types(list: &[String], known_types: &[String]) -> Vec<String> {
    let known: Vec<&str> = known_types.iter().flat_map(|t| algorithms_for_key_type(t)).collect();
    let (first, rest): (Vec<String>, Vec<String>) = list.iter().cloned().partition(|a| known.contains(&a.as_str()));
    first.into_iter().chain(rest).collect()
}

/// `wanted` restricted to `supported`, in `wanted`'s order.
pub fn restrict(wanted: &[String], supported: &[&str]) -> Vec<String> {
    wanted.iter().filter(|a| supported.contains(&a.as_str())).cloned().collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(v: &[String]) -> Vec<&str> {
        v.iter().map(String::as_str).collect()
    }

    #[test]
    fn plus_minus_caret_and_patterns_as_openssh() {
        assert_eq!(effective(Policy::Ciphers, None).len(), 6);
        assert_eq!(names(&effective(Policy::Ciphers, Some("aes256-ctr"))), ["aes256-ctr"]);
        assert_eq!(names(&effective(Policy::Ciphers, Some("aes*-ctr,aes256-ctr"))), ["aes128-ctr", "aes192-ctr", "aes256-ctr"]);
        let plus = effective(Policy::Ciphers, Some("+aes256-cbc"));
        assert_eq!(plus.last().map(String::as_str), Some("aes256-cbc"));
        assert_eq!(plus.len(), 7);
        let minus = effective(Policy::Ciphers, Some("-chacha20*,aes128-*"));
        assert_eq!(names(&minus), ["aes192-ctr", "aes256-ctr", "aes256-gcm@openssh.com"]);
        let caret = effective(Policy::Ciphers, Some("^aes256-gcm@openssh.com"));
        assert_eq!(caret[0], "aes256-gcm@openssh.com");
        assert_eq!(caret.len(), 6, "no duplicate");
        assert_eq!(names(&effective(Policy::Macs, Some("-*etm*,umac*"))), ["hmac-sha2-256", "hmac-sha2-512", "hmac-sha1"]);
        assert_eq!(names(&effective(Policy::Ciphers, Some("twofish-cbc"))), ["twofish-cbc"]);
    }

    #[test]
    fn known_key_types_come_first() {
        let list = effective(Policy::HostKey, None);
        let ordered = order_by_known_types(&list, &["ssh-ed25519".to_string()]);
        assert_eq!(ordered[0], "ssh-ed25519");
        assert_eq!(ordered.len(), list.len());
        let ordered = order_by_known_types(&list, &["ecdsa-sha2-nistp256".to_string(), "ssh-rsa".to_string()]);
        assert_eq!(names(&ordered[..3]), ["ecdsa-sha2-nistp256", "rsa-sha2-512", "rsa-sha2-256"]);
        assert_eq!(names(&restrict(&ordered, &["rsa-sha2-256", "ecdsa-sha2-nistp256"])), ["ecdsa-sha2-nistp256", "rsa-sha2-256"]);
    }
}
