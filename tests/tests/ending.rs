//! Streams ended for good: `archive_stream` and `delete_stream` on every
//! store (memory and SQLite always; PostgreSQL and MariaDB/MySQL when
//! configured, else SKIPPED): where a get says the stream went, the
//! archive's bytes, the log's order, followers, conflicts, reruns, and the
//! bytes of a deleted stream gone from a SQLite file.

use std::sync::{Arc, Mutex};

use annals::application::Archive;
use annals::domain::AggregateId;
use annals::ending::{is_tombstone, Tombstone, TOMBSTONE_TOPIC};
use annals::persistence::{EventQuery, Notification, StoredEvent};
use annals::prelude::*;
use annals::system::System;
use annals::{Error, Persistence};
use annals_tests::dogs::Dog;
use annals_tests::stores::{every_store, every_store_for, temp_sqlite};

fn app(name: &str, store: &str, persistence: Persistence) -> Application {
    Application::builder(name)
        .persistence(persistence)
        .snapshotting(true)
        .snapshot_every::<Dog>(2)
        .cache(10)
        .build()
        .unwrap_or_else(|e| panic!("{store}: {}", e.report()))
}

fn stream(app: &Application, id: &str) -> Vec<StoredEvent> {
    app.recorder()
        .select_events(id, &EventQuery::all())
        .expect("the stream")
}

fn log(app: &Application) -> Vec<Notification> {
    app.notifications(1, 10_000).expect("the log")
}

/// A dog with three events (and a snapshot at version 2), and another.
fn kennel(app: &Application) -> (Dog, Dog) {
    let mut fido = Dog::register("Fido".into());
    fido.add_trick("sit".into());
    fido.add_trick("roll over".into());
    app.save(&mut fido).expect("save fido");
    let mut rex = Dog::register("Rex".into());
    app.save(&mut rex).expect("save rex");
    rex.add_trick("beg".into());
    app.save(&mut rex).expect("save rex again");
    (fido, rex)
}

/// Archived: a get says where to; the archive holds the stored bytes as
/// they were; snapshots are gone; the other stream keeps its ids; the
/// tombstone is the log's newest notification and says nothing of the
/// stream's data.
#[test]
fn an_archived_stream_is_in_the_archive_as_stored_and_a_get_says_where() {
    for (store, persistence) in every_store("ending_archive") {
        let app = app("ending_archive", store, persistence);
        let vault = Application::builder("Vault").build().expect("vault");
        let (fido, rex) = kennel(&app);
        let id = fido.id().to_stored();
        let before = stream(&app, &id);
        assert_eq!(before.len(), 3, "{store}");
        let snapshots = app.snapshots().expect("snapshots on");
        assert!(
            !snapshots
                .versions::<Dog>(fido.id())
                .expect("versions")
                .is_empty(),
            "{store}"
        );
        let log_before = log(&app);

        let archive = Archive::new("vault.db", vault.recorder().clone());
        let ended = app
            .archive_stream(fido.id(), &archive)
            .unwrap_or_else(|e| panic!("{store}: {}", e.report()));
        assert_eq!(
            (ended.removed, ended.copied, ended.version),
            (3, 3, 4),
            "{store}"
        );

        // The archive's copy is the stored rows, byte for byte.
        assert_eq!(stream(&vault, &id), before, "{store}");
        // The live stream is its tombstone alone.
        let live = stream(&app, &id);
        assert_eq!(live.len(), 1, "{store}");
        assert_eq!(
            (live[0].topic.as_str(), live[0].originator_version),
            (TOMBSTONE_TOPIC, 4)
        );
        let tombstone = Tombstone::from_stored(&live[0]).expect("a tombstone");
        assert_eq!(tombstone.to.as_deref(), Some("vault.db"), "{store}");
        let text = String::from_utf8_lossy(&live[0].state);
        assert!(
            !text.contains("Fido") && !text.contains("roll over"),
            "{store}: {text}"
        );
        assert!(
            snapshots
                .versions::<Dog>(fido.id())
                .expect("versions")
                .is_empty(),
            "{store}"
        );

        match app.get::<Dog>(fido.id()) {
            Err(Error::StreamEnded {
                id: ended_id,
                archived_to,
                ..
            }) => {
                assert_eq!(ended_id, id, "{store}");
                assert_eq!(archived_to.as_deref(), Some("vault.db"), "{store}");
            }
            other => panic!("{store}: expected StreamEnded, got {other:?}"),
        }
        let message = app.get::<Dog>(fido.id()).unwrap_err().to_string();
        assert!(
            message.contains(&id) && message.contains("archived to vault.db"),
            "{message}"
        );
        assert!(
            !app.repository()
                .contains::<Dog>(fido.id())
                .expect("contains"),
            "{store}"
        );
        assert_eq!(
            app.get::<Dog>(rex.id()).expect("rex").tricks,
            ["beg"],
            "{store}"
        );

        // The log: fido's ids are gaps, rex's stay, the tombstone is last.
        let log_after = log(&app);
        let kept: Vec<&Notification> = log_before
            .iter()
            .filter(|n| n.event.originator_id != id)
            .collect();
        assert_eq!(log_after.len(), kept.len() + 1, "{store}");
        for (after, before) in log_after.iter().zip(&kept) {
            assert_eq!(&after, before, "{store}: other events keep their ids");
        }
        let last = log_after.last().expect("the tombstone");
        assert!(is_tombstone(&last.event.topic), "{store}");
        assert!(last.id > log_before.last().expect("a log").id, "{store}");
        assert!(log_after.windows(2).all(|w| w[0].id < w[1].id), "{store}");
    }
}

