//! libFuzzer entry for `driver_facts`; the body and its properties are in `qmp_fuzz::driver_facts`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| qmp_fuzz::driver_facts::run(data));
