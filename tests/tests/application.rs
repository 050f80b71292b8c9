//! Application, Repository and the mapper, on the in-memory store.

use std::sync::Arc;

use annals::env::Env;
use annals::persistence::memory::MemoryRecorder;
use annals::persistence::{AggregateRecorder, ProcessRecorder, StoredEvent};
use annals::prelude::*;
use annals::{CommandError, DomainEvent, Error};
use serde::{Deserialize, Serialize};

#[aggregate]
#[derive(Debug, Clone, Serialize, Deserialize)]
struct Account {
    balance: i64,
    closed: bool,
}

#[aggregate]
impl Account {
    #[event("Opened")]
    fn open() -> Self {
        Account {
            balance: 0,
            closed: false,
        }
    }

    #[event("Credited")]
    fn credit(&mut self, amount: i64) {
        self.balance += amount;
    }

    #[event("Closed", discard)]
    fn close(&mut self) {
        self.closed = true;
    }
}

fn app() -> Application {
    Application::builder("Bank").build().expect("app")
}

#[test]
fn save_then_get_rebuilds_the_aggregate_from_its_events() {
    let app = app();
    let mut account = Account::open();
    account.credit(10);
    account.credit(5);
    let ids = app.save(&mut account).expect("save");
    assert_eq!(ids, [1, 2, 3]);
    assert!(
        account.pending_events().is_empty(),
        "save clears pending events"
    );
    assert_eq!(
        app.save(&mut account).expect("nothing to save"),
        Vec::<u64>::new()
    );

    let copy: Account = app.repository().get(account.id()).expect("get");
    assert_eq!(copy.balance, 15);
    assert_eq!(copy.version(), 3);
    assert_eq!(copy.id(), account.id());
    assert_eq!(copy.created_on(), account.created_on());
    assert_eq!(copy.modified_on(), account.modified_on());
    assert!(copy.pending_events().is_empty());
}

#[test]
fn get_at_gives_historical_state() {
    let app = app();
    let mut account = Account::open();
    for amount in [1, 2, 3] {
        account.credit(amount);
    }
    app.save(&mut account).expect("save");
    let repo = app.repository();
    assert_eq!(
        repo.get_at::<Account>(account.id(), 1).expect("v1").balance,
        0
    );
    assert_eq!(
        repo.get_at::<Account>(account.id(), 3).expect("v3").balance,
        3
    );
    assert_eq!(
        repo.get_at::<Account>(account.id(), 3)
            .expect("v3")
            .version(),
        3
    );
    assert_eq!(
        repo.get_at::<Account>(account.id(), 99)
            .expect("v99")
            .balance,
        6
    );
    let err = repo
        .get_at::<Account>(account.id(), 0)
        .expect_err("before creation");
    assert!(err.is_not_found(), "{err}");
}

#[test]
fn not_found_is_a_clear_error() {
    let app = app();
    let id = Uuid::new_v4();
    let err = app
        .repository()
        .get::<Account>(id)
        .expect_err("nothing stored");
    assert!(err.is_not_found());
    assert_eq!(err.to_string(), format!("Account {id} not found"));
    assert!(!app.repository().contains::<Account>(id).expect("contains"));
}

#[test]
fn a_discarded_aggregate_is_not_found_but_its_events_stay() {
    let app = app();
    let mut account = Account::open();
    account.credit(3);
    app.save(&mut account).expect("save");
    assert!(app
        .repository()
        .contains::<Account>(account.id())
        .expect("contains"));
    account.close();
    app.save(&mut account).expect("save");
    assert!(app
        .repository()
        .get::<Account>(account.id())
        .expect_err("discarded")
        .is_not_found());
    assert!(!app
        .repository()
        .contains::<Account>(account.id())
        .expect("contains"));
    assert_eq!(app.notifications(1, 10).expect("log").len(), 3);
    let before: Account = app.repository().get_at(account.id(), 2).expect("history");
    assert_eq!(before.balance, 3);
}