/// Deleted: the events are gone from the store, the log keeps its order
/// and the other stream's ids, a get says deleted; a save at the
/// tombstone's version conflicts; ending it again says it ended.
#[test]
fn a_deleted_stream_leaves_the_log_in_order_and_cannot_go_on() {
    for (store, persistence) in every_store("ending_delete") {
        let app = app("ending_delete", store, persistence);
        let (mut fido, rex) = kennel(&app);
        let id = fido.id().to_stored();
        let log_before = log(&app);
        let rex_ids: Vec<u64> = log_before
            .iter()
            .filter(|n| n.event.originator_id == rex.id().to_stored())
            .map(|n| n.id)
            .collect();

        let ended = app
            .delete_stream(fido.id())
            .unwrap_or_else(|e| panic!("{store}: {}", e.report()));
        assert_eq!((ended.removed, ended.version), (3, 4), "{store}");
        assert_eq!(ended.tombstone.to, None);

        let log_after = log(&app);
        let after_rex: Vec<u64> = log_after
            .iter()
            .filter(|n| n.event.originator_id == rex.id().to_stored())
            .map(|n| n.id)
            .collect();
        assert_eq!(
            after_rex, rex_ids,
            "{store}: rex keeps its notification ids"
        );
        assert!(
            log_after
                .iter()
                .all(|n| n.event.originator_id != id || is_tombstone(&n.event.topic)),
            "{store}: none of fido's events is left in the log"
        );
        assert!(log_after.windows(2).all(|w| w[0].id < w[1].id), "{store}");

        match app.get::<Dog>(fido.id()) {
            Err(Error::StreamEnded {
                archived_to: None, ..
            }) => {}
            other => panic!("{store}: expected StreamEnded (deleted), got {other:?}"),
        }
        // A writer that held the aggregate stores at the tombstone's version.
        fido.add_trick("play dead".into());
        let refused = app.save(&mut fido).unwrap_err();
        assert!(refused.is_conflict(), "{store}: {refused:?}");
        assert_eq!(stream(&app, &id).len(), 1, "{store}: the tombstone alone");

        let again = app.delete_stream(fido.id()).unwrap_err();
        assert!(again.is_stream_ended(), "{store}: {again:?}");
        let vault = Application::builder("Vault").build().expect("vault");
        let archive = Archive::new("vault", vault.recorder().clone());
        let again = app.archive_stream(fido.id(), &archive).unwrap_err();
        assert!(again.is_stream_ended(), "{store}: {again:?}");
        assert!(stream(&vault, &id).is_empty(), "{store}: nothing copied");
    }
}

