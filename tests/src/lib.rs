//! Shared parts of annals' integration tests. The recorder contract suite
//! they run against every store is annals' own (`annals::testing::contract`,
//! `annals::recorder_contract!`, the `testing` feature).

pub mod clinic;
pub mod dogs;
pub mod dogschool;
pub mod python;
pub mod shops;
pub mod stores;
pub mod tamper;
pub mod tracking;

/// Says, past the test harness's output capture, that a test was skipped
/// because its store is not configured. CI fails on such a line.
pub fn skipped(test: &str) {
    annals::testing::skipped(test);
}
