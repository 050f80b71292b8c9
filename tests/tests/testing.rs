//! The test kits of `annals::testing` (the `testing` feature): passing
//! given / when / then tests, and failing expectations that panic with a
//! message saying what differs.

use annals::prelude::*;
use annals::system::{Processing, Upstream};
use annals::testing::{AggregateTest, PolicyTest};
use serde::{Deserialize, Serialize};

#[aggregate]
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct Dog {
    name: String,
    tricks: Vec<String>,
}

#[derive(Debug, PartialEq)]
enum DogError {
    AlreadyKnown(String),
    Retired,
}

#[aggregate(derive(PartialEq))]
impl Dog {
    #[event("Registered")]
    fn register(name: String) -> Self {
        Dog {
            name,
            tricks: Vec::new(),
        }
    }

    #[event("TrickAdded")]
    fn trick_added(&mut self, trick: String) {
        self.tricks.push(trick);
    }

    #[event("Retired", discard)]
    fn retire(&mut self) {}

    fn add_trick(&mut self, trick: &str) -> Result<(), DogError> {
        if self.tricks.iter().any(|t| t == trick) {
            return Err(DogError::AlreadyKnown(trick.to_owned()));
        }
        self.trick_added(trick.to_owned());
        Ok(())
    }
}

fn registered() -> DogEvent {
    DogEvent::Registered {
        name: "Fido".into(),
    }
}

fn trick(name: &str) -> DogEvent {
    DogEvent::TrickAdded { trick: name.into() }
}

#[test]
fn given_events_when_a_command_then_its_events_and_state() {
    AggregateTest::<Dog>::given([registered(), trick("sit")])
        .when(|dog| dog.add_trick("roll over"))
        .then_events(vec![trick("roll over")])
        .then_value(())
        .then_state(|dog| {
            assert_eq!(dog.tricks, ["sit", "roll over"]);
            assert_eq!(dog.version(), 3);
        })
        .then_replayed(|replayed, after| assert_eq!(replayed, after));
}

#[test]
fn given_events_are_replayed_by_the_repository() {
    // Versions, timestamps and the id come from the stored events.
    let outcome = AggregateTest::<Dog>::given([registered(), trick("sit")]).when(|_| ());
    let dog = outcome.aggregate();
    assert_eq!(dog.version(), 2);
    assert!(dog.created_on() <= dog.modified_on());
    assert!(dog.pending_events().is_empty());
}

#[test]
fn when_a_command_fails_then_its_error_and_no_events() {
    AggregateTest::<Dog>::given([registered(), trick("sit")])
        .when(|dog| dog.add_trick("sit"))
        .then_error(DogError::AlreadyKnown("sit".into()))
        .then_error_matches(|e| matches!(e, DogError::AlreadyKnown(t) if t == "sit"))
        .then_no_events()
        .then_state(|dog| assert_eq!(dog.tricks, ["sit"]));
}

#[test]
fn when_created_then_the_creation_event() {
    AggregateTest::when_created(|| Dog::register("Rex".into()))
        .then_events(vec![DogEvent::Registered { name: "Rex".into() }])
        .then_replayed(|replayed, after| assert_eq!(replayed, after));
}

#[test]
fn given_a_built_aggregate_only_the_commands_events_are_compared() {
    let mut dog = Dog::register("Fido".into());
    dog.add_trick("sit").expect("a new trick");
    AggregateTest::given_aggregate(dog)
        .when(|dog| dog.add_trick("beg"))
        .then_events(vec![trick("beg")])
        .then_state(|dog| assert_eq!(dog.version(), 3));
}

#[test]
fn a_command_may_discard_the_aggregate() {
    AggregateTest::<Dog>::given([registered()])
        .when(|dog| dog.retire())
        .then_events(vec![DogEvent::Retired {}])
        .then_state(|dog| assert!(dog.is_discarded()));
}

#[test]
#[should_panic(expected = "the command triggered other events than expected: \
    expected 1 event(s), triggered 1 (- expected, + triggered):\n  \
    - [0] TrickAdded { trick: \"beg\" }\n  + [0] TrickAdded { trick: \"sit\" }")]
fn other_events_than_expected_panic_with_a_diff() {
    AggregateTest::<Dog>::given([registered()])
        .when(|dog| dog.add_trick("sit"))
        .then_events(vec![trick("beg")]);
}

#[test]
#[should_panic(expected = "expected 1 event(s), triggered 0")]
fn missing_events_panic() {
    AggregateTest::<Dog>::given([registered()])
        .when(|_| ())
        .then_events(vec![trick("sit")]);
}

#[test]
#[should_panic(
    expected = "expected the command to succeed, but it failed with AlreadyKnown(\"sit\")"
)]
fn expecting_events_of_a_failed_command_panics_with_its_error() {
    AggregateTest::<Dog>::given([registered(), trick("sit")])
        .when(|dog| dog.add_trick("sit"))
        .then_events(vec![trick("sit")]);
}

#[test]
#[should_panic(expected = "the command failed with another error than expected:\n  \
    - expected: Retired\n  + got:      AlreadyKnown(\"sit\")")]
