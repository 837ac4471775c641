//! `knockd.conf` parser: any file contents.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|bytes: &[u8]| {
    knock_fuzz::check_config(bytes);
});