#[test]
fn two_saves_from_the_same_version_one_wins_the_other_stores_nothing() {
    let app = app();
    let mut account = Account::open();
    app.save(&mut account).expect("save");
    let mut a: Account = app.repository().get(account.id()).expect("get");
    let mut b: Account = app.repository().get(account.id()).expect("get");
    a.credit(1);
    b.credit(100);
    b.credit(1000);
    app.save(&mut a).expect("first save wins");
    let err = app.save(&mut b).expect_err("second save conflicts");
    assert!(err.is_conflict(), "{err}");
    assert_eq!(
        b.pending_events().len(),
        2,
        "a failed save keeps pending events"
    );
    let stored: Account = app.repository().get(account.id()).expect("get");
    assert_eq!((stored.balance, stored.version()), (1, 2));
    assert_eq!(app.notifications(1, 10).expect("log").len(), 2);
}

#[test]
fn saving_several_aggregates_is_atomic() {
    let app = app();
    let mut x = Account::open();
    let mut y = Account::open();
    app.save((&mut x, &mut y)).expect("save two");
    let mut stale_y: Account = app.repository().get(y.id()).expect("get");
    y.credit(1);
    app.save(&mut y).expect("save");

    x.credit(5);
    stale_y.credit(7);
    let err = app.save((&mut x, &mut stale_y)).expect_err("y conflicts");
    assert!(err.is_conflict());
    assert_eq!(
        app.repository().get::<Account>(x.id()).expect("x").balance,
        0,
        "x's event not stored"
    );
    assert_eq!(x.pending_events().len(), 1);

    let mut many = vec![Account::open(), Account::open(), Account::open()];
    for a in &mut many {
        a.credit(2);
    }
    app.save(&mut many[..]).expect("save slice");
    let mut p = Account::open();
    let mut q = Account::open();
    app.save(vec![&mut p, &mut q]).expect("save vec");
    for id in many.iter().map(Account::id).chain([p.id(), q.id()]) {
        assert!(app.repository().contains::<Account>(id).expect("contains"));
    }
}

#[test]
fn application_is_shared_by_threads() {
    fn assert_send_sync<T: Send + Sync>() {}
    assert_send_sync::<Application>();
    let app = Arc::new(app());
    let handles: Vec<_> = (0..4)
        .map(|_| {
            let app = app.clone();
            std::thread::spawn(move || {
                let mut a = Account::open();
                a.credit(1);
                app.save(&mut a).expect("save");
                a.id()
            })
        })
        .collect();
    for h in handles {
        let id = h.join().expect("thread");
        assert_eq!(app.repository().get::<Account>(id).expect("get").balance, 1);
    }
    assert_eq!(app.notifications(1, 100).expect("log").len(), 8);
}

fn stored(topic: &str, state: &[u8]) -> StoredEvent {
    StoredEvent {
        originator_id: Uuid::nil().simple().to_string(),
        originator_version: 1,
        topic: topic.to_owned(),
        state: state.to_vec(),
    }
}

#[test]
fn an_unknown_topic_is_an_error_naming_topic_and_aggregate() {
    let app = app();
    let err = app
        .mapper()
        .decode::<Account>(&stored("Account.Vanished", b"{}"))
        .expect_err("unknown topic");
    assert!(matches!(err, Error::UnknownTopic { .. }));
    let message = err.to_string();
    assert!(
        message.contains("Account.Vanished") && message.contains("Account"),
        "{message}"
    );
}

#[test]
fn bytes_that_do_not_decode_are_an_error_naming_the_topic() {
    let app = app();
    for bad in [
        &b"not json"[..],
        b"{\"timestamp\":\"2026-01-01T00:00:00Z\"}",
        b"",
        b"{\"timestamp\":1}",
    ] {
        let err = app
            .mapper()
            .decode::<Account>(&stored("Account.Credited", bad))
            .expect_err("corrupt state");
        assert!(matches!(err, Error::Decode { .. }), "{err}");
        assert!(err.to_string().contains("Account.Credited"), "{err}");
    }
    let ok: DomainEvent<Account> = app
        .mapper()
        .decode(&stored(
            "Account.Credited",
            b"{\"timestamp\":\"2026-01-01T00:00:00Z\",\"amount\":4}",
        ))
        .expect("decodes");
    assert!(matches!(ok.event, AccountEvent::Credited { amount: 4 }));
    let err = app
        .mapper()
        .decode::<Account>(&StoredEvent {
            originator_id: "not-a-uuid".into(),
            ..stored(
                "Account.Opened",
                b"{\"timestamp\":\"2026-01-01T00:00:00Z\"}",
            )
        })
        .expect_err("bad id");
    assert!(err.to_string().contains("not-a-uuid"), "{err}");
}

