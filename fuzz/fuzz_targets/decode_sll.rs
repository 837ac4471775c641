//! Packet decoder, link type LinuxSll: any captured frame.
#![no_main]

use knockd::packet::LinkType;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|frame: &[u8]| {
    knock_fuzz::check_decode(LinkType::LinuxSll, frame);
});
