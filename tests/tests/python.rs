//! One live store shared with the real Python `eventsourcing` library
//! (9.5.6, in the venv `.ci/run` makes; `ANNALS_PYTHON` names its
//! interpreter): the same TrainingSchool and Counters in both languages
//! (`tests/python/dogschool.py`), on SQLite and PostgreSQL, plain and
//! zlib + AES. Each side reads what the other wrote (aggregates, the log,
//! snapshots), both write one stream, both write one table at once, and a
//! process application on each side follows the other's events exactly
//! once.

use std::path::PathBuf;

use annals::env::Env;
use annals::prelude::*;
use annals::system::ProcessApplication;
use annals::transcoding::Transcoding;
use annals_tests::dogschool::{counting_tricks, Counter, Dog};
use annals_tests::stores::{drop_postgres_tables, postgres_server, temp_dir};
use serde::{Deserialize, Serialize};
use serde_json::Value;

/// An aggregate with string ids: Python snapshots it as its own
/// `dogschool:Tag.Snapshot`, not `eventsourcing.domain:Snapshot`.
#[aggregate]
#[derive(Debug, Clone, Serialize, Deserialize)]
struct Tag {
    name: String,
    uses: u64,
}

#[aggregate(python = "dogschool", id = String)]
impl Tag {
    fn create_id(name: &str) -> String {
        format!("tag-{name}")
    }

    #[event("Named")]
    fn named(name: String) -> Self {
        Tag { name, uses: 0 }
    }

    #[event("Used")]
    fn use_once(&mut self) {
        self.uses += 1;
    }
}

/// The venv's interpreter, or `None` (said, and a failure in CI).
fn python() -> Option<PathBuf> {
    annals_tests::python::interpreter("ANNALS_PYTHON", "the Python interop tests")
}

/// One shared store: the settings both sides read.
struct Shared {
    python: PathBuf,
    settings: Vec<(String, String)>,
}

impl Shared {
    fn sqlite(python: PathBuf, encrypted: bool) -> Self {
        let dir = temp_dir();
        let path = |file: &str| dir.join(file).to_string_lossy().into_owned();
        let mut settings = vec![
            ("PERSISTENCE_MODULE".into(), "eventsourcing.sqlite".into()),
            ("TRAININGSCHOOL_SQLITE_DBNAME".into(), path("school.db")),
            ("COUNTERS_SQLITE_DBNAME".into(), path("counters.db")),
            ("TAGS_SQLITE_DBNAME".into(), path("tags.db")),
            // Python reads string ids only from text columns.
            ("TAGS_ORIGINATOR_ID_TYPE".into(), "text".into()),
            (
                "RUSTCOUNTERS_SQLITE_DBNAME".into(),
                path("rust_counters.db"),
            ),
        ];
        settings.extend(common(encrypted));
        Self { python, settings }
    }

    fn postgres(python: PathBuf, encrypted: bool) -> Option<Self> {
        let server = postgres_server()?;
        for app in ["TrainingSchool", "Counters", "RustCounters"] {
            drop_postgres_tables(&server, app);
        }
        let mut settings = vec![
            ("PERSISTENCE_MODULE".into(), "eventsourcing.postgres".into()),
            ("POSTGRES_DBNAME".into(), server.dbname.clone()),
            ("POSTGRES_HOST".into(), server.host.clone()),
            ("POSTGRES_PORT".into(), server.port.to_string()),
            ("POSTGRES_USER".into(), server.user.clone()),
            (
                "POSTGRES_PASSWORD".into(),
                server.password.clone().unwrap_or_default(),
            ),
        ];
        settings.extend(common(encrypted));
        Some(Self { python, settings })
    }

    /// Runs `interop.py ARGS` with the shared settings; its JSON output.
    fn py(&self, args: &[&str]) -> Value {
        let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/python");
        annals_tests::python::json(&self.python, dir, "interop.py", args, &self.settings)
    }

    fn app(&self, name: &str) -> Application {
        let env = Env::from_map(
            name,
            self.settings
                .iter()
                .map(|(k, v)| (k.as_str(), v.as_str()))
                .chain([("CODEC", "python")]),
        );
        Application::builder(name)
            .with_env(&env)
            .and_then(|b| b.snapshot_every::<Dog>(3).build())
            .unwrap_or_else(|e| panic!("the annals {name}: {}", e.report()))
    }