/// Ending a stream that has no events is a not-found error, and stores
/// nothing (no tombstone).
#[test]
fn ending_a_stream_that_does_not_exist_is_not_found() {
    for (store, persistence) in every_store("ending_missing") {
        let app = app("ending_missing", store, persistence);
        let missing = Uuid::new_v4();
        let e = app.delete_stream(missing).unwrap_err();
        assert!(e.is_not_found(), "{store}: {e:?}");
        let vault = Application::builder("Vault").build().expect("vault");
        let archive = Archive::new("vault", vault.recorder().clone());
        let e = app.archive_stream(missing, &archive).unwrap_err();
        assert!(e.is_not_found(), "{store}: {e:?}");
        assert!(log(&app).is_empty(), "{store}: nothing stored");
        // The recorder itself stores no tombstone for an empty stream.
        let nobody = Uuid::new_v4().to_stored();
        let tombstone = Tombstone::deleted("2026-01-01T00:00:00Z").to_stored(&nobody, 1);
        let removed = app
            .recorder()
            .end_stream(&nobody, Some(&tombstone))
            .expect("end_stream");
        assert!(removed.is_empty() && log(&app).is_empty(), "{store}");
    }
}

/// A follower that ran before the end and after it sees each event once,
/// passes over the tombstone (its policy is never called with it) and
/// tracks it, so it is processed once and never again.
#[test]
fn a_follower_sees_each_event_once_and_passes_over_the_tombstone() {
    for (store, persistence) in every_store_for(&["ending_leader", "ending_follower"]) {
        let leader = Arc::new(app("ending_leader", store, persistence.clone()));
        let follower = Arc::new(
            Application::builder("ending_follower")
                .persistence(persistence)
                .build()
                .expect("follower"),
        );
        let seen: Arc<Mutex<Vec<(String, u64)>>> = Arc::default();
        let calls: Arc<Mutex<Vec<String>>> = Arc::default();
        let (seen_by, called) = (seen.clone(), calls.clone());
        let policy = move |up: &annals::system::Upstream<'_>,
                           _: &mut annals::system::Processing<'_>| {
            called.lock().unwrap().push(up.topic().to_owned());
            let stored = &up.notification().event;
            seen_by
                .lock()
                .unwrap()
                .push((stored.originator_id.clone(), stored.originator_version));
            Ok(())
        };
        let system = System::builder()
            .application(leader.clone())
            .process(follower.clone(), policy)
            .pipe([&leader, &follower])
            .build()
            .expect("system");
        let (fido, mut rex) = kennel(&leader);
        assert_eq!(
            system.pull("ending_follower", 100).expect("pull"),
            5,
            "{store}"
        );

        leader.delete_stream(fido.id()).expect("delete");
        rex.add_trick("shake".into());
        leader.save(&mut rex).expect("save");
        assert_eq!(
            system.pull("ending_follower", 100).expect("pull"),
            2,
            "{store}"
        );
        assert_eq!(
            system.pull("ending_follower", 100).expect("pull"),
            0,
            "{store}"
        );

        let seen = seen.lock().unwrap().clone();
        let mut unique = seen.clone();
        unique.sort();
        unique.dedup();
        assert_eq!(
            unique.len(),
            seen.len(),
            "{store}: each event once: {seen:?}"
        );
        assert_eq!(seen.len(), 6, "{store}: {seen:?}");
        assert!(
            calls.lock().unwrap().iter().all(|t| !is_tombstone(t)),
            "{store}: the policy never got the tombstone"
        );
        let tracked = follower
            .recorder()
            .max_tracking_id("ending_leader")
            .expect("tracking");
        assert_eq!(
            Some(tracked),
            leader.last_notification_id().expect("last"),
            "{store}: the tombstone is tracked"
        );
        assert!(
            system.is_caught_up("ending_follower").expect("caught up"),
            "{store}"
        );
    }
}

