#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| actlog_fuzz::source_items(data));