    /// The annals Tags: the Python Tags' store, string ids.
    fn tags(&self) -> Application {
        let env = Env::from_map(
            "Tags",
            self.settings
                .iter()
                .map(|(k, v)| (k.as_str(), v.as_str()))
                .chain([("CODEC", "python")]),
        );
        Application::builder("Tags")
            .with_env(&env)
            .and_then(|b| b.build())
            .unwrap_or_else(|e| panic!("the annals Tags: {}", e.report()))
    }
}

/// What both sides share besides the store: snapshots and, when
/// `encrypted`, zlib and AES with one key (Python's setting values).
fn common(encrypted: bool) -> Vec<(String, String)> {
    let mut settings = vec![("IS_SNAPSHOTTING_ENABLED".into(), "yes".into())];
    if encrypted {
        settings.extend([
            (
                "COMPRESSOR_TOPIC".into(),
                "eventsourcing.compressor:ZlibCompressor".into(),
            ),
            (
                "CIPHER_TOPIC".into(),
                "eventsourcing.cipher:AESCipher".into(),
            ),
            ("CIPHER_KEY".into(), annals::cipher::create_key()),
        ]);
    }
    settings
}

/// The annals side's Counters: counts every trick, as Python's does.
fn rust_counters(shared: &Shared) -> ProcessApplication {
    let app = std::sync::Arc::new(shared.app("RustCounters"));
    ProcessApplication::new(app, counting_tricks())
}

fn the_whole_story(shared: &Shared) {
    let school = shared.app("TrainingSchool");
    let owner = Uuid::new_v4();

    // Python writes; annals reads the aggregate (from Python's snapshot at
    // version 3, and without it), the log and the snapshot.
    let fido = shared.py(&["register", "Fido", &owner.to_string(), "sit", "roll", "beg"]);
    let fido =
        Uuid::parse_str(fido.as_str().expect("Python prints the id as a string")).expect("a UUID");
    let dog = school.get::<Dog>(fido).expect("annals reads Python's dog");
    assert_eq!((dog.name.as_str(), dog.owner), ("Fido", owner));
    assert_eq!(dog.tricks, ["sit", "roll", "beg"]);
    assert_eq!(dog.version(), 4);
    let snapshot = school
        .snapshots()
        .expect("snapshotting is on")
        .versions::<Dog>(fido)
        .expect("Fido's snapshot versions");
    assert_eq!(snapshot, [3], "Python snapshotted Fido at version 3");
    let at_2 = school.get_at::<Dog>(fido, 2).expect("Fido at version 2");
    assert_eq!(at_2.tricks, ["sit"]);
    let python_view = &shared.py(&["get", &fido.to_string()])[fido.to_string()];
    assert_eq!(
        python_view["created_on"]
            .as_str()
            .expect("a created_on string"),
        dog.created_on().encode(),
        "both see the same creation time"
    );
    let log = school.notifications(1, 100).expect("the log");
    let topics: Vec<&str> = log.iter().map(|n| n.event.topic.as_str()).collect();
    assert_eq!(
        topics,
        [
            "dogschool:Dog.Registered",
            "dogschool:Dog.TrickAdded",
            "dogschool:Dog.TrickAdded",
            "dogschool:Dog.TrickAdded"
        ]
    );

    // annals writes; Python reads, from annals' snapshot too.
    let mut rex = Dog::register("Rex".into(), owner);
    rex.add_trick("fetch".into());
    rex.add_trick("stay".into());
    school.save(&mut rex).expect("Rex saved");
    school
        .take_snapshot::<Dog>(rex.id())
        .expect("Rex snapshotted");
    let seen = &shared.py(&["get", &rex.id().to_string()])[rex.id().to_string()];
    assert_eq!(seen["name"], "Rex");
    assert_eq!(seen["owner"], owner.to_string());
    assert_eq!(
        seen["owner_type"], "UUID",
        "Python reads annals' UUIDs as UUIDs"
    );
    assert_eq!(seen["tricks"], serde_json::json!(["fetch", "stay"]));
    assert_eq!(seen["version"], 3);
    assert_eq!(
        seen["modified_on"].as_str().expect("a modified_on string"),
        rex.modified_on().encode()
    );

    // Both write one stream: each reads the other's event.
    shared.py(&["add-trick", &rex.id().to_string(), "shake"]);
    let mut fido_here = school.get::<Dog>(fido).expect("Fido read");
    fido_here.add_trick("play dead".into());
    school.save(&mut fido_here).expect("Fido's trick saved");
    assert_eq!(
        school.get::<Dog>(rex.id()).expect("Rex read").tricks,
        ["fetch", "stay", "shake"]
    );
    let fido_there = &shared.py(&["get", &fido.to_string()])[fido.to_string()];
    assert_eq!(
        fido_there["tricks"],
        serde_json::json!(["sit", "roll", "beg", "play dead"])
    );

    // Followers on both sides, each over events of both writers, exactly
    // once: a second pull changes nothing.
    let tricks = ["sit", "roll", "beg", "fetch", "stay", "shake", "play dead"];
    let last = school
        .last_notification_id()
        .expect("the last id")
        .expect("events in the log");
    let mut count_args = vec!["count"];
    count_args.extend(tricks);
    for _ in 0..2 {
        assert_eq!(
            shared.py(&["follow"]),
            last,
            "Python's Counters tracked it all"
        );
        let counts = shared.py(&count_args);
        for trick in tricks {
            assert_eq!(counts[trick], 1, "Python counted {trick} once: {counts}");
        }
    }
    let counters = rust_counters(shared);
    for round in 0..2 {
        let processed = counters.pull(&school, 1000).expect("the counters pull");
        assert_eq!(processed, if round == 0 { 9 } else { 0 });
        for trick in tricks {
            let counter = counters
                .app()
                .get::<Counter>(Counter::create_id(trick))
                .expect("a counter of each trick");
            assert_eq!(counter.count, 1, "annals counted {trick} once");
        }
    }
    // What each side's Counters wrote, the other reads.
    let theirs = shared.py(&["count", "sit"]);
    assert_eq!(theirs["sit"], 1);
}

