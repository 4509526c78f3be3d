//! libFuzzer entry for `json_roundtrip`; the body and its properties are in `qmp_fuzz::json_roundtrip`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| qmp_fuzz::json_roundtrip::run(data));