/// An archive interrupted after the copy (here: the archive holds the
/// copy, or part of it, already) completes on a rerun; an archive that
/// holds another history under the id is an error, and nothing is
/// removed.
#[test]
fn a_rerun_after_an_interrupted_archive_completes_and_another_history_is_refused() {
    for (store, persistence) in every_store("ending_rerun") {
        let app = app("ending_rerun", store, persistence);
        let vault = Application::builder("Vault").build().expect("vault");
        let (fido, rex) = kennel(&app);
        let id = fido.id().to_stored();
        let events = stream(&app, &id);
        // Copied in part before the interruption.
        vault.recorder().insert_events(&events[..2]).expect("copy");
        let archive = Archive::new("vault", vault.recorder().clone());
        let ended = app.archive_stream(fido.id(), &archive).expect("rerun");
        assert_eq!((ended.removed, ended.copied), (3, 1), "{store}");
        assert_eq!(stream(&vault, &id), events, "{store}: each event once");

        // Another history under rex's id in the archive.
        let mut other = stream(&app, &rex.id().to_stored());
        other[0].state = b"{\"name\":\"Not Rex\"}".to_vec();
        vault.recorder().insert_events(&other[..1]).expect("plant");
        let refused = app.archive_stream(rex.id(), &archive).unwrap_err();
        assert!(
            matches!(refused, Error::Corrupt { .. }),
            "{store}: {refused:?}"
        );
        assert!(
            refused.to_string().contains("nothing was removed"),
            "{refused}"
        );
        assert_eq!(
            app.get::<Dog>(rex.id()).expect("rex is intact").tricks,
            ["beg"]
        );
    }
}

/// On SQLite: the removal fails after the copy (another writer holds the
/// database); the live stream is intact, and a rerun completes without
/// copying again.
#[test]
fn a_failure_between_the_copy_and_the_removal_leaves_the_stream_and_a_rerun_completes() {
    let path = temp_sqlite("ending_interrupted");
    let mut config = annals::persistence::sqlite::SqliteConfig::new(path.clone());
    config.lock_timeout = std::time::Duration::from_millis(50);
    let app = Application::builder("Kennel")
        .persistence(Persistence::Sqlite(config))
        .build()
        .expect("app");
    let vault_path = temp_sqlite("ending_interrupted_vault");
    let vault = Application::builder("Kennel")
        .sqlite(vault_path)
        .build()
        .expect("vault");
    let (fido, _) = kennel(&app);
    let id = fido.id().to_stored();
    let events = stream(&app, &id);

    let blocker = rusqlite::Connection::open(&path).expect("open");
    blocker
        .execute_batch("BEGIN IMMEDIATE")
        .expect("hold the write lock");
    let archive = Archive::new("vault", vault.recorder().clone());
    let failed = app.archive_stream(fido.id(), &archive).unwrap_err();
    assert!(failed.is_persistence(), "{failed:?}");
    assert_eq!(stream(&vault, &id), events, "copied before the failure");
    blocker.execute_batch("ROLLBACK").expect("release");
    assert_eq!(stream(&app, &id), events, "the live stream is intact");
    assert_eq!(app.get::<Dog>(fido.id()).expect("fido").tricks.len(), 2);

    let ended = app.archive_stream(fido.id(), &archive).expect("rerun");
    assert_eq!((ended.removed, ended.copied), (3, 0));
    assert_eq!(stream(&vault, &id), events);
    assert!(app.get::<Dog>(fido.id()).unwrap_err().is_stream_ended());
}