#[test]
fn a_stream_that_does_not_begin_with_creation_is_corrupt() {
    let recorder = Arc::new(MemoryRecorder::new());
    let app = Application::builder("Bank")
        .recorder(recorder.clone())
        .build()
        .expect("app");
    let id = Uuid::new_v4();
    recorder
        .insert_events(&[StoredEvent {
            originator_id: id.simple().to_string(),
            ..stored(
                "Account.Credited",
                b"{\"timestamp\":\"2026-01-01T00:00:00Z\",\"amount\":4}",
            )
        }])
        .expect("insert");
    let err = app.repository().get::<Account>(id).expect_err("corrupt");
    assert!(matches!(err, Error::Corrupt { .. }), "{err}");
    assert!(err.to_string().contains("Credited"), "{err}");
}

#[test]
fn configuration_from_the_environment() {
    let env = Env::from_map("Bank", [("BANK_PERSISTENCE_MODULE", "memory")]);
    let app = Application::builder("Bank")
        .with_env(&env)
        .expect("memory")
        .build()
        .expect("app");
    assert_eq!(app.name(), "Bank");

    let env = Env::from_map("Bank", [("PERSISTENCE_MODULE", "cassandra")]);
    let err = Application::builder("Bank")
        .with_env(&env)
        .expect_err("unknown module");
    assert!(matches!(err, Error::Config { .. }));
    let message = err.to_string();
    assert!(
        message.contains("PERSISTENCE_MODULE") && message.contains("cassandra"),
        "{message}"
    );
}

/// Longer than a replay page (4,096 events): read in pages, on every
/// store, from the start, from a snapshot, at versions on either side of
/// a page's edge, and with a hash chain running across pages.
#[test]
fn a_stream_longer_than_a_page_replays_whole() {
    const EVENTS: u64 = 9_000;
    for (store, persistence) in annals_tests::stores::every_store("long_stream") {
        let app = Application::builder("long_stream")
            .persistence(persistence)
            .hash_chain(true)
            .snapshotting(true)
            .build()
            .unwrap_or_else(|e| panic!("{store}: {e}"));
        let mut account = Account::open();
        for _ in 1..EVENTS {
            account.credit(1);
        }
        app.save(&mut account).unwrap();
        let read = app.get::<Account>(account.id()).unwrap();
        assert_eq!(
            (read.version(), read.balance),
            (EVENTS, EVENTS as i64 - 1),
            "{store}"
        );
        for version in [4_096, 4_097, 8_192, 8_193] {
            let at = app.get_at::<Account>(account.id(), version).unwrap();
            assert_eq!(at.balance, version as i64 - 1, "{store} at {version}");
        }
        app.take_snapshot_at::<Account>(account.id(), 100).unwrap();
        let from_snapshot = app.get::<Account>(account.id()).unwrap();
        assert_eq!(from_snapshot.balance, EVENTS as i64 - 1, "{store}");
        assert!(matches!(
            app.verify::<Account>(account.id()).unwrap(),
            annals::Verification::Intact { events: EVENTS }
        ));
    }
}

/// A counter for the command tests.
#[aggregate]
#[derive(Debug)]
struct Counter {
    count: u64,
}

#[aggregate]
impl Counter {
    #[event("Started")]
    fn start() -> Self {
        Counter { count: 0 }
    }

    #[event("Counted")]
    fn counted(&mut self) {
        self.count += 1;
    }
}

