//! libFuzzer entry for `scenario`; the body and its properties are in `qmp_fuzz::scenario`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| qmp_fuzz::scenario::run(data));
