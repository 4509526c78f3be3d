//! libFuzzer entry for `json_stream`; the body and its properties are in `qmp_fuzz::json_stream`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| qmp_fuzz::json_stream::run(data));
