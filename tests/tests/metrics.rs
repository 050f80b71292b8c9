//! Metrics (`annals::metrics`): what saves, conflicts, retried commands,
//! gets and followers record, read back from a debugging recorder. Each
//! test installs its recorder on its own thread only
//! (`metrics::with_local_recorder`), so tests running side by side do not
//! see each other's counts.

use std::sync::Arc;

use annals::metrics::{
    COMMAND_RETRIES, CONFLICTS, EVENTS_SAVED, FOLLOWER_LAG, FOLLOWER_POSITION, GET_SECONDS, SAVES,
    SAVE_SECONDS,
};
use annals::prelude::*;
use annals::system::{Policies, Projection, System, Upstream};
use metrics_util::debugging::{DebugValue, DebuggingRecorder, Snapshotter};

/// An account.
#[aggregate]
#[derive(Debug, Clone)]
pub struct Account {
    /// Its balance.
    pub balance: i64,
}

#[aggregate]
impl Account {
    /// Opens one.
    #[event("Opened")]
    pub fn open() -> Self {
        Account { balance: 0 }
    }

    /// Puts `amount` in.
    #[event("Deposited")]
    pub fn deposit(&mut self, amount: i64) {
        self.balance += amount;
    }
}

/// A receipt for an opened account.
#[aggregate]
#[derive(Debug, Clone)]
pub struct Receipt {
    /// The account's id.
    pub account: String,
}

#[aggregate]
impl Receipt {
    /// Issues one.
    #[event("Issued")]
    pub fn issue(account: String) -> Self {
        Receipt { account }
    }
}

/// A metric: name, labels (sorted), value.
type Metric = (String, Vec<(String, String)>, DebugValue);

/// A recorder and what it recorded so far.
struct Recorded {
    recorder: DebuggingRecorder,
    snapshotter: Snapshotter,
    /// The last snapshot.
    last: Vec<Metric>,
}

impl Recorded {
    fn new() -> Self {
        let recorder = DebuggingRecorder::new();
        let snapshotter = recorder.snapshotter();
        Self {
            recorder,
            snapshotter,
            last: Vec::new(),
        }
    }

    /// Runs `f` with the recorder as this thread's.
    fn run<T>(&self, f: impl FnOnce() -> T) -> T {
        metrics::with_local_recorder(&self.recorder, f)
    }

    /// Takes a snapshot (counters and gauges are reset by it, histograms
    /// emptied).
    fn snapshot(&mut self) -> &mut Self {
        self.last = self
            .snapshotter
            .snapshot()
            .into_vec()
            .into_iter()
            .map(|(key, _, _, value)| {
                let key = key.key();
                let mut labels: Vec<(String, String)> = key
                    .labels()
                    .map(|l| (l.key().to_owned(), l.value().to_owned()))
                    .collect();
                labels.sort();
                (key.name().to_owned(), labels, value)
            })
            .collect();
        self
    }

    /// The value of metric `name` with exactly `labels`.
    fn value(&self, name: &str, labels: &[(&str, &str)]) -> Option<&DebugValue> {
        let mut wanted: Vec<(String, String)> = labels
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
        wanted.sort();
        self.last
            .iter()
            .find(|(n, l, _)| n == name && *l == wanted)
            .map(|(_, _, v)| v)
    }

    fn counter(&self, name: &str, application: &str) -> u64 {
        match self.value(name, &[("application", application)]) {
            Some(DebugValue::Counter(n)) => *n,
            None => 0,
            other => panic!("{name} is not a counter: {other:?}"),
        }
    }

    /// How many values histogram `name` of `application` holds.
    fn observations(&self, name: &str, application: &str) -> usize {
        match self.value(name, &[("application", application)]) {
            Some(DebugValue::Histogram(values)) => values.len(),
            None => 0,
            other => panic!("{name} is not a histogram: {other:?}"),
        }
    }

    fn gauge(&self, name: &str, follower: &str, leader: &str) -> Option<f64> {
        match self.value(name, &[("follower", follower), ("leader", leader)]) {
            Some(DebugValue::Gauge(value)) => Some(value.into_inner()),
            None => None,
            other => panic!("{name} is not a gauge: {other:?}"),
        }
    }
}

