//! Test support shared by the suite's test crates (`integration`,
//! `netns-tests`): one place that knows where the programs under test are
//! and builds them once per test process, and builds the packets and frames
//! they send or decode.

pub mod bins;
pub mod frames;
