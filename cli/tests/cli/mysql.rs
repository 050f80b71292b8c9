//! `--mysql`: a MariaDB/MySQL store on the command line, migrated,
//! imported into, verified and exported, the same rows as the SQLite
//! store they came from.

use std::collections::BTreeSet;

use annals::persistence::mysql::MysqlConfig;
use annals_tests::stores::{drop_mysql_tables, mysql_server, temp_dir};

use crate::support::{json_lines, kennel, ok, sqlite_file};

/// A fresh MariaDB/MySQL application's flags, its tables dropped first.
pub(crate) fn mysql_flags(config: &MysqlConfig, app: &str) -> Vec<String> {
    drop_mysql_tables(config, app);
    let mut flags = vec![
        "--app".to_owned(),
        app.to_owned(),
        "--mysql".to_owned(),
        config.dbname.clone(),
    ];
    for (name, value) in [
        ("MYSQL_HOST", config.host.clone()),
        ("MYSQL_PORT", config.port.to_string()),
        ("MYSQL_USER", config.user.clone()),
    ] {
        flags.push("--set".into());
        flags.push(format!("{name}={value}"));
    }
    if let Some(password) = &config.password {
        flags.push("--set".into());
        flags.push(format!("MYSQL_PASSWORD={password}"));
    }
    flags
}

/// The events of an export, without their notification ids.
fn rows_of(export: &str) -> BTreeSet<String> {
    json_lines(&std::fs::read_to_string(export).expect("the export"))
        .into_iter()
        .filter(|line| line["kind"] == "event")
        .map(|mut line| {
            line.as_object_mut().map(|o| o.remove("notification_id"));
            line.to_string()
        })
        .collect()
}

#[test]
fn a_sqlite_store_moves_to_mysql_and_back_on_the_command_line() {
    let Some(config) = mysql_server() else {
        annals_tests::skipped("a_sqlite_store_moves_to_mysql (set MYSQL_DBNAME)");
        return;
    };
    let file = sqlite_file("to_mysql");
    let (_app, _dogs) = kennel(&file, &[]);
    let dir = temp_dir();
    let path = |name: &str| dir.join(name).to_string_lossy().into_owned();
    let exported = path("school.jsonl");
    ok(&[
        "--app", "School", "--sqlite", &file, "export", "-o", &exported,
    ]);

    let flags = mysql_flags(&config, "School");
    let target: Vec<&str> = flags.iter().map(String::as_str).collect();
    ok(&[&target[..], &["migrate"]].concat());
    let imported = json_lines(&ok(
        &[&target[..], &["--json", "import", "-i", &exported]].concat()
    ));
    assert_eq!(imported[0]["events"], 6, "{}", imported[0]);
    let verdict = json_lines(&ok(&[&target[..], &["--json", "verify"]].concat()));
    assert_eq!(verdict[0]["intact"], true, "{}", verdict[0]);
    assert_eq!(verdict[0]["streams"], 3);
    let log = ok(&[&target[..], &["log", "--limit", "2"]].concat());
    assert!(log.contains("Registered"), "{log}");
    let from_mysql = path("mysql.jsonl");
    ok(&[&target[..], &["export", "-o", &from_mysql]].concat());
    assert_eq!(rows_of(&exported), rows_of(&from_mysql), "the same rows");
}
