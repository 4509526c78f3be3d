//! libFuzzer entry for `trace_roundtrip`; the body and its properties are in `qmp_fuzz::trace_roundtrip`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| qmp_fuzz::trace_roundtrip::run(data));
