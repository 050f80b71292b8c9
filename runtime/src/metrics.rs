//! Metrics, through the [`metrics`](https://docs.rs/metrics) facade: annals
//! records, the application installs a recorder (an exporter) of its
//! choice, or none.
//!
//! annals depends on `metrics` 0.24 and installs nothing: with no recorder
//! every metric is a no-op. An application that wants them installs a
//! recorder of that version (Prometheus:
//! [`metrics-exporter-prometheus`](https://docs.rs/metrics-exporter-prometheus),
//! as the bank example does) **before it builds its applications**: an
//! application registers its counters and histograms once, when it is
//! built, with the recorder installed then (the global one, or
//! [`metrics::with_local_recorder`](https://docs.rs/metrics/0.24/metrics/fn.with_local_recorder.html)'s
//! on the building thread; `AsyncApplication::build` builds on tokio's
//! blocking pool, which sees only the global one), so a save costs an
//! increment of a handle, not a look-up by name. The followers' gauges are looked up when a follower
//! pulls, in the recorder current then.
//!
//! The facade is always on, not a feature: without a recorder a handle is
//! a no-op, and what annals adds to a save or a get is two clock readings
//! (`Instant::now`), tens of nanoseconds against the microseconds of the
//! store's round trip; the `metrics` crate itself is small.
//!
//! | metric | type | labels | meaning |
//! |---|---|---|---|
//! | `annals_saves_total` | counter | `application` | saves that stored events: `save`, `save_with`, `save_and_write` (also with no events), and a process application's processing of a notification that caused events |
//! | `annals_events_saved_total` | counter | `application` | events those saves stored |
//! | `annals_conflicts_total` | counter | `application` | saves refused by a conflict ([`Error::Conflict`](crate::Error::Conflict)), those of commands and followers included |
//! | `annals_command_retries_total` | counter | `application` | commands of [`execute`](crate::Application::execute) run again after a conflict |
//! | `annals_save_seconds` | histogram | `application` | how long each of those saves took, from encoding to the store's answer, refused and failed ones included (not one whose events did not encode; a process application's: its transaction) |
//! | `annals_get_seconds` | histogram | `application` | how long a `get` or `get_at` (so also each try of `execute`) or `get_as_of` took, found or not |
//! | `annals_follower_position` | gauge | `follower`, `leader` | the last notification id of `leader` that `follower` (a process application or a projection) has processed, set when it pulls |
//! | `annals_follower_lag` | gauge | `follower`, `leader` | notifications of `leader` not processed yet by `follower` (its newest notification id minus the position), set when it pulls |
//!
//! The lag is known when a follower pulls: a pull that read fewer
//! notifications than it asked for read up to the leader's newest, so its
//! lag is what it left unprocessed (0 unless it failed); after a full page
//! the leader's newest id is asked for (one query per full page).
//!
//! [`describe`] gives each metric its unit and help text; building an
//! application calls it, for the recorder installed then.
//!
//! ```
//! use annals::prelude::*;
//! use metrics_util::debugging::{DebugValue, DebuggingRecorder};
//!
//! #[aggregate]
//! #[derive(Debug)]
//! pub struct Dog { pub name: String }
//!
//! #[aggregate]
//! impl Dog {
//!     #[event("Registered")]
//!     pub fn register(name: String) -> Self { Dog { name } }
//! }
//!
//! let recorder = DebuggingRecorder::new();
//! let snapshotter = recorder.snapshotter();
//! // Here a recorder for this thread; a service installs one for the
//! // process (`metrics::set_global_recorder`, or its exporter's installer)
//! // before it builds its applications.
//! metrics::with_local_recorder(&recorder, || -> annals::Result<()> {
//!     let app = Application::builder("Kennel").build()?;
//!     app.save(&mut Dog::register("Fido".into()))?;
//!     Ok(())
//! })?;
//! let saves = snapshotter.snapshot().into_vec().into_iter().find_map(|(key, _, _, value)| {
//!     (key.key().name() == "annals_saves_total").then_some(value)
//! });
//! assert_eq!(saves, Some(DebugValue::Counter(1)));
//! # Ok::<(), annals::Error>(())
//! ```

use std::fmt;
use std::time::Instant;

use ::metrics::{
    counter, describe_counter, describe_gauge, describe_histogram, gauge, histogram, Counter,
    Histogram, Unit,
};

