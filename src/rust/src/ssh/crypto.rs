//! ChaCha20 and Poly1305 for libssh2's `chacha20-poly1305@openssh.com`, the cipher it
//! prefers and OpenSSH's default, on OpenSSL's vectorised code.
//!
//! Why: libssh2 runs that cipher on its own portable C (`chacha.c`, `poly1305.c`), which
//! cost ~3.5 ns a byte here: the tunnel moved large objects at a third of OpenSSH's rate,
//! and the crypto was two thirds of the I/O thread's time. Its other ciphers are no better
//! (AES-GCM and AES-CTR call OpenSSL once per 16-byte block). With these four functions
//! the same cipher costs ~1 ns a byte, below OpenSSH's client.
//!
//! How: libssh2 is linked statically into this library, and `chacha.o` and `poly1305.o`
//! hold nothing but the four symbols defined here, with the same C signatures. Our
//! definitions satisfy libssh2's references, so the linker never pulls those two members
//! (two definitions in one link would be an error, not a silent choice). The semantics are
//! libssh2's exactly, including the block counter that `chacha_encrypt_bytes` advances;
//! the tests pin them with vectors made by libssh2's own C. Where OpenSSL refuses (a
//! FIPS-only configuration has no ChaCha20), a plain Rust implementation takes over.
//! libssh2-sys is pinned in Cargo.toml: a new version must be checked against this file.

use std::os::raw::{c_char, c_int, c_uchar, c_void};
use std::ptr;

/// libssh2's `struct chacha_ctx`: the 16 words of the ChaCha state (constants, key, a
/// 64-bit block counter in words 12-13, a 64-bit nonce in words 14-15).
#[repr(C)]
pub struct ChachaCtx {
    input: [u32; 16],
}

extern "C" {
    fn EVP_CIPHER_CTX_new() -> *mut c_void;
    fn EVP_CIPHER_CTX_free(ctx: *mut c_void);
    fn EVP_chacha20() -> *const c_void;
    fn EVP_EncryptInit_ex(ctx: *mut c_void, cipher: *const c_void, engine: *mut c_void, key: *const c_uchar, iv: *const c_uchar) -> c_int;
    fn EVP_EncryptUpdate(ctx: *mut c_void, out: *mut c_uchar, outl: *mut c_int, inp: *const c_uchar, inl: c_int) -> c_int;
    fn EVP_MAC_fetch(libctx: *mut c_void, algorithm: *const c_char, properties: *const c_char) -> *mut c_void;
    fn EVP_MAC_free(mac: *mut c_void);
    fn EVP_MAC_CTX_new(mac: *mut c_void) -> *mut c_void;
    fn EVP_MAC_CTX_free(ctx: *mut c_void);
    fn EVP_MAC_init(ctx: *mut c_void, key: *const c_uchar, keylen: usize, params: *const c_void) -> c_int;
    fn EVP_MAC_update(ctx: *mut c_void, data: *const c_uchar, datalen: usize) -> c_int;
    fn EVP_MAC_final(ctx: *mut c_void, out: *mut c_uchar, outl: *mut usize, outsize: usize) -> c_int;
}

const SIGMA: [u32; 4] = [0x6170_7865, 0x3320_646e, 0x7962_2d32, 0x6b20_6574];

fn le32(b: &[u8]) -> u32 {
    u32::from_le_bytes([b[0], b[1], b[2], b[3]])
}

/// One OpenSSL ChaCha20 context per thread (each SSH session is driven by one thread at a
/// time), freed when the thread ends; null where OpenSSL has no ChaCha20.
struct Cipher(*mut c_void);

impl Cipher {
    fn new() -> Cipher {
        // SAFETY: plain OpenSSL calls; the context is freed if its set-up fails.
        unsafe {
            let ctx = EVP_CIPHER_CTX_new();
            if ctx.is_null() {
                return Cipher(ptr::null_mut());
            }
            let cipher = EVP_chacha20();
            if cipher.is_null() || EVP_EncryptInit_ex(ctx, cipher, ptr::null_mut(), ptr::null(), ptr::null()) != 1 {
                EVP_CIPHER_CTX_free(ctx);
                return Cipher(ptr::null_mut());
            }
            Cipher(ctx)
        }
    }

