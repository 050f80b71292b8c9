//! `get_as_of`: an aggregate as it was at a timestamp, on every store, with
//! and without snapshots, the cache and hash chains.

use annals::clock::{set_thread_clock, FixedClock};
use annals::prelude::*;
use annals::{Error, Persistence, Timestamp};
use annals_tests::stores::{every_store, temp_sqlite};
use serde::{Deserialize, Serialize};

#[aggregate]
#[derive(Debug, Clone, Serialize, Deserialize)]
struct Account {
    balance: i64,
}

#[aggregate]
impl Account {
    #[event("Opened")]
    fn open() -> Self {
        Account { balance: 0 }
    }

    #[event("Credited")]
    fn credit(&mut self, amount: i64) {
        self.balance += amount;
    }

    #[event("Closed", discard)]
    fn close(&mut self) {}
}

/// 2026-06-01 at `hour`:00 UTC.
fn at(hour: u32) -> Timestamp {
    format!("2026-06-01T{hour:02}:00:00Z")
        .parse()
        .expect("time")
}

/// Opens an account at 10:00 and credits it 1, 2, 4 and 8 at 11:00, 12:00,
/// 13:00 and 14:00, one save per event (so `snapshot_every(2)` takes
/// snapshots at versions 2 and 4).
fn history(app: &Application) -> Account {
    let mut account = {
        let _clock = set_thread_clock(FixedClock(at(10)));
        Account::open()
    };
    app.save(&mut account).expect("save");
    for (hour, amount) in [(11, 1), (12, 2), (13, 4), (14, 8)] {
        let _clock = set_thread_clock(FixedClock(at(hour)));
        account.credit(amount);
        app.save(&mut account).expect("save");
    }
    account
}

/// Every store, each without and with snapshots every 2 events of
/// `Account` (and a cache, which a historical read must not use).
fn apps(name: &str) -> Vec<(String, Application)> {
    let mut apps = Vec::new();
    for snapshots in [false, true] {
        let name = format!("{name}{}", if snapshots { "_snap" } else { "" });
        for (store, persistence) in every_store(&name) {
            let builder = Application::builder(&name)
                .persistence(persistence)
                .cache(10);
            let builder = if snapshots {
                builder.snapshot_every::<Account>(2)
            } else {
                builder
            };
            let label = format!("{store}, snapshots {snapshots}");
            apps.push((label, builder.build().expect("app")));
        }
    }
    let memory_sqlite = Application::builder(name)
        .sqlite(":memory:")
        .snapshot_every::<Account>(2)
        .build()
        .expect("app");
    apps.push(("sqlite :memory:, snapshots true".into(), memory_sqlite));
    apps
}

#[test]
fn as_of_a_time_between_events_gives_the_state_at_the_last_event_before_it() {
    for (label, app) in apps("as_of_between") {
        let account = history(&app);
        let id = account.id();
        if label.contains("snapshots true") {
            let versions = app.snapshots().expect("on").versions::<Account>(id);
            assert_eq!(versions.expect("versions"), [2, 4], "{label}");
        }
        // (time, balance, version): between events, and exactly at them.
        let expected = [
            (at(10), 0, 1),
            (at(11) - chrono::Duration::nanoseconds(1), 0, 1),
            (at(11), 1, 2),
            (at(12) + chrono::Duration::minutes(30), 3, 3),
            (at(13), 7, 4),
            (at(13) + chrono::Duration::minutes(59), 7, 4),
        ];
        for (time, balance, version) in expected {
            let then: Account = app.get_as_of(id, time).expect("as of");
            assert_eq!(
                (then.balance, then.version()),
                (balance, version),
                "{label} at {time}"
            );
            assert!(then.modified_on() <= time, "{label} at {time}");
            assert_eq!(then.created_on(), at(10), "{label}");
            let same = app.repository().get_as_of::<Account>(id, time);
            assert_eq!(same.expect("repository").version(), version, "{label}");
            let at_version: Account = app.get_at(id, version).expect("get_at");
            assert_eq!(at_version.modified_on(), then.modified_on(), "{label}");
        }
    }
}

#[test]
fn as_of_before_creation_is_not_found() {
    for (label, app) in apps("as_of_before") {
        let account = history(&app);
        let early = at(10) - chrono::Duration::nanoseconds(1);
        let err = app
            .get_as_of::<Account>(account.id(), early)
            .expect_err("not yet created");
        assert!(
            matches!(
                err,
                Error::NotFound {
                    aggregate: "Account",
                    ..
                }
            ),
            "{label}: {err}"
        );
        let err = app
            .get_as_of::<Account>(Uuid::new_v4(), at(23))
            .expect_err("never created");
        assert!(err.is_not_found(), "{label}: {err}");
    }
}