/// Python and annals save into one store at the same time: every save
/// succeeds, and the log holds each event once, in increasing order.
fn both_write_at_once(shared: &Shared) {
    let school = shared.app("TrainingSchool");
    let before = school
        .last_notification_id()
        .expect("the last id")
        .unwrap_or(0);
    let owner = Uuid::new_v4();
    let rust = std::thread::scope(|scope| {
        let python = scope.spawn(|| shared.py(&["register-many", "40", "py"]));
        let mut ids = Vec::new();
        for i in 0..40 {
            let mut dog = Dog::register(format!("rs{i}"), owner);
            school.save(&mut dog).expect("annals' save");
            ids.push(dog.id());
        }
        let python: Vec<Uuid> =
            serde_json::from_value(python.join().expect("Python's writer")).expect("its ids");
        (ids, python)
    });
    let (ours, theirs) = rust;
    let log = school.notifications(before + 1, 1000).expect("the log");
    assert_eq!(log.len(), 80, "every save of both is in the log once");
    assert!(log.windows(2).all(|w| w[0].id < w[1].id));
    for id in theirs {
        assert!(school
            .get::<Dog>(id)
            .expect("Python's dog")
            .name
            .starts_with("py"));
    }
    let seen = shared.py(&["get", &ours[39].to_string()]);
    assert_eq!(seen[ours[39].to_string()]["name"], "rs39");
}

/// Aggregates with string ids: each side loads the other's snapshots.
fn string_ids_snapshotted(shared: &Shared) {
    let tags = shared.tags();

    // Python snapshots its own tag at version 3; annals loads it.
    let python_tag = shared.py(&["tag", "py", "3"]);
    let python_tag = python_tag
        .as_str()
        .expect("Python prints the id as a string")
        .to_owned();
    assert_eq!(
        shared.py(&["snapshot-topics", &python_tag]),
        serde_json::json!(["dogschool:Tag.Snapshot"])
    );
    let tag = tags.get::<Tag>(python_tag.clone()).expect("Python's tag");
    assert_eq!((tag.name.as_str(), tag.uses, tag.version()), ("py", 3, 4));
    let from_snapshot = tags
        .snapshots()
        .expect("snapshotting is on")
        .get::<Tag>(python_tag.clone())
        .expect("its snapshot read")
        .expect("annals reads Python's snapshot of a string id");
    assert_eq!((from_snapshot.uses, from_snapshot.version()), (2, 3));

    // annals snapshots its tag; Python loads it from that snapshot, adds
    // an event, and annals reads that.
    let mut tag = Tag::named("rs".into());
    tag.use_once();
    tag.use_once();
    tags.save(&mut tag).expect("the tag saved");
    tags.take_snapshot::<Tag>(tag.id().clone())
        .expect("the tag snapshotted");
    let id = tag.id().clone();
    let seen = &shared.py(&["get-tag", &id])[&id];
    assert_eq!(
        seen,
        &serde_json::json!({"name": "rs", "uses": 2, "version": 3})
    );
    assert_eq!(
        shared.py(&["snapshot-topics", &id]),
        serde_json::json!(["dogschool:Tag.Snapshot"]),
        "annals writes the snapshot class Python would"
    );
    shared.py(&["use-tag", &id]);
    let tag = tags.get::<Tag>(id.clone()).expect("the tag Python used");
    assert_eq!((tag.uses, tag.version()), (3, 4));
}

