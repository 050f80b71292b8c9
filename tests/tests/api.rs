//! The application's user-facing API: commands with retry, typed gets,
//! `contains` from the store, batches of any aggregates, snapshots listed,
//! one log API, and errors that say which aggregate they are about.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use annals::persistence::NotificationQuery;
use annals::prelude::*;
use annals::{Batch, CommandError, Error};
use serde::{Deserialize, Serialize};

#[aggregate]
#[derive(Debug, Clone, Serialize, Deserialize)]
struct Account {
    balance: i64,
}

/// Why an account refuses a withdrawal: the user's own error type.
#[derive(Debug, PartialEq, Eq)]
enum Refusal {
    InsufficientFunds { balance: i64, asked: i64 },
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

    #[event("Debited")]
    fn debited(&mut self, amount: i64) {
        self.balance -= amount;
    }

    #[event("Closed", discard)]
    fn close(&mut self) {}

    fn withdraw(&mut self, amount: i64) -> Result<(), Refusal> {
        if amount > self.balance {
            return Err(Refusal::InsufficientFunds {
                balance: self.balance,
                asked: amount,
            });
        }
        self.debited(amount);
        Ok(())
    }
}

#[aggregate]
#[derive(Debug)]
struct Card {
    #[expect(
        dead_code,
        reason = "state the events build; the test reads only the events"
    )]
    number: String,
}

#[aggregate]
impl Card {
    #[event("Issued")]
    fn issue(number: String) -> Self {
        Card { number }
    }
}

fn bank() -> Application {
    Application::builder("Bank")
        .snapshotting(true)
        .build()
        .expect("app")
}

fn opened(app: &Application, balance: i64) -> Uuid {
    let mut account = Account::open();
    account.credit(balance);
    app.save(&mut account).expect("save");
    account.id()
}

#[test]
fn execute_runs_the_command_and_saves_what_it_recorded() {
    let app = bank();
    let id = opened(&app, 10);
    app.execute(id, |a: &mut Account| a.withdraw(4))
        .expect("withdraw");
    let account = app.get::<Account>(id).expect("get");
    assert_eq!((account.balance, account.version()), (6, 3));
}

#[test]
fn a_rejected_command_returns_the_users_error_typed_and_saves_nothing() {
    let app = bank();
    let id = opened(&app, 10);
    let err = app
        .execute(id, |a: &mut Account| a.withdraw(50))
        .expect_err("refused");
    match err {
        CommandError::Rejected(Refusal::InsufficientFunds { balance, asked }) => {
            assert_eq!((balance, asked), (10, 50));
        }
        CommandError::Failed(e) => panic!("expected the refusal, got {e}"),
    }
    assert_eq!(app.get::<Account>(id).expect("get").version(), 2);
}

#[test]
fn a_conflicting_command_is_loaded_again_and_retried() {
    let app = bank();
    let id = opened(&app, 10);
    let runs = AtomicUsize::new(0);
    app.execute(id, |a: &mut Account| {
        if runs.fetch_add(1, Ordering::SeqCst) == 0 {
            // Another writer saves between this command's load and save.
            let mut other: Account = app.get(id).expect("get");
            other.credit(100);
            app.save(&mut other).expect("the other save");
        }
        a.withdraw(5)
    })
    .expect("the second try, on the reloaded account, saves");
    assert_eq!(runs.load(Ordering::SeqCst), 2);
    let account = app.get::<Account>(id).expect("get");
    assert_eq!((account.balance, account.version()), (105, 4));
}

#[test]
fn a_command_that_always_conflicts_fails_after_its_tries_with_a_conflict() {
    let app = bank();
    let id = opened(&app, 10);
    let runs = AtomicUsize::new(0);
    let err = app
        .execute_with_retries(id, 2, |a: &mut Account| {
            runs.fetch_add(1, Ordering::SeqCst);
            let mut other: Account = app.get(id).expect("get");
            other.credit(1);
            app.save(&mut other).expect("the other save");
            a.withdraw(1)
        })
        .expect_err("conflicts every time");
    assert_eq!(runs.load(Ordering::SeqCst), 2);
    match err {
        CommandError::Failed(e) => assert!(e.is_conflict(), "{e}"),
        CommandError::Rejected(r) => panic!("{r:?}"),
    }
}

