//! Test support shared by the suite's test crates (`integration`,
//! `netns-tests`): one place that knows where the programs under test are
//! and builds them once per test process.

pub mod bins;
