//! Versioning and integrity on every store, with compression and
//! encryption on: upcasting old events and snapshots, renamed events and
//! aggregates, unknown versions, hash-chained streams, correlation and
//! causation ids.

use annals::cipher;
use annals::json::Value;
use annals::mapper::Compressor;
use annals::persistence::{EventQuery, NotificationQuery, StoredEvent};
use annals::prelude::*;
use annals::{ApplicationBuilder, Error, Metadata, Persistence, Verification};
use annals_tests::stores::{every_store, postgres_client};
use annals_tests::tamper::Tampered;
use serde::{Deserialize, Serialize};

/// The model as it was first deployed: the tests' shared dog
/// (`Registered` and `TrickAdded`, each at version 1), which `v2` evolves.
mod v1 {
    pub(crate) use annals_tests::dogs::Dog;
}

/// The model now: `Registered` at version 3 (an age added, then `name`
/// renamed `title`), `TrickAdded` at version 2 (a style added), the
/// snapshot state at version 2.
mod v2 {
    use super::*;

    #[aggregate]
    #[derive(Debug, Clone, Serialize, Deserialize)]
    pub(crate) struct Dog {
        pub title: String,
        pub age: u32,
        pub tricks: Vec<(String, String)>,
    }

    #[aggregate(name = "Dog", version = 2)]
    impl Dog {
        #[event("Registered", version = 3)]
        pub fn register(title: String, age: u32) -> Self {
            Dog {
                title,
                age,
                tricks: Vec::new(),
            }
        }

        #[upcast("Registered", from = 1)]
        fn registered_v1(state: &mut Value) {
            state["age"] = 0.into();
        }

        #[upcast("Registered", from = 2)]
        fn registered_v2(state: &mut Value) {
            if let Some(object) = state.as_object_mut() {
                if let Some(name) = object.remove("name") {
                    object.insert("title".into(), name);
                }
            }
        }

        #[event("TrickAdded", version = 2)]
        pub fn add_trick(&mut self, trick: String, style: String) {
            self.tricks.push((trick, style));
        }

        #[upcast("TrickAdded", from = 1)]
        fn trick_added_v1(state: &mut Value) {
            state["style"] = "plain".into();
        }

        #[upcast(snapshot, from = 1)]
        fn state_v1(state: &mut Value) {
            let tricks: Vec<Value> = state["tricks"]
                .as_array()
                .map(|t| {
                    t.iter()
                        .map(|t| Value::from(vec![t.clone(), "plain".into()]))
                        .collect()
                })
                .unwrap_or_default();
            *state = serde_json::json!({
                "title": state["name"].clone(),
                "age": 0,
                "tricks": tricks,
            });
        }
    }
}

/// The aggregate renamed `Hound`, its creation event renamed `Adopted`.
mod renamed {
    use super::*;

    #[aggregate]
    #[derive(Debug, Clone, Serialize, Deserialize)]
    pub(crate) struct Hound {
        pub name: String,
        pub tricks: Vec<String>,
    }

    #[aggregate(aliases = ["Dog"])]
    impl Hound {
        #[event("Adopted", aliases = ["Dog.Registered"])]
        pub fn adopt(name: String) -> Self {
            Hound {
                name,
                tricks: Vec::new(),
            }
        }

        #[event("TrickAdded")]
        pub fn add_trick(&mut self, trick: String) {
            self.tricks.push(trick);
        }
    }
}

fn secured(builder: ApplicationBuilder, key: &str) -> ApplicationBuilder {
    builder
        .cipher_key(key)
        .compressor(Some(Compressor::Zlib))
        .snapshotting(true)
}