/// Commands on one aggregate from many threads of one process run one
/// after another: none conflicts, even with a single try each (before,
/// most of them raced and failed with a conflict).
#[test]
fn commands_on_one_aggregate_in_one_process_never_conflict() {
    for persistence in [
        annals::Persistence::Memory,
        annals::Persistence::Sqlite(annals::persistence::sqlite::SqliteConfig::new(
            annals_tests::stores::temp_sqlite("commands"),
        )),
    ] {
        let app = Application::builder("Commands")
            .persistence(persistence)
            .build()
            .expect("app");
        let mut counter = Counter::start();
        app.save(&mut counter).expect("save");
        let id = counter.id();
        let failed = std::sync::atomic::AtomicUsize::new(0);
        std::thread::scope(|s| {
            for _ in 0..8 {
                s.spawn(|| {
                    for _ in 0..25 {
                        let one_try = app.execute_with_retries(id, 1, |c: &mut Counter| {
                            c.counted();
                            Ok::<_, std::convert::Infallible>(())
                        });
                        if one_try.is_err() {
                            failed.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                        }
                    }
                });
            }
        });
        assert_eq!(failed.into_inner(), 0, "no command conflicted");
        let counter: Counter = app.get(id).expect("get");
        assert_eq!((counter.count, counter.version()), (200, 201));
    }
}

/// What a keyed command answers: the balance after it, and a note that
/// shows whether an outcome's bytes are stored in the clear.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
struct Credited {
    balance: i64,
    note: String,
}

/// Every store the keyed-command tests run on: memory, a SQLite file,
/// PostgreSQL when configured, and the object store on a directory.
fn keyed_stores(app: &str) -> Vec<(&'static str, annals::Persistence)> {
    let mut stores = annals_tests::stores::every_store(app);
    let dir = annals_tests::stores::temp_dir().join(app);
    stores.push((
        "object",
        annals::Persistence::store(annals::persistence::object::ObjectConfig::location(
            dir.to_str().expect("a UTF-8 path"),
        )),
    ));
    stores
}

/// The events stored by `app`, counted (PostgreSQL's notification ids may
/// have gaps, so the log is read, not its last id).
fn events_stored(app: &Application) -> usize {
    app.notifications(1, 10_000).expect("the log").len()
}

/// A command retried with the same idempotency key returns the first
/// outcome without running again, and its events are stored once; another
/// key runs it again; a rejected command stores no key, so its retry runs.
#[test]
fn a_retried_command_with_the_same_key_returns_the_first_outcome_and_stores_once() {
    for (store, persistence) in keyed_stores("keyed_commands") {
        let app = Application::builder("keyed_commands")
            .persistence(persistence)
            .build()
            .unwrap_or_else(|e| panic!("{store}: {e}"));
        let mut account = Account::open();
        app.save(&mut account).expect("save");
        let id = account.id();
        let runs = std::sync::atomic::AtomicUsize::new(0);
        let credit = |key: &str, amount: i64| {
            app.execute_once(key, id, |a: &mut Account| {
                runs.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                if amount <= 0 {
                    return Err(format!("cannot credit {amount}"));
                }
                a.credit(amount);
                Ok(Credited {
                    balance: a.balance,
                    note: format!("credited {amount}"),
                })
            })
        };
        let first = credit("request-1", 10).unwrap_or_else(|e| panic!("{store}: {e}"));
        assert_eq!(first.balance, 10, "{store}");
        // The retry (with another amount, to show it is not run).
        let retried = credit("request-1", 99).expect("the retry");
        assert_eq!(retried, first, "{store}: the first outcome");
        assert_eq!(
            runs.load(std::sync::atomic::Ordering::SeqCst),
            1,
            "{store}: run once"
        );
        assert_eq!(app.get::<Account>(id).expect("get").balance, 10, "{store}");
        assert_eq!(events_stored(&app), 2, "{store}: opened, credited once");
        assert_eq!(
            app.outcome::<Credited>("request-1").expect("outcome"),
            Some(first),
            "{store}"
        );

        // Another key: another request, carried out.
        assert_eq!(
            credit("request-2", 5).expect("another key").balance,
            15,
            "{store}"
        );
        assert_eq!(events_stored(&app), 3, "{store}");

        // Rejected: nothing stored, no key; the retry runs the command again.
        let rejected = credit("request-3", -1);
        assert!(
            matches!(&rejected, Err(annals::CommandError::Rejected(why)) if why == "cannot credit -1"),
            "{store}: {rejected:?}"
        );
        assert_eq!(
            app.outcome::<Credited>("request-3").expect("outcome"),
            None,
            "{store}"
        );
        assert_eq!(
            credit("request-3", 1).expect("the retry runs").balance,
            16,
            "{store}"
        );
        assert_eq!(events_stored(&app), 4, "{store}");

        // A key whose outcome is of another type: a decode error, not a
        // second run.
        let reused = app.execute_once("request-1", id, |a: &mut Account| {
            a.credit(1);
            Ok::<_, String>(a.balance)
        });
        assert!(
            matches!(
                &reused,
                Err(annals::CommandError::Failed(Error::Decode { .. }))
            ),
            "{store}: {reused:?}"
        );
        assert_eq!(events_stored(&app), 4, "{store}");
    }
}

