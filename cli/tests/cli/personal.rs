//! `forget` and `keys rotate`: the right to erasure and a new master key,
//! from the command line.

use annals::prelude::*;
use annals_tests::clinic::Patient;

use crate::support::{json_lines, ok, run, sqlite_file, stderr, temp_path};

/// A patient saved by an application, forgotten by `annals forget`: the
/// application then reads the forgotten name; `keys rotate` moves the
/// other patient's key to a new master key, which alone reads it after.
#[test]
fn forget_and_rotate_from_the_command_line() {
    let file = sqlite_file("clinic");
    let (old, new) = (annals::cipher::create_key(), annals::cipher::create_key());
    let open = |key: &str| {
        Application::builder("Clinic")
            .sqlite(&file)
            .personal_data_key(key)
            .build()
            .expect("the clinic")
    };
    let app = open(&old);
    let mut ada = Patient::admit("Ada".into());
    let mut bob = Patient::admit("Bob".into());
    app.save(&mut ada).expect("a save");
    app.save(&mut bob).expect("a save");
    let with_key = |key: &str| format!("--set=PERSONAL_DATA_KEY={key}");

    let old_key = with_key(&old);
    let flags = ["--app", "Clinic", "--sqlite", &file, &old_key];
    let subject = ada.id().to_string();
    // An export, as stored or decoded, holds the names sealed only.
    for plain in [false, true] {
        let exported = temp_path(&format!("clinic-{plain}.jsonl"));
        let mode: &[&str] = if plain { &["--plain"] } else { &[] };
        ok(&[&flags[..], &["export", "-o", &exported], mode].concat());
        let text = std::fs::read_to_string(&exported).expect("the export");
        assert!(
            text.contains("Clinic") || text.contains("Patient"),
            "{text}"
        );
        // (Quoted: base64 has no quotes, so no chance match.)
        assert!(
            !text.contains(r#""Ada""#) && !text.contains(r#""Bob""#),
            "a name in clear: {text}"
        );
        assert!(text.contains("_personal_") || !plain, "{text}");
        // The keys travel with the export, wrapped: a copy opens the names.
        let copy = sqlite_file(&format!("clinic-copy-{plain}"));
        let imported = json_lines(&ok(&[
            "--app", "Clinic", "--sqlite", &copy, &old_key, "--json", "import", "-i", &exported,
        ]));
        assert_eq!(imported[0]["keys"], 2, "{imported:?}");
        let copied = Application::builder("Clinic")
            .sqlite(&copy)
            .personal_data_key(&old)
            .build()
            .expect("the copy");
        assert_eq!(copied.get::<Patient>(ada.id()).expect("Ada").name, "Ada");
    }
    let done = json_lines(&ok(&[&flags[..], &["--json", "forget", &subject]].concat()));
    assert_eq!(done[0]["forgotten"], true, "{done:?}");
    let again = ok(&[&flags[..], &["forget", &subject]].concat());
    assert!(again.contains("has no data key"), "{again}");
    assert_eq!(
        open(&old).get::<Patient>(ada.id()).unwrap().name,
        "(forgotten)"
    );
    assert_eq!(open(&old).get::<Patient>(bob.id()).unwrap().name, "Bob");

    // Rotation: the new key, with the old one accepted meanwhile.
    let new_key = with_key(&new);
    let previous = format!("--set=PERSONAL_DATA_PREVIOUS_KEYS={old}");
    let rotated = json_lines(&ok(&[
        "--app", "Clinic", "--sqlite", &file, &new_key, &previous, "--json", "keys", "rotate",
    ]));
    assert_eq!(
        (
            rotated[0]["rewrapped"].as_u64(),
            rotated[0]["current"].as_u64()
        ),
        (Some(1), Some(0))
    );
    assert_eq!(open(&new).get::<Patient>(bob.id()).unwrap().name, "Bob");
    // The old key alone no longer opens it: an error, never "forgotten".
    assert!(open(&old).get::<Patient>(bob.id()).is_err());

    // No master key: a clear error naming the setting.
    let refused = run(&["--app", "Clinic", "--sqlite", &file, "forget", &subject]);
    assert!(!refused.status.success());
    assert!(
        stderr(&refused).contains("PERSONAL_DATA_KEY"),
        "{}",
        stderr(&refused)
    );
}
