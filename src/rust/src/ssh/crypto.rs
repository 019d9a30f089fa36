//! ChaCha20 and Poly1305 for libssh2's `chacha20-poly1305@openssh.com` (the cipher it
//! prefers and OpenSSH's default), on OpenSSL's vectorised code through the maintained
//! `openssl` crate.
//!
//! Why: libssh2 runs that cipher on its own portable C (`chacha.c`, `poly1305.c`), which
//! cost ~3.5 ns a byte here: the tunnel moved large objects at a third of OpenSSH's rate.
//! Its other ciphers are no better (AES-GCM and AES-CTR call OpenSSL per 16-byte block).
//! RustCrypto's `chacha20` and `poly1305` were tried and measured ~3 ns a byte together on
//! this machine (OpenSSL: ~0.3), so no faster than libssh2's C.
//!
//! How: libssh2 is linked statically into this library, and `chacha.o` and `poly1305.o`
//! hold nothing but the four symbols defined here, with the same C signatures (build.rs
//! stops the build for a libssh2 outside the release line they were checked against). Our
//! definitions satisfy libssh2's references, so the linker never pulls those two members;
//! every call counts in [`calls`], which the tests read after a real session to prove that
//! the linked library runs this code and not libssh2's. The semantics are libssh2's,
//! including the 64-bit block counter that `chacha_encrypt_bytes` advances (DJB's layout);
//! the tests pin them with vectors made by libssh2's own C.
//!
//! Policy: where the system's crypto policy does not allow ChaCha20 (FIPS mode), the
//! cipher is not offered at all ([`withhold_if_not_allowed`]): neither libssh2's C nor this
//! code may run it then, and a session must fail closed rather than run either. Should
//! OpenSSL still refuse a call, the output is zeros (never the plain text) and the peer
//! rejects the packet.

use std::ptr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::OnceLock;

use openssl::cipher::Cipher;
use openssl::cipher_ctx::CipherCtx;
use openssl::pkey::{Id, PKey};
use openssl::sign::Signer;

/// libssh2's name of the cipher these functions implement.
pub const CIPHER_NAME: &str = "chacha20-poly1305@openssh.com";

/// libssh2's `struct chacha_ctx`: the 16 words of the ChaCha state (constants, key, a
/// 64-bit block counter in words 12-13, a 64-bit nonce in words 14-15). libssh2 allocates
/// it inside its own cipher context, so the size and layout must stay as they are.
#[repr(C)]
pub struct ChachaCtx {
    input: [u32; 16],
}

const SIGMA: [u32; 4] = [0x6170_7865, 0x3320_646e, 0x7962_2d32, 0x6b20_6574];

static CALLS: AtomicU64 = AtomicU64::new(0);

/// How many times libssh2 has called into this file (encryptions and tags) in this process.
pub fn calls() -> u64 {
    CALLS.load(Ordering::Relaxed)
}

fn le32(b: &[u8]) -> u32 {
    u32::from_le_bytes([b[0], b[1], b[2], b[3]])
}

/// Whether the system's crypto policy allows ChaCha20 and Poly1305: not in kernel FIPS
/// mode (which distributions use to put OpenSSL in FIPS mode), and, with OpenSSL 3, both
/// fetchable under OpenSSL's default properties (a FIPS provider configuration has neither).
/// Asked once per process.
pub fn allowed() -> bool {
    static ALLOWED: OnceLock<bool> = OnceLock::new();
    *ALLOWED.get_or_init(|| {
        let kernel_fips = std::fs::read_to_string("/proc/sys/crypto/fips_enabled").is_ok_and(|s| s.trim() == "1");
        !kernel_fips && openssl_allows()
    })
}

#[cfg(ossl300)]
fn openssl_allows() -> bool {
    use openssl_sys as ffi;
    // SAFETY: OpenSSL's init and fetch calls take these constant C strings and the default
    // library context (null); what a fetch returns is freed once, and null is skipped.
    unsafe {
        ffi::init();
        let cipher = ffi::EVP_CIPHER_fetch(ptr::null_mut(), c"ChaCha20".as_ptr(), ptr::null());
        let mac = ffi::EVP_MAC_fetch(ptr::null_mut(), c"POLY1305".as_ptr(), ptr::null());
        let ok = !cipher.is_null() && !mac.is_null();
        if !cipher.is_null() {
            ffi::EVP_CIPHER_free(cipher);
        }
        if !mac.is_null() {
            ffi::EVP_MAC_free(mac);
        }
        ok
    }
}