#[test]
fn a_save_counts_one_save_and_its_events() {
    let mut recorded = Recorded::new();
    let app = recorded.run(|| Application::builder("Bank").build().expect("build"));
    let mut account = Account::open();
    account.deposit(10);
    account.deposit(5);
    app.save(&mut account).expect("save");
    app.save(&mut Account::open()).expect("save");
    // Nothing pending: no save.
    app.save(&mut account).expect("save");
    recorded.snapshot();
    assert_eq!(recorded.counter(SAVES, "Bank"), 2);
    assert_eq!(recorded.counter(EVENTS_SAVED, "Bank"), 4);
    assert_eq!(recorded.counter(CONFLICTS, "Bank"), 0);
    assert_eq!(recorded.observations(SAVE_SECONDS, "Bank"), 2);

    let got: Account = app.get(account.id()).expect("get");
    assert_eq!(got.balance, 15);
    assert!(app.get::<Account>(Uuid::new_v4()).is_err());
    recorded.snapshot();
    assert_eq!(
        recorded.observations(GET_SECONDS, "Bank"),
        2,
        "found or not"
    );
    assert_eq!(recorded.counter(SAVES, "Bank"), 0, "reset by the snapshot");
}

#[test]
fn metrics_go_to_the_recorder_installed_when_the_application_was_built() {
    let mut recorded = Recorded::new();
    let before = Application::builder("Before").build().expect("build");
    recorded.run(|| {
        let after = Application::builder("After").build().expect("build");
        after.save(&mut Account::open()).expect("save");
        before.save(&mut Account::open()).expect("save");
    });
    recorded.snapshot();
    assert_eq!(recorded.counter(SAVES, "After"), 1);
    assert_eq!(recorded.counter(SAVES, "Before"), 0);
}

#[test]
fn a_conflict_is_counted_and_not_as_a_save() {
    let mut recorded = Recorded::new();
    let app = recorded.run(|| Application::builder("Bank").build().expect("build"));
    let mut account = Account::open();
    app.save(&mut account).expect("save");
    let mut mine: Account = app.get(account.id()).expect("get");
    let mut theirs: Account = app.get(account.id()).expect("get");
    theirs.deposit(1);
    app.save(&mut theirs).expect("save");
    mine.deposit(2);
    mine.deposit(3);
    assert!(app.save(&mut mine).expect_err("conflict").is_conflict());
    recorded.snapshot();
    assert_eq!(recorded.counter(CONFLICTS, "Bank"), 1);
    assert_eq!(recorded.counter(SAVES, "Bank"), 2);
    assert_eq!(recorded.counter(EVENTS_SAVED, "Bank"), 2);
    assert_eq!(
        recorded.observations(SAVE_SECONDS, "Bank"),
        3,
        "the refused save is timed too"
    );
}

#[test]
fn a_command_run_again_after_a_conflict_counts_a_retry() {
    let mut recorded = Recorded::new();
    let app = recorded.run(|| Application::builder("Bank").build().expect("build"));
    let mut account = Account::open();
    app.save(&mut account).expect("save");
    let id = account.id();
    let mut tries = 0;
    app.execute(id, |account: &mut Account| {
        tries += 1;
        if tries == 1 {
            // Another writer (as another process would) stores first.
            let mut other: Account = app.get(id)?;
            other.deposit(1);
            app.save(&mut other)?;
        }
        account.deposit(10);
        Ok::<_, annals::Error>(())
    })
    .expect("execute");
    assert_eq!(tries, 2);
    assert_eq!(app.get::<Account>(id).expect("get").balance, 11);
    recorded.snapshot();
    assert_eq!(recorded.counter(COMMAND_RETRIES, "Bank"), 1);
    assert_eq!(recorded.counter(CONFLICTS, "Bank"), 1);
    // Opened, the other writer's, the command's second try.
    assert_eq!(recorded.counter(SAVES, "Bank"), 3);
    // Two tries, the other writer's, the check above.
    assert_eq!(recorded.observations(GET_SECONDS, "Bank"), 4);
}