/// After a delete (which checkpoints the write-ahead log), none of the
/// deleted events' bytes is in the SQLite database file or its
/// write-ahead log.
#[test]
fn the_deleted_events_bytes_are_gone_from_the_sqlite_files() {
    let path = temp_sqlite("ending_erased");
    let app = Application::builder("Kennel")
        .sqlite(path.clone())
        .build()
        .expect("app");
    let secret = format!("secret-{}", Uuid::new_v4().simple());
    let mut dog = Dog::register(secret.clone());
    for i in 0..20 {
        dog.add_trick(format!("{secret}-trick-{i}"));
    }
    app.save(&mut dog).expect("save");
    let mut other = Dog::register("Rex".into());
    app.save(&mut other).expect("save");
    let scan = || -> bool {
        [path.clone(), format!("{path}-wal")].iter().any(|file| {
            std::fs::read(file)
                .is_ok_and(|bytes| bytes.windows(secret.len()).any(|w| w == secret.as_bytes()))
        })
    };
    let checkpoint = || {
        rusqlite::Connection::open(&path)
            .expect("open")
            .query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |_| Ok(()))
            .expect("checkpoint");
    };
    checkpoint();
    assert!(scan(), "the test's string is in the file before the delete");

    app.delete_stream(dog.id()).expect("delete");
    // No checkpoint here: the store checkpoints its write-ahead log after
    // the delete.
    assert!(
        !scan(),
        "a deleted event's bytes are still in {path} or its -wal"
    );
    assert_eq!(app.get::<Dog>(other.id()).expect("rex").name, "Rex");
}

/// `verify` of an ended stream says it ended; it is not broken.
#[test]
fn verify_of_an_ended_stream_says_it_ended() {
    let app = Application::builder("Kennel")
        .hash_chain(true)
        .build()
        .expect("app");
    let (fido, rex) = kennel(&app);
    app.delete_stream(fido.id()).expect("delete");
    let e = app.verify::<Dog>(fido.id()).unwrap_err();
    assert!(e.is_stream_ended(), "{e:?}");
    assert!(matches!(
        app.verify::<Dog>(rex.id()).expect("rex"),
        annals::Verification::Intact { events: 2 }
    ));
}

/// The object store's events are immutable: ending a stream there is a
/// configuration error naming PERSISTENCE_MODULE, and changes nothing.
#[test]
fn the_object_store_refuses_to_end_a_stream() {
    let dir = annals_tests::stores::temp_dir().join("ending_object");
    let app = Application::builder("Kennel")
        .persistence(Persistence::store(
            annals::persistence::object::ObjectConfig::location(dir.to_str().expect("utf-8")),
        ))
        .build()
        .expect("app");
    let (fido, _) = kennel(&app);
    let e = app.delete_stream(fido.id()).unwrap_err();
    assert!(
        matches!(&e, Error::Config { setting, .. } if setting == "PERSISTENCE_MODULE"),
        "{e:?}"
    );
    assert_eq!(app.get::<Dog>(fido.id()).expect("intact").tricks.len(), 2);
}

