//! libFuzzer entry for `server_bytes`; the body and its properties are in `qmp_fuzz::server_bytes`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| qmp_fuzz::server_bytes::run(data));