#[cfg(not(ossl300))]
fn openssl_allows() -> bool {
    true
}

/// `list` (libssh2's comma-separated cipher preference) without this cipher.
pub fn without_chacha(list: &str) -> String {
    list.split(',').filter(|c| !c.is_empty() && *c != CIPHER_NAME).collect::<Vec<_>>().join(",")
}

/// Before a handshake: where the policy does not allow this cipher, take it out of the
/// ciphers `session` offers both ways (`prefs`: the preference set for the session, else
/// all libssh2 supports). An error where nothing would be left.
pub fn withhold_if_not_allowed(session: &ssh2::Session, prefs: Option<&str>) -> Result<(), String> {
    if allowed() {
        return Ok(());
    }
    withhold(session, prefs)
}

/// Offer every cipher of `prefs` (else all libssh2 supports) but this one, both ways.
pub fn withhold(session: &ssh2::Session, prefs: Option<&str>) -> Result<(), String> {
    for method in [ssh2::MethodType::CryptCs, ssh2::MethodType::CryptSc] {
        let list = match prefs {
            Some(p) => p.to_string(),
            None => session.supported_algs(method).map_err(|e| e.to_string())?.join(","),
        };
        let list = without_chacha(&list);
        if list.is_empty() {
            return Err(format!("the system's crypto policy (FIPS) does not allow {} and no other cipher is enabled", CIPHER_NAME));
        }
        session.method_pref(method, &list).map_err(|e| e.to_string())?;
    }
    Ok(())
}

/// libssh2's `chacha_keysetup`: only 256-bit keys are used (`kbits` is 256).
///
/// # Safety
/// `x` points to a `ChachaCtx` and `k` to 32 bytes, as libssh2 passes them.
#[no_mangle]
pub unsafe extern "C" fn chacha_keysetup(x: *mut ChachaCtx, k: *const u8, _kbits: u32) {
    // SAFETY: the caller's contract above.
    let (x, k) = unsafe { (&mut *x, std::slice::from_raw_parts(k, 32)) };
    x.input[..4].copy_from_slice(&SIGMA);
    for i in 0..8 {
        x.input[4 + i] = le32(&k[4 * i..]);
    }
}

/// libssh2's `chacha_ivsetup`: an 8-byte nonce and an optional 8-byte counter (else 0).
///
/// # Safety
/// `x` points to a `ChachaCtx`, `iv` to 8 bytes, `counter` to 8 bytes or is null.
#[no_mangle]
pub unsafe extern "C" fn chacha_ivsetup(x: *mut ChachaCtx, iv: *const u8, counter: *const u8) {
    // SAFETY: the caller's contract above.
    let (x, iv) = unsafe { (&mut *x, std::slice::from_raw_parts(iv, 8)) };
    if counter.is_null() {
        x.input[12] = 0;
        x.input[13] = 0;
    } else {
        // SAFETY: not null, so 8 bytes (the caller's contract).
        let c = unsafe { std::slice::from_raw_parts(counter, 8) };
        x.input[12] = le32(c);
        x.input[13] = le32(&c[4..]);
    }
    x.input[14] = le32(iv);
    x.input[15] = le32(&iv[4..]);
}

/// XOR the key stream of `state` (key, 64-bit block counter, 64-bit nonce) into `buf`;
/// false if OpenSSL refused.
fn keystream(state: &[u32; 16], buf: &mut [u8]) -> bool {
    let mut key = [0u8; 32];
    for i in 0..8 {
        key[4 * i..4 * i + 4].copy_from_slice(&state[4 + i].to_le_bytes());
    }
    let Ok(mut ctx) = CipherCtx::new() else { return false };
    let mut block = u64::from(state[13]) << 32 | u64::from(state[12]);
    let mut done = 0;
    while done < buf.len() {
        // OpenSSL's 16-byte IV is a 32-bit block counter and 12 bytes of nonce: the same
        // bytes as libssh2's 64-bit counter and nonce while the counter's low word does
        // not wrap, so a run is split where it would (never within an SSH packet).
        let room = ((1u64 << 32) - (block & 0xffff_ffff)).saturating_mul(64);
        let n = (buf.len() - done).min(usize::try_from(room).unwrap_or(usize::MAX)).min(1 << 30);
        let mut iv = [0u8; 16];
        iv[..8].copy_from_slice(&block.to_le_bytes());
        iv[8..12].copy_from_slice(&state[14].to_le_bytes());
        iv[12..].copy_from_slice(&state[15].to_le_bytes());
        let chunk = &mut buf[done..done + n];
        if ctx.encrypt_init(Some(Cipher::chacha20()), Some(&key), Some(&iv)).is_err() || ctx.cipher_update_inplace(chunk, n).map_or(true, |out| out != n) {
            return false;
        }
        done += n;
        block = block.wrapping_add(n.div_ceil(64) as u64);
    }
    true
}

