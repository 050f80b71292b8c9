//! The recorder contract, with each tracking layout.

use std::sync::Arc;

use annals::persistence::postgres::OriginatorIdType;
use annals::persistence::{ProcessRecorder, TrackingLayout};

use crate::{fresh, server};

/// A recorder on fresh tables for contract test `test`, its tracking table
/// created in `layout` (the tables' names begin with `prefix`).
fn contract_recorder_with(
    test: &str,
    prefix: &str,
    layout: TrackingLayout,
) -> Option<Arc<dyn ProcessRecorder>> {
    let mut config = server()?;
    config.originator_id_type = OriginatorIdType::Text;
    config.tracking_layout = layout;
    let name = format!("{prefix}_{}", &test[..test.len().min(45)]);
    let r = fresh(&config, &name);
    assert_eq!(r.tracking_layout(), layout);
    Some(Arc::new(r))
}

/// The contract with the default layout: single-row tracking.
fn contract_recorder(test: &str) -> Option<Arc<dyn ProcessRecorder>> {
    contract_recorder_with(test, "c", TrackingLayout::SingleRow)
}

annals::recorder_contract!(contract_recorder);

mod multi_row_tracking {
    use super::*;

    fn contract_recorder(test: &str) -> Option<Arc<dyn ProcessRecorder>> {
        contract_recorder_with(test, "m", TrackingLayout::MultiRow)
    }

    annals::recorder_contract!(contract_recorder);
}

/// The key store contract on `{name}_data_keys`.
mod keys {
    use super::*;

    annals::key_store_contract!(|test| {
        let mut config = server()?;
        config.originator_id_type = OriginatorIdType::Text;
        let r = fresh(&config, &format!("k_{}", &test[..test.len().min(45)]));
        let keys = r.key_store().expect("annals' own tables keep keys");
        Some((Arc::new(r), Arc::new(keys)))
    });
}