#[test]
fn a_follower_records_its_position_and_lag_when_it_pulls() {
    let mut recorded = Recorded::new();
    let (bank, receipts) = recorded.run(|| {
        (
            Arc::new(Application::builder("Bank").build().expect("build")),
            Arc::new(Application::builder("Receipts").build().expect("build")),
        )
    });
    let policy = Policies::new().on::<Account>(|opened, processing| {
        if let AccountEvent::Opened {} = opened.event {
            processing.save(&mut Receipt::issue(opened.originator_id.to_string()))?;
        }
        Ok(())
    });
    let system = System::builder()
        .application(bank.clone())
        .process(receipts.clone(), policy)
        .pipe([&bank, &receipts])
        .build()
        .expect("system");
    for _ in 0..3 {
        bank.save(&mut Account::open()).expect("save");
    }
    let mut account = Account::open();
    account.deposit(1);
    bank.save(&mut account).expect("save");
    recorded.snapshot();

    // A full page: the leader is asked for its newest id.
    assert_eq!(
        recorded.run(|| system.pull("Receipts", 2)).expect("pull"),
        2
    );
    recorded.snapshot();
    assert_eq!(
        recorded.gauge(FOLLOWER_POSITION, "Receipts", "Bank"),
        Some(2.0)
    );
    assert_eq!(recorded.gauge(FOLLOWER_LAG, "Receipts", "Bank"), Some(3.0));
    assert_eq!(recorded.counter(SAVES, "Receipts"), 2);
    assert_eq!(recorded.counter(EVENTS_SAVED, "Receipts"), 2);

    // A short page: up to the leader's newest.
    assert_eq!(
        recorded.run(|| system.pull("Receipts", 10)).expect("pull"),
        3
    );
    recorded.snapshot();
    assert_eq!(
        recorded.gauge(FOLLOWER_POSITION, "Receipts", "Bank"),
        Some(5.0)
    );
    assert_eq!(recorded.gauge(FOLLOWER_LAG, "Receipts", "Bank"), Some(0.0));
    // The deposit caused nothing: a processed notification, not a save.
    assert_eq!(recorded.counter(SAVES, "Receipts"), 2);

    // Nothing new: still there (a snapshot reset the gauges to 0).
    assert_eq!(
        recorded.run(|| system.pull("Receipts", 10)).expect("pull"),
        0
    );
    recorded.snapshot();
    assert_eq!(
        recorded.gauge(FOLLOWER_POSITION, "Receipts", "Bank"),
        Some(5.0)
    );
    assert_eq!(recorded.gauge(FOLLOWER_LAG, "Receipts", "Bank"), Some(0.0));
}

fn count(event: &Upstream<'_>, tx: &mut annals::rusqlite::Transaction<'_>) -> annals::Result<()> {
    if event.decode::<Account>()?.is_some() {
        tx.execute("UPDATE seen SET n = n + 1", [])
            .map_err(annals::Error::user)?;
    }
    Ok(())
}

#[test]
fn a_projection_records_its_position_when_it_pulls() {
    let mut recorded = Recorded::new();
    let bank = Arc::new(Application::builder("Bank").build().expect("build"));
    let mut account = Account::open();
    account.deposit(1);
    account.deposit(2);
    bank.save(&mut account).expect("save");
    let db = annals::rusqlite::Connection::open_in_memory().expect("open");
    db.execute_batch("CREATE TABLE seen (n INTEGER); INSERT INTO seen VALUES (0)")
        .expect("table");
    let projection = Projection::new("seen", bank.clone(), db, count).expect("projection");
    assert_eq!(recorded.run(|| projection.pull()).expect("pull"), 3);
    recorded.snapshot();
    assert_eq!(recorded.gauge(FOLLOWER_POSITION, "seen", "Bank"), Some(3.0));
    assert_eq!(recorded.gauge(FOLLOWER_LAG, "seen", "Bank"), Some(0.0));
}

#[test]
fn describe_gives_units_and_help() {
    let recorder = DebuggingRecorder::new();
    let snapshotter = recorder.snapshotter();
    metrics::with_local_recorder(&recorder, || {
        annals::metrics::describe();
        metrics::counter!(SAVES, "application" => "Bank").increment(1);
        metrics::histogram!(SAVE_SECONDS, "application" => "Bank").record(0.5);
    });
    let described: Vec<_> = snapshotter
        .snapshot()
        .into_vec()
        .into_iter()
        .map(|(key, unit, help, _)| (key.key().name().to_owned(), unit, help.is_some()))
        .collect();
    assert!(described.contains(&(SAVES.to_owned(), Some(metrics::Unit::Count), true)));
    assert!(described.contains(&(SAVE_SECONDS.to_owned(), Some(metrics::Unit::Seconds), true)));
}
