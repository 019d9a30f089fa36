//! Recording a newly accepted host key in a known_hosts file, the way OpenSSH does: one
//! line appended (the rest of the file is left as it is), with the host name hashed when
//! `HashKnownHosts` is on: `|1|base64(salt)|base64(HMAC-SHA1(salt, name)) type key`.
//! HMAC-SHA1 and base64 come from maintained crates (RustCrypto's `hmac` and `sha1`, and
//! `base64`).

use std::io::{Read, Write};
use std::path::Path;

/// The known_hosts line for host `name` (`host` or `[host]:port`) with a host key of type
/// `key_type` (e.g. "ssh-ed25519") and wire-format `key`; hashed with `salt` if given.
pub fn entry(name: &str, key_type: &str, key: &[u8], salt: Option<&[u8; 20]>) -> String {
    let host = match salt {
        Some(salt) => format!("|1|{}|{}", base64(salt), base64(&hmac_sha1(salt, name.as_bytes()))),
        None => name.to_string(),
    };
    format!("{} {} {}", host, key_type, base64(key))
}

/// Append `line` to the file at `path` (created, with its directory, if missing), on a line
/// of its own even when the file does not end with a newline.
pub fn append(path: &Path, line: &str) -> std::io::Result<()> {
    if let Some(dir) = path.parent() {
        if !dir.as_os_str().is_empty() {
            std::fs::create_dir_all(dir)?;
        }
    }
    let needs_newline = match std::fs::read(path) {
        Ok(bytes) => !bytes.is_empty() && bytes.last() != Some(&b'\n'),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => false,
        Err(e) => return Err(e),
    };
    let mut f = std::fs::OpenOptions::new().create(true).append(true).open(path)?;
    let mut text = String::new();
    if needs_newline {
        text.push('\n');
    }
    text.push_str(line);
    text.push('\n');
    f.write_all(text.as_bytes())
}

/// 20 random bytes from the kernel, for a salt.
pub fn random_salt() -> std::io::Result<[u8; 20]> {
    let mut salt = [0u8; 20];
    std::fs::File::open("/dev/urandom")?.read_exact(&mut salt)?;
    Ok(salt)
}

/// Standard base64 with padding (RFC 4648), as OpenSSH writes keys and hashed names.
pub fn base64(data: &[u8]) -> String {
    use base64::Engine;
    base64::engine::general_purpose::STANDARD.encode(data)
}

/// HMAC-SHA1 (RFC 2104) of `message` under `key`.
pub fn hmac_sha1(key: &[u8], message: &[u8]) -> [u8; 20] {
    use hmac::{KeyInit, Mac};
    // HMAC takes a key of any length: new_from_slice cannot fail for it.
    let mut mac = hmac::Hmac::<sha1::Sha1>::new_from_slice(key).expect("HMAC takes any key length");
    mac.update(message);
    mac.finalize().into_bytes().into()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hex(b: &[u8]) -> String {
        b.iter().map(|x| format!("{:02x}", x)).collect()
    }

    #[test]
    fn hmac_sha1_rfc2202() {
        assert_eq!(hex(&hmac_sha1(&[0x0b; 20], b"Hi There")), "b617318655057264e28bc0b6fb378c8ef146be00");
        assert_eq!(hex(&hmac_sha1(b"Jefe", b"what do ya want for nothing?")), "effcdf6ae5eb2fa2d27416d5f184df9c259a7c79");
        assert_eq!(
            hex(&hmac_sha1(&[0xaa; 80], b"Test Using Larger Than Block-Size Key - Hash Key First")),
            "aa4ae5e15272d00e95705637ce8a3b55ed402112"
        );
    }

    #[test]
    fn base64_rfc4648() {
        for (input, output) in [("", ""), ("f", "Zg=="), ("fo", "Zm8="), ("foo", "Zm9v"), ("foob", "Zm9vYg=="), ("foobar", "Zm9vYmFy")] {
            assert_eq!(base64(input.as_bytes()), output);
        }
    }

    #[test]
    fn entries_plain_and_hashed() {
        assert_eq!(entry("[h]:2222", "ssh-ed25519", b"foo", None), "[h]:2222 ssh-ed25519 Zm9v");
        let salt = [7u8; 20];
        let line = entry("[h]:2222", "ssh-ed25519", b"foo", Some(&salt));
        let expected_hash = base64(&hmac_sha1(&salt, b"[h]:2222"));
        assert_eq!(line, format!("|1|{}|{} ssh-ed25519 Zm9v", base64(&salt), expected_hash));
    }

    #[test]
    fn append_keeps_the_file_and_adds_a_line() {
        let dir = std::env::temp_dir().join(format!("parallelly-kh-{}", std::process::id()));
        let path = dir.join("sub").join("known_hosts");
        append(&path, "a x y").unwrap();
        std::fs::write(&path, "# mine\na x y").unwrap();
        append(&path, "b x y").unwrap();
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "# mine\na x y\nb x y\n");
        let _ = std::fs::remove_dir_all(&dir);
    }
}
