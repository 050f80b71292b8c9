//! The recorder contract suite (the `testing` feature): what every
//! recorder must do, as one function per rule ([`contract`]), and
//! [`recorder_contract!`](crate::recorder_contract), which makes each a
//! `#[test]` of the store's own crate. annals' stores run it, and a store
//! written outside annals runs the same.

pub mod contract;
pub mod dcb;
pub mod keys;

use std::io::Write;

/// Says, past the test harness's output capture, that test `test` was
/// skipped because its store is not configured: prints
/// `SKIPPED <test>: its store is not configured (see the README)` to
/// stderr. CI can fail on lines that start with `SKIPPED`. The default skip
/// hook of [`recorder_contract!`](crate::recorder_contract).
///
/// ```
/// annals_core::testing::skipped("uuid_column");
/// // stderr: SKIPPED uuid_column: its store is not configured (see the README)
/// ```
pub fn skipped(test: &str) {
    let _ = writeln!(
        std::io::stderr(),
        "SKIPPED {test}: its store is not configured (see the README)"
    );
}
