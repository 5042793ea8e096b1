#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| timed::fuzzing::config_file(data));
