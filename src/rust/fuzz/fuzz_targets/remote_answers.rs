//! Fuzz target: see src/fuzz_entry.rs (remote_answers) for what it checks.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    parallelly::fuzz_entry::remote_answers(data);
});
