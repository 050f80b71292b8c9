//! Bad input and bad usage: exit codes and the help that lists them.

use annals_tests::stores::temp_dir;

use crate::support::{kennel, ok, run, sqlite_file, stderr};

#[test]
fn bad_input_is_a_clear_error_with_exit_1_and_bad_usage_exits_2() {
    let file = sqlite_file("bad");
    let (_app, _) = kennel(&file, &[]);
    // Usage errors found after parsing exit 2, as clap's do.
    let no_app = run(&["--sqlite", &file, "streams"]);
    assert_eq!(no_app.status.code(), Some(2));
    assert!(stderr(&no_app).contains("--app"), "{}", stderr(&no_app));

    let unknown = run(&["--app", "School", "--store", "nosuchstore", "streams"]);
    assert_eq!(unknown.status.code(), Some(1));
    assert!(
        stderr(&unknown).contains("PERSISTENCE_MODULE"),
        "{}",
        stderr(&unknown)
    );

    let bad_set = run(&["--app", "School", "--set", "NOEQUALS", "streams"]);
    assert_eq!(bad_set.status.code(), Some(2));
    assert!(stderr(&bad_set).contains("NAME=VALUE"));

    let usage = run(&["--app", "School", "nosuchcommand"]);
    assert_eq!(usage.status.code(), Some(2));

    let dir = temp_dir();
    let export = dir.join("school.jsonl");
    let export = export.to_str().expect("UTF-8 path");
    ok(&["--app", "School", "--sqlite", &file, "export", "-o", export]);
    let text = std::fs::read_to_string(export).expect("the export");
    let lines: Vec<&str> = text.lines().collect();
    let target = sqlite_file("bad-target");
    let import = |content: &str| {
        let path = dir.join("broken.jsonl");
        std::fs::write(&path, content).expect("write");
        run(&[
            "--app",
            "School",
            "--sqlite",
            &target,
            "import",
            "-i",
            path.to_str().expect("UTF-8 path"),
        ])
    };
    let garbage = format!("{}\n{}\n{{not json\n", lines[0], lines[1]);
    let output = import(&garbage);
    assert_eq!(output.status.code(), Some(1));
    assert!(stderr(&output).contains("line 3"), "{}", stderr(&output));

    let cut = lines[..lines.len() - 1].join("\n");
    let output = import(&cut);
    assert_eq!(output.status.code(), Some(1));
    assert!(stderr(&output).contains("cut short"), "{}", stderr(&output));

    let output = import("{\"kind\":\"end\",\"events\":0,\"snapshots\":0,\"tracking\":0}\n");
    assert_eq!(output.status.code(), Some(1));
    assert!(stderr(&output).contains("header"), "{}", stderr(&output));
}

#[test]
fn help_lists_the_exit_codes() {
    let help = ok(&["--help"]);
    for code in ["Exit codes", "2  bad usage", "3  verify", "4  verify"] {
        assert!(help.contains(code), "{code:?} is not in {help}");
    }
}
