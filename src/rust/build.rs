//! Build-time checks for src/ssh/crypto.rs.
//!
//! 1. crypto.rs defines libssh2's four ChaCha20/Poly1305 functions in place of its own
//!    `chacha.c` and `poly1305.c`, so it depends on their C signatures and on the layout of
//!    `struct chacha_ctx`. Those were checked against libssh2 1.11.x: any other libssh2
//!    (a newer libssh2-sys, or a system library through LIBSSH2_SYS_USE_PKG_CONFIG) stops
//!    the build here, naming what to check, instead of linking something that may not fit.
//! 2. crypto.rs asks OpenSSL 3 whether ChaCha20 is allowed (a FIPS configuration refuses
//!    it); that API exists only from OpenSSL 3, so the version becomes the cfg `ossl300`.

use std::env;
use std::fs;
use std::path::Path;

const LIBSSH2_CHECKED: &str = "1.11";

fn main() {
    println!("cargo::rustc-check-cfg=cfg(ossl300)");
    println!("cargo::rerun-if-changed=build.rs");

    // libssh2-sys has `links = "ssh2"`: its `cargo:include` arrives as DEP_SSH2_INCLUDE.
    let include = env::var("DEP_SSH2_INCLUDE").unwrap_or_else(|_| {
        panic!("libssh2-sys did not report its include directory (DEP_SSH2_INCLUDE): cannot check its version")
    });
    let header = Path::new(&include).join("libssh2.h");
    let text = fs::read_to_string(&header).unwrap_or_else(|e| panic!("cannot read {}: {}", header.display(), e));
    let version = libssh2_version(&text).unwrap_or_else(|| panic!("no LIBSSH2_VERSION in {}", header.display()));
    if !version.starts_with(&format!("{}.", LIBSSH2_CHECKED)) {
        panic!(
            "libssh2 {} found ({}); src/ssh/crypto.rs replaces libssh2 {}.x's chacha.c and poly1305.c \
             and was checked against that release line only: compare libssh2's src/chacha.h, \
             src/poly1305.h and src/cipher-chachapoly.c with crypto.rs, then widen LIBSSH2_CHECKED in build.rs",
            version,
            header.display(),
            LIBSSH2_CHECKED
        );
    }

    // openssl-sys has `links = "openssl"`: OPENSSL_VERSION_NUMBER in hex.
    if let Ok(v) = env::var("DEP_OPENSSL_VERSION_NUMBER") {
        if u64::from_str_radix(&v, 16).is_ok_and(|n| n >= 0x3000_0000) {
            println!("cargo::rustc-cfg=ossl300");
        }
    }
}

/// The quoted value of `#define LIBSSH2_VERSION "x.y.z"`.
fn libssh2_version(header: &str) -> Option<String> {
    header.lines().find_map(|line| {
        let rest = line.trim().strip_prefix("#define")?.trim_start().strip_prefix("LIBSSH2_VERSION")?;
        let value = rest.trim();
        value.strip_prefix('"')?.split('"').next().map(str::to_string)
    })
}
