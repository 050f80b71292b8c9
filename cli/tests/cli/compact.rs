//! `compact`: an object store's old saves packed, from the command line.

use std::sync::Arc;

use annals::persistence::object::ObjectConfig;
use annals::prelude::*;
use annals_tests::dogs::Dog;
use annals_tests::stores::temp_dir;

use crate::support::{json_lines, ok, run, sqlite_file, stderr};

/// A directory store of 2,001 saves: `compact` packs the first 1,000
/// (the newest 1,000 stay), says so, and the store reads the same after;
/// a second run has nothing to do; a store that is not an object store is
/// a usage error naming it.
#[test]
fn compact_packs_an_object_stores_old_saves() {
    let dir = temp_dir().join("compacted");
    std::fs::create_dir_all(&dir).expect("the directory");
    // Written without fsync (the layout of `--object DIR`), for speed.
    let files = object_store::local::LocalFileSystem::new_with_prefix(&dir).expect("the files");
    let app = Application::builder("School")
        .store(ObjectConfig::with_store(Arc::new(files), ""))
        .build()
        .expect("the school");
    for n in 0..2001 {
        let mut dog = Dog::register(format!("dog {n}"));
        dog.add_trick("sit".into());
        app.save(&mut dog).expect("a save");
    }
    let location = dir.to_str().expect("a UTF-8 path");
    let flags = ["--app", "School", "--object", location];
    let before = ok(&[&flags[..], &["log", "--json"]].concat());

    let done = json_lines(&ok(&[&flags[..], &["--json", "compact"]].concat()));
    assert_eq!(done[0]["packs"], 1, "{done:?}");
    assert_eq!(done[0]["saves"], 1000, "{done:?}");
    assert!(dir.join("school/events-packs").is_dir());
    assert_eq!(ok(&[&flags[..], &["log", "--json"]].concat()), before);
    let again = ok(&[&flags[..], &["compact"]].concat());
    assert!(again.contains("0 saves packed"), "{again}");
    // The store's other name, in any case, as the application takes it.
    let module = "--set=PERSISTENCE_MODULE=Object_Store";
    let place = format!("--set=OBJECT_STORE_LOCATION={location}");
    let named = ok(&["--app", "School", module, &place, "compact"]);
    assert!(named.contains("0 saves packed"), "{named}");

    let file = sqlite_file("not-compacted");
    let refused = run(&["--app", "School", "--sqlite", &file, "compact"]);
    assert!(!refused.status.success());
    assert!(
        stderr(&refused).contains("store is sqlite"),
        "{}",
        stderr(&refused)
    );
}