fn another_error_than_expected_panics_with_both() {
    AggregateTest::<Dog>::given([registered(), trick("sit")])
        .when(|dog| dog.add_trick("sit"))
        .then_error(DogError::Retired);
}

#[test]
#[should_panic(
    expected = "expected the command to fail with AlreadyKnown(\"sit\"), but it succeeded, \
    triggering:\n    [0] TrickAdded { trick: \"sit\" }"
)]
fn expecting_an_error_of_a_successful_command_panics_with_its_events() {
    AggregateTest::<Dog>::given([registered()])
        .when(|dog| dog.add_trick("sit"))
        .then_error(DogError::AlreadyKnown("sit".into()));
}

#[test]
#[should_panic(
    expected = "the command failed, but its error does not match: AlreadyKnown(\"sit\")"
)]
fn an_error_that_does_not_match_panics() {
    AggregateTest::<Dog>::given([registered(), trick("sit")])
        .when(|dog| dog.add_trick("sit"))
        .then_error_matches(|e| *e == DogError::Retired);
}

#[test]
#[should_panic(expected = "expected no events, but the command triggered 1:\n    [0] TrickAdded")]
fn unexpected_events_panic() {
    AggregateTest::<Dog>::given([registered()])
        .when(|dog| dog.add_trick("sit"))
        .then_no_events();
}

#[test]
#[should_panic(expected = "the given events do not replay: corrupt stream of Dog")]
fn given_events_that_do_not_begin_with_a_creation_event_panic() {
    AggregateTest::<Dog>::given([trick("sit")]);
}

#[test]
#[should_panic(expected = "no events were given")]
fn given_no_events_panics() {
    AggregateTest::<Dog>::given([]);
}

#[test]
#[should_panic(expected = "the last event given, Retired, discards the Dog")]
fn given_a_discarded_aggregate_panics() {
    AggregateTest::<Dog>::given([registered(), DogEvent::Retired {}]);
}

#[test]
fn a_failed_expectation_points_at_the_tests_line() {
    // The panic hook sees where a panic points; other tests' panics may
    // pass through it meanwhile, so it keeps every location.
    let seen = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let hook_seen = seen.clone();
    let previous = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        if let Some(l) = info.location() {
            let mut seen = hook_seen.lock().unwrap_or_else(|e| e.into_inner());
            seen.push((l.file().to_owned(), l.line()));
        }
    }));
    let line = line!();
    let result = std::panic::catch_unwind(|| {
        AggregateTest::<Dog>::given([registered()])
            .when(|dog| dog.add_trick("sit"))
            .then_no_events();
    });
    std::panic::set_hook(previous);
    assert!(result.is_err(), "then_no_events panicked");
    let seen = seen.lock().unwrap_or_else(|e| e.into_inner());
    assert!(
        seen.contains(&(file!().to_owned(), line + 4)),
        "the panic points at the then_no_events line ({}:{}): {seen:?}",
        file!(),
        line + 4
    );
}

// The policy kit.

#[aggregate]
#[derive(Debug, Clone)]
struct Order {
    #[expect(
        dead_code,
        reason = "state the events build; the test reads only the events"
    )]
    items: Vec<String>,
}

#[aggregate]
impl Order {
    #[event("Placed")]
    fn place(items: Vec<String>) -> Self {
        Order { items }
    }

    #[event("Cancelled")]
    fn cancel(&mut self) {}
}

#[aggregate]
#[derive(Debug, Clone)]
struct Reservation {
    #[expect(
        dead_code,
        reason = "state the events build; the test reads only the events"
    )]
    order_id: Uuid,
    #[expect(
        dead_code,
        reason = "state the events build; the test reads only the events"
    )]
    items: usize,
    released: bool,
}

#[aggregate(derive(PartialEq))]
impl Reservation {
    #[event("Made")]
    fn make(order_id: Uuid, items: usize) -> Self {
        Reservation {
            order_id,
            items,
            released: false,
        }
    }

    #[event("Released")]
    fn release(&mut self) {
        self.released = true;
    }

    fn create_id(order_id: &Uuid) -> Uuid {
        Uuid::new_v5(&Uuid::NAMESPACE_OID, order_id.as_bytes())
    }
}

/// Reserves each order placed; releases the reservation of each order
/// cancelled (which must exist).
fn reserve(event: &Upstream<'_>, processing: &mut Processing<'_>) -> annals::Result<()> {
    let Some(order) = event.decode::<Order>()? else {
        return Ok(());
    };
    match order.event {
        OrderEvent::Placed { items } => {
            processing.save(&mut Reservation::make(order.originator_id, items.len()))
        }
        OrderEvent::Cancelled {} => {
            let id = Reservation::create_id(&order.originator_id);
            let mut reservation: Reservation = processing.app().repository().get(id)?;
            reservation.release();
            processing.save(&mut reservation)
        }
    }
}