#[test]
fn old_events_and_snapshots_are_upcast_through_every_store() {
    for (store, persistence) in every_store("versioning_upcast") {
        let key = cipher::create_key();
        let old = secured(
            Application::builder("versioning_upcast").persistence(persistence),
            &key,
        )
        .build()
        .expect(store);
        let mut dog = v1::Dog::register("Fido".into());
        dog.add_trick("sit".into());
        dog.add_trick("beg".into());
        old.save(&mut dog).expect(store);
        let mut snapped = v1::Dog::register("Rex".into());
        snapped.add_trick("roll".into());
        old.save(&mut snapped).expect(store);
        old.take_snapshot::<v1::Dog>(snapped.id()).expect(store);

        let new = secured(
            Application::builder("versioning_upcast").stores_of(&old),
            &key,
        )
        .build()
        .expect(store);
        let fido: v2::Dog = new.repository().get(dog.id()).expect(store);
        assert_eq!(
            (fido.title.as_str(), fido.age, fido.version()),
            ("Fido", 0, 3),
            "{store}"
        );
        assert_eq!(
            fido.tricks,
            [
                ("sit".to_owned(), "plain".to_owned()),
                ("beg".into(), "plain".into())
            ],
            "{store}"
        );
        // The old snapshot, upcast, is where `get` starts.
        let rex: v2::Dog = new
            .snapshots()
            .expect("on")
            .get(snapped.id())
            .expect(store)
            .expect("a snapshot");
        assert_eq!((rex.title.as_str(), rex.version()), ("Rex", 2), "{store}");
        assert_eq!(
            rex.tricks,
            [("roll".to_owned(), "plain".to_owned())],
            "{store}"
        );
        // New events are written at the new versions and read back as such.
        let mut fido = fido;
        fido.add_trick("fetch".into(), "eager".into());
        new.save(&mut fido).expect(store);
        let again: v2::Dog = new.repository().get(dog.id()).expect(store);
        assert_eq!(
            again.tricks[2],
            ("fetch".to_owned(), "eager".to_owned()),
            "{store}"
        );
        let mut puppy = v2::Dog::register("Puppy".into(), 1);
        new.save(&mut puppy).expect(store);
        assert_eq!(
            new.repository()
                .get::<v2::Dog>(puppy.id())
                .expect(store)
                .age,
            1
        );
    }
}

#[test]
fn renamed_events_and_aggregates_still_decode() {
    for (store, persistence) in every_store("versioning_renamed") {
        let old = Application::builder("versioning_renamed")
            .persistence(persistence)
            .snapshotting(true)
            .build()
            .expect(store);
        let mut dog = v1::Dog::register("Fido".into());
        dog.add_trick("sit".into());
        old.save(&mut dog).expect(store);
        old.take_snapshot_at::<v1::Dog>(dog.id(), 1).expect(store);

        let new = Application::builder("versioning_renamed")
            .stores_of(&old)
            .build()
            .expect(store);
        let hound: renamed::Hound = new.repository().get(dog.id()).expect(store);
        assert_eq!(
            (hound.name.as_str(), hound.tricks.as_slice()),
            ("Fido", &["sit".to_owned()][..])
        );
        let from_snapshot: renamed::Hound = new
            .snapshots()
            .expect("on")
            .get(dog.id())
            .expect(store)
            .expect("snapshot");
        assert_eq!(from_snapshot.version(), 1);
        // New events get the new names.
        let mut pup = renamed::Hound::adopt("Pup".into());
        pup.add_trick("sit".into());
        new.save(&mut pup).expect(store);
        let topics: Vec<String> = new
            .recorder()
            .select_notifications(&NotificationQuery::new(3, 10))
            .expect(store)
            .into_iter()
            .map(|n| n.event.topic)
            .collect();
        assert_eq!(topics, ["Hound.Adopted", "Hound.TrickAdded"], "{store}");
    }
}

/// `err` is an [`Error::UnknownVersion`] of a state stored at `stored`
/// that this model, at `known`, has no upcaster from.
#[track_caller]
fn assert_unknown_version(err: &Error, stored: u32, known: u32) {
    assert!(
        matches!(
            err,
            Error::UnknownVersion { stored: s, known: k, .. } if *s == stored && *k == known
        ),
        "{err}"
    );
}

