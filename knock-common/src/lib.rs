//! Code shared by `knockd`, `knock` and `knock-gen`: the knock sequence
//! format, TCP flag lists and one-time sequence files. Nothing here touches
//! the network or libpcap.

pub mod flags;
pub mod fsafe;
pub mod otp;
pub mod sequence;

pub use flags::{FlagError, FlagSpec};
pub use sequence::{Knock, Proto, Sequence, SequenceError};
