//! The standard workload (`docs/workload.md`): sizes, values,
//! the interface every system under test implements, and the checks.

use std::time::Duration;

use serde::{Deserialize, Serialize};

/// Errors of the benchmark: a store failed or a check did not hold.
pub(crate) type Error = Box<dyn std::error::Error + Send + Sync>;
/// The benchmark's result type.
pub(crate) type Res<T> = std::result::Result<T, Error>;

/// A failed check, as an error.
pub(crate) fn fail<T>(message: String) -> Res<T> {
    Err(message.into())
}

/// The workload's sizes (WORKLOAD.md's defaults at scale 1).
#[derive(Debug, Clone, Copy, Serialize, Deserialize)]
pub(crate) struct Sizes {
    /// W1/W2: aggregates written, then read.
    pub aggregates: usize,
    /// W1: events per aggregate (the Registered event included).
    pub events: usize,
    /// W3: notifications per page.
    pub page: usize,
    /// W4: events in the long stream.
    pub long: usize,
    /// W4: events per save.
    pub long_batch: usize,
    /// W5: number of batch saves.
    pub batches: usize,
    /// W5: new aggregates per batch save.
    pub batch: usize,
    /// Concurrent W1: writer threads.
    pub threads: usize,
    /// Every annals application with its snapshot store on (W4's always
    /// is): each get looks for a snapshot first, as an application that
    /// snapshots does.
    #[serde(default)]
    pub snapshotting: bool,
}

impl Sizes {
    /// WORKLOAD.md's sizes.
    pub(crate) const STANDARD: Sizes = Sizes {
        aggregates: 2000,
        events: 10,
        page: 1000,
        long: 10_000,
        long_batch: 100,
        batches: 20,
        batch: 100,
        threads: 8,
        snapshotting: false,
    };

    /// Tiny sizes that prove the harness works.
    pub(crate) const QUICK: Sizes = Sizes {
        aggregates: 40,
        events: 10,
        page: 100,
        long: 300,
        long_batch: 100,
        batches: 3,
        batch: 20,
        threads: 8,
        snapshotting: false,
    };

    /// Events written by W1.
    pub(crate) fn w1_events(&self) -> usize {
        self.aggregates * self.events
    }
}

/// `name(i)`: `dog-` and `i` in 6 digits.
pub(crate) fn name(i: usize) -> String {
    format!("dog-{i:06}")
}

/// `trick(j)`: `trick-`, `j` in 4 digits, `-roll-over`.
pub(crate) fn trick(j: usize) -> String {
    format!("trick-{j:04}-roll-over")
}

/// What one W4 run measured.
#[derive(Debug, Clone, Copy)]
pub(crate) struct W4 {
    /// Writing the long stream.
    pub write: Duration,
    /// One get without a snapshot.
    pub get_nosnap: Duration,
    /// One get from the snapshot.
    pub get_snap: Duration,
}

/// One system on one store: the workloads, each on the fresh store that
/// [`crate::open`] made for its group. Each method times its loop only and
/// checks its result afterwards, returning an error if it is wrong.
pub(crate) trait Sut {
    /// W1: aggregate by aggregate, one event per save.
    fn w1(&mut self, sizes: &Sizes) -> Res<Duration>;
    /// W2: get every aggregate W1 wrote.
    fn w2(&mut self, sizes: &Sizes) -> Res<Duration>;
    /// W3: read every notification in pages.
    fn w3(&mut self, sizes: &Sizes) -> Res<Duration>;
    /// W4: one long stream; get it without and with a snapshot.
    fn w4(&mut self, sizes: &Sizes) -> Res<W4>;
    /// W5: batches of new aggregates, one save per batch.
    fn w5(&mut self, sizes: &Sizes) -> Res<Duration>;
    /// W1 with `sizes.threads` writers, each with its own aggregates.
    fn w1_concurrent(&mut self, sizes: &Sizes) -> Res<Duration>;
}

/// Checks one aggregate read back by W2 or W4.
pub(crate) fn check_dog(
    what: &str,
    i: usize,
    dog_name: &str,
    tricks: &[String],
    version: u64,
    events: usize,
) -> Res<()> {
    if dog_name != name(i) {
        return fail(format!(
            "{what}: aggregate {i} has name {dog_name:?}, expected {:?}",
            name(i)
        ));
    }
    if version != events as u64 {
        return fail(format!(
            "{what}: aggregate {i} has version {version}, expected {events}"
        ));
    }
    if tricks.len() != events - 1 {
        return fail(format!(
            "{what}: aggregate {i} has {} tricks, expected {}",
            tricks.len(),
            events - 1
        ));
    }
    for (j, t) in tricks.iter().enumerate() {
        if *t != trick(j + 1) {
            return fail(format!(
                "{what}: aggregate {i} trick {j} is {t:?}, expected {:?}",
                trick(j + 1)
            ));
        }
    }
    Ok(())
}

/// Checks that notification ids are exactly 1..=n.
pub(crate) fn check_ids(what: &str, ids: impl Iterator<Item = u64>, n: usize) -> Res<()> {
    let mut count = 0usize;
    for (k, id) in ids.enumerate() {
        if id != k as u64 + 1 {
            return fail(format!(
                "{what}: notification {k} has id {id}, expected {}",
                k + 1
            ));
        }
        count += 1;
    }
    if count != n {
        return fail(format!("{what}: read {count} notifications, expected {n}"));
    }
    Ok(())
}

/// Checks a count of stored events.
pub(crate) fn check_count(what: &str, found: u64, expected: usize) -> Res<()> {
    if found != expected as u64 {
        return fail(format!(
            "{what}: {found} events stored, expected {expected}"
        ));
    }
    Ok(())
}