#[test]
fn an_unknown_version_is_a_clear_error_naming_topic_and_version() {
    let app = Application::builder("Versions").build().expect("app");
    let id = Uuid::new_v4();
    let row = |id: Uuid, version: u64, topic: &str, state: &str| StoredEvent {
        originator_id: id.simple().to_string(),
        originator_version: version,
        topic: topic.into(),
        state: state.as_bytes().to_vec(),
    };
    app.recorder()
        .insert_events(&[
            row(
                id,
                1,
                "Dog.Registered",
                r#"{"timestamp":"2026-01-01T00:00:00Z","title":"Fido","age":2,"class_version":3}"#,
            ),
            row(
                id,
                2,
                "Dog.TrickAdded",
                r#"{"timestamp":"2026-01-01T00:00:00Z","trick":"x","style":"y","class_version":9}"#,
            ),
        ])
        .expect("insert");
    let err = app.repository().get::<v2::Dog>(id).expect_err("version 9");
    assert_unknown_version(&err, 9, 2);
    let message = err.to_string();
    assert!(
        message.contains("Dog.TrickAdded") && message.contains('9'),
        "{message}"
    );
    // The old model meets a newer event: also an error, not garbage.
    let err = app
        .repository()
        .get::<v1::Dog>(id)
        .expect_err("v1 reads v3");
    assert_unknown_version(&err, 3, 1);
    // A newer event whose fields the old model would still read: its
    // class_version alone makes it an error.
    let fits = Uuid::new_v4();
    app.recorder()
        .insert_events(&[
            row(
                fits,
                1,
                "Dog.Registered",
                r#"{"timestamp":"2026-01-01T00:00:00Z","name":"Fido"}"#,
            ),
            row(
                fits,
                2,
                "Dog.TrickAdded",
                r#"{"timestamp":"2026-01-01T00:00:00Z","trick":"x","class_version":2}"#,
            ),
        ])
        .expect("insert");
    let err = app
        .repository()
        .get::<v1::Dog>(fits)
        .expect_err("v1 reads v2");
    assert_unknown_version(&err, 2, 1);
}

#[test]
fn a_newer_models_snapshot_is_an_unknown_version_to_the_old_model() {
    let app = Application::builder("SnapshotVersions")
        .snapshotting(true)
        .build()
        .expect("app");
    let store = app.snapshots().expect("on");
    let snapshot = |id: Uuid, state: &str| StoredEvent {
        originator_id: id.simple().to_string(),
        originator_version: 1,
        topic: "Dog".into(),
        state: state.as_bytes().to_vec(),
    };
    // One the old model could read field for field: its class_version
    // alone makes it an error, as a newer event's does.
    let id = Uuid::new_v4();
    store
        .recorder()
        .insert_events(&[snapshot(
            id,
            r#"{"timestamp":"2026-01-01T00:00:00Z","created_on":"2026-01-01T00:00:00Z","class_version":2,"state":{"name":"Fido","tricks":[]}}"#,
        )])
        .expect("insert");
    let err = store
        .get::<v1::Dog>(id)
        .expect_err("v1 reads a v2 snapshot");
    assert_unknown_version(&err, 2, 1);
    // The model it was written by reads it.
    let v2_app = Application::builder("SnapshotVersions")
        .snapshotting(true)
        .stores_of(&app)
        .build()
        .expect("app");
    let mut dog = v2::Dog::register("Rex".into(), 3);
    dog.add_trick("sit".into(), "fast".into());
    v2_app.save(&mut dog).expect("save");
    v2_app.take_snapshot::<v2::Dog>(dog.id()).expect("snapshot");
    let err = store
        .get::<v1::Dog>(dog.id())
        .expect_err("v1 reads a v2 snapshot that does not fit");
    assert_unknown_version(&err, 2, 1);
    let rex: v2::Dog = v2_app
        .snapshots()
        .expect("on")
        .get(dog.id())
        .expect("get")
        .expect("a snapshot");
    assert_eq!((rex.title.as_str(), rex.age, rex.version()), ("Rex", 3, 2));
    // A key named class_version inside the state is not the snapshot's.
    let other = Uuid::new_v4();
    store
        .recorder()
        .insert_events(&[snapshot(
            other,
            r#"{"timestamp":"2026-01-01T00:00:00Z","created_on":"2026-01-01T00:00:00Z","state":{"name":"Bo","tricks":["class_version"],"class_version":7}}"#,
        )])
        .expect("insert");
    let bo: v1::Dog = store
        .get(other)
        .expect("an old snapshot")
        .expect("a snapshot");
    assert_eq!((bo.name.as_str(), bo.tricks.len()), ("Bo", 1));
}

/// Changes what one store keeps for a stream: directly in SQLite and
/// PostgreSQL, through a tampering recorder in memory.
enum Tamper {
    /// Replace the state of this version (a changed value).
    Change(u64),
    /// Remove this version.
    Delete(u64),
    /// Swap the states of these versions.
    Swap(u64, u64),
}

fn changed(state: &[u8], encrypted: bool) -> Vec<u8> {
    let mut state = state.to_vec();
    if encrypted {
        let last = state.len() - 1;
        state[last] ^= 0x01;
    } else {
        let text = String::from_utf8(state).expect("json");
        state = text.replacen("sit", "sat", 1).into_bytes();
    }
    state
}

