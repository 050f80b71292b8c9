//! Python's aggregate examples ported to annals' styles
//! (`annals_examples::styles`), each with its Python test's assertions,
//! on memory, SQLite and PostgreSQL (skipped when not configured, outside
//! CI).

use annals::prelude::*;
use annals_examples::styles::aggregate4;
use annals_tests::stores::every_store;

/// The stores, PostgreSQL's in a fresh schema of its own: each port's
/// school is named `DogSchool`, as Python's, and the ports' tests run at
/// once.
fn in_schema(
    stores: Vec<(&'static str, annals::Persistence)>,
    schema: &str,
) -> Vec<(&'static str, annals::Persistence)> {
    stores
        .into_iter()
        .map(|(store, persistence)| match persistence {
            annals::Persistence::Postgres(mut config) => {
                annals_tests::stores::postgres_client(&config)
                    .batch_execute(&format!(
                        "DROP SCHEMA IF EXISTS {schema} CASCADE; CREATE SCHEMA {schema}"
                    ))
                    .expect("a fresh schema");
                config.schema = Some(schema.to_owned());
                (store, annals::Persistence::Postgres(config))
            }
            // MariaDB/MySQL: a database of the schema's name (a schema is
            // a database there).
            annals::Persistence::Mysql(mut config) => {
                use annals::mysql::prelude::Queryable;
                let db = format!("annals_{schema}");
                let mut client = annals_tests::stores::mysql_client(&config);
                client
                    .query_drop(format!("DROP DATABASE IF EXISTS {db}"))
                    .and_then(|()| client.query_drop(format!("CREATE DATABASE {db}")))
                    .expect("a fresh database");
                config.dbname = db;
                (store, annals::Persistence::Mysql(config))
            }
            other => (store, other),
        })
        .collect()
}

/// `eventsourcing/examples/aggregateN/test_application.py`, the same for
/// 4, 5 and 6: each school's API is Python's.
macro_rules! dog_school_test {
    ($test:ident, $style:ident) => {
        #[test]
        fn $test() {
            use annals_examples::styles::$style::{Dog, DogSchool};
            for (store, persistence) in in_schema(every_store("DogSchool"), stringify!($style)) {
                // Construct application object.
                let school = DogSchool::new(persistence).expect("school");

                // Evolve application state.
                let dog_id = school.register_dog("Fido").expect("register");
                school.add_trick(dog_id, "roll over").expect("trick");
                school.add_trick(dog_id, "play dead").expect("trick");

                // Query application state.
                let dog = school.get_dog(dog_id).expect("dog");
                assert_eq!(dog.name, "Fido", "{store}");
                assert_eq!(dog.tricks, ["roll over", "play dead"], "{store}");

                // Select notifications.
                let notifications = school.app().notifications(1, 10).expect("log");
                assert_eq!(notifications.len(), 3, "{store}");

                // Take snapshot.
                school
                    .app()
                    .take_snapshot_at::<Dog>(dog_id, 3)
                    .expect("snapshot");
                let snapshots = school.app().snapshots().expect("on");
                assert_eq!(snapshots.versions::<Dog>(dog_id).expect("versions"), [3]);
                let dog = school.get_dog(dog_id).expect("dog");
                assert_eq!(dog.name, "Fido", "{store}");
                assert_eq!(dog.tricks, ["roll over", "play dead"], "{store}");

                // Continue with snapshotted aggregate.
                school.add_trick(dog_id, "fetch ball").expect("trick");
                let dog = school.get_dog(dog_id).expect("dog");
                assert_eq!(dog.name, "Fido", "{store}");
                assert_eq!(
                    dog.tricks,
                    ["roll over", "play dead", "fetch ball"],
                    "{store}"
                );
                let dog: Dog = school.app().get(dog_id).expect("get");
                assert_eq!(dog.version(), 4, "{store}");
            }
        }
    };
}

dog_school_test!(aggregate4_explicit_events_and_apply, aggregate4);
dog_school_test!(aggregate5_commands_return_their_events, aggregate5);
dog_school_test!(aggregate6_functions_and_mutators, aggregate6);

/// The stored events of the three styles are the same rows (but the
/// event names that Python's classes give: `DogRegistered` in 6).
#[test]
fn the_styles_store_the_same_events() {
    let topics = |events: Vec<annals::persistence::Notification>| -> Vec<String> {
        events.into_iter().map(|n| n.event.topic).collect()
    };
    let four = aggregate4::DogSchool::new(annals::Persistence::Memory).expect("school");
    let id = four.register_dog("Fido").expect("register");
    four.add_trick(id, "sit").expect("trick");
    assert_eq!(
        topics(four.app().notifications(1, 10).expect("log")),
        ["Dog.Registered", "Dog.TrickAdded"]
    );
    let five = annals_examples::styles::aggregate5::DogSchool::new(annals::Persistence::Memory)
        .expect("school");
    let id = five.register_dog("Fido").expect("register");
    five.add_trick(id, "sit").expect("trick");
    assert_eq!(
        topics(five.app().notifications(1, 10).expect("log")),
        ["Dog.Registered", "Dog.TrickAdded"]
    );
}

// ---- The explicit style's options, end to end. -----------------------------

mod cats {
    use annals::prelude::*;
    use annals::Apply;
    use serde::{Deserialize, Serialize};

    /// Version 1 of `Described` had no colour (stored as `fur`).
    pub(crate) fn described_v1(state: &mut annals::json::Value) {
        state["fur"] = "unknown".into();
    }

    #[derive(Debug, Clone, PartialEq, Event)]
    #[annals(aggregate = "Cat")]
    pub(crate) enum Change {
        #[annals(create, aliases = ["Cat.Found"])]
        Adopted { name: String },
        #[annals(version = 2, upcast(from = 1, with = described_v1))]
        Described {
            #[serde(rename = "fur")]
            colour: String,
        },
        #[annals(name = "Gone", discard)]
        Left,
    }

    #[aggregate]
    #[derive(Debug, Clone, Serialize, Deserialize)]
    pub(crate) struct Cat {
        pub(crate) name: String,
        pub(crate) colour: Option<String>,
    }

    #[aggregate(events = Change, version = 2)]
    impl Apply for Cat {
        fn create(event: Change) -> Result<Self, Change> {
            match event {
                Change::Adopted { name } => Ok(Cat { name, colour: None }),
                other => Err(other),
            }
        }

        fn apply(&mut self, event: Change) {
            match event {
                Change::Adopted { .. } | Change::Left => {}
                Change::Described { colour } => self.colour = Some(colour),
            }
        }

        /// Moved out of the trait impl by `#[aggregate]`: snapshots of
        /// version 1 had no colour.
        #[upcast(snapshot, from = 1)]
        fn state_v1(state: &mut annals::json::Value) {
            state["colour"] = annals::json::Value::Null;
        }
    }
}

/// Aliases, renamed fields, event versions with their upcasters, a
/// discarding event, and snapshots, for an enum written by hand.
#[test]
fn an_explicit_enum_gets_what_event_methods_get() {
    use annals::persistence::StoredEvent;
    use cats::{Cat, Change};
    for (store, persistence) in every_store("Cats") {
        let app = Application::builder("Cats")
            .persistence(persistence)
            .snapshot_every::<Cat>(2)
            .build()
            .expect("app");
        let mut cat = Cat::from_event(Change::Adopted { name: "Tom".into() }).expect("adopted");
        cat.record(Change::Described {
            colour: "grey".into(),
        })
        .expect("described");
        app.save(&mut cat).expect("save");
        let stored = app.notifications(1, 10).expect("log");
        let described: annals::json::Value =
            annals::json::from_slice(&stored[1].event.state).expect("JSON");
        assert_eq!(stored[1].event.topic, "Cat.Described", "{store}");
        assert_eq!(
            (&described["fur"], &described["class_version"]),
            (&"grey".into(), &2.into()),
            "{store}"
        );

        // A stream written before: an alias topic, a version 1 event.
        let id = Uuid::new_v4();
        let old = |version: u64, topic: &str, state: &str| StoredEvent {
            originator_id: annals::AggregateId::to_stored(&id),
            originator_version: version,
            topic: topic.into(),
            state: format!(r#"{{"timestamp":"2020-01-01T00:00:00+00:00",{state}}}"#).into_bytes(),
        };
        app.recorder()
            .insert_events(&[
                old(1, "Cat.Found", r#""name":"Felix""#),
                old(2, "Cat.Described", r#""other":1"#),
            ])
            .expect("insert");
        let felix: Cat = app.get(id).expect("get");
        assert_eq!(
            (felix.name.as_str(), felix.colour.as_deref()),
            ("Felix", Some("unknown")),
            "{store}"
        );

        // Discarded.
        let mut tom: Cat = app.get(cat.id()).expect("get");
        tom.record(Change::Left).expect("left");
        app.save(&mut tom).expect("save");
        assert!(
            app.get::<Cat>(cat.id()).expect_err("gone").is_not_found(),
            "{store}"
        );
        assert_eq!(
            app.snapshots()
                .expect("on")
                .versions::<Cat>(cat.id())
                .expect("versions"),
            [2],
            "{store}"
        );
    }
}

// ---- aggregate7 and 8: typed models, and the application's settings. -------

/// `aggregateN/test_application.py` and
/// `test_compression_and_encryption.py` (7 and 8): the same story, plainly
/// and with zlib and AES; the stored states are then neither JSON nor
/// readable.
macro_rules! models_test {
    ($plain:ident, $style:ident) => {
        #[test]
        fn $plain() {
            use annals_examples::styles::$style::{Dog, DogSchool};
            let key = annals::cipher::create_key();
            let settings: [&[(&str, &str)]; 2] = [
                &[],
                &[
                    (
                        "COMPRESSOR_TOPIC",
                        "eventsourcing.compressor:ZlibCompressor",
                    ),
                    ("CIPHER_TOPIC", "eventsourcing.cipher:AESCipher"),
                    ("CIPHER_KEY", &key),
                ],
            ];
            for (n, env) in settings.into_iter().enumerate() {
                let schema = format!("{}_{n}", stringify!($style));
                for (store, persistence) in in_schema(every_store("DogSchool"), &schema) {
                    let school = DogSchool::new(persistence, env.iter().copied()).expect("school");
                    let dog_id = school.register_dog("Fido").expect("register");
                    school.add_trick(dog_id, "roll over").expect("trick");
                    school.add_trick(dog_id, "play dead").expect("trick");
                    let dog = school.get_dog(dog_id).expect("dog");
                    assert_eq!(dog.name, "Fido", "{store}");
                    assert_eq!(dog.tricks, ["roll over", "play dead"], "{store}");
                    let notifications = school.app().notifications(1, 10).expect("log");
                    assert_eq!(notifications.len(), 3, "{store}");
                    let readable = notifications
                        .iter()
                        .all(|n| String::from_utf8_lossy(&n.event.state).contains("timestamp"));
                    assert_eq!(
                        readable,
                        env.is_empty(),
                        "{store}: encrypted states are not JSON"
                    );
                    school
                        .app()
                        .take_snapshot_at::<Dog>(dog_id, 3)
                        .expect("snapshot");
                    let dog = school.get_dog(dog_id).expect("dog");
                    assert_eq!(dog.tricks, ["roll over", "play dead"], "{store}");
                    school.add_trick(dog_id, "fetch ball").expect("trick");
                    let dog = school.get_dog(dog_id).expect("dog");
                    assert_eq!(dog.name, "Fido", "{store}");
                    assert_eq!(
                        dog.tricks,
                        ["roll over", "play dead", "fetch ball"],
                        "{store}"
                    );
                }
            }
        }
    };
}

/// `aggregateN/test_snapshotting_intervals.py` (7 and 8).
macro_rules! intervals_test {
    ($intervals:ident, $style:ident) => {
        /// `aggregateN/test_snapshotting_intervals.py` (7 and 8): with an interval of 1,
        /// each save snapshots the dog. (Python's first assertion, that a school
        /// without a snapshot projector refuses, has no counterpart: a type that
        /// cannot be snapshotted is refused when the application is built.)
        #[test]
        fn $intervals() {
            use annals_examples::styles::$style::{Dog, DogSchool};
            for (store, persistence) in in_schema(
                every_store("DogSchool"),
                concat!(stringify!($style), "_intervals"),
            ) {
                let builder = Application::builder("DogSchool")
                    .persistence(persistence)
                    .snapshot_every::<Dog>(1);
                let school = DogSchool::with(builder, []).expect("school");
                let count = |id| {
                    school
                        .app()
                        .snapshots()
                        .expect("on")
                        .versions::<Dog>(id)
                        .expect("versions")
                        .len()
                };
                let dog_id = school.register_dog("Fido").expect("register");
                assert_eq!(count(dog_id), 1, "{store}");
                school.add_trick(dog_id, "roll over").expect("trick");
                assert_eq!(count(dog_id), 2, "{store}");
                school.add_trick(dog_id, "play dead").expect("trick");
                assert_eq!(count(dog_id), 3, "{store}");
                let dog = school.get_dog(dog_id).expect("dog");
                assert_eq!(dog.name, "Fido", "{store}");
                assert_eq!(dog.tricks, ["roll over", "play dead"], "{store}");
            }
        }
    };
}

models_test!(
    aggregate7_models_plain_and_compressed_and_encrypted,
    aggregate7
);
intervals_test!(aggregate7_snapshotting_intervals, aggregate7);
models_test!(
    aggregate8_declarative_models_plain_and_compressed_and_encrypted,
    aggregate8
);
intervals_test!(aggregate8_snapshotting_intervals, aggregate8);
models_test!(
    aggregate7a_frozen_models_plain_and_compressed_and_encrypted,
    aggregate7a
);

// ---- aggregate6a and 7a: immutable aggregates. ------------------------------

/// `aggregate6a/test_application.py` and `aggregate7a/test_application.py`:
/// the story of 4 to 6, then a snapshot taken automatically at version 5.
macro_rules! frozen_test {
    ($test:ident, $style:ident, |$persistence:ident| $school:expr) => {
        #[test]
        fn $test() {
            use annals_examples::styles::$style::{Dog, DogSchool};
            for (store, $persistence) in in_schema(every_store("DogSchool"), stringify!($style)) {
                // Construct application object.
                let school: DogSchool = $school.expect("school");

                // Evolve application state.
                let dog_id = school.register_dog("Fido").expect("register");
                school.add_trick(dog_id, "roll over").expect("trick");
                school.add_trick(dog_id, "play dead").expect("trick");

                // Query application state.
                let dog = school.get_dog(dog_id).expect("dog");
                assert_eq!(dog.name, "Fido", "{store}");
                assert_eq!(dog.tricks, ["roll over", "play dead"], "{store}");

                // Select notifications.
                let notifications = school.app().notifications(1, 10).expect("log");
                assert_eq!(notifications.len(), 3, "{store}");

                // Take snapshot.
                let snapshots = school.app().snapshots().expect("on");
                let count = || snapshots.versions::<Dog>(dog_id).expect("versions").len();
                assert_eq!(count(), 0, "{store}");
                school
                    .app()
                    .take_snapshot_at::<Dog>(dog_id, 3)
                    .expect("snapshot");
                assert_eq!(count(), 1, "{store}");
                let dog = school.get_dog(dog_id).expect("dog");
                assert_eq!(dog.name, "Fido", "{store}");
                assert_eq!(dog.tricks, ["roll over", "play dead"], "{store}");

                // Continue with snapshotted aggregate.
                school.add_trick(dog_id, "fetch ball").expect("trick");
                let dog = school.get_dog(dog_id).expect("dog");
                assert_eq!(dog.name, "Fido", "{store}");
                assert_eq!(
                    dog.tricks,
                    ["roll over", "play dead", "fetch ball"],
                    "{store}"
                );

                // Auto-snapshotting at version 5.
                assert_eq!(count(), 1, "{store}");
                school.add_trick(dog_id, "jump hoop").expect("trick");
                assert_eq!(count(), 2, "{store}");
                assert_eq!(
                    snapshots.versions::<Dog>(dog_id).expect("versions"),
                    [3, 5],
                    "{store}"
                );
            }
        }
    };
}

frozen_test!(aggregate6a_frozen_dataclasses, aggregate6a, |persistence| {
    DogSchool::new(persistence)
});
frozen_test!(aggregate7a_frozen_models, aggregate7a, |persistence| {
    DogSchool::new(persistence, [])
});

/// An immutable command leaves the dog it was given as it was: the next
/// dog is a new value, the one before it still readable (the point of
/// the style).
#[test]
fn an_evolved_aggregate_leaves_the_one_before_it_unchanged() {
    use annals_examples::styles::aggregate6a::{add_trick, register_dog, Dog, DogEvent};
    let fido = register_dog("Fido").expect("register");
    let before = fido.clone();
    let after = add_trick(fido, "sit").expect("trick");
    assert_eq!((before.tricks.len(), before.version()), (0, 1));
    assert_eq!(
        (after.tricks.as_slice(), after.version()),
        (&["sit".to_owned()][..], 2)
    );
    assert_eq!(
        after.id(),
        before.id(),
        "the next dog is the same aggregate"
    );
    assert_eq!(after.pending_events().len(), 2);
    // A creation event is not a change: refused, naming it.
    let refused = add_trick(after.clone(), "x")
        .and_then(|dog: Dog| dog.with_event(DogEvent::DogRegistered { name: "Rex".into() }));
    assert!(
        matches!(
            &refused,
            Err(annals::Error::WrongEvent {
                event: "DogRegistered",
                ..
            })
        ),
        "{refused:?}"
    );
}

/// A projector function given with the id (Python's
/// `repository.get(id, projector_func=...)`): a state of the caller's own,
/// folded from the stream's events.
#[test]
fn a_projector_function_folds_a_stream_into_a_state_of_its_own() {
    use annals_examples::styles::aggregate6a::{Dog, DogEvent, DogSchool};
    for (store, persistence) in in_schema(every_store("DogSchool"), "projector") {
        let school = DogSchool::new(persistence).expect("school");
        let id = school.register_dog("Fido").expect("register");
        school.add_trick(id, "sit").expect("trick");
        school.add_trick(id, "roll over").expect("trick");
        let timeline = school
            .app()
            .project::<Dog, Vec<(u64, String)>>(id, Vec::new(), |mut seen, e| {
                let what = match &e.event {
                    DogEvent::DogRegistered { name } => format!("registered {name}"),
                    DogEvent::TrickAdded { trick } => format!("learned {trick}"),
                };
                seen.push((e.originator_version, what));
                seen
            })
            .expect("project");
        assert_eq!(
            timeline,
            [
                (1, "registered Fido".to_owned()),
                (2, "learned sit".to_owned()),
                (3, "learned roll over".to_owned())
            ],
            "{store}"
        );
        let missing = school
            .app()
            .project::<Dog, ()>(annals::Uuid::new_v4(), (), |(), _| ());
        assert!(
            matches!(
                missing,
                Err(annals::Error::NotFound {
                    aggregate: "Dog",
                    ..
                })
            ),
            "{store}: {missing:?}"
        );
    }
}
