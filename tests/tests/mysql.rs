//! Applications on MariaDB/MySQL (`MYSQL_DBNAME`, `MYSQL_HOST`, ...;
//! skipped when unset, except in CI): personal data kept under data keys
//! in `{name}_data_keys`, and forgotten.

use annals::mysql::prelude::Queryable;
use annals::prelude::*;
use annals::Persistence;
use annals_tests::clinic::Patient;
use annals_tests::stores::{drop_mysql_tables, mysql_client, mysql_server};

/// A patient's name is sealed with the patient's key, kept in
/// `myclinic_data_keys`; forgetting the patient erases the key, and the
/// name reads as forgotten, in this application and in a fresh one, while
/// the events stay.
#[test]
fn a_forgotten_patient_reads_as_forgotten_here_and_after_a_restart() {
    let Some(config) = mysql_server() else {
        return annals_tests::skipped("a_forgotten_patient_reads_as_forgotten on mysql");
    };
    drop_mysql_tables(&config, "MyClinic");
    let key = annals::cipher::create_key();
    let open = || {
        Application::builder("MyClinic")
            .persistence(Persistence::Mysql(config.clone()))
            .personal_data_key(&key)
            .build()
            .expect("open the clinic on MariaDB/MySQL")
    };
    let app = open();
    let mut ada = Patient::admit("Ada Lovelace".into());
    ada.visit();
    app.save(&mut ada).unwrap();
    let mut bob = Patient::admit("Bob Babbage".into());
    app.save(&mut bob).unwrap();
    assert_eq!(app.get::<Patient>(ada.id()).unwrap().name, "Ada Lovelace");

    let mut client = mysql_client(&config);
    let in_clear: u64 = client
        .query_first(
            "SELECT COUNT(*) FROM `myclinic_events` WHERE LOCATE('Ada Lovelace', state) > 0",
        )
        .unwrap()
        .unwrap();
    assert_eq!(in_clear, 0, "the name is stored in the clear");
    let subjects: Vec<Vec<u8>> = client
        .query("SELECT subject FROM `myclinic_data_keys` ORDER BY subject")
        .unwrap();
    let mut expected = [ada.id().to_string(), bob.id().to_string()];
    expected.sort();
    assert_eq!(
        subjects,
        expected
            .iter()
            .map(|s| s.as_bytes().to_vec())
            .collect::<Vec<_>>(),
        "one key a patient, in the keys table"
    );

    assert!(app.forget(&ada.id().to_string()).unwrap());
    assert!(
        !app.forget(&ada.id().to_string()).unwrap(),
        "forgotten once"
    );
    let got = app.get::<Patient>(ada.id()).unwrap();
    assert_eq!((got.name.as_str(), got.visits), ("(forgotten)", 2));

    drop(app);
    let fresh = open();
    let got = fresh.get::<Patient>(ada.id()).unwrap();
    assert_eq!(
        (got.name.as_str(), got.visits),
        ("(forgotten)", 2),
        "the events stay"
    );
    assert_eq!(fresh.get::<Patient>(bob.id()).unwrap().name, "Bob Babbage");
    let left: Vec<Vec<u8>> = client
        .query("SELECT subject FROM `myclinic_data_keys`")
        .unwrap();
    assert_eq!(
        left,
        [bob.id().to_string().into_bytes()],
        "only Bob's key is left"
    );
    drop_mysql_tables(&config, "MyClinic");
}
