//! One-time sequence file reader: any file contents.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|bytes: &[u8]| {
    knock_fuzz::check_otp(bytes);
});