#[test]
fn given_leader_events_when_processed_then_the_followers_events() {
    let order_id = Uuid::new_v4();
    PolicyTest::new("Orders", "Reservations", reserve)
        .given::<Order>(
            order_id,
            [OrderEvent::Placed {
                items: vec!["pen".into(), "ink".into()],
            }],
        )
        .given::<Order>(order_id, [OrderEvent::Cancelled {}])
        .when_processed()
        .then_events::<Reservation>(vec![
            ReservationEvent::Made { order_id, items: 2 },
            ReservationEvent::Released {},
        ])
        .then_follower(|reservations| {
            let id = Reservation::create_id(&order_id);
            let r: Reservation = reservations.repository().get(id).expect("stored");
            assert!(r.released);
            assert_eq!(
                reservations
                    .recorder()
                    .max_tracking_id("Orders")
                    .expect("tracking"),
                2
            );
        });
}

#[test]
fn the_followers_events_are_caused_by_the_leaders() {
    let order = Order::place(vec!["book".into()]);
    let cause = order.pending_events()[0].event_id();
    let outcome = PolicyTest::new("Orders", "Reservations", reserve)
        .given_aggregate(order)
        .when_processed();
    assert_eq!(outcome.processed().expect("processed"), 1);
    let stored = outcome.events::<Reservation>().expect("decoded");
    assert_eq!(stored.len(), 1);
    assert_eq!(stored[0].causation_id, Some(cause));
    assert_eq!(stored[0].correlation_id, Some(cause));
}

#[test]
fn events_stored_to_set_up_the_follower_are_not_the_outcomes() {
    let order_id = Uuid::new_v4();
    PolicyTest::new("Orders", "Reservations", reserve)
        .given::<Order>(order_id, [OrderEvent::Placed { items: vec![] }])
        .given_follower(|app| {
            app.save(&mut Reservation::make(Uuid::new_v4(), 9))
                .map(drop)
        })
        .when_processed()
        .then_events::<Reservation>(vec![ReservationEvent::Made { order_id, items: 0 }]);
}

#[test]
fn an_event_the_policy_ignores_stores_nothing() {
    let other = |_: &Upstream<'_>, _: &mut Processing<'_>| Ok(());
    PolicyTest::new("Orders", "Audit", other)
        .given_aggregate(Order::place(vec!["lamp".into()]))
        .when_processed()
        .then_no_events()
        .then_follower(|audit| {
            assert_eq!(
                audit.recorder().max_tracking_id("Orders").expect("tracked"),
                1
            );
        });
}

#[test]
fn a_failing_policy_stores_nothing_of_the_failed_event() {
    let order_id = Uuid::new_v4();
    PolicyTest::new("Orders", "Reservations", reserve)
        .given::<Order>(order_id, [OrderEvent::Placed { items: vec![] }])
        .given_follower(|app| {
            // The reservation exists already (made by another process):
            // processing "Placed" conflicts on it, 3 times, then fails.
            app.save(&mut Reservation::make(order_id, 0)).map(drop)
        })
        .when_processed()
        .then_error_matches(|e| e.is_conflict())
        .then_no_events_stored();
}

#[test]
#[should_panic(
    expected = "the follower \"Reservations\" stored other events of Reservation than \
    expected: expected 1 event(s), stored 1 (- expected, + stored):\n  \
    - [0] Made { order_id: 00000000-0000-0000-0000-000000000000, items: 3 }\n  \
    + [0] Made { order_id: 00000000-0000-0000-0000-000000000000, items: 1 }"
)]
fn other_follower_events_than_expected_panic_with_a_diff() {
    let order_id = Uuid::nil();
    PolicyTest::new("Orders", "Reservations", reserve)
        .given::<Order>(
            order_id,
            [OrderEvent::Placed {
                items: vec!["pen".into()],
            }],
        )
        .when_processed()
        .then_events::<Reservation>(vec![ReservationEvent::Made { order_id, items: 3 }]);
}

#[test]
#[should_panic(expected = "expected the policy to succeed, but processing failed: conflict")]
fn expecting_events_of_a_failing_policy_panics_with_its_error() {
    let order_id = Uuid::new_v4();
    PolicyTest::new("Orders", "Reservations", reserve)
        .given::<Order>(order_id, [OrderEvent::Placed { items: vec![] }])
        .given_follower(|app| app.save(&mut Reservation::make(order_id, 0)).map(drop))
        .when_processed()
        .then_events::<Reservation>(vec![]);
}

#[test]
#[should_panic(
    expected = "expected processing to fail, but it succeeded (1 notification(s) processed)"
)]
fn expecting_an_error_of_a_succeeding_policy_panics() {
    PolicyTest::new("Orders", "Reservations", reserve)
        .given_aggregate(Order::place(vec![]))
        .when_processed()
        .then_error_matches(|_| true);
}

#[test]
#[should_panic(
    expected = "expected no events, but the follower \"Reservations\" stored 1:\n    [0] \"Reservation.Made\""
)]
fn unexpected_follower_events_panic() {
    PolicyTest::new("Orders", "Reservations", reserve)
        .given_aggregate(Order::place(vec![]))
        .when_processed()
        .then_no_events();
}
