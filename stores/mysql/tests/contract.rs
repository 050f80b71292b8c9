//! The recorder contract against the MariaDB/MySQL server that
//! `MYSQL_DBNAME`, `MYSQL_HOST`, ... name, with each tracking layout.
//! The key store contract against its `{name}_data_keys` table.
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

mod keys {
    use super::*;
    use annals_core::persistence::keys::KeyStore;

    fn keys(test: &str) -> Option<(Arc<dyn ProcessRecorder>, Arc<dyn KeyStore>)> {
        let r = common::fresh(
            &format!("myk_{}", &test[..test.len().min(45)]),
            TrackingLayout::SingleRow,
        )?;
        let keys = r.key_store().expect("annals' own tables keep keys");
        Some((Arc::new(r), Arc::new(keys)))
    }

    annals_core::key_store_contract!(keys);
}

/// What the MariaDB/MySQL keys table adds to the contract: subjects are
/// compared byte for byte, and one too long for the column is refused,
/// saying so, before anything is written.
mod key_subjects {
    use annals_core::persistence::keys::{KeyStore, StoredKey};
    use annals_core::persistence::{
        AggregateRecorder, EventQuery, ProcessRecorder, TrackingLayout,
    };
    use annals_mysql::MAX_SUBJECT_BYTES;

    use super::common;

    fn key(subject: &str, id: u8) -> StoredKey {
        StoredKey {
            subject: subject.to_owned(),
            key_id: vec![id; 8],
            wrapped: vec![id; 60],
        }
    }

    #[test]
    fn subjects_differing_in_trailing_spaces_or_case_have_keys_of_their_own() {
        let Some(r) = common::fresh("myk_subjects_bytes", TrackingLayout::SingleRow) else {
            return annals_core::testing::skipped("subjects_differing_in_trailing_spaces");
        };
        let keys = r.key_store().expect("annals' own tables keep keys");
        for (i, subject) in ["ada", "ada ", "Ada", "adá"].iter().enumerate() {
            let k = key(subject, i as u8);
            assert_eq!(keys.insert_key(&k).unwrap(), k, "{subject:?}");
        }
        let listed: Vec<String> = keys
            .select_keys(None, 10)
            .unwrap()
            .into_iter()
            .map(|k| k.subject)
            .collect();
        assert_eq!(
            listed,
            ["Ada", "ada", "ada ", "adá"],
            "Rust's order of strings"
        );
        assert!(keys.delete_key("ada ").unwrap());
        assert_eq!(keys.select_key("ada").unwrap(), Some(key("ada", 0)));
    }

    #[test]
    fn a_subject_too_long_for_the_column_is_refused_naming_the_limit() {
        let Some(r) = common::fresh("myk_subjects_long", TrackingLayout::SingleRow) else {
            return annals_core::testing::skipped("a_subject_too_long_for_the_column");
        };
        let keys = r.key_store().expect("annals' own tables keep keys");
        let longest = "é".repeat(MAX_SUBJECT_BYTES / 2);
        assert_eq!(
            keys.insert_key(&key(&longest, 1)).unwrap(),
            key(&longest, 1)
        );
        let long = format!("{longest}x");
        let err = keys.insert_key(&key(&long, 2)).unwrap_err();
        let err = err.report().to_string();
        assert!(
            err.contains(&format!("{} bytes", MAX_SUBJECT_BYTES + 1))
                && err.contains(&format!("at most {MAX_SUBJECT_BYTES}"))
                && err.contains("myk_subjects_long_data_keys"),
            "{err}"
        );
        assert_eq!(keys.select_key(&long).unwrap(), None);
        assert!(!keys.delete_key(&long).unwrap());
        assert!(!keys.rewrap_key(&key(&long, 2), &[1]).unwrap());
        // Refused in a save too, which then stores nothing.
        let saved = r.insert_events_with(
            &[annals_core::testing::contract::event(
                "p",
                1,
                "Patient.Admitted",
            )],
            None,
            &mut |tx| keys.insert_keys_in(tx, &[key(&long, 2)]),
        );
        assert!(saved.is_err());
        assert!(r.select_events("p", &EventQuery::all()).unwrap().is_empty());
    }
}