/// The Poly1305 tag of `msg` under the one-time `key`; None if OpenSSL refused.
fn tag(msg: &[u8], key: &[u8; 32]) -> Option<[u8; 16]> {
    let pkey = PKey::private_key_from_raw_bytes(key, Id::POLY1305).ok()?;
    let mut signer = Signer::new_without_digest(&pkey).ok()?;
    let mut tag = [0u8; 16];
    (signer.sign_oneshot(&mut tag, msg).ok()? == 16).then_some(tag)
}

/// libssh2's `chacha_encrypt_bytes`: XOR the key stream into `bytes` bytes and advance the
/// block counter by the blocks used (a partial last block counts as one).
///
/// # Safety
/// `x` points to a `ChachaCtx`; `m` and `c` to `bytes` bytes each, the same or disjoint.
#[no_mangle]
pub unsafe extern "C" fn chacha_encrypt_bytes(x: *mut ChachaCtx, m: *const u8, c: *mut u8, bytes: usize) {
    CALLS.fetch_add(1, Ordering::Relaxed);
    if bytes == 0 {
        return;
    }
    // SAFETY: the caller's contract above. The input is first copied to the output (memmove:
    // equal buffers are fine), so the key stream is applied in place to one slice only.
    let (x, out) = unsafe {
        ptr::copy(m, c, bytes);
        (&mut *x, std::slice::from_raw_parts_mut(c, bytes))
    };
    if !keystream(&x.input, out) {
        // No key stream: never hand back the plain text as if it were encrypted.
        out.fill(0);
    }
    let ctr = (u64::from(x.input[13]) << 32 | u64::from(x.input[12])).wrapping_add(bytes.div_ceil(64) as u64);
    x.input[12] = ctr as u32;
    x.input[13] = (ctr >> 32) as u32;
}