/// A command that records no event stores its key all the same: its
/// retry answers the first outcome.
#[test]
fn a_keyed_command_that_records_nothing_still_stores_its_key() {
    let app = app();
    let mut account = Account::open();
    app.save(&mut account).expect("save");
    let mut runs = 0;
    for _ in 0..2 {
        let balance = app
            .execute_once("look", account.id(), |a: &mut Account| {
                runs += 1;
                Ok::<_, String>(a.balance)
            })
            .expect("a command");
        assert_eq!(balance, 0);
    }
    assert_eq!(runs, 1);
    assert_eq!(app.outcome::<i64>("look").expect("outcome"), Some(0));
}

/// Outcomes are sealed as event states are: with a cipher key set, the
/// stored bytes do not show the output, and they open under their own key
/// only.
#[test]
fn outcomes_are_encrypted_like_event_states() {
    let recorder = Arc::new(MemoryRecorder::new());
    let app = Application::builder("Bank")
        .recorder(recorder.clone())
        .cipher_key(annals::cipher::create_key())
        .build()
        .expect("app");
    let mut account = Account::open();
    app.save(&mut account).expect("save");
    let outcome = app
        .execute_once("secret", account.id(), |a: &mut Account| {
            a.credit(7);
            Ok::<_, String>(Credited {
                balance: a.balance,
                note: "a plain text note".into(),
            })
        })
        .expect("command");
    let stored = recorder
        .select_outcome("secret")
        .expect("select")
        .expect("stored");
    assert!(
        !stored.windows(10).any(|w| w == b"plain text"),
        "the outcome is stored encrypted"
    );
    assert_eq!(
        app.outcome::<Credited>("secret").expect("open"),
        Some(outcome)
    );
    // Moved to another key, it does not open.
    recorder
        .insert_events_keyed(
            &[],
            None,
            &annals::persistence::KeyedOutcome {
                key: "moved".into(),
                outcome: stored,
            },
        )
        .expect("insert");
    let moved = app.outcome::<Credited>("moved");
    assert!(matches!(moved, Err(Error::Decode { .. })), "{moved:?}");
}

/// Two applications on one SQLite file (as two processes would be, each
/// with its own command locks) run the same keyed command from 4 threads
/// each at once: it is applied once, and every call answers its outcome.
/// Other keys in the same race are each applied once.
#[test]
fn concurrent_same_key_commands_from_two_applications_on_one_sqlite_file_apply_once() {
    let db = annals_tests::stores::temp_sqlite("keyed_race");
    let open = || {
        Application::builder("Keyed")
            .sqlite(db.clone())
            .build()
            .expect("app")
    };
    let (a, b) = (open(), open());
    let mut counter = Counter::start();
    a.save(&mut counter).expect("save");
    let id = counter.id();
    let runs = std::sync::atomic::AtomicUsize::new(0);
    let barrier = std::sync::Barrier::new(8);
    let answers: Vec<Vec<u64>> = std::thread::scope(|s| {
        let threads: Vec<_> = (0..8)
            .map(|t| {
                let (app, runs, barrier) = (if t % 2 == 0 { &a } else { &b }, &runs, &barrier);
                s.spawn(move || {
                    barrier.wait();
                    (0..5)
                        .map(|k| {
                            app.execute_once(&format!("key-{k}"), id, |c: &mut Counter| {
                                runs.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                                c.counted();
                                Ok::<_, String>(c.count)
                            })
                            .unwrap_or_else(|e| panic!("thread {t}, key {k}: {e}"))
                        })
                        .collect()
                })
            })
            .collect();
        threads
            .into_iter()
            .map(|t| t.join().expect("thread"))
            .collect()
    });
    let counter: Counter = b.get(id).expect("get");
    assert_eq!(counter.count, 5, "each of the 5 keys applied once");
    assert_eq!(events_stored(&a), 6);
    for k in 0..5 {
        let outcome: u64 = a
            .outcome(&format!("key-{k}"))
            .expect("outcome")
            .expect("stored");
        for (t, thread) in answers.iter().enumerate() {
            assert_eq!(thread[k], outcome, "thread {t}, key-{k}: the first outcome");
        }
    }
    // Runs that lost a race (their save conflicted) are not stored.
    assert!(runs.into_inner() >= 5);
}