/// Under eventsourcing_django's tables (here made by hand in SQLite, as
/// its migration makes them), ending a stream of one application leaves
/// another application's stream of the same id as it was.
#[test]
fn under_django_tables_only_the_applications_rows_are_ended() {
    let file = temp_sqlite("ending_django");
    rusqlite::Connection::open(&file)
        .expect("open")
        .execute_batch(
            "CREATE TABLE stored_events (id integer NOT NULL PRIMARY KEY AUTOINCREMENT, \
                 application_name varchar(32) NOT NULL, originator_id char(32) NOT NULL, \
                 originator_version bigint NOT NULL, topic text NOT NULL, state blob NOT NULL, \
                 UNIQUE (application_name, originator_id, originator_version)); \
             CREATE TABLE snapshots (id integer NOT NULL PRIMARY KEY AUTOINCREMENT, \
                 application_name varchar(32) NOT NULL, originator_id char(32) NOT NULL, \
                 originator_version bigint NOT NULL, topic text NOT NULL, state blob NOT NULL, \
                 UNIQUE (application_name, originator_id, originator_version)); \
             CREATE TABLE notification_tracking (id integer NOT NULL PRIMARY KEY AUTOINCREMENT, \
                 application_name varchar(32) NOT NULL, upstream_application_name varchar(32) NOT NULL, \
                 notification_id bigint NOT NULL, \
                 UNIQUE (application_name, upstream_application_name, notification_id));",
        )
        .expect("the Django tables");
    let open = |name: &str| {
        let env = annals::env::Env::from_map(
            name,
            [
                ("PERSISTENCE_MODULE", "sqlite"),
                ("SQLITE_DBNAME", file.as_str()),
                ("DJANGO_TABLES", "yes"),
                ("CODEC", "python"),
            ],
        );
        Persistence::from_env(&env)
            .expect("settings")
            .expect("a store")
            .open(name)
            .unwrap_or_else(|e| panic!("{name}: {}", e.report()))
    };
    let (kennel, pound) = (open("Kennel"), open("Pound"));
    let id = Uuid::new_v4().to_string();
    let event = |version: u64| StoredEvent {
        originator_id: id.clone(),
        originator_version: version,
        topic: "dogs:Dog.Registered".into(),
        state: format!("{{\"v\":{version}}}").into_bytes(),
    };
    kennel
        .events
        .insert_events(&[event(1), event(2)])
        .expect("kennel");
    pound
        .events
        .insert_events(&[event(1), event(2), event(3)])
        .expect("pound");
    kennel
        .snapshots
        .insert_events(&[event(2)])
        .expect("kennel's snapshot");
    pound
        .snapshots
        .insert_events(&[event(2)])
        .expect("pound's snapshot");
    let pound_log = pound
        .events
        .select_notifications(&annals::persistence::NotificationQuery::new(1, 100))
        .expect("pound's log");

    let tombstone = Tombstone::deleted("2026-01-01T00:00:00Z").to_stored(&id, 3);
    let removed = kennel
        .events
        .end_stream(&id, Some(&tombstone))
        .expect("end");
    assert_eq!(removed, [event(1), event(2)]);
    kennel
        .snapshots
        .end_stream(&id, None)
        .expect("kennel's snapshots");

    let all = EventQuery::all();
    assert_eq!(
        kennel
            .events
            .select_events(&id, &all)
            .expect("kennel")
            .len(),
        1
    );
    assert_eq!(
        pound.events.select_events(&id, &all).expect("pound"),
        [event(1), event(2), event(3)]
    );
    assert!(kennel
        .snapshots
        .select_events(&id, &all)
        .expect("snapshots")
        .is_empty());
    assert_eq!(
        pound.snapshots.select_events(&id, &all).expect("snapshots"),
        [event(2)]
    );
    assert_eq!(
        pound
            .events
            .select_notifications(&annals::persistence::NotificationQuery::new(1, 100))
            .expect("pound's log"),
        pound_log,
        "the other application's log is as it was"
    );
}

/// A projection whose code refuses any topic it does not know (as one
/// matching every event of its log would) applies each event once and is
/// never given the tombstone, which it still tracks.
#[test]
fn a_projection_passes_over_the_tombstone_and_tracks_it() {
    use annals::rusqlite::Transaction;
    use annals::system::{Projection, Upstream};
    let leader = Arc::new(Application::builder("Kennel").build().expect("app"));
    let db = rusqlite::Connection::open_in_memory().expect("db");
    db.execute_batch("CREATE TABLE seen (id TEXT, version INTEGER, UNIQUE (id, version))")
        .expect("table");
    let names = Projection::new(
        "seen",
        leader.clone(),
        db,
        |up: &Upstream<'_>, tx: &mut Transaction<'_>| {
            let Some(event) = up.decode::<Dog>()? else {
                return Err(Error::user(std::io::Error::other(format!(
                    "a topic this projection does not know: {}",
                    up.topic()
                ))));
            };
            tx.execute(
                "INSERT INTO seen VALUES (?1, ?2)",
                (
                    event.originator_id.to_string(),
                    event.originator_version as i64,
                ),
            )
            .map_err(Error::user)?;
            Ok(())
        },
    )
    .expect("projection");
    let (fido, mut rex) = kennel(&leader);
    assert_eq!(names.pull().expect("pull"), 5);
    leader.delete_stream(fido.id()).expect("delete");
    rex.add_trick("shake".into());
    leader.save(&mut rex).expect("save");
    assert_eq!(names.pull().expect("pull past the tombstone"), 2);
    assert_eq!(names.pull().expect("pull"), 0);
    let rows: i64 = names
        .with_db(|db| db.query_row("SELECT COUNT(*) FROM seen", [], |r| r.get(0)))
        .expect("count");
    assert_eq!(rows, 6, "each event once, the tombstone not projected");
}