    /// XOR `len` bytes of the key stream for (key, 16-byte counter+nonce) from `m` into `c`;
    /// false if OpenSSL failed (nothing is promised about `c` then).
    fn apply(&self, key: &[u8; 32], iv: &[u8; 16], m: *const u8, c: *mut u8, len: usize) -> bool {
        if self.0.is_null() {
            return false;
        }
        // SAFETY: the context is valid; key and iv have the sizes ChaCha20 takes; m and c
        // are the caller's buffers of `len` bytes (equal or disjoint, as EVP allows).
        unsafe {
            if EVP_EncryptInit_ex(self.0, ptr::null(), ptr::null_mut(), key.as_ptr(), iv.as_ptr()) != 1 {
                return false;
            }
            let mut done = 0usize;
            while done < len {
                // Whole blocks per call keep the key stream continuous across calls.
                let n = (len - done).min(1 << 30);
                let mut out = 0 as c_int;
                if EVP_EncryptUpdate(self.0, c.add(done), &mut out, m.add(done), n as c_int) != 1 || out as usize != n {
                    return false;
                }
                done += n;
            }
        }
        true
    }
}

impl Drop for Cipher {
    fn drop(&mut self) {
        if !self.0.is_null() {
            // SAFETY: created by EVP_CIPHER_CTX_new and freed once.
            unsafe { EVP_CIPHER_CTX_free(self.0) }
        }
    }
}

/// OpenSSL's Poly1305 (an EVP_MAC and a context reused for every tag), one per thread.
struct Mac {
    mac: *mut c_void,
    ctx: *mut c_void,
}

impl Mac {
    fn new() -> Mac {
        // SAFETY: plain OpenSSL calls; what was made is freed by Drop.
        unsafe {
            let mac = EVP_MAC_fetch(ptr::null_mut(), c"POLY1305".as_ptr(), ptr::null());
            let ctx = if mac.is_null() { ptr::null_mut() } else { EVP_MAC_CTX_new(mac) };
            Mac { mac, ctx }
        }
    }

    fn tag(&self, out: &mut [u8; 16], m: *const u8, len: usize, key: &[u8; 32]) -> bool {
        if self.ctx.is_null() {
            return false;
        }
        let mut n = 0usize;
        // SAFETY: the context is valid; m holds `len` bytes (or is unused when len is 0);
        // out has the 16 bytes of a tag.
        unsafe {
            let data = if len == 0 { key.as_ptr() } else { m };
            EVP_MAC_init(self.ctx, key.as_ptr(), key.len(), ptr::null()) == 1
                && EVP_MAC_update(self.ctx, data, len) == 1
                && EVP_MAC_final(self.ctx, out.as_mut_ptr(), &mut n, out.len()) == 1
                && n == 16
        }
    }
}

impl Drop for Mac {
    fn drop(&mut self) {
        // SAFETY: each pointer was made by OpenSSL, is freed once, and null is skipped.
        unsafe {
            if !self.ctx.is_null() {
                EVP_MAC_CTX_free(self.ctx);
            }
            if !self.mac.is_null() {
                EVP_MAC_free(self.mac);
            }
        }
    }
}

thread_local! {
    static CIPHER: Cipher = Cipher::new();
    static MAC: Mac = Mac::new();
}

fn quarter(s: &mut [u32; 16], a: usize, b: usize, c: usize, d: usize) {
    s[a] = s[a].wrapping_add(s[b]);
    s[d] = (s[d] ^ s[a]).rotate_left(16);
    s[c] = s[c].wrapping_add(s[d]);
    s[b] = (s[b] ^ s[c]).rotate_left(12);
    s[a] = s[a].wrapping_add(s[b]);
    s[d] = (s[d] ^ s[a]).rotate_left(8);
    s[c] = s[c].wrapping_add(s[d]);
    s[b] = (s[b] ^ s[c]).rotate_left(7);
}

/// The ChaCha20 block function (RFC 8439, 2.3), for the fallback.
fn block(input: &[u32; 16]) -> [u8; 64] {
    let mut s = *input;
    for _ in 0..10 {
        quarter(&mut s, 0, 4, 8, 12);
        quarter(&mut s, 1, 5, 9, 13);
        quarter(&mut s, 2, 6, 10, 14);
        quarter(&mut s, 3, 7, 11, 15);
        quarter(&mut s, 0, 5, 10, 15);
        quarter(&mut s, 1, 6, 11, 12);
        quarter(&mut s, 2, 7, 8, 13);
        quarter(&mut s, 3, 4, 9, 14);
    }
    let mut out = [0u8; 64];
    for (i, w) in s.iter().enumerate() {
        out[4 * i..4 * i + 4].copy_from_slice(&w.wrapping_add(input[i]).to_le_bytes());
    }
    out
}

/// The fallback stream cipher: block by block from the state's counter (64-bit, as libssh2).
fn chacha_plain(state: &[u32; 16], m: &[u8], c: &mut [u8]) {
    let mut st = *state;
    for (mi, ci) in m.chunks(64).zip(c.chunks_mut(64)) {
        let ks = block(&st);
        for ((o, i), k) in ci.iter_mut().zip(mi).zip(ks.iter()) {
            *o = i ^ k;
        }
        let ctr = (u64::from(st[13]) << 32 | u64::from(st[12])).wrapping_add(1);
        st[12] = ctr as u32;
        st[13] = (ctr >> 32) as u32;
    }
}

