//! Fuzz target: see src/fuzz_entry.rs (ssh_config) for what it checks.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    parallelly::fuzz_entry::ssh_config(data);
});
