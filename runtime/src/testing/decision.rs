//! Given / when / then for DCB decisions: [`DecisionTest`].

use std::fmt::Debug;
use std::sync::Arc;

use crate::application::CommandError;
use crate::dcb::{Boundary, DcbApplication, NewEvent, Slice};
use crate::persistence::dcb::{DcbEvent, DcbQuery, DcbRecorder, MemoryDcbRecorder};

/// A decision's test: given stored events, when a decision runs (through a
/// [`DcbApplication`] over a memory store, so its state is folded from
/// the events its query matches, as in production), then the events it
/// appended, or its refusal.
///
/// ```
/// use annals::dcb::{DcbEvents, Perspective, Tagged};
/// use annals::testing::DecisionTest;
/// use serde::{Deserialize, Serialize};
///
/// #[derive(Serialize, Deserialize, Tagged)]
/// struct Opened { #[tag(prefix = "door-")] door: u32 }
///
/// #[derive(Clone, Default)]
/// struct Door { id: u32, open: bool }
///
/// impl Perspective for Door {
///     type Events = Opened;
///     fn tags(&self) -> Vec<String> { vec![format!("door-{}", self.id)] }
///     fn apply(&mut self, _: Opened) { self.open = true; }
/// }
///
/// let open = |door: &Door| {
///     if door.open { Err("already open") } else { Ok(vec![Opened { door: door.id }.into()]) }
/// };
/// // Door 2's opening is outside door 1's boundary.
/// DecisionTest::given([Opened { door: 2 }])
///     .when(Door { id: 1, open: false }, open)
///     .then([Opened { door: 1 }]);
/// DecisionTest::given([Opened { door: 1 }])
///     .when(Door { id: 1, open: false }, open)
///     .then_rejected("already open");
/// ```
#[derive(Debug)]
pub struct DecisionTest {
    app: DcbApplication,
    given: Option<u64>,
}

impl DecisionTest {
    /// A memory store holding `events`, in order.
    ///
    /// # Panics
    ///
    /// When an event does not encode.
    #[track_caller]
    pub fn given<I>(events: I) -> Self
    where
        I: IntoIterator,
        I::Item: Into<NewEvent>,
    {
        let recorder: Arc<dyn DcbRecorder> = Arc::new(MemoryDcbRecorder::new());
        let app = DcbApplication::new(recorder);
        let events: Vec<NewEvent> = events.into_iter().map(Into::into).collect();
        let given = if events.is_empty() {
            None
        } else {
            match app.append(events) {
                Ok(position) => Some(position),
                Err(e) => panic!("the given events were not stored: {e}"),
            }
        };
        Self { app, given }
    }

    /// Runs `decision` on `state` folded from the given events.
    pub fn when<B, E, F>(self, state: B, decision: F) -> DecisionOutcome<E>
    where
        B: Boundary + Clone,
        F: FnMut(&B) -> Result<Vec<NewEvent>, E>,
    {
        let result = self.app.decide(state, decision);
        self.outcome(result)
    }

    /// Runs `slice`.
    pub fn when_slice<S: Slice>(self, slice: &S) -> DecisionOutcome<S::Error> {
        let result = self.app.run(slice);
        self.outcome(result)
    }

    fn outcome<E>(self, result: Result<Option<u64>, CommandError<E>>) -> DecisionOutcome<E> {
        let appended = match self.app.recorder().read(&DcbQuery::all(), self.given, None) {
            Ok(read) => read.events.into_iter().map(|e| e.event).collect(),
            Err(e) => panic!("cannot read what the decision appended: {e}"),
        };
        DecisionOutcome { result, appended }
    }
}

/// What a decision did, to check: see [`DecisionTest`].
#[derive(Debug)]
pub struct DecisionOutcome<E> {
    result: Result<Option<u64>, CommandError<E>>,
    appended: Vec<DcbEvent>,
}

/// An event as a failed expectation shows it: its type, tags and data
/// (as JSON when it is MessagePack).
#[derive(PartialEq)]
struct Shown<'a>(&'a DcbEvent);

impl Debug for Shown<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let data: Result<serde_json::Value, _> = rmp_serde::from_slice(&self.0.data);
        let mut s = f.debug_struct(&self.0.type_);
        s.field("tags", &self.0.tags);
        match data {
            Ok(value) => s.field("data", &format_args!("{value}")),
            Err(_) => s.field("data", &self.0.data),
        }
        .finish()
    }
}

/// A line shown as it is.
#[derive(PartialEq)]
struct Raw(String);

impl Debug for Raw {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl<E: Debug> DecisionOutcome<E> {
    /// The decision appended exactly `expected` (types, tags and data), in
    /// order.
    ///
    /// # Panics
    ///
    /// With the difference, when it appended other events, or failed.
    #[track_caller]
    pub fn then<I>(self, expected: I)
    where
        I: IntoIterator,
        I::Item: Into<NewEvent>,
    {
        if let Err(e) = &self.result {
            panic!("expected events, the decision failed: {e:?}");
        }
        let expected: Vec<DcbEvent> = expected
            .into_iter()
            .map(|e| match e.into().into_event() {
                Ok(event) => event,
                Err(e) => panic!("an expected event does not encode: {e}"),
            })
            .collect();
        if expected != self.appended {
            let shown = |events: &[DcbEvent]| -> Vec<Raw> {
                events
                    .iter()
                    .map(|e| Raw(format!("{:?}", Shown(e))))
                    .collect()
            };
            panic!(
                "{}",
                super::diff(&shown(&expected), &shown(&self.appended), "appended")
            );
        }
    }

    /// The decision appended nothing, and did not fail.
    ///
    /// # Panics
    ///
    /// When it appended events, or failed.
    #[track_caller]
    pub fn then_nothing(self) {
        self.then(Vec::<NewEvent>::new());
    }

    /// The decision refused with its own error, and appended nothing; the
    /// error is given to `check`.
    ///
    /// # Panics
    ///
    /// When it did not refuse.
    #[track_caller]
    pub fn then_error(self, check: impl FnOnce(&E)) {
        match &self.result {
            Err(CommandError::Rejected(e)) => {
                assert!(self.appended.is_empty(), "a refusal appended events");
                check(e);
            }
            Err(CommandError::Failed(e)) => {
                panic!("expected the decision's refusal, annals failed: {e}")
            }
            Ok(_) => panic!(
                "expected the decision's refusal, it appended:\n{}",
                super::list(&self.appended.iter().map(Shown).collect::<Vec<_>>())
            ),
        }
    }

    /// The decision refused with `expected`.
    ///
    /// # Panics
    ///
    /// When it did not, or with another error.
    #[track_caller]
    pub fn then_rejected(self, expected: E)
    where
        E: PartialEq,
    {
        let location = std::panic::Location::caller();
        self.then_error(|e| {
            assert!(
                *e == expected,
                "expected the refusal {expected:?}, got {e:?} (at {location})"
            );
        });
    }
}