/// Poly1305 (RFC 8439, 2.5) in 26-bit limbs, for the fallback.
fn poly1305_plain(m: &[u8], key: &[u8; 32]) -> [u8; 16] {
    const M26: u32 = 0x3ff_ffff;
    let r0 = le32(&key[0..]) & 0x3ff_ffff;
    let r1 = (le32(&key[3..]) >> 2) & 0x3ff_ff03;
    let r2 = (le32(&key[6..]) >> 4) & 0x3ff_c0ff;
    let r3 = (le32(&key[9..]) >> 6) & 0x3f0_3fff;
    let r4 = (le32(&key[12..]) >> 8) & 0x00f_ffff;
    let (s1, s2, s3, s4) = (r1 * 5, r2 * 5, r3 * 5, r4 * 5);
    let mut h = [0u32; 5];
    for chunk in m.chunks(16) {
        let mut b = [0u8; 17];
        b[..chunk.len()].copy_from_slice(chunk);
        // A full block carries 2^128, a short one a 1 byte right after its end.
        b[chunk.len()] = 1;
        let hibit = if chunk.len() == 16 { 1 << 24 } else { 0 };
        h[0] += le32(&b[0..]) & M26;
        h[1] += (le32(&b[3..]) >> 2) & M26;
        h[2] += (le32(&b[6..]) >> 4) & M26;
        h[3] += (le32(&b[9..]) >> 6) & M26;
        h[4] += (le32(&b[12..]) >> 8) | hibit;
        let m64 = |a: u32, b: u32| u64::from(a) * u64::from(b);
        let d0 = m64(h[0], r0) + m64(h[1], s4) + m64(h[2], s3) + m64(h[3], s2) + m64(h[4], s1);
        let mut d1 = m64(h[0], r1) + m64(h[1], r0) + m64(h[2], s4) + m64(h[3], s3) + m64(h[4], s2);
        let mut d2 = m64(h[0], r2) + m64(h[1], r1) + m64(h[2], r0) + m64(h[3], s4) + m64(h[4], s3);
        let mut d3 = m64(h[0], r3) + m64(h[1], r2) + m64(h[2], r1) + m64(h[3], r0) + m64(h[4], s4);
        let mut d4 = m64(h[0], r4) + m64(h[1], r3) + m64(h[2], r2) + m64(h[3], r1) + m64(h[4], r0);
        h[0] = (d0 as u32) & M26;
        d1 += d0 >> 26;
        h[1] = (d1 as u32) & M26;
        d2 += d1 >> 26;
        h[2] = (d2 as u32) & M26;
        d3 += d2 >> 26;
        h[3] = (d3 as u32) & M26;
        d4 += d3 >> 26;
        h[4] = (d4 as u32) & M26;
        h[0] += ((d4 >> 26) as u32) * 5;
        h[1] += h[0] >> 26;
        h[0] &= M26;
    }
    // Carry fully, then reduce modulo 2^130 - 5 by a constant-time choice of h or h - p.
    let mut c;
    c = h[1] >> 26;
    h[1] &= M26;
    h[2] += c;
    c = h[2] >> 26;
    h[2] &= M26;
    h[3] += c;
    c = h[3] >> 26;
    h[3] &= M26;
    h[4] += c;
    c = h[4] >> 26;
    h[4] &= M26;
    h[0] += c * 5;
    c = h[0] >> 26;
    h[0] &= M26;
    h[1] += c;
    let mut g = [0u32; 5];
    g[0] = h[0] + 5;
    c = g[0] >> 26;
    g[0] &= M26;
    for i in 1..4 {
        g[i] = h[i] + c;
        c = g[i] >> 26;
        g[i] &= M26;
    }
    g[4] = h[4].wrapping_add(c).wrapping_sub(1 << 26);
    let use_g = (g[4] >> 31).wrapping_sub(1);
    for i in 0..5 {
        h[i] = (h[i] & !use_g) | (g[i] & use_g);
    }
    let w0 = h[0] | (h[1] << 26);
    let w1 = (h[1] >> 6) | (h[2] << 20);
    let w2 = (h[2] >> 12) | (h[3] << 14);
    let w3 = (h[3] >> 18) | (h[4] << 8);
    let mut out = [0u8; 16];
    let mut f = 0u64;
    for (i, w) in [w0, w1, w2, w3].into_iter().enumerate() {
        f = u64::from(w) + u64::from(le32(&key[16 + 4 * i..])) + (f >> 32);
        out[4 * i..4 * i + 4].copy_from_slice(&(f as u32).to_le_bytes());
    }
    out
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

/// libssh2's `chacha_encrypt_bytes`: XOR the key stream into `bytes` bytes and advance the
/// block counter by the blocks used (a partial last block counts as one).
///
/// # Safety
/// `x` points to a `ChachaCtx`; `m` and `c` to `bytes` bytes each, the same or disjoint.
#[no_mangle]
pub unsafe extern "C" fn chacha_encrypt_bytes(x: *mut ChachaCtx, m: *const u8, c: *mut u8, bytes: usize) {
    if bytes == 0 {
        return;
    }
    // SAFETY: the caller's contract above.
    let x = unsafe { &mut *x };
    let ctr = u64::from(x.input[13]) << 32 | u64::from(x.input[12]);
    let blocks = bytes.div_ceil(64) as u64;
    // OpenSSL's counter is 32 bits wide: a run that would carry into word 13 (never within
    // an SSH packet) takes the fallback, which carries as libssh2 does.
    let fits = u64::from(x.input[12]) + blocks <= 1 << 32;
    let mut key = [0u8; 32];
    for i in 0..8 {
        key[4 * i..4 * i + 4].copy_from_slice(&x.input[4 + i].to_le_bytes());
    }
    let mut iv = [0u8; 16];
    for i in 0..4 {
        iv[4 * i..4 * i + 4].copy_from_slice(&x.input[12 + i].to_le_bytes());
    }
    let done = fits && CIPHER.try_with(|cipher| cipher.apply(&key, &iv, m, c, bytes)).unwrap_or(false);
    if !done {
        // SAFETY: `bytes` bytes each (the caller's contract); when m == c the input is
        // copied first, so no slice aliases a mutable one.
        let input = unsafe { std::slice::from_raw_parts(m, bytes) }.to_vec();
        let out = unsafe { std::slice::from_raw_parts_mut(c, bytes) };
        chacha_plain(&x.input, &input, out);
    }
    let ctr = ctr.wrapping_add(blocks);
    x.input[12] = ctr as u32;
    x.input[13] = (ctr >> 32) as u32;
}

/// libssh2's `poly1305_auth`: the 16-byte tag of `inlen` bytes under a 32-byte one-time key.
///
/// # Safety
/// `out` points to 16 writable bytes, `m` to `inlen` bytes, `key` to 32 bytes.
#[no_mangle]
pub unsafe extern "C" fn poly1305_auth(out: *mut u8, m: *const u8, inlen: usize, key: *const u8) {
    let mut k = [0u8; 32];
    // SAFETY: the caller's contract above.
    unsafe { ptr::copy_nonoverlapping(key, k.as_mut_ptr(), 32) };
    let mut tag = [0u8; 16];
    if !MAC.try_with(|mac| mac.tag(&mut tag, m, inlen, &k)).unwrap_or(false) {
        // SAFETY: `inlen` bytes (the caller's contract); none when inlen is 0.
        let msg = if inlen == 0 { &[][..] } else { unsafe { std::slice::from_raw_parts(m, inlen) } };
        tag = poly1305_plain(msg, &k);
    }
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
    fn the_fallback_cipher_matches_openssl() {
        // OpenSSL 3 (what this package builds against) has both: the fast path is tested.
        assert!(CIPHER.with(|c| !c.0.is_null()) && MAC.with(|m| !m.ctx.is_null()));
        let x = setup(&[9, 8, 7, 6, 5, 4, 3, 2], Some(&[3, 0, 0, 0, 0, 0, 0, 0]));
        let m: Vec<u8> = (0..70_000u32).map(|i| (i * 31 + 7) as u8).collect();
        for len in [1usize, 63, 64, 65, 4096, 32_768 + 20, 70_000] {
            let mut plain = vec![0u8; len];
            chacha_plain(&x.input, &m[..len], &mut plain);
            let mut y = ChachaCtx { input: x.input };
            let mut fast = vec![0u8; len];
            unsafe { chacha_encrypt_bytes(&mut y, m.as_ptr(), fast.as_mut_ptr(), len) };
            assert_eq!(plain, fast, "length {}", len);
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
            assert_eq!(poly1305_plain(msg, k).to_vec(), hex(want));
        }
        let long: Vec<u8> = (0..33_000u32).map(|i| (i * 13 + 1) as u8).collect();
        for len in [15usize, 16, 17, 32_768, 33_000] {
            let mut tag = [0u8; 16];
            unsafe { poly1305_auth(tag.as_mut_ptr(), long.as_ptr(), len, rfc_key.as_ptr()) };
            assert_eq!(tag, poly1305_plain(&long[..len], &rfc_key), "length {}", len);
        }
    }
}