/// `annals_saves_total`.
pub const SAVES: &str = "annals_saves_total";
/// `annals_events_saved_total`.
pub const EVENTS_SAVED: &str = "annals_events_saved_total";
/// `annals_conflicts_total`.
pub const CONFLICTS: &str = "annals_conflicts_total";
/// `annals_command_retries_total`.
pub const COMMAND_RETRIES: &str = "annals_command_retries_total";
/// `annals_save_seconds`.
pub const SAVE_SECONDS: &str = "annals_save_seconds";
/// `annals_get_seconds`.
pub const GET_SECONDS: &str = "annals_get_seconds";
/// `annals_streams_ended_total`, labelled `ended` (`archived` or
/// `deleted`).
pub use crate::application::STREAMS_ENDED;
/// `annals_follower_position`.
pub const FOLLOWER_POSITION: &str = "annals_follower_position";
/// `annals_follower_lag`.
pub const FOLLOWER_LAG: &str = "annals_follower_lag";

/// Gives every metric annals records its unit and help text, in the
/// recorder current now (the global one, or a thread's local one).
/// [`ApplicationBuilder::build`](crate::ApplicationBuilder::build) calls
/// it; call it yourself if the recorder was installed later.
pub fn describe() {
    describe_counter!(
        SAVES,
        Unit::Count,
        "Saves that stored events (save, save_with, save_and_write, a follower's processed notification)."
    );
    describe_counter!(EVENTS_SAVED, Unit::Count, "Events stored by saves.");
    describe_counter!(
        CONFLICTS,
        Unit::Count,
        "Saves refused because another writer stored one of their versions first."
    );
    describe_counter!(
        COMMAND_RETRIES,
        Unit::Count,
        "Commands of execute run again after a conflict."
    );
    describe_histogram!(
        SAVE_SECONDS,
        Unit::Seconds,
        "How long a save took: encoding and the store's transaction."
    );
    describe_histogram!(
        GET_SECONDS,
        Unit::Seconds,
        "How long getting an aggregate took: cache, snapshot and replay."
    );
    describe_counter!(
        STREAMS_ENDED,
        Unit::Count,
        "Streams ended for good (archive_stream, delete_stream), by how: archived or deleted."
    );
    describe_gauge!(
        FOLLOWER_POSITION,
        Unit::Count,
        "The last notification id of the leader that the follower processed."
    );
    describe_gauge!(
        FOLLOWER_LAG,
        Unit::Count,
        "Notifications of the leader the follower has not processed yet."
    );
}

/// An application's handles, registered when it is built.
#[derive(Clone)]
pub(crate) struct AppMetrics {
    pub(crate) saves: Counter,
    pub(crate) events: Counter,
    pub(crate) conflicts: Counter,
    pub(crate) retries: Counter,
    pub(crate) save_seconds: Histogram,
    pub(crate) get_seconds: Histogram,
}

impl fmt::Debug for AppMetrics {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AppMetrics").finish_non_exhaustive()
    }
}

impl AppMetrics {
    /// The handles of application `name`, in the recorder current now.
    pub(crate) fn new(name: &str) -> Self {
        let label = || [("application", name.to_owned())];
        Self {
            saves: counter!(SAVES, &label()),
            events: counter!(EVENTS_SAVED, &label()),
            conflicts: counter!(CONFLICTS, &label()),
            retries: counter!(COMMAND_RETRIES, &label()),
            save_seconds: histogram!(SAVE_SECONDS, &label()),
            get_seconds: histogram!(GET_SECONDS, &label()),
        }
    }

    /// Counts a save that stored `events` events.
    pub(crate) fn saved(&self, events: usize) {
        self.saves.increment(1);
        self.events.increment(events as u64);
    }

    /// Counts a save's outcome: stored (`Ok(events)`), or a conflict.
    pub(crate) fn outcome<T>(&self, result: &crate::Result<T>, events: usize) {
        match result {
            Ok(_) => self.saved(events),
            Err(e) if e.is_conflict() => self.conflicts.increment(1),
            Err(_) => {}
        }
    }
}

/// Seconds since `start`, for a histogram.
pub(crate) fn seconds_since(start: Instant) -> f64 {
    start.elapsed().as_secs_f64()
}

/// Sets `follower`'s position in `leader`'s log and its lag behind
/// `newest` (the leader's newest notification id).
pub(crate) fn follower_at(follower: &str, leader: &str, position: u64, newest: u64) {
    let labels = [
        ("follower", follower.to_owned()),
        ("leader", leader.to_owned()),
    ];
    gauge!(FOLLOWER_POSITION, &labels).set(position as f64);
    gauge!(FOLLOWER_LAG, &labels).set(newest.saturating_sub(position) as f64);
}