fn tamper(
    persistence: &Persistence,
    app: &Application,
    id: Uuid,
    how: &Tamper,
    encrypted: bool,
) -> Application {
    let stored_id = id.simple().to_string();
    let rows = app
        .recorder()
        .select_events(&stored_id, &EventQuery::all())
        .expect("rows");
    let state = |v: u64| rows[(v - 1) as usize].state.clone();
    let builder = Application::builder("versioning_chain").hash_chain(true);
    let builder = if encrypted {
        builder.cipher_key(KEY.with(Clone::clone))
    } else {
        builder
    };
    match persistence {
        Persistence::Sqlite(config) => {
            let conn = rusqlite::Connection::open(&config.dbname).expect("open");
            let set = |v: u64, s: Vec<u8>| {
                conn.execute(
                    "UPDATE stored_events SET state = ?1 WHERE originator_id = ?2 AND originator_version = ?3",
                    rusqlite::params![s, stored_id, v as i64],
                )
                .expect("update");
            };
            match how {
                Tamper::Change(v) => set(*v, changed(&state(*v), encrypted)),
                Tamper::Delete(v) => {
                    conn.execute(
                        "DELETE FROM stored_events WHERE originator_id = ?1 AND originator_version = ?2",
                        rusqlite::params![stored_id, *v as i64],
                    )
                    .expect("delete");
                }
                Tamper::Swap(a, b) => {
                    let (sa, sb) = (state(*a), state(*b));
                    set(*a, sb);
                    set(*b, sa);
                }
            }
            builder.stores_of(app).build().expect("app")
        }
        Persistence::Postgres(config) => {
            let mut client = postgres_client(config);
            let table = "\"versioning_chain_events\"";
            let mut set = |v: u64, s: Vec<u8>| {
                client
                    .execute(
                        &format!("UPDATE {table} SET state = $1 WHERE originator_id = $2 AND originator_version = $3"),
                        &[&s, &id, &(v as i64)],
                    )
                    .expect("update");
            };
            match how {
                Tamper::Change(v) => set(*v, changed(&state(*v), encrypted)),
                Tamper::Delete(v) => {
                    postgres_client(config)
                        .execute(
                            &format!("DELETE FROM {table} WHERE originator_id = $1 AND originator_version = $2"),
                            &[&id, &(*v as i64)],
                        )
                        .expect("delete");
                }
                Tamper::Swap(a, b) => {
                    let (sa, sb) = (state(*a), state(*b));
                    set(*a, sb);
                    set(*b, sa);
                }
            }
            builder.stores_of(app).build().expect("app")
        }
        _ => {
            let inner = app.recorder().clone();
            let tampered: Tampered = match (how, encrypted) {
                (Tamper::Change(2), false) => Tampered {
                    inner,
                    tamper: |rows| rows[1].state = changed(&rows[1].state, false),
                },
                (Tamper::Change(2), true) => Tampered {
                    inner,
                    tamper: |rows| rows[1].state = changed(&rows[1].state, true),
                },
                (Tamper::Delete(2), _) => Tampered {
                    inner,
                    tamper: |rows| {
                        rows.remove(1);
                    },
                },
                (Tamper::Swap(2, 3), _) => Tampered {
                    inner,
                    tamper: |rows| {
                        let (a, b) = (rows[1].state.clone(), rows[2].state.clone());
                        rows[1].state = b;
                        rows[2].state = a;
                    },
                },
                _ => unreachable!("the tests tamper with versions 2 and 3"),
            };
            builder
                .recorder(std::sync::Arc::new(tampered))
                .build()
                .expect("app")
        }
    }
}

thread_local! {
    static KEY: String = cipher::create_key();
}

