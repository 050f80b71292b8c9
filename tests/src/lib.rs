//! Shared parts of annals' integration tests: the recorder contract suite,
//! written once and run against every store (see `recorder_contract!`).

pub mod contract;
pub mod shops;
pub mod stores;
pub mod tamper;

use std::io::Write;

/// Says, past the test harness's output capture, that a test was skipped
/// because its store is not configured. CI fails on such a line.
pub fn skipped(test: &str) {
    let _ = writeln!(
        std::io::stderr(),
        "SKIPPED {test}: its store is not configured (see the README)"
    );
}
