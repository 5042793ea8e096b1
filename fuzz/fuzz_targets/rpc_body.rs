#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| timed::fuzzing::rpc_body(data));