/// libssh2's `poly1305_auth`: the 16-byte tag of `inlen` bytes under a 32-byte one-time key.
///
/// # Safety
/// `out` points to 16 writable bytes, `m` to `inlen` bytes, `key` to 32 bytes.
#[no_mangle]
pub unsafe extern "C" fn poly1305_auth(out: *mut u8, m: *const u8, inlen: usize, key: *const u8) {
    CALLS.fetch_add(1, Ordering::Relaxed);
    let mut k = [0u8; 32];
    // SAFETY: the caller's contract above; no message bytes are read when inlen is 0.
    let msg = unsafe {
        ptr::copy_nonoverlapping(key, k.as_mut_ptr(), 32);
        if inlen == 0 { &[][..] } else { std::slice::from_raw_parts(m, inlen) }
    };
    // No tag: zeros, which the peer rejects.
    let tag = tag(msg, &k).unwrap_or([0; 16]);
    // SAFETY: 16 writable bytes (the caller's contract).
    unsafe { ptr::copy_nonoverlapping(tag.as_ptr(), out, 16) };
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hex(s: &str) -> Vec<u8> {
        (0..s.len()).step_by(2).map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap()).collect()
    }

    fn setup(iv: &[u8; 8], counter: Option<&[u8; 8]>) -> ChachaCtx {
        let key: Vec<u8> = (0..32).collect();
        let mut x = ChachaCtx { input: [0; 16] };
        // SAFETY: buffers of the sizes the functions take.
        unsafe {
            chacha_keysetup(&mut x, key.as_ptr(), 256);
            chacha_ivsetup(&mut x, iv.as_ptr(), counter.map_or(ptr::null(), |c| c.as_ptr()));
        }
        x
    }

    fn message() -> Vec<u8> {
        (0..200u32).map(|i| (i * 7 + 3) as u8).collect()
    }

    // Vectors made by libssh2's own chacha.c and poly1305.c (the code these replace).
    const C130: &str = "ececb4e0baaa85a82bfda186ddb24232e6f6e5d993dbb5b8b0678d22ab267059d4fafe7595695b9b663bae3eed47abfe1ddafb1704688a864c16a3dcb6c96551ec1c0b0fed8cadaf3ccef51679505368aed8e2de858803471ca57943951fd1c7d5edd71a452cf53e9c1bb43636dc1659d060d14496a1b152d8ac40eae22ec042fc4a";
    const C64_NEXT: &str = "58f96de8e7354503aad2aa9bf5f55faa0de7de271b3a445678ed4106f54d8320642cd84ec150b31f177f2a4a48cf8d1e0171b631835aa0270b30d2f054671845";

    #[test]
    fn chacha_matches_libssh2_and_advances_its_counter() {
        let m = message();
        let mut x = setup(&[1, 2, 3, 4, 5, 6, 7, 8], Some(&[1, 0, 0, 0, 0, 0, 0, 0]));
        let mut c = vec![0u8; 130];
        // SAFETY: 130 and 64 bytes in and out.
        unsafe { chacha_encrypt_bytes(&mut x, m.as_ptr(), c.as_mut_ptr(), 130) };
        assert_eq!(c, hex(C130));
        let mut c = vec![0u8; 64];
        unsafe { chacha_encrypt_bytes(&mut x, m.as_ptr(), c.as_mut_ptr(), 64) };
        assert_eq!(c, hex(C64_NEXT));
        assert_eq!((x.input[12], x.input[13]), (5, 0));
        // In place, counter 0.
        let mut x = setup(&[1, 2, 3, 4, 5, 6, 7, 8], None);
        let mut buf = m[..4].to_vec();
        unsafe { chacha_encrypt_bytes(&mut x, buf.as_ptr(), buf.as_mut_ptr(), 4) };
        assert_eq!(buf, hex("8fe04927"));
    }

    #[test]
    fn in_place_and_long_runs_match_and_the_counter_carries_as_in_libssh2() {
        let m: Vec<u8> = (0..70_000u32).map(|i| (i * 31 + 7) as u8).collect();
        let x = setup(&[9, 8, 7, 6, 5, 4, 3, 2], Some(&[3, 0, 0, 0, 0, 0, 0, 0]));
        for len in [1usize, 63, 64, 65, 4096, 32_768 + 20, 70_000] {
            let mut y = ChachaCtx { input: x.input };
            let mut out = vec![0u8; len];
            unsafe { chacha_encrypt_bytes(&mut y, m.as_ptr(), out.as_mut_ptr(), len) };
            let mut z = ChachaCtx { input: x.input };
            let mut buf = m[..len].to_vec();
            unsafe { chacha_encrypt_bytes(&mut z, buf.as_ptr(), buf.as_mut_ptr(), len) };
            assert_eq!(out, buf, "length {}", len);
            assert_ne!(out, m[..len], "length {}", len);
            // Encrypting twice from the same state gives the plain text back.
            let mut w = ChachaCtx { input: x.input };
            unsafe { chacha_encrypt_bytes(&mut w, buf.as_ptr(), buf.as_mut_ptr(), len) };
            assert_eq!(buf, m[..len], "length {}", len);
            assert_eq!(u64::from(y.input[12]), 3 + len.div_ceil(64) as u64);
        }
        // A counter about to wrap its low word carries into the high one, as libssh2 does.
        let mut x = setup(&[0; 8], Some(&[0xff, 0xff, 0xff, 0xff, 0, 0, 0, 0]));
        let mut c = vec![0u8; 128];
        unsafe { chacha_encrypt_bytes(&mut x, m.as_ptr(), c.as_mut_ptr(), 128) };
        assert_eq!((x.input[12], x.input[13]), (1, 1));
        let mut second = setup(&[0; 8], Some(&[0, 0, 0, 0, 1, 0, 0, 0]));
        let mut d = vec![0u8; 64];
        unsafe { chacha_encrypt_bytes(&mut second, m[64..].as_ptr(), d.as_mut_ptr(), 64) };
        assert_eq!(&c[64..], &d[..]);
        // Across a wrap of the low word in one call, too (the run is split there).
        let mut x = setup(&[0; 8], Some(&[0xfe, 0xff, 0xff, 0xff, 0, 0, 0, 0]));
        let mut c = vec![0u8; 256];
        unsafe { chacha_encrypt_bytes(&mut x, m.as_ptr(), c.as_mut_ptr(), 256) };
        assert_eq!((x.input[12], x.input[13]), (2, 1));
        let mut second = setup(&[0; 8], Some(&[0, 0, 0, 0, 1, 0, 0, 0]));
        let mut d = vec![0u8; 128];
        unsafe { chacha_encrypt_bytes(&mut second, m[128..].as_ptr(), d.as_mut_ptr(), 128) };
        assert_eq!(&c[128..], &d[..]);
    }

    #[test]
    fn every_call_is_counted() {
        let before = calls();
        let mut x = setup(&[0; 8], None);
        let mut buf = [0u8; 4];
        let mut tag = [0u8; 16];
        let key = [1u8; 32];
        unsafe {
            chacha_encrypt_bytes(&mut x, buf.as_ptr(), buf.as_mut_ptr(), 4);
            poly1305_auth(tag.as_mut_ptr(), buf.as_ptr(), 4, key.as_ptr());
        }
        assert!(calls() >= before + 2);
    }

    #[test]
    fn the_cipher_is_left_out_of_a_preference_list() {
        assert_eq!(without_chacha("chacha20-poly1305@openssh.com,aes256-gcm@openssh.com,aes128-ctr"), "aes256-gcm@openssh.com,aes128-ctr");
        assert_eq!(without_chacha("aes128-ctr,chacha20-poly1305@openssh.com"), "aes128-ctr");
        assert_eq!(without_chacha("chacha20-poly1305@openssh.com"), "");
        // This machine is not in FIPS mode, and OpenSSL 3's default provider has both.
        assert!(allowed());
    }

    /// Run by `a_policy_without_chacha20_is_obeyed` in a child process, under its OpenSSL
    /// configuration.
    #[test]
    #[ignore]
    fn policy_child() {
        let want = std::env::var("PARALLELLY_TEST_CHACHA_ALLOWED").expect("run by a_policy_without_chacha20_is_obeyed");
        assert_eq!(allowed().to_string(), want);
    }

    #[cfg(ossl300)]
    #[test]
    fn a_policy_without_chacha20_is_obeyed() {
        // An OpenSSL configuration whose providers have no ChaCha20 (as the FIPS provider):
        // here only the base provider, which has no ciphers at all.
        let dir = std::env::temp_dir().join(format!("parallelly-crypto-policy-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let conf = dir.join("openssl.cnf");
        std::fs::write(&conf, "openssl_conf = init\n[init]\nproviders = providers\n[providers]\nbase = base\n[base]\nactivate = 1\n").unwrap();
        let run = |conf: Option<&std::path::Path>, want: bool| {
            let mut cmd = std::process::Command::new(std::env::current_exe().unwrap());
            cmd.args(["--exact", "ssh::crypto::tests::policy_child", "--ignored", "--test-threads=1"]);
            cmd.env("PARALLELLY_TEST_CHACHA_ALLOWED", want.to_string()).env_remove("OPENSSL_CONF");
            if let Some(c) = conf {
                cmd.env("OPENSSL_CONF", c);
            }
            let out = cmd.output().unwrap();
            let text = String::from_utf8_lossy(&out.stdout);
            assert!(out.status.success() && text.contains("1 passed"), "{}{}", text, String::from_utf8_lossy(&out.stderr));
        };
        run(Some(&conf), false);
        run(None, true);
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn poly1305_matches_libssh2_and_rfc8439() {
        let m = message();
        let key: [u8; 32] = std::array::from_fn(|i| i as u8);
        let ff = [0xffu8; 32];
        let rfc_key: [u8; 32] = hex("85d6be7857556d337f4452fe42d506a80103808afb0db2fd4abff6af4149f51b").try_into().unwrap();
        let rfc_msg = b"Cryptographic Forum Research Group";
        let cases: [(&[u8], &[u8; 32], &str); 4] = [
            (&m, &key, "d8ed23ef1cd60d3bdbdf00811e79ae0e"),
            (&[], &key, "101112131415161718191a1b1c1d1e1f"),
            (&m[..37], &ff, "1a56a6c7e6ebb3252f7c18d20066303a"),
            (rfc_msg, &rfc_key, "a8061dc1305136c6c22b8baf0c0127a9"),
        ];
        for (msg, k, want) in cases {
            let mut tag = [0u8; 16];
            unsafe { poly1305_auth(tag.as_mut_ptr(), msg.as_ptr(), msg.len(), k.as_ptr()) };
            assert_eq!(tag.to_vec(), hex(want));
        }
    }
}
