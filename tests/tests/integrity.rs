//! Integrity on every read path: an encrypted state moved into another
//! event, or a hash-chained event changed in place, is an error for `get`
//! and for followers alike; a state too deep to read back is never stored.

use std::sync::{Arc, Mutex};

use annals::cipher::create_key;
use annals::json::{json, Value};
use annals::prelude::*;
use annals::system::{Policies, SingleThreadedRunner, System};
use annals::Error;
use annals_tests::stores::temp_sqlite;

#[aggregate]
#[derive(Debug)]
struct Dog {
    name: String,
    tricks: Vec<String>,
    toy: Value,
}

#[aggregate]
impl Dog {
    #[event("Registered")]
    fn register(name: String) -> Self {
        Dog {
            name,
            tricks: Vec::new(),
            toy: Value::Null,
        }
    }

    #[event("TrickAdded")]
    fn add_trick(&mut self, trick: String) {
        self.tricks.push(trick);
    }

    #[event("ToyGiven")]
    fn give_toy(&mut self, toy: Value) {
        self.toy = toy;
    }
}

/// The school on SQLite file `path`, with `settings` applied.
fn school(
    path: &str,
    settings: impl Fn(annals::ApplicationBuilder) -> annals::ApplicationBuilder,
) -> Arc<Application> {
    Arc::new(
        settings(Application::builder("School").sqlite(path))
            .build()
            .expect("app"),
    )
}

/// Runs a follower of `school` whose policy decodes every `Dog` event;
/// returns the error it stopped with, if any, and the names it saw.
fn follow(school: &Arc<Application>) -> (Option<Error>, Vec<String>) {
    let seen = Arc::new(Mutex::new(Vec::new()));
    let noted = seen.clone();
    let policy = Policies::new().on::<Dog>(move |event, _| {
        if let DogEvent::Registered { name } = &event.event {
            noted.lock().expect("lock").push(name.clone());
        }
        Ok(())
    });
    let follower = Arc::new(Application::builder("Kennel").build().expect("app"));
    let system = Arc::new(
        System::builder()
            .application(school.clone())
            .process(follower.clone(), policy)
            .pipe([school, &follower])
            .build()
            .expect("system"),
    );
    let error = SingleThreadedRunner::new(system).run().err();
    let seen = seen.lock().expect("lock").clone();
    (error, seen)
}

/// Overwrites the state of (`id`, `version`) with that of (`from`, `from_version`).
fn move_state(path: &str, id: Uuid, version: u64, from: Uuid, from_version: u64) {
    let db = rusqlite::Connection::open(path).expect("open");
    let changed = db
        .execute(
            "UPDATE stored_events SET state = (SELECT state FROM stored_events \
             WHERE originator_id = ?3 AND originator_version = ?4) \
             WHERE originator_id = ?1 AND originator_version = ?2",
            rusqlite::params![
                id.simple().to_string(),
                version as i64,
                from.simple().to_string(),
                from_version as i64
            ],
        )
        .expect("update");
    assert_eq!(changed, 1);
}

#[test]
fn an_encrypted_state_moved_into_another_event_is_an_error_for_get_and_followers() {
    let path = temp_sqlite("moved_state");
    let path = path.as_str();
    let key = create_key();
    let app = school(path, |b| b.cipher_key(key.clone()));
    let mut fido = Dog::register("Fido".into());
    let mut rex = Dog::register("Rex".into());
    app.save((&mut fido, &mut rex)).expect("save");
    move_state(path, fido.id(), 1, rex.id(), 1);

    let err = app.get::<Dog>(fido.id()).expect_err("moved");
    assert!(matches!(err, Error::Decode { .. }), "{err}");
    assert!(
        err.report().to_string().contains("authentication failed"),
        "{}",
        err.report()
    );
    let (error, seen) = follow(&app);
    let error = error.expect("the follower stops at the moved state");
    assert!(matches!(error, Error::Decode { version: 1, .. }), "{error}");
    assert!(
        seen.is_empty(),
        "nothing of the moved state was seen: {seen:?}"
    );
}

