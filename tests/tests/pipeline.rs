//! The stored-event pipeline on every store: compression, encryption,
//! snapshots and the aggregate cache.

use std::sync::{Arc, Mutex};

use base64::Engine;

use annals::cipher::{self, Cipher};
use annals::env::Env;
use annals::mapper::{associated_data, Compressor};
use annals::persistence::memory::MemoryRecorder;
use annals::persistence::{
    AggregateRecorder, ApplicationRecorder, EventQuery, Notification, NotificationQuery,
    ProcessRecorder, StoredEvent, Tracking,
};
use annals::prelude::*;
use annals::{ApplicationBuilder, Error, Persistence};
use annals_examples::dog_school::Dog;
use annals_tests::stores::every_store;
use annals_tests::tamper::Tampered;

/// A trick name that must never appear in stored bytes when encrypted.
const SECRET: &str = "secret-handshake-trick";

fn builder(app: &str, persistence: Persistence) -> ApplicationBuilder {
    Application::builder(app).persistence(persistence)
}

fn all_rows(app: &Application) -> Vec<Notification> {
    app.recorder()
        .select_notifications(&NotificationQuery::new(1, 1_000))
        .expect("log")
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

fn dog_with_tricks(app: &Application, name: &str, tricks: usize) -> Dog {
    let mut dog = Dog::register(name.into());
    for i in 0..tricks {
        dog.add_trick(format!("{SECRET}-{i}"));
        app.save(&mut dog).expect("save");
    }
    app.save(&mut dog).expect("save");
    dog
}

#[test]
fn zlib_compresses_every_stored_event_and_snapshot() {
    for (store, persistence) in every_store("pipeline_zlib") {
        let app = builder("pipeline_zlib", persistence)
            .compressor(Some(Compressor::Zlib))
            .snapshotting(true)
            .build()
            .expect(store);
        let mut dog = Dog::register("Fido".into());
        dog.add_trick("ab".repeat(500));
        app.save(&mut dog).expect(store);
        app.take_snapshot::<Dog>(dog.id()).expect(store);
        let rows = all_rows(&app);
        assert_eq!(rows.len(), 2, "{store}");
        for row in &rows {
            assert_eq!(row.event.state[0], 0x78, "{store}: a zlib header");
        }
        assert!(
            rows[1].event.state.len() < 200,
            "{store}: 1000 bytes of trick compressed"
        );
        let snapshot = &app
            .snapshots()
            .expect("enabled")
            .recorder()
            .select_events(&rows[0].event.originator_id, &EventQuery::all())
            .expect(store)[0];
        assert_eq!(snapshot.state[0], 0x78, "{store}: snapshot compressed");
        let copy: Dog = app.repository().get(dog.id()).expect(store);
        assert_eq!(copy.tricks, dog.tricks, "{store}");
    }
}

#[test]
fn encryption_leaves_no_plaintext_in_any_stored_bytes() {
    for (store, persistence) in every_store("pipeline_cipher") {
        let key = cipher::create_key();
        let app = builder("pipeline_cipher", persistence)
            .cipher_key(&key)
            .compressor(Some(Compressor::Zlib))
            .snapshot_every::<Dog>(2)
            .build()
            .expect(store);
        let dog = dog_with_tricks(&app, "Fido-the-secret-name", 3);
        let rows = all_rows(&app);
        assert_eq!(rows.len(), 4, "{store}");
        let snapshots = app
            .snapshots()
            .expect("enabled")
            .recorder()
            .select_events(&rows[0].event.originator_id, &EventQuery::all())
            .expect(store);
        assert_eq!(snapshots.len(), 2, "{store}: snapshots at versions 2 and 4");
        let cipher = Cipher::from_base64(&key).expect("key");
        for row in rows.iter().map(|r| &r.event).chain(snapshots.iter()) {
            let state = &row.state;
            for plain in [SECRET.as_bytes(), b"Fido-the-secret-name", b"timestamp"] {
                assert!(
                    !contains(state, plain),
                    "{store}: plaintext in stored bytes"
                );
            }
            // Compressed before encrypted: the plaintext inside is zlib.
            let bound = associated_data(&row.originator_id, row.originator_version, &row.topic);
            let inner = cipher.decrypt_bound(state, &bound).expect("decrypts");
            assert!(cipher.decrypt(state).is_err(), "{store}: bound to its row");
            assert_eq!(inner[0], 0x78, "{store}");
        }
        let copy: Dog = app.repository().get(dog.id()).expect(store);
        assert_eq!(copy.tricks.len(), 3, "{store}");
        assert_eq!(copy.name, "Fido-the-secret-name");
    }
}

fn decryption_error(err: Error) -> String {
    assert!(
        matches!(err, Error::Decode { .. }),
        "a decode error, got {err}"
    );
    let message = err.report().to_string();
    assert!(
        message.contains("Dog.Registered") && message.contains("decrypt"),
        "{message}"
    );
    message
}

#[test]
fn a_wrong_key_a_flipped_bit_or_truncated_bytes_are_clear_errors() {
    for (store, persistence) in every_store("pipeline_tamper") {
        let key = cipher::create_key();
        let app = builder("pipeline_tamper", persistence)
            .cipher_key(&key)
            .build()
            .expect(store);
        let dog = dog_with_tricks(&app, "Rex", 1);
        let recorder = app.recorder().clone();

        let wrong = Application::builder("pipeline_tamper")
            .recorder(recorder.clone())
            .cipher_key(cipher::create_key())
            .build()
            .expect(store);
        let message = decryption_error(
            wrong
                .repository()
                .get::<Dog>(dog.id())
                .expect_err("wrong key"),
        );
        assert!(message.contains("authentication failed"), "{message}");

        let flipped = Application::builder("pipeline_tamper")
            .recorder(Arc::new(Tampered {
                inner: recorder.clone(),
                tamper: |events| events.iter_mut().for_each(|e| e.state[20] ^= 0x01),
            }))
            .cipher_key(&key)
            .build()
            .expect(store);
        decryption_error(
            flipped
                .repository()
                .get::<Dog>(dog.id())
                .expect_err("flipped bit"),
        );

        let truncated = Application::builder("pipeline_tamper")
            .recorder(Arc::new(Tampered {
                inner: recorder.clone(),
                tamper: |events| events.iter_mut().for_each(|e| e.state.truncate(10)),
            }))
            .cipher_key(&key)
            .build()
            .expect(store);
        let message = decryption_error(
            truncated
                .repository()
                .get::<Dog>(dog.id())
                .expect_err("truncated"),
        );
        assert!(message.contains("too short"), "{message}");

        let unencrypted = Application::builder("pipeline_tamper")
            .recorder(recorder)
            .build()
            .expect(store);
        let err = unencrypted
            .repository()
            .get::<Dog>(dog.id())
            .expect_err("ciphertext is not JSON");
        assert!(matches!(err, Error::Decode { .. }), "{store}: {err}");
    }
}

#[test]
fn a_key_of_the_wrong_length_is_a_configuration_error_naming_cipher_key() {
    for key in ["c2hvcnQ=", "not base64 at all", ""] {
        let err = Application::builder("Keys")
            .cipher_key(key)
            .build()
            .expect_err(key);
        assert!(
            matches!(&err, Error::Config { setting, .. } if setting == "CIPHER_KEY"),
            "{err}"
        );
    }
    let env = Env::from_map("Keys", [("KEYS_CIPHER_KEY", "c2hvcnQ=")]);
    let err = Application::builder("Keys")
        .with_env(&env)
        .and_then(|b| b.build())
        .expect_err("short");
    assert!(err.to_string().contains("KEYS_CIPHER_KEY"), "{err}");
    for len in [16, 24, 32] {
        let key = base64::engine::general_purpose::STANDARD.encode(vec![1u8; len]);
        Application::builder("Keys")
            .cipher_key(key)
            .build()
            .expect("valid length");
    }
}

#[test]
fn settings_from_the_environment_turn_the_pipeline_on() {
    let key = cipher::create_key();
    let env = Env::from_map(
        "School",
        [
            ("COMPRESSOR_TOPIC", "zlib"),
            ("CIPHER_KEY", key.as_str()),
            ("IS_SNAPSHOTTING_ENABLED", "yes"),
            ("AGGREGATE_CACHE_MAXSIZE", "10"),
        ],
    );
    let app = Application::builder("School")
        .with_env(&env)
        .expect("env")
        .build()
        .expect("app");
    assert!(app.snapshots().is_some());
    let dog = dog_with_tricks(&app, "Fido", 1);
    let row = &all_rows(&app)[0].event;
    let bound = associated_data(&row.originator_id, row.originator_version, &row.topic);
    let inner = Cipher::from_base64(&key)
        .expect("key")
        .decrypt_bound(&row.state, &bound)
        .expect("encrypted");
    assert_eq!(inner[0], 0x78, "compressed, then encrypted");
    app.take_snapshot::<Dog>(dog.id()).expect("snapshot");

    for (var, value) in [
        ("COMPRESSOR_TOPIC", "lzma"),
        ("IS_SNAPSHOTTING_ENABLED", "perhaps"),
        ("AGGREGATE_CACHE_MAXSIZE", "-1"),
        ("CIPHER_TOPIC", "rot13"),
    ] {
        let env = Env::from_map("School", [(var, value)]);
        let err = Application::builder("School")
            .with_env(&env)
            .and_then(|b| b.build())
            .expect_err(var);
        assert!(err.to_string().contains(var), "{err}");
    }
    let err = Application::builder("School")
        .build()
        .and_then(|app| app.take_snapshot::<Dog>(dog.id()));
    assert!(err
        .expect_err("disabled")
        .to_string()
        .contains("IS_SNAPSHOTTING_ENABLED"));
}

#[test]
fn snapshots_every_n_events_and_on_demand() {
    for (store, persistence) in every_store("pipeline_snapshots") {
        let app = builder("pipeline_snapshots", persistence)
            .snapshot_every::<Dog>(5)
            .build()
            .expect(store);
        let snapshots = app.snapshots().expect("enabled");
        let mut dog = Dog::register("Fido".into());
        app.save(&mut dog).expect(store);
        for i in 1..=11 {
            dog.add_trick(format!("t{i}"));
            app.save(&mut dog).expect(store);
        }
        assert_eq!(dog.version(), 12);
        let stored_id = dog.id().simple().to_string();
        let versions: Vec<u64> = snapshots
            .recorder()
            .select_events(&stored_id, &EventQuery::all())
            .expect(store)
            .iter()
            .map(|s| s.originator_version)
            .collect();
        assert_eq!(versions, [5, 10], "{store}");
        let newest: Dog = snapshots.get(dog.id()).expect(store).expect("a snapshot");
        assert_eq!((newest.version(), newest.tricks.len()), (10, 9), "{store}");
        assert_eq!(newest.created_on(), dog.created_on(), "{store}");
        assert_eq!(newest.id(), dog.id());
        let at7: Dog = snapshots
            .get_at(dog.id(), 7)
            .expect(store)
            .expect("a snapshot");
        assert_eq!(at7.version(), 5, "{store}");
        assert!(
            snapshots.get_at::<Dog>(dog.id(), 4).expect(store).is_none(),
            "{store}"
        );

        app.take_snapshot_at::<Dog>(dog.id(), 7).expect(store);
        app.take_snapshot::<Dog>(dog.id()).expect(store);
        app.take_snapshot::<Dog>(dog.id())
            .expect("again: already stored");
        let at8: Dog = snapshots
            .get_at(dog.id(), 8)
            .expect(store)
            .expect("a snapshot");
        assert_eq!((at8.version(), at8.tricks.len()), (7, 6), "{store}");
        assert_eq!(
            snapshots
                .get::<Dog>(dog.id())
                .expect(store)
                .expect("newest")
                .version(),
            12
        );

        // Saving several events at once still snapshots when the interval
        // is crossed, at the version reached.
        let mut many = Dog::register("Rex".into());
        for i in 0..6 {
            many.add_trick(format!("r{i}"));
        }
        app.save(&mut many).expect(store);
        assert_eq!(
            snapshots
                .get::<Dog>(many.id())
                .expect(store)
                .expect("snapshot")
                .version(),
            7
        );
        let err = app
            .take_snapshot::<Dog>(Uuid::new_v4())
            .expect_err("no such dog");
        assert!(err.is_not_found());
    }
}

#[test]
fn get_starts_from_the_newest_snapshot_and_replays_only_later_events() {
    for (store, persistence) in every_store("pipeline_from_snapshot") {
        let app = builder("pipeline_from_snapshot", persistence)
            .snapshotting(true)
            .build()
            .expect(store);
        let mut dog = Dog::register("Fido".into());
        for i in 1..=4 {
            dog.add_trick(format!("t{i}"));
        }
        app.save(&mut dog).expect(store);
        // A snapshot at version 3 whose state the events would not give:
        // what `get` returns shows where it started.
        let mut marked: Dog = app.repository().get_at(dog.id(), 3).expect(store);
        marked.tricks = vec!["from the snapshot".into()];
        let row = app.mapper().encode_snapshot(&marked).expect("encode");
        app.snapshots()
            .expect("on")
            .recorder()
            .insert_events(&[row])
            .expect(store);

        let now: Dog = app.repository().get(dog.id()).expect(store);
        assert_eq!(now.tricks, ["from the snapshot", "t3", "t4"], "{store}");
        assert_eq!(now.version(), 5);
        assert_eq!(now.modified_on(), dog.modified_on());
        let at4: Dog = app.repository().get_at(dog.id(), 4).expect(store);
        assert_eq!(at4.tricks, ["from the snapshot", "t3"], "{store}");
        let at2: Dog = app.repository().get_at(dog.id(), 2).expect(store);
        assert_eq!(
            at2.tricks,
            ["t1"],
            "{store}: below the snapshot, from the events"
        );
    }
}

/// Records the `gt` of every stream selection.
struct Counting {
    inner: MemoryRecorder,
    queries: Mutex<Vec<Option<u64>>>,
}

impl AggregateRecorder for Counting {
    fn insert_events(&self, events: &[StoredEvent]) -> annals::Result<Vec<u64>> {
        self.inner.insert_events(events)
    }
    fn select_events(&self, id: &str, query: &EventQuery) -> annals::Result<Vec<StoredEvent>> {
        self.queries.lock().expect("lock").push(query.gt);
        self.inner.select_events(id, query)
    }
}

impl ApplicationRecorder for Counting {
    fn select_notifications(&self, query: &NotificationQuery) -> annals::Result<Vec<Notification>> {
        self.inner.select_notifications(query)
    }
    fn max_notification_id(&self) -> annals::Result<u64> {
        self.inner.max_notification_id()
    }
}

impl ProcessRecorder for Counting {
    fn insert_events_tracked(&self, e: &[StoredEvent], t: &Tracking) -> annals::Result<Vec<u64>> {
        self.inner.insert_events_tracked(e, t)
    }
    fn max_tracking_id(&self, name: &str) -> annals::Result<u64> {
        self.inner.max_tracking_id(name)
    }
    fn has_tracking_id(&self, name: &str, id: u64) -> annals::Result<bool> {
        self.inner.has_tracking_id(name, id)
    }
}

#[test]
fn the_cache_and_snapshots_read_only_newer_events() {
    let counting = Arc::new(Counting {
        inner: MemoryRecorder::new(),
        queries: Mutex::new(Vec::new()),
    });
    let cached = Application::builder("Cached")
        .recorder(counting.clone())
        .cache(10)
        .build()
        .expect("app");
    let mut dog = Dog::register("Fido".into());
    dog.add_trick("sit".into());
    cached.save(&mut dog).expect("save");
    let _: Dog = cached.repository().get(dog.id()).expect("get");
    let snapshotted = Application::builder("Snap")
        .recorder(counting.clone())
        .snapshot_every::<Dog>(2)
        .build()
        .expect("app");
    let mut other = Dog::register("Rex".into());
    other.add_trick("beg".into());
    snapshotted.save(&mut other).expect("save");
    let _: Dog = snapshotted.repository().get(other.id()).expect("get");
    let _: Dog = snapshotted
        .repository()
        .get_at(other.id(), 1)
        .expect("get_at below snapshot");
    assert_eq!(
        *counting.queries.lock().expect("lock"),
        [Some(2), Some(2), None]
    );
}

#[test]
fn the_cache_stays_correct_on_every_store() {
    for (store, persistence) in every_store("pipeline_cache") {
        let first = builder("pipeline_cache", persistence)
            .cache(100)
            .build()
            .expect(store);
        // A second application on the same store, writing behind the
        // first one's cache.
        let second = Application::builder("pipeline_cache")
            .recorder(first.recorder().clone())
            .build()
            .expect(store);
        let mut dog = Dog::register("Fido".into());
        first.save(&mut dog).expect(store);

        let mut mine: Dog = first.repository().get(dog.id()).expect(store);
        mine.tricks.push("not saved".into());
        let again: Dog = first.repository().get(dog.id()).expect(store);
        assert!(
            again.tricks.is_empty(),
            "{store}: get returns the caller's own copy"
        );

        let mut elsewhere: Dog = second.repository().get(dog.id()).expect(store);
        elsewhere.add_trick("roll over".into());
        second.save(&mut elsewhere).expect(store);
        let caught_up: Dog = first.repository().get(dog.id()).expect(store);
        assert_eq!(caught_up.tricks, ["roll over"], "{store}: fast-forwarded");
        assert_eq!(caught_up.version(), 2);

        let mut updated = caught_up;
        updated.add_trick("sit".into());
        first.save(&mut updated).expect(store);
        updated.tricks.push("changed after the save".into());
        let from_cache: Dog = first.repository().get(dog.id()).expect(store);
        assert_eq!(
            from_cache.tricks,
            ["roll over", "sit"],
            "{store}: the save updated the cache"
        );

        let mut stale = again;
        stale.add_trick("stale".into());
        assert!(
            first.save(&mut stale).expect_err("stale").is_conflict(),
            "{store}"
        );
        assert_eq!(
            first
                .repository()
                .get::<Dog>(dog.id())
                .expect(store)
                .version(),
            3
        );
    }
}

#[test]
fn hostile_stored_bytes_are_errors_not_panics() {
    let app = Application::builder("Hostile")
        .snapshotting(true)
        .compressor(Some(Compressor::Zlib))
        .build()
        .expect("app");
    let id = Uuid::new_v4();
    let zlib = |json: &[u8]| {
        use std::io::Write;
        let mut encoder = flate2::write::ZlibEncoder::new(Vec::new(), flate2::Compression::best());
        encoder.write_all(json).expect("compress");
        encoder.finish().expect("compress")
    };
    let row = |topic: &str, state: Vec<u8>| StoredEvent {
        originator_id: id.simple().to_string(),
        originator_version: 1,
        topic: topic.into(),
        state,
    };
    // A snapshot whose JSON is not an object (and mentions class_version,
    // which sends it down the upcasting path).
    app.snapshots()
        .expect("on")
        .recorder()
        .insert_events(&[row("Dog", zlib(br#"["class_version"]"#))])
        .expect("insert");
    let err = app.repository().get::<Dog>(id).expect_err("not an object");
    assert!(matches!(err, Error::Decode { .. }), "{err}");

    // A record that inflates to 300 MiB of zeros.
    let bomb = {
        use std::io::Write;
        let mut encoder = flate2::write::ZlibEncoder::new(Vec::new(), flate2::Compression::best());
        let zeros = vec![0u8; 1 << 20];
        for _ in 0..300 {
            encoder.write_all(&zeros).expect("compress");
        }
        encoder.finish().expect("compress")
    };
    assert!(bomb.len() < 1 << 20, "a small record");
    app.recorder()
        .insert_events(&[row("Dog.Registered", bomb)])
        .expect("insert");
    let other = Application::builder("Hostile")
        .recorder(app.recorder().clone())
        .compressor(Some(Compressor::Zlib))
        .build()
        .expect("app");
    let err = other.repository().get::<Dog>(id).expect_err("too large");
    assert!(
        err.report().to_string().contains("inflates beyond"),
        "{err}"
    );
}

#[test]
fn a_huge_cache_size_allocates_only_what_is_used_and_eviction_keeps_n() {
    // The largest sizes do not allocate their capacity up front.
    for size in ["1000000000", "18446744073709551615"] {
        let env = Env::from_map("Huge", [("AGGREGATE_CACHE_MAXSIZE", size)]);
        let app = Application::builder("Huge")
            .with_env(&env)
            .expect("env")
            .build()
            .expect(size);
        let mut dog = Dog::register("Fido".into());
        app.save(&mut dog).expect("save");
        let _: Dog = app.repository().get(dog.id()).expect("get");
    }
    let app = Application::builder("Huge")
        .cache(usize::MAX)
        .build()
        .expect("usize::MAX");
    let mut dog = Dog::register("Fido".into());
    app.save(&mut dog).expect("save");

    // At most 2 kept: the least recently used goes.
    let counting = Arc::new(Counting {
        inner: MemoryRecorder::new(),
        queries: Mutex::new(Vec::new()),
    });
    let app = Application::builder("Small")
        .recorder(counting.clone())
        .cache(2)
        .build()
        .expect("app");
    let mut dogs: Vec<Dog> = ["a", "b", "c"]
        .iter()
        .map(|name| Dog::register((*name).into()))
        .collect();
    for dog in &mut dogs {
        app.save(dog).expect("save");
    }
    let get = |dog: &Dog| {
        counting.queries.lock().expect("lock").clear();
        let _: Dog = app.repository().get(dog.id()).expect("get");
        counting.queries.lock().expect("lock").clone()
    };
    // c and b are cached (a hit reads only newer events: gt = 1).
    assert_eq!(get(&dogs[2]), [Some(1)], "c cached");
    assert_eq!(get(&dogs[1]), [Some(1)], "b cached");
    // a was evicted: read whole; getting it puts it back, evicting c.
    assert_eq!(get(&dogs[0]), [None], "a evicted");
    assert_eq!(get(&dogs[0]), [Some(1)], "a cached again");
    assert_eq!(get(&dogs[1]), [Some(1)], "b still cached");
    assert_eq!(get(&dogs[2]), [None], "c evicted");
}
