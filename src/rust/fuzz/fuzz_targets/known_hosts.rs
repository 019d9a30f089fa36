//! Fuzz target: see src/fuzz_entry.rs (known_hosts_file) for what it checks.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    parallelly::fuzz_entry::known_hosts_file(data);
});
