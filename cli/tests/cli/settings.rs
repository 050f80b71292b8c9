//! `keygen`, `migrate` and `CREATE_TABLE=no`.

use annals::prelude::*;
use annals_tests::dogs::Dog;

use crate::support::{json_lines, ok, run, sqlite_file, stderr, temp_path};

#[test]
fn keygen_makes_a_key_the_library_takes() {
    let made = json_lines(&ok(&["keygen", "--json"]));
    let key = made[0]["key"].as_str().expect("a key").to_owned();
    let app = Application::builder("Keyed")
        .cipher_key(key)
        .build()
        .expect("the key is taken");
    let mut dog = Dog::register("Fido".into());
    app.save(&mut dog).expect("save");
    assert_eq!(app.get::<Dog>(dog.id()).expect("get").name, "Fido");
    assert_ne!(
        ok(&["keygen"]).trim(),
        made[0]["key"].as_str().unwrap_or_default(),
        "keys differ"
    );
}

#[test]
fn migrate_creates_the_tables_for_create_table_no() {
    let file = sqlite_file("migrate");
    let base = [
        "--app",
        "School",
        "--sqlite",
        &file,
        "--set",
        "CREATE_TABLE=no",
    ];
    let before = run(&[&base[..], &["streams"]].concat());
    assert_eq!(before.status.code(), Some(1), "no tables yet");
    let migrated = json_lines(&ok(&[&base[..], &["--json", "migrate"]].concat()));
    assert_eq!(migrated[0]["migrated"], "School");
    assert_eq!(ok(&[&base[..], &["streams"]].concat()), "");
}

#[test]
fn create_table_no_does_not_make_a_mistyped_sqlite_file() {
    let missing = temp_path("no-such-store.db");
    let output = run(&[
        "--app",
        "School",
        "--sqlite",
        &missing,
        "--set",
        "CREATE_TABLE=no",
        "streams",
    ]);
    assert_eq!(output.status.code(), Some(1));
    assert!(
        stderr(&output).contains("annals migrate"),
        "{}",
        stderr(&output)
    );
    assert!(
        !std::path::Path::new(&missing).exists(),
        "the file was created"
    );
}