#[test]
fn a_command_on_a_missing_aggregate_is_not_found() {
    let app = bank();
    let err = app
        .execute(Uuid::new_v4(), |a: &mut Account| a.withdraw(1))
        .expect_err("missing");
    assert!(matches!(err, CommandError::Failed(e) if e.is_not_found()));
}

#[test]
fn get_and_get_at_need_no_annotation_and_contains_answers_from_the_last_event() {
    let app = bank();
    let id = opened(&app, 10);
    assert_eq!(app.get_at::<Account>(id, 1).expect("v1").balance, 0);
    assert!(app.contains::<Account>(id).expect("contains"));
    assert!(!app.contains::<Account>(Uuid::new_v4()).expect("contains"));
    let mut account: Account = app.get(id).expect("get");
    account.close();
    app.save(&mut account).expect("close");
    assert!(!app.contains::<Account>(id).expect("discarded"));
}

#[test]
fn a_stream_read_as_the_wrong_aggregate_type_names_its_owner() {
    let app = bank();
    let mut card = Card::issue("4000".into());
    app.save(&mut card).expect("save");
    let err = app.get::<Account>(card.id()).expect_err("a card");
    let shown = err.to_string();
    assert!(
        shown.contains("belongs to another aggregate type (Card)") && shown.contains("Account"),
        "{shown}"
    );
    assert!(app.contains::<Account>(card.id()).is_err());
}

#[test]
fn a_batch_saves_aggregates_of_any_types_atomically() {
    let app = bank();
    let mut accounts: Vec<Account> = (0..3).map(|_| Account::open()).collect();
    let mut card = Card::issue("4000".into());
    let mut batch = Batch::new();
    for account in &mut accounts {
        batch.push(account);
    }
    batch.push(&mut card);
    assert_eq!(batch.len(), 4);
    assert_eq!(app.save(batch).expect("save"), [1, 2, 3, 4]);
    assert!(card.pending_events().is_empty());

    // One member conflicting stores none of them.
    let mut stale: Account = app.get(accounts[0].id()).expect("get");
    accounts[0].credit(1);
    app.save(&mut accounts[0]).expect("save");
    stale.credit(2);
    let mut fresh = Card::issue("5000".into());
    let mut batch = Batch::new();
    batch.push(&mut fresh);
    batch.push(&mut stale);
    assert!(app.save(batch).expect_err("stale").is_conflict());
    assert!(!app.contains::<Card>(fresh.id()).expect("contains"));
    assert_eq!(fresh.pending_events().len(), 1, "kept for a retry");
}

#[test]
fn snapshots_are_listed_oldest_first() {
    let app = bank();
    let id = opened(&app, 10);
    app.take_snapshot::<Account>(id).expect("snapshot at 2");
    app.execute(id, |a: &mut Account| a.withdraw(1))
        .expect("withdraw");
    app.take_snapshot::<Account>(id).expect("snapshot at 3");
    app.take_snapshot_at::<Account>(id, 1)
        .expect("snapshot at 1");
    let snapshots = app.snapshots().expect("on");
    assert_eq!(
        snapshots.versions::<Account>(id).expect("versions"),
        [1, 2, 3]
    );
    let listed: Vec<(u64, i64)> = snapshots
        .list::<Account>(id)
        .expect("list")
        .iter()
        .map(|a| (a.version(), a.balance))
        .collect();
    assert_eq!(listed, [(1, 0), (2, 10), (3, 9)]);
}

