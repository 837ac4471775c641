//! `Sequence` (`7000,8000:udp`) and `TCPFlags` (`syn,!ack`) syntax.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|bytes: &[u8]| {
    knock_fuzz::check_syntax(bytes);
});