#[test]
fn hash_chains_report_the_first_broken_link() {
    for encrypted in [false, true] {
        for how in [Tamper::Change(2), Tamper::Delete(2), Tamper::Swap(2, 3)] {
            for (store, persistence) in every_store("versioning_chain") {
                let builder = Application::builder("versioning_chain")
                    .persistence(persistence.clone())
                    .hash_chain(true);
                let builder = if encrypted {
                    builder.cipher_key(KEY.with(Clone::clone))
                } else {
                    builder
                };
                let app = builder.build().expect(store);
                let mut dog = v1::Dog::register("Fido".into());
                dog.add_trick("sit".into());
                app.save(&mut dog).expect(store);
                dog.add_trick("beg".into());
                dog.add_trick("fetch".into());
                app.save(&mut dog).expect(store);
                assert_eq!(
                    app.verify::<v1::Dog>(dog.id()).expect(store),
                    Verification::Intact { events: 4 },
                    "{store}"
                );
                // Replay checks the chain too; a chain continues across saves
                // and from a loaded aggregate.
                let mut loaded: v1::Dog = app.repository().get(dog.id()).expect(store);
                loaded.add_trick("shake".into());
                app.save(&mut loaded).expect(store);
                assert_eq!(
                    app.verify::<v1::Dog>(dog.id()).expect(store),
                    Verification::Intact { events: 5 }
                );

                let tampered = tamper(&persistence, &app, dog.id(), &how, encrypted);
                let what = format!(
                    "{store}, encrypted: {encrypted}, {}",
                    match how {
                        Tamper::Change(_) => "changed",
                        Tamper::Delete(_) => "deleted",
                        Tamper::Swap(..) => "swapped",
                    }
                );
                match tampered.verify::<v1::Dog>(dog.id()).expect(&what) {
                    Verification::Broken { version, reason } => {
                        assert_eq!(version, 2, "{what}: {reason}");
                        if matches!(how, Tamper::Delete(_)) {
                            assert!(reason.contains("missing"), "{what}: {reason}");
                        }
                    }
                    intact => panic!("{what}: not detected: {intact:?}"),
                }
                let err = tampered
                    .repository()
                    .get::<v1::Dog>(dog.id())
                    .expect_err(&what);
                assert!(
                    matches!(
                        err,
                        Error::Integrity { version: 2, .. }
                            | Error::Decode { version: 2, .. }
                            | Error::Corrupt { .. }
                    ),
                    "{what}: {err}"
                );
            }
        }
    }
}

#[test]
fn correlation_and_causation_ids_are_stored_and_inherited() {
    for (store, persistence) in every_store("versioning_causation") {
        let app = secured(
            Application::builder("versioning_causation").persistence(persistence),
            &cipher::create_key(),
        )
        .build()
        .expect(store);
        let request = Uuid::new_v4();
        let mut dog = v1::Dog::register("Fido".into());
        dog.add_trick("sit".into());
        app.save_with(&mut dog, Metadata::correlated(request))
            .expect(store);

        let log = app
            .recorder()
            .select_notifications(&NotificationQuery::new(1, 10))
            .expect(store);
        let cause: annals::DomainEvent<v1::Dog> = app.mapper().decode(&log[1].event).expect(store);
        assert_eq!(cause.correlation_id, Some(request), "{store}");
        assert_eq!(cause.causation_id, None);

        // Processing the event causes another aggregate's event.
        let mut reaction = v1::Dog::register("Echo".into());
        app.save_with(&mut reaction, Metadata::caused_by(&cause))
            .expect(store);
        let log = app
            .recorder()
            .select_notifications(&NotificationQuery::new(3, 10))
            .expect(store);
        let effect: annals::DomainEvent<v1::Dog> = app.mapper().decode(&log[0].event).expect(store);
        assert_eq!(effect.causation_id, Some(cause.event_id()), "{store}");
        assert_eq!(effect.correlation_id, Some(request), "{store}: inherited");
        assert_ne!(effect.event_id(), cause.event_id());
        assert_eq!(cause.event_id(), cause.clone().event_id(), "ids are stable");

        // Without a correlation id, the cause's own id starts the chain.
        let uncorrelated: annals::DomainEvent<v1::Dog> = app
            .mapper()
            .decode(
                &app.recorder()
                    .select_notifications(&NotificationQuery::new(1, 1))
                    .expect(store)[0]
                    .event,
            )
            .expect(store);
        let mut plain = v1::Dog::register("Plain".into());
        app.save(&mut plain).expect(store);
        let first: annals::DomainEvent<v1::Dog> = app
            .mapper()
            .decode(
                &app.recorder()
                    .select_notifications(&NotificationQuery::new(4, 1))
                    .expect(store)[0]
                    .event,
            )
            .expect(store);
        assert_eq!(
            (first.correlation_id, first.causation_id),
            (None, None),
            "{store}"
        );
        let meta = Metadata::caused_by(&first);
        assert_eq!(meta.correlation_id, Some(first.event_id()));
        assert_eq!(uncorrelated.correlation_id, Some(request));
    }
}
