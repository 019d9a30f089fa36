//! The keywords OpenSSH's client knows (9.2 up to 10.x, Debian's GSSAPI and keep-alive
//! additions, and the deprecated ones it only warns about), lower-cased and sorted. A keyword
//! outside this list is one OpenSSH refuses ("Bad configuration option"), and so do we, unless
//! `IgnoreUnknown` covers it; a keyword in it that we do not implement is either harmless
//! (ignored) or sends the host to the external client (config::REFUSED).
//!
//! Checked against `ssh -G -o KEYWORD=...` of the installed OpenSSH in the tests.

pub const KNOWN: &[&str] = &[
    "addkeystoagent",
    "addressfamily",
    "afstokenpassing",
    "batchmode",
    "bindaddress",
    "bindinterface",
    "canonicaldomains",
    "canonicalizefallbacklocal",
    "canonicalizehostname",
    "canonicalizemaxdots",
    "canonicalizepermittedcnames",
    "casignaturealgorithms",
    "certificatefile",
    "challengeresponseauthentication",
    "channeltimeout",
    "checkhostip",
    "cipher",
    "ciphers",
    "clearallforwardings",
    "compression",
    "compressionlevel",
    "connectionattempts",
    "connecttimeout",
    "controlmaster",
    "controlpath",
    "controlpersist",
    "dsaauthentication",
    "dynamicforward",
    "enableescapecommandline",
    "enablesshkeysign",
    "escapechar",
    "exitonforwardfailure",
    "fallbacktorsh",
    "fingerprinthash",
    "forkafterauthentication",
    "forwardagent",
    "forwardx11",
    "forwardx11timeout",
    "forwardx11trusted",
    "gatewayports",
    "globalknownhostsfile",
    "globalknownhostsfile2",
    "gssapiauthentication",
    "gssapiclientidentity",
    "gssapidelegatecredentials",
    "gssapikexalgorithms",
    "gssapikeyexchange",
    "gssapirenewalforcesrekey",
    "gssapiserveridentity",
    "gssapitrustdns",
    "hashknownhosts",
    "host",
    "hostbasedacceptedalgorithms",
    "hostbasedauthentication",
    "hostbasedkeytypes",
    "hostkeyalgorithms",
    "hostkeyalias",
    "hostname",
    "identitiesonly",
    "identityagent",
    "identityfile",
    "identityfile2",
    "ignoreunknown",
    "include",
    "ipqos",
    "kbdinteractiveauthentication",
    "kbdinteractivedevices",
    "kerberosauthentication",
    "kerberostgtpassing",
    "kexalgorithms",
    "knownhostscommand",
    "localcommand",
    "localforward",
    "loglevel",
    "logverbose",
    "macs",
    "match",
    "nohostauthenticationforlocalhost",
    "numberofpasswordprompts",
    "obscurekeystroketiming",
    "passwordauthentication",
    "permitlocalcommand",
    "permitremoteopen",
    "pkcs11provider",
    "port",
    "preferredauthentications",
    "protocol",
    "protocolkeepalives",
    "proxycommand",
    "proxyjump",
    "proxyusefdpass",
    "pubkeyacceptedalgorithms",
    "pubkeyacceptedkeytypes",
    "pubkeyauthentication",
    "refuseconnection",
    "rekeylimit",
    "remotecommand",
    "remoteforward",
    "requesttty",
    "requiredrsasize",
    "revokedhostkeys",
    "rhostsauthentication",
    "rhostsrsaauthentication",
    "rsaauthentication",
    "securitykeyprovider",
    "sendenv",
    "serveralivecountmax",
    "serveraliveinterval",
    "sessiontype",
    "setenv",
    "setuptimeout",
    "skeyauthentication",
    "smartcarddevice",
    "stdinnull",
    "streamlocalbindmask",
    "streamlocalbindunlink",
    "stricthostkeychecking",
    "syslogfacility",
    "tag",
    "tcpkeepalive",
    "tisauthentication",
    "tunnel",
    "tunneldevice",
    "updatehostkeys",
    "useblacklistedkeys",
    "useprivilegedport",
    "user",
    "userknownhostsfile",
    "userknownhostsfile2",
    "useroaming",
    "usersh",
    "verifyhostkeydns",
    "versionaddendum",
    "visualhostkey",
    "warnweakcrypto",
    "xauthlocation",
];

/// Whether OpenSSH's client knows `keyword` (any case).
pub fn known(keyword: &str) -> bool {
    KNOWN.binary_search(&keyword.to_lowercase().as_str()).is_ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sorted_and_lower_case() {
        assert!(KNOWN.windows(2).all(|w| w[0] < w[1]));
        assert!(KNOWN.iter().all(|k| k.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit())));
        assert!(known("ServerAliveCountMax") && known("GSSAPIAuthentication") && known("LocalCommand"));
        assert!(!known("UseKeychain") && !known("Bogus"));
    }

    /// Every keyword here is one the installed `ssh` accepts, and a made-up one it refuses.
    #[test]
    fn the_installed_openssh_agrees() {
        let Ok(out) = std::process::Command::new("ssh").arg("-V").output() else { return };
        let version = String::from_utf8_lossy(&out.stderr).to_string();
        let refuses = |k: &str| {
            let out = std::process::Command::new("ssh")
                .args(["-G", "-F", "/dev/null", "-o", &format!("{}=1", k), "h"])
                .output()
                .expect("ssh -G");
            String::from_utf8_lossy(&out.stderr).contains("Bad configuration option")
        };
        assert!(refuses("bogusword"), "{}", version);
        // Newer than 9.2, Debian bookworm's OpenSSH: checked by the chroot's 10.x.
        let newer = ["channeltimeout", "obscurekeystroketiming", "refuseconnection", "tag", "versionaddendum", "warnweakcrypto"];
        // Debian's GSSAPI key exchange patch, gone from its 10.x: still read here.
        let older = ["gssapiclientidentity", "gssapikexalgorithms", "gssapikeyexchange", "gssapirenewalforcesrekey", "gssapiserveridentity", "gssapitrustdns"];
        let old = version.starts_with("OpenSSH_9.2") || version.starts_with("OpenSSH_9.3");
        let refused: Vec<&str> =
            KNOWN.iter().copied().filter(|k| !(if old { newer.contains(k) } else { older.contains(k) })).filter(|k| refuses(k)).collect();
        assert!(refused.is_empty(), "ssh ({}) refuses {:?}", version.trim(), refused);
    }
}
