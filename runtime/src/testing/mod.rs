//! Test kits (the `testing` feature, off by default): run a store of your
//! own through the recorder contract.
//!
//! - [`contract`] and [`recorder_contract!`](crate::recorder_contract):
//!   what every recorder must do, as one `#[test]` per rule.
//!
//! Enable it for tests only:
//!
//! ```toml
//! [dev-dependencies]
//! annals = { version = "0.1", features = ["testing"] }
//! ```

pub mod contract;

use std::io::Write;

/// Says, past the test harness's output capture, that test `test` was
/// skipped because its store is not configured: prints
/// `SKIPPED <test>: its store is not configured (see the README)` to
/// stderr. CI can fail on lines that start with `SKIPPED`. The default skip
/// hook of [`recorder_contract!`](crate::recorder_contract).
///
/// ```
/// annals::testing::skipped("uuid_column");
/// // stderr: SKIPPED uuid_column: its store is not configured (see the README)
/// ```
pub fn skipped(test: &str) {
    let _ = writeln!(
        std::io::stderr(),
        "SKIPPED {test}: its store is not configured (see the README)"
    );
}