// ---- Events as values: record, from_event, decide. -------------------------

/// Events given as values are stored as the methods store them, and the
/// aggregate built from them replays equal.
#[test]
fn events_recorded_as_values_are_the_methods_events() {
    let app = app();
    let mut by_value = Account::from_event(AccountEvent::Opened {}).expect("create");
    by_value
        .record(AccountEvent::Credited { amount: 5 })
        .expect("record");
    let mut by_method = Account::open();
    by_method.credit(5);
    for account in [&mut by_value, &mut by_method] {
        assert_eq!((account.balance, account.version()), (5, 2));
        app.save(&mut *account).expect("save");
    }
    let stored = |id: Uuid| -> Vec<(String, serde_json::Value)> {
        let events = app
            .recorder()
            .select_events(&id.to_string(), &annals::persistence::EventQuery::all())
            .expect("select");
        events
            .iter()
            .map(|e| {
                let mut state: serde_json::Value = serde_json::from_slice(&e.state).expect("JSON");
                state
                    .as_object_mut()
                    .expect("an object")
                    .remove("timestamp");
                (e.topic.clone(), state)
            })
            .collect()
    };
    assert_eq!(stored(by_value.id()), stored(by_method.id()));
    let copy: Account = app.get(by_value.id()).expect("get");
    assert_eq!((copy.balance, copy.version()), (5, 2));
}

#[test]
fn an_event_given_where_it_cannot_go_is_refused_and_records_nothing() {
    let mut account = Account::open();
    let error = account
        .record(AccountEvent::Opened {})
        .expect_err("an account is opened once");
    assert!(
        matches!(
            &error,
            Error::WrongEvent {
                aggregate: "Account",
                event: "Opened",
                ..
            }
        ),
        "{error:?}"
    );
    assert_eq!((account.version(), account.pending_events().len()), (1, 1));
    let error = Account::from_event(AccountEvent::Credited { amount: 1 })
        .expect_err("a credit creates no account");
    assert!(
        error.to_string().contains("Credited") && error.to_string().contains("record it"),
        "{error}"
    );
}

/// A decider on a store shared with another process: the other saves
/// between this decision's load and its save; the save conflicts, and the
/// decision runs again on the state reloaded.
#[test]
fn a_decision_that_conflicts_is_decided_again_on_the_state_reloaded() {
    let path = annals_tests::stores::temp_sqlite("decide_conflict");
    let open = || {
        Application::builder("Bank")
            .sqlite(path.clone())
            .build()
            .expect("app")
    };
    let (here, there) = (open(), open());
    let mut account = Account::open();
    here.save(&mut account).expect("save");
    let mut seen = Vec::new();
    let version = here
        .decide(account.id(), |a: &Account| {
            seen.push(a.balance);
            if seen.len() == 1 {
                there
                    .execute(a.id(), |other: &mut Account| {
                        other.credit(100);
                        Ok::<_, String>(())
                    })
                    .expect("the other process credits first");
            }
            // At most one withdrawal of the whole balance.
            Ok::<_, String>(vec![AccountEvent::Credited { amount: -a.balance }])
        })
        .expect("decided");
    assert_eq!(seen, [0, 100], "decided again on the reloaded state");
    assert_eq!(version, 3);
    assert_eq!(here.get::<Account>(account.id()).expect("get").balance, 0);

    // A decided creation event fails the decision: nothing is saved.
    let error = here
        .decide(account.id(), |_: &Account| {
            Ok::<_, String>(vec![AccountEvent::Opened {}])
        })
        .expect_err("an account is opened once");
    assert!(
        matches!(error, CommandError::Failed(Error::WrongEvent { .. })),
        "{error:?}"
    );
    assert_eq!(here.get::<Account>(account.id()).expect("get").version(), 3);
}
