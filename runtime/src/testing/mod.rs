//! Test kits (the `testing` feature, off by default): write the tests of
//! your aggregates and policies as given / when / then, and run a store of
//! your own through the recorder contract.
//!
//! - [`AggregateTest`]: given an aggregate's events, when a command, then
//!   the events it triggered, its error, or the state it left.
//! - [`PolicyTest`]: given a leader application's events, when a policy
//!   processes them, then the events its follower stored, or the error.
//! - [`contract`] and [`recorder_contract!`](crate::recorder_contract):
//!   what every recorder must do, as one `#[test]` per rule.
//! - [`DecisionTest`]: given DCB events, when a decision
//!   ([`annals::dcb`](crate::dcb)), then the events it appended or its
//!   refusal.
//! - [`dcb`] and [`dcb_recorder_contract!`](crate::dcb_recorder_contract):
//!   the same for a DCB store ([`DcbRecorder`](crate::persistence::dcb::DcbRecorder)),
//!   Python's `DCBRecorderTestCase`.
//!
//! Everything runs in memory, through the same code as an application's:
//! given events are encoded by the mapper, stored, and replayed by
//! [`Repository::get`](crate::Repository::get); a policy runs in a
//! [`System`](crate::system::System) under a
//! [`SingleThreadedRunner`](crate::system::SingleThreadedRunner). A failed
//! expectation panics with what was expected and what happened, at the
//! line of the test that expected it (`#[track_caller]`).
//!
//! Enable it for tests only:
//!
//! ```toml
//! [dev-dependencies]
//! annals = { version = "0.1", features = ["testing"] }
//! ```
//!
//! ```
//! use annals::prelude::*;
//! use annals::testing::AggregateTest;
//!
//! #[aggregate]
//! #[derive(Debug)]
//! pub struct Dog { pub name: String, pub tricks: Vec<String> }
//!
//! #[aggregate(derive(PartialEq))]
//! impl Dog {
//!     #[event("Registered")]
//!     pub fn register(name: String) -> Self { Dog { name, tricks: vec![] } }
//!     #[event("TrickAdded")]
//!     pub fn add_trick(&mut self, trick: String) { self.tricks.push(trick); }
//! }
//!
//! AggregateTest::<Dog>::given([DogEvent::Registered { name: "Fido".into() }])
//!     .when(|dog| dog.add_trick("sit".into()))
//!     .then_events(vec![DogEvent::TrickAdded { trick: "sit".into() }]);
//! ```
//!
//! See also `docs/howto/testing.md`.

mod aggregate;
mod decision;
mod policy;

use std::fmt::Debug;

/// The recorder contract suite: annals-core's, re-exported.
pub use annals_core::testing::{contract, dcb, skipped};

pub use aggregate::{AggregateTest, CommandResult, Outcome};
pub use decision::{DecisionOutcome, DecisionTest};
pub use policy::{PolicyOutcome, PolicyTest};

use crate::application::Application;
use crate::clock;
use crate::domain::{Aggregate, AggregateId, DomainEvent};
use crate::error::Result;
use crate::persistence::EventQuery;

/// A memory application for a kit.
fn memory_app(name: &str) -> Application {
    match Application::builder(name).memory().build() {
        Ok(app) => app,
        Err(e) => panic!("cannot build the in-memory application {name:?}: {e}"),
    }
}

/// Stores `events` as the next events of stream `id` of `app`, encoded by
/// its mapper as a save would encode them (the first at
/// `A::INITIAL_VERSION` when the stream is new).
fn store_events<A: Aggregate>(
    app: &Application,
    id: &A::Id,
    events: impl IntoIterator<Item = A::Event>,
) -> Result<Vec<u64>> {
    let stored_id = id.to_stored();
    let last = app
        .recorder()
        .select_events(&stored_id, &EventQuery::all().descending().limit(1))?;
    let first = last
        .first()
        .map_or(A::INITIAL_VERSION, |e| e.originator_version + 1);
    let stored = (first..)
        .zip(events)
        .map(|(originator_version, event)| {
            app.mapper().encode(&DomainEvent::<A> {
                originator_id: id.clone(),
                originator_version,
                timestamp: clock::now(),
                correlation_id: None,
                causation_id: None,
                event,
            })
        })
        .collect::<Result<Vec<_>>>()?;
    app.recorder().insert_events(&stored)
}

/// What differs between the `expected` and the `actual` values, one line
/// per position: `  ` both the same, `- ` expected, `+ ` actual.
fn diff<T: Debug + PartialEq>(expected: &[T], actual: &[T], actual_is: &str) -> String {
    let mut out = format!(
        "expected {} event(s), {actual_is} {} (- expected, + {actual_is}):\n",
        expected.len(),
        actual.len()
    );
    for i in 0..expected.len().max(actual.len()) {
        match (expected.get(i), actual.get(i)) {
            (Some(e), Some(a)) if e == a => out.push_str(&format!("    [{i}] {e:?}\n")),
            (e, a) => {
                if let Some(e) = e {
                    out.push_str(&format!("  - [{i}] {e:?}\n"));
                }
                if let Some(a) = a {
                    out.push_str(&format!("  + [{i}] {a:?}\n"));
                }
            }
        }
    }
    out
}

/// The values, one per line, for a message.
fn list<T: Debug>(values: &[T]) -> String {
    if values.is_empty() {
        return "    (none)\n".to_owned();
    }
    values
        .iter()
        .enumerate()
        .map(|(i, v)| format!("    [{i}] {v:?}\n"))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::diff;

    #[test]
    fn the_diff_marks_what_differs() {
        let text = diff(&[1, 2, 3], &[1, 5], "got");
        assert_eq!(
            text,
            "expected 3 event(s), got 2 (- expected, + got):\n    [0] 1\n  - [1] 2\n  + [1] 5\n  - [2] 3\n"
        );
    }
}
