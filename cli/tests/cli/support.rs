//! What every test uses: the binary with a clean environment, its output,
//! and the SQLite stores the tests make.

use std::process::{Command, Output};

use annals::prelude::*;
use annals_tests::dogs::Dog;
use annals_tests::stores::temp_dir;
use serde_json::Value;

/// The binary, with no store settings from the environment of the tests
/// (CI exports the PostgreSQL server's).
pub(crate) fn annals() -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_annals"));
    for var in [
        "PERSISTENCE_MODULE",
        "SQLITE_DBNAME",
        "CIPHER_KEY",
        "COMPRESSOR_TOPIC",
        "IS_HASH_CHAINING_ENABLED",
        "RUST_LOG",
        "ANNALS_APP",
        "UMADB_URI",
    ] {
        command.env_remove(var);
    }
    command
}

pub(crate) fn run(args: &[&str]) -> Output {
    annals().args(args).output().expect("run annals")
}

pub(crate) fn stdout(output: &Output) -> String {
    String::from_utf8_lossy(&output.stdout).into_owned()
}

pub(crate) fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

/// Runs and expects exit code 0.
pub(crate) fn ok(args: &[&str]) -> String {
    let output = run(args);
    assert!(
        output.status.success(),
        "annals {args:?} failed ({}): {}",
        output.status,
        stderr(&output)
    );
    stdout(&output)
}

/// Every line of `text`, parsed as JSON.
pub(crate) fn json_lines(text: &str) -> Vec<Value> {
    text.lines()
        .map(|line| serde_json::from_str(line).unwrap_or_else(|e| panic!("{line:?}: {e}")))
        .collect()
}

pub(crate) fn sqlite_file(name: &str) -> String {
    temp_dir()
        .join(format!("{name}.db"))
        .to_string_lossy()
        .into_owned()
}

/// Three dogs of 1, 2 and 3 events in a hash-chained SQLite store.
pub(crate) fn kennel(file: &str, settings: &[(&str, &str)]) -> (Application, Vec<Dog>) {
    let mut vars = vec![
        ("PERSISTENCE_MODULE", "sqlite"),
        ("SQLITE_DBNAME", file),
        ("IS_HASH_CHAINING_ENABLED", "y"),
    ];
    vars.extend_from_slice(settings);
    let env = annals::env::Env::from_map("School", vars);
    let app = Application::builder("School")
        .with_env(&env)
        .and_then(|b| b.build())
        .expect("the school");
    let mut dogs = Vec::new();
    for (name, tricks) in [("Fido", 0), ("Rex", 1), ("Milou", 2)] {
        let mut dog = Dog::register(name.into());
        for trick in ["sit", "roll"].iter().take(tricks) {
            dog.add_trick((*trick).into());
        }
        app.save(&mut dog).expect("save");
        dogs.push(dog);
    }
    (app, dogs)
}

/// The path of a new file in the tests' directory.
pub(crate) fn temp_path(name: &str) -> String {
    temp_dir().join(name).to_string_lossy().into_owned()
}

/// The School application over an existing SQLite file.
pub(crate) fn school(file: &str) -> Application {
    Application::builder("School")
        .sqlite(file)
        .hash_chain(true)
        .build()
        .expect("the school")
}
