//! The recorder contract against the MariaDB/MySQL server that
//! `MYSQL_DBNAME`, `MYSQL_HOST`, ... name, with each tracking layout.
//! Without `MYSQL_DBNAME` the tests are skipped, except in CI.

use std::sync::Arc;

use annals_core::persistence::{ProcessRecorder, TrackingLayout};

mod common;

/// A recorder on fresh tables for contract test `test` (tables prefixed
/// with `prefix`, so the tests run in parallel).
fn contract_recorder_with(
    test: &str,
    prefix: &str,
    layout: TrackingLayout,
) -> Option<Arc<dyn ProcessRecorder>> {
    let name = format!("{prefix}_{}", &test[..test.len().min(45)]);
    let r = common::fresh(&name, layout)?;
    assert_eq!(r.tracking_layout(), layout);
    Some(Arc::new(r))
}

fn contract_recorder(test: &str) -> Option<Arc<dyn ProcessRecorder>> {
    contract_recorder_with(test, "my", TrackingLayout::SingleRow)
}

annals_core::recorder_contract!(contract_recorder);

mod multi_row_tracking {
    use super::*;

    fn contract_recorder(test: &str) -> Option<Arc<dyn ProcessRecorder>> {
        contract_recorder_with(test, "mym", TrackingLayout::MultiRow)
    }

    annals_core::recorder_contract!(contract_recorder);
}