#[test]
fn as_of_at_or_after_the_last_event_equals_get() {
    for (label, app) in apps("as_of_after") {
        let account = history(&app);
        // The cache holds the current state: a historical read ignores it.
        let now: Account = app.get(account.id()).expect("get");
        assert_eq!((now.balance, now.version()), (15, 5), "{label}");
        for time in [at(14), at(23)] {
            let then: Account = app.get_as_of(account.id(), time).expect("as of");
            assert_eq!(
                (then.balance, then.version(), then.modified_on()),
                (now.balance, now.version(), now.modified_on()),
                "{label} at {time}"
            );
        }
        let then: Account = app.get_as_of(account.id(), at(12)).expect("as of");
        assert_eq!((then.balance, then.version()), (3, 3), "{label}, cached");
        let now: Account = app.get(account.id()).expect("get");
        assert_eq!(now.version(), 5, "{label}: the cache is untouched");
    }
}

#[test]
fn as_of_a_time_after_a_discarding_event_is_not_found() {
    for (label, app) in apps("as_of_discarded") {
        let mut account = history(&app);
        {
            let _clock = set_thread_clock(FixedClock(at(15)));
            account.close();
        }
        app.save(&mut account).expect("save");
        let err = app
            .get_as_of::<Account>(account.id(), at(16))
            .expect_err("closed by then");
        assert!(err.is_not_found(), "{label}: {err}");
        let before: Account = app.get_as_of(account.id(), at(14)).expect("open then");
        assert_eq!(before.version(), 5, "{label}");
    }
}

#[test]
fn reading_stops_at_the_first_event_stamped_later_even_if_a_later_one_is_earlier() {
    for (label, app) in apps("as_of_backwards") {
        // Versions 3 and 4 were stamped by a clock that was behind: 11:00
        // and 11:30, after version 2's 12:00. With snapshots, version 4's
        // (modified 11:30) must not stand for a time before 12:00.
        let half_past_11 = at(11) + chrono::Duration::minutes(30);
        let mut account = {
            let _clock = set_thread_clock(FixedClock(at(10)));
            Account::open()
        };
        app.save(&mut account).expect("save");
        for (time, amount) in [(at(12), 1), (at(11), 2), (half_past_11, 4), (at(13), 8)] {
            let _clock = set_thread_clock(FixedClock(time));
            account.credit(amount);
            app.save(&mut account).expect("save");
        }
        let id = account.id();
        let version = |time| app.get_as_of::<Account>(id, time).expect("as of").version();
        let quarter_to_12 = at(11) + chrono::Duration::minutes(45);
        assert_eq!(version(at(11)), 1, "{label}: stops at version 2 (12:00)");
        assert_eq!(version(quarter_to_12), 1, "{label}: not version 4 (11:30)");
        assert_eq!(version(at(12)), 4, "{label}: versions 3 and 4 follow");
        assert_eq!(version(at(13)), 5, "{label}");
    }
}

#[test]
fn a_long_stream_is_read_across_pages() {
    for (label, app) in apps("as_of_long") {
        let minute = |n: i64| at(10) + chrono::Duration::minutes(n);
        let mut account = {
            let _clock = set_thread_clock(FixedClock(minute(0)));
            Account::open()
        };
        for n in 1..=600 {
            let _clock = set_thread_clock(FixedClock(minute(n)));
            account.credit(1);
        }
        app.save(&mut account).expect("save");
        for n in [255, 256, 257, 511, 512, 599, 600, 700] {
            let then: Account = app.get_as_of(account.id(), minute(n)).expect("as of");
            let n = n.min(600);
            assert_eq!((then.balance, then.version()), (n, n as u64 + 1), "{label}");
        }
    }
}

/// The same history with hash chaining on, on a SQLite file.
fn chained(path: &str) -> Application {
    Application::builder("AsOfChain")
        .persistence(Persistence::Sqlite(
            annals::persistence::sqlite::SqliteConfig::new(path),
        ))
        .hash_chain(true)
        .snapshot_every::<Account>(2)
        .build()
        .expect("app")
}

#[test]
fn as_of_checks_the_hash_chain_up_to_the_event_it_stops_at() {
    let path = temp_sqlite("as_of_chain");
    let app = chained(&path);
    let account = history(&app);
    let then: Account = app.get_as_of(account.id(), at(12)).expect("intact");
    assert_eq!(then.version(), 3);
    // The state of version 4 (13:00) replaced by version 3's (12:00): a
    // read that stops before version 4 does not see it; one that reads it
    // (its timestamp is what decides where to stop) is an integrity error.
    let db = rusqlite::Connection::open(&path).expect("open");
    let changed = db
        .execute(
            "UPDATE stored_events SET state = (SELECT state FROM stored_events \
             WHERE originator_id = ?1 AND originator_version = 3) \
             WHERE originator_id = ?1 AND originator_version = 4",
            [account.id().simple().to_string()],
        )
        .expect("update");
    assert_eq!(changed, 1);
    let fresh = chained(&path);
    let then: Account = fresh.get_as_of(account.id(), at(11)).expect("before it");
    assert_eq!(then.version(), 2);
    for time in [at(12), at(13), at(23)] {
        let err = fresh
            .get_as_of::<Account>(account.id(), time)
            .expect_err("broken link");
        assert!(matches!(err, Error::Integrity { version: 4, .. }), "{err}");
    }
}