#[test]
fn sqlite_shared_with_python() {
    let Some(python) = python() else { return };
    let shared = Shared::sqlite(python, false);
    the_whole_story(&shared);
    both_write_at_once(&shared);
}

#[test]
fn sqlite_string_ids_shared_with_python() {
    let Some(python) = python() else { return };
    string_ids_snapshotted(&Shared::sqlite(python.clone(), false));
    string_ids_snapshotted(&Shared::sqlite(python, true));
}

#[test]
fn sqlite_shared_with_python_compressed_and_encrypted() {
    let Some(python) = python() else { return };
    let shared = Shared::sqlite(python, true);
    the_whole_story(&shared);
}

#[test]
fn postgres_shared_with_python_plain_then_compressed_and_encrypted() {
    let Some(python) = python() else { return };
    // One test: both configurations use the same tables, one at a time.
    for encrypted in [false, true] {
        let Some(shared) = Shared::postgres(python.clone(), encrypted) else {
            annals_tests::skipped("python interop on PostgreSQL");
            return;
        };
        the_whole_story(&shared);
        both_write_at_once(&shared);
    }
}

/// A UUID newtype, as a user would write one to type their ids.
mod newtype {
    use annals::domain::AggregateId;
    use annals::prelude::*;
    use serde::{Deserialize, Serialize};

    #[derive(Clone, PartialEq, Eq, Hash, Debug, Default)]
    pub(crate) struct DogId(pub Uuid);

    impl std::fmt::Display for DogId {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            self.0.fmt(f)
        }
    }

    impl AggregateId for DogId {
        const IS_UUID: bool = true;
        fn generate() -> Self {
            DogId(Uuid::new_v4())
        }
        fn to_stored(&self) -> String {
            self.0.to_stored()
        }
        fn from_stored(stored: &str) -> Result<Self, String> {
            Uuid::from_stored(stored).map(DogId)
        }
    }

    /// Python's `dogschool:Dog`, with its ids typed.
    #[aggregate]
    #[derive(Debug, Clone, Serialize, Deserialize)]
    pub(crate) struct Dog {
        pub name: String,
    }

    #[aggregate(python = "dogschool", id = DogId)]
    impl Dog {
        #[event("Registered")]
        pub fn register(name: String) -> Self {
            Dog { name }
        }
    }

    /// String ids that look like UUIDs are strings still.
    #[aggregate]
    #[derive(Debug, Clone, Serialize, Deserialize)]
    pub(crate) struct Tag {
        pub name: String,
    }

    #[aggregate(python = "dogschool", id = String)]
    impl Tag {
        #[event("Named")]
        pub fn named(name: String) -> Self {
            Tag { name }
        }
    }
}

#[test]
fn the_snapshot_class_follows_the_id_type_not_its_value() {
    use annals::mapper::{Codec, Mapper, PYTHON_SNAPSHOT_TOPIC};
    let mapper = Mapper::new().with_codec(Codec::Python);
    let state = |stored: &annals::persistence::StoredEvent| -> Value {
        serde_json::from_slice::<Value>(&mapper.plain_state(stored).unwrap()).unwrap()["state"]
            .clone()
    };
    let dog = newtype::Dog::register("Rex".into());
    let stored = mapper.encode_snapshot(&dog).unwrap();
    assert_eq!(
        stored.topic, PYTHON_SNAPSHOT_TOPIC,
        "a UUID newtype is a UUID to Python"
    );
    assert!(state(&stored).get("_id").is_none(), "{}", state(&stored));
    let back: newtype::Dog = mapper.decode_snapshot(&stored).unwrap();
    assert_eq!((back.id(), back.name.as_str()), (dog.id(), "Rex"));

    let tag = newtype::Tag::named("x".into());
    assert!(
        Uuid::parse_str(&tag.id()).is_ok(),
        "a generated id looks like a UUID"
    );
    let stored = mapper.encode_snapshot(&tag).unwrap();
    assert_eq!(stored.topic, "dogschool:Tag.Snapshot");
    assert_eq!(state(&stored)["_id"], tag.id().as_str());
}