#[test]
fn the_log_is_read_through_the_application() {
    let app = bank();
    assert_eq!(app.last_notification_id().expect("empty"), None);
    let id = opened(&app, 10);
    app.execute(id, |a: &mut Account| a.withdraw(3))
        .expect("withdraw");
    assert_eq!(app.last_notification_id().expect("last"), Some(3));
    let debits = app
        .select_notifications(&NotificationQuery::new(1, 10).topics(["Account.Debited"]))
        .expect("select");
    assert_eq!(debits.iter().map(|n| n.id).collect::<Vec<_>>(), [3]);
    let first_two = app
        .select_notifications(&NotificationQuery::new(1, 10).stop(2))
        .expect("select");
    assert_eq!(first_two.len(), 2);
    let read: Vec<u64> = app
        .log_reader()
        .page_size(1)
        .read(2)
        .map(|n| n.expect("read").id)
        .collect();
    assert_eq!(read, [2, 3]);

    let subscription = app.subscribe(3, &[]).expect("subscribe");
    let stopper = subscription.stopper();
    let seen = std::thread::scope(|s| {
        let reader = s.spawn(move || {
            subscription
                .take(2)
                .map(|n| n.expect("notification").id)
                .collect::<Vec<_>>()
        });
        std::thread::sleep(Duration::from_millis(20));
        opened(&app, 1);
        let seen = reader.join().expect("reader");
        stopper.stop();
        seen
    });
    assert_eq!(seen, [3, 4]);
}

#[test]
fn a_conflict_says_which_aggregate_and_version_in_the_ids_display_form() {
    let app = bank();
    let id = opened(&app, 10);
    let mut first: Account = app.get(id).expect("get");
    let mut second: Account = app.get(id).expect("get");
    first.credit(1);
    app.save(&mut first).expect("first");
    second.credit(2);
    match app.save(&mut second).expect_err("conflict") {
        Error::Conflict {
            aggregate,
            id: conflicting,
            version,
            ..
        } => {
            assert_eq!(aggregate, Some("Account"));
            assert_eq!(conflicting, Some(id.to_string()));
            assert_eq!(version, Some(3));
        }
        other => panic!("expected a conflict, got {other}"),
    }
    let shown = app
        .save(&mut second)
        .expect_err("still a conflict")
        .to_string();
    assert!(
        shown.contains(&format!("(Account {id} at version 3)")),
        "{shown}"
    );
}

#[test]
fn errors_show_their_sources_once_and_report_shows_the_chain() {
    let err = Error::persistence("writing", std::io::Error::other("disk full"));
    assert_eq!(err.to_string(), "persistence: writing");
    assert_eq!(
        std::error::Error::source(&err).map(ToString::to_string),
        Some("disk full".to_owned())
    );
    assert_eq!(err.report().to_string(), "persistence: writing: disk full");

    let user = Error::user(std::io::Error::other("the warehouse is closed"));
    assert_eq!(user.to_string(), "the warehouse is closed");
    assert!(user.user_error::<std::io::Error>().is_some());
    assert!(user.user_error::<std::fmt::Error>().is_none());
}

#[test]
fn typed_policies_get_their_types_events_decoded_and_let_others_pass() {
    use annals::system::{Policies, SingleThreadedRunner, System};
    use std::sync::{Arc, Mutex};

    let bank = Arc::new(bank());
    let audit = Arc::new(Application::builder("Audit").build().expect("app"));
    let seen = Arc::new(Mutex::new(Vec::new()));
    let (on_account, on_card) = (seen.clone(), seen.clone());
    let policy = Policies::new()
        .on::<Account>(move |event, _| {
            if let AccountEvent::Credited { amount } = &event.event {
                on_account
                    .lock()
                    .expect("lock")
                    .push(format!("credit {amount}"));
            }
            Ok(())
        })
        .on::<Card>(move |event, _| {
            let CardEvent::Issued { number } = &event.event;
            on_card.lock().expect("lock").push(format!("card {number}"));
            Ok(())
        });
    let system = Arc::new(
        System::builder()
            .application(bank.clone())
            .process(audit.clone(), policy)
            .pipe([&bank, &audit])
            .build()
            .expect("system"),
    );
    opened(&bank, 7);
    bank.save(&mut Card::issue("4000".into())).expect("card");
    assert_eq!(SingleThreadedRunner::new(system).run().expect("run"), 3);
    assert_eq!(*seen.lock().expect("lock"), ["credit 7", "card 4000"]);
}