#[test]
fn unbound_ciphertexts_are_the_python_layout_and_read_with_the_setting() {
    let path = temp_sqlite("unbound_state");
    let path = path.as_str();
    let key = create_key();
    let unbound = school(path, |b| {
        b.cipher_key(key.clone()).cipher_associated_data(false)
    });
    let mut fido = Dog::register("Fido".into());
    unbound.save(&mut fido).expect("save");
    // Unbound: readable with the setting, not without it.
    assert_eq!(unbound.get::<Dog>(fido.id()).expect("get").name, "Fido");
    let bound = school(path, |b| b.cipher_key(key.clone()));
    assert!(bound.get::<Dog>(fido.id()).is_err());
    let state = &unbound.notifications(1, 1).expect("rows")[0].event.state;
    let plain = annals::cipher::Cipher::from_base64(&key)
        .expect("key")
        .decrypt(state)
        .expect("no associated data");
    assert!(String::from_utf8_lossy(&plain).contains("Fido"));
}

#[test]
fn a_hash_chained_event_changed_in_place_stops_get_and_followers() {
    let path = temp_sqlite("swapped_chain");
    let path = path.as_str();
    let app = school(path, |b| b.hash_chain(true));
    let mut fido = Dog::register("Fido".into());
    fido.add_trick("sit".into());
    fido.add_trick("roll".into());
    app.save(&mut fido).expect("save");
    let (error, seen) = follow(&app);
    assert!(error.is_none(), "an intact chain is followed: {error:?}");
    assert_eq!(seen, ["Fido"]);

    // Version 3 now holds version 2's state (same topic, a valid hash of
    // other content).
    move_state(path, fido.id(), 3, fido.id(), 2);
    let err = app.get::<Dog>(fido.id()).expect_err("broken");
    assert!(matches!(err, Error::Integrity { version: 3, .. }), "{err}");
    let fresh = school(path, |b| b.hash_chain(true));
    let follower = Arc::new(Application::builder("Kennel2").build().expect("app"));
    let policy = Policies::new().on::<Dog>(|_, _| Ok(()));
    let system = Arc::new(
        System::builder()
            .application(fresh.clone())
            .process(follower.clone(), policy)
            .pipe([&fresh, &follower])
            .build()
            .expect("system"),
    );
    let err = SingleThreadedRunner::new(system)
        .run()
        .expect_err("the follower stops at the broken link");
    assert!(matches!(err, Error::Integrity { version: 3, .. }), "{err}");
    assert_eq!(
        follower
            .recorder()
            .max_tracking_id("School")
            .expect("tracking"),
        2,
        "it processed up to the link before"
    );
}

/// A JSON value nested `depth` arrays deep.
fn nested(depth: usize) -> Value {
    (0..depth).fold(json!(1), |inner, _| json!([inner]))
}

#[test]
fn a_state_too_deep_to_read_back_is_refused_at_save_and_nothing_is_stored() {
    let app = Application::builder("School").build().expect("app");
    let mut fido = Dog::register("Fido".into());
    app.save(&mut fido).expect("save");

    // Just readable: the event's object and the toy's arrays.
    fido.give_toy(nested(125));
    app.save(&mut fido).expect("deep, but readable");
    assert_eq!(
        app.get::<Dog>(fido.id()).expect("read back").toy,
        nested(125)
    );

    fido.give_toy(nested(200));
    let err = app.save(&mut fido).expect_err("too deep");
    let shown = err.report().to_string();
    assert!(
        matches!(
            err,
            Error::Encode {
                topic: "Dog.ToyGiven",
                aggregate: "Dog",
                ..
            }
        ),
        "{shown}"
    );
    assert!(shown.contains("nests"), "{shown}");
    assert_eq!(
        app.last_notification_id().expect("log"),
        Some(2),
        "nothing stored"
    );
    assert_eq!(app.get::<Dog>(fido.id()).expect("get").version(), 2);
}
