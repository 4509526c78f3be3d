//! libFuzzer entry for `hmp_bytes`; the body and its properties are in `qmp_fuzz::hmp_bytes`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| qmp_fuzz::hmp_bytes::run(data));
