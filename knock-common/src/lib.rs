//! Code shared by `knockd`, `knock` and `knock-gen`: the knock sequence
//! format, TCP flag lists, one-time sequence files and the derivation of
//! rotating sequences. Nothing here touches the network or libpcap.

pub mod flags;
pub mod fsafe;
mod list;
pub mod otp;
pub mod rotate;
pub mod sequence;

pub use flags::{FlagError, FlagSpec};
pub use sequence::{Knock, Proto, Sequence, SequenceError};
