//! Fuzz target: see src/fuzz_entry.rs (worker_handshake) for what it checks.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    parallelly::fuzz_entry::worker_handshake(data);
});
