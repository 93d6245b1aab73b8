#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    chaingate_gateway::fuzzing::bearer(data);
});
