//! The policy test kit: given a leader's events, when a policy processes
//! them, then the events its follower stored, or the error.

use std::fmt;
use std::sync::Arc;

use super::{diff, list, memory_app, store_events};
use crate::application::Application;
use crate::domain::{Aggregate, DomainEvent};
use crate::error::{Error, Result};
use crate::persistence::Notification;
use crate::system::{Policy, SingleThreadedRunner, System};

/// Given / when / then for a [`Policy`]: a leader application and a
/// follower application, both in memory, in a [`System`] of two
/// (`[leader, follower]`), run by a [`SingleThreadedRunner`]. The policy
/// sees each given event as an [`Upstream`](crate::system::Upstream) of
/// the leader, exactly as in production, and what it saves is stored with
/// the tracking records in the follower.
///
/// ```
/// use annals::prelude::*;
/// use annals::system::{Processing, Upstream};
/// use annals::testing::PolicyTest;
///
/// #[aggregate]
/// #[derive(Debug)]
/// pub struct Order { pub items: Vec<String> }
///
/// #[aggregate]
/// impl Order {
///     #[event("Placed")]
///     pub fn place(items: Vec<String>) -> Self { Order { items } }
/// }
///
/// #[aggregate]
/// #[derive(Debug)]
/// pub struct Reservation { pub order_id: Uuid, pub items: usize }
///
/// #[aggregate(derive(PartialEq))]
/// impl Reservation {
///     #[event("Made")]
///     pub fn make(order_id: Uuid, items: usize) -> Self { Reservation { order_id, items } }
/// }
///
/// fn reserve(event: &Upstream<'_>, processing: &mut Processing<'_>) -> annals::Result<()> {
///     if let Some(placed) = event.decode::<Order>()? {
///         let OrderEvent::Placed { items } = placed.event;
///         processing.save(&mut Reservation::make(placed.originator_id, items.len()))?;
///     }
///     Ok(())
/// }
///
/// let order_id = Uuid::new_v4();
/// PolicyTest::new("Orders", "Reservations", reserve)
///     .given::<Order>(order_id, [OrderEvent::Placed { items: vec!["book".into()] }])
///     .when_processed()
///     .then_events::<Reservation>(vec![ReservationEvent::Made { order_id, items: 1 }]);
/// ```
pub struct PolicyTest<P: Policy + 'static> {
    leader: Arc<Application>,
    follower: Arc<Application>,
    policy: P,
}

impl<P: Policy + 'static> fmt::Debug for PolicyTest<P> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PolicyTest")
            .field("leader", &self.leader.name())
            .field("follower", &self.follower.name())
            .finish_non_exhaustive()
    }
}

impl<P: Policy + 'static> PolicyTest<P> {
    /// A follower named `follower` that processes the events of a leader
    /// named `leader` with `policy` (a [`Policy`], or a function
    /// `fn(&Upstream, &mut Processing) -> annals::Result<()>`). Both
    /// applications are empty and in memory.
    ///
    /// ```
    /// use annals::system::{Processing, Upstream};
    /// use annals::testing::PolicyTest;
    ///
    /// let ignore = |_: &Upstream<'_>, _: &mut Processing<'_>| Ok(());
    /// PolicyTest::new("Orders", "Audit", ignore).when_processed().then_no_events();
    /// ```
    ///
    /// # Panics
    ///
    /// When `leader` and `follower` are the same name (an application
    /// cannot follow itself).
    #[track_caller]
    pub fn new(leader: &str, follower: &str, policy: P) -> Self {
        if leader == follower {
            panic!("PolicyTest::new: the leader and the follower are both named {leader:?}");
        }
        Self {
            leader: Arc::new(memory_app(leader)),
            follower: Arc::new(memory_app(follower)),
            policy,
        }
    }

    /// The leader stores `events` (aggregate `A`'s own event values) as the
    /// next events of stream `id`, encoded as a save encodes them (a new
    /// stream starts with its creation event at `A::INITIAL_VERSION`).
    /// Call it again for more streams, or to add to one.
    ///
    /// ```
    /// # use annals::prelude::*;
    /// # use annals::system::{Processing, Upstream};
    /// # use annals::testing::PolicyTest;
    /// # #[aggregate] #[derive(Debug)] pub struct Order { pub paid: bool }
    /// # #[aggregate] impl Order {
    /// #     #[event("Placed")] pub fn place() -> Self { Order { paid: false } }
    /// #     #[event("Paid")] pub fn pay(&mut self) { self.paid = true; }
    /// # }
    /// let (a, b) = (Uuid::new_v4(), Uuid::new_v4());
    /// let test = PolicyTest::new("Orders", "Audit", |_: &Upstream<'_>, _: &mut Processing<'_>| Ok(()))
    ///     .given::<Order>(a, [OrderEvent::Placed {}])
    ///     .given::<Order>(b, [OrderEvent::Placed {}, OrderEvent::Paid {}])
    ///     .given::<Order>(a, [OrderEvent::Paid {}]);
    /// assert_eq!(test.leader().recorder().max_notification_id()?, 4);
    /// assert_eq!(test.leader().repository().get::<Order>(a)?.version(), 2);
    /// # Ok::<(), annals::Error>(())
    /// ```
    ///
    /// # Panics
    ///
    /// When the events cannot be stored (they do not encode, or conflict
    /// with what is stored).
    #[track_caller]
    pub fn given<A: Aggregate>(
        self,
        id: impl Into<A::Id>,
        events: impl IntoIterator<Item = A::Event>,
    ) -> Self {
        if let Err(e) = store_events::<A>(&self.leader, &id.into(), events) {
            panic!(
                "PolicyTest::given: the leader {:?} did not store the events: {e}",
                self.leader.name()
            );
        }
        self
    }

    /// The leader saves `aggregate` (its pending events): an aggregate
    /// built by its creation method and commands.
    ///
    /// ```
    /// # use annals::prelude::*;
    /// # use annals::system::{Processing, Upstream};
    /// # use annals::testing::PolicyTest;
    /// # #[aggregate] #[derive(Debug)] pub struct Order { pub paid: bool }
    /// # #[aggregate] impl Order {
    /// #     #[event("Placed")] pub fn place() -> Self { Order { paid: false } }
    /// #     #[event("Paid")] pub fn pay(&mut self) { self.paid = true; }
    /// # }
    /// let mut order = Order::place();
    /// order.pay();
    /// let test = PolicyTest::new("Orders", "Audit", |_: &Upstream<'_>, _: &mut Processing<'_>| Ok(()))
    ///     .given_aggregate(order);
    /// assert_eq!(test.leader().recorder().max_notification_id()?, 2);
    /// # Ok::<(), annals::Error>(())
    /// ```
    ///
    /// # Panics
    ///
    /// When the save fails.
    #[track_caller]
    pub fn given_aggregate<A: Aggregate>(self, mut aggregate: A) -> Self {
        if let Err(e) = self.leader.save(&mut aggregate) {
            panic!(
                "PolicyTest::given_aggregate: the leader {:?} did not save the {}: {e}",
                self.leader.name(),
                A::NAME
            );
        }
        self
    }

    /// Prepares the follower before the policy runs (aggregates the policy
    /// gets and changes): `setup` saves them through the follower
    /// application. What it stores is not part of the outcome's events.
    ///
    /// ```
    /// # use annals::prelude::*;
    /// # use annals::system::{Processing, Upstream};
    /// # use annals::testing::PolicyTest;
    /// #[aggregate]
    /// #[derive(Debug)]
    /// pub struct Stock { pub left: u32 }
    ///
    /// #[aggregate(id = String, derive(PartialEq))]
    /// impl Stock {
    ///     #[event("Counted")]
    ///     pub fn count(left: u32) -> Self { Stock { left } }
    ///     #[event("Taken")]
    ///     pub fn take(&mut self, n: u32) { self.left -= n; }
    /// }
    ///
    /// // Every event of the leader takes one item from the stock.
    /// fn take_one(_: &Upstream<'_>, processing: &mut Processing<'_>) -> annals::Result<()> {
    ///     let mut stock: Stock = processing.app().repository().get("stock".to_owned())?;
    ///     stock.take(1);
    ///     processing.save(&mut stock)
    /// }
    ///
    /// PolicyTest::new("Shop", "Warehouse", take_one)
    ///     .given::<Stock>("anything".to_owned(), [StockEvent::Counted { left: 0 }])
    ///     .given_follower(|warehouse| {
    ///         warehouse.save(&mut Stock::count_with_id("stock".to_owned(), 10)).map(drop)
    ///     })
    ///     .when_processed()
    ///     .then_events::<Stock>(vec![StockEvent::Taken { n: 1 }])
    ///     .then_follower(|warehouse| {
    ///         let stock: Stock = warehouse.repository().get("stock".to_owned()).unwrap();
    ///         assert_eq!(stock.left, 9);
    ///     });
    /// ```
    ///
    /// # Panics
    ///
    /// When `setup` returns an error.
    #[track_caller]
    pub fn given_follower(self, setup: impl FnOnce(&Application) -> Result<()>) -> Self {
        if let Err(e) = setup(&self.follower) {
            panic!(
                "PolicyTest::given_follower: setting up the follower {:?} failed: {e}",
                self.follower.name()
            );
        }
        self
    }

    /// The leader application (to look at what was given).
    ///
    /// ```
    /// # use annals::system::{Processing, Upstream};
    /// # use annals::testing::PolicyTest;
    /// let test = PolicyTest::new("Orders", "Audit", |_: &Upstream<'_>, _: &mut Processing<'_>| Ok(()));
    /// assert_eq!(test.leader().name(), "Orders");
    /// ```
    pub fn leader(&self) -> &Application {
        &self.leader
    }

    /// The follower application.
    ///
    /// ```
    /// # use annals::system::{Processing, Upstream};
    /// # use annals::testing::PolicyTest;
    /// let test = PolicyTest::new("Orders", "Audit", |_: &Upstream<'_>, _: &mut Processing<'_>| Ok(()));
    /// assert_eq!(test.follower().name(), "Audit");
    /// ```
    pub fn follower(&self) -> &Application {
        &self.follower
    }

    /// Runs the system until the follower has processed every event the
    /// leader stored (or the policy failed).
    ///
    /// ```
    /// # use annals::system::{Processing, Upstream};
    /// # use annals::testing::PolicyTest;
    /// let outcome = PolicyTest::new("Orders", "Audit", |_: &Upstream<'_>, _: &mut Processing<'_>| Ok(()))
    ///     .when_processed();
    /// assert_eq!(outcome.processed().ok(), Some(0));
    /// # Ok::<(), annals::Error>(())
    /// ```
    ///
    /// # Panics
    ///
    /// When the follower's store cannot be read (the in-memory store can
    /// always be read).
    #[track_caller]
    pub fn when_processed(self) -> PolicyOutcome {
        let Self {
            leader,
            follower,
            policy,
        } = self;
        let before = match follower.recorder().max_notification_id() {
            Ok(id) => id,
            Err(e) => panic!("PolicyTest: the follower's log cannot be read: {e}"),
        };
        let result = System::builder()
            .application(leader.clone())
            .process(follower.clone(), policy)
            .pipe([leader.name(), follower.name()])
            .build()
            .and_then(|system| SingleThreadedRunner::new(Arc::new(system)).run());
        PolicyOutcome {
            leader,
            follower,
            before,
            result,
        }
    }
}

/// What a policy did: how many notifications it processed (or its error),
/// and what the follower stored. Each `then_*` check panics when it fails
/// and returns the outcome otherwise, so checks chain.
pub struct PolicyOutcome {
    leader: Arc<Application>,
    follower: Arc<Application>,
    /// The follower's last notification id before processing.
    before: u64,
    result: Result<usize>,
}

impl fmt::Debug for PolicyOutcome {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PolicyOutcome")
            .field("leader", &self.leader.name())
            .field("follower", &self.follower.name())
            .field("result", &self.result)
            .finish_non_exhaustive()
    }
}

impl PolicyOutcome {
    /// How many notifications were processed, or the policy's error.
    ///
    /// ```
    /// # use annals::prelude::*;
    /// # use annals::system::{Processing, Upstream};
    /// # use annals::testing::PolicyTest;
    /// # #[aggregate] #[derive(Debug)] pub struct Order { pub paid: bool }
    /// # #[aggregate] impl Order { #[event("Placed")] pub fn place() -> Self { Order { paid: false } } }
    /// let outcome = PolicyTest::new("Orders", "Audit", |_: &Upstream<'_>, _: &mut Processing<'_>| Ok(()))
    ///     .given_aggregate(Order::place())
    ///     .when_processed();
    /// assert_eq!(outcome.processed().ok(), Some(1));
    /// # Ok::<(), annals::Error>(())
    /// ```
    pub fn processed(&self) -> std::result::Result<usize, &Error> {
        self.result.as_ref().copied()
    }

    /// The events of aggregate type `B` that processing stored in the
    /// follower, decoded, in the order they were stored (events of other
    /// types are left out).
    ///
    /// ```
    /// # use annals::prelude::*;
    /// # use annals::system::{Processing, Upstream};
    /// # use annals::testing::PolicyTest;
    /// # #[aggregate] #[derive(Debug)] pub struct Order { pub paid: bool }
    /// # #[aggregate] impl Order { #[event("Placed")] pub fn place() -> Self { Order { paid: false } } }
    /// // Copies each order.
    /// fn copy(event: &Upstream<'_>, processing: &mut Processing<'_>) -> annals::Result<()> {
    ///     processing.save(&mut Order::place())
    /// }
    /// let order = Order::place();
    /// let cause = order.pending_events()[0].event_id();
    /// let outcome = PolicyTest::new("Orders", "Copies", copy).given_aggregate(order).when_processed();
    /// let stored = outcome.events::<Order>()?;
    /// assert_eq!(stored[0].causation_id, Some(cause));
    /// # Ok::<(), annals::Error>(())
    /// ```
    pub fn events<B: Aggregate>(&self) -> Result<Vec<DomainEvent<B>>> {
        self.stored()?
            .iter()
            .filter(|n| crate::mapper::variant_of::<B>(&n.event.topic).is_some())
            .map(|n| self.follower.mapper().decode(&n.event))
            .collect()
    }

    /// What processing stored in the follower's log.
    fn stored(&self) -> Result<Vec<Notification>> {
        let mut stored: Vec<Notification> = Vec::new();
        loop {
            let start = stored.last().map_or(self.before, |n| n.id) + 1;
            let page = self.follower.notifications(start, 100)?;
            if page.is_empty() {
                return Ok(stored);
            }
            stored.extend(page);
        }
    }

    /// Checks that processing succeeded and stored exactly `expected` of
    /// aggregate type `B`'s events in the follower, in order (the event
    /// enum must derive `PartialEq`: `#[aggregate(derive(PartialEq))]`).
    /// Events of other aggregate types are not compared: check them with
    /// another `then_events`.
    ///
    /// See [`PolicyTest`] for an example.
    ///
    /// ```
    /// # use annals::prelude::*;
    /// # use annals::system::{Processing, Upstream};
    /// # use annals::testing::PolicyTest;
    /// # #[aggregate] #[derive(Debug)] pub struct Order { pub n: u32 }
    /// # #[aggregate(derive(PartialEq))] impl Order { #[event("Placed")] pub fn place(n: u32) -> Self { Order { n } } }
    /// // Places a copy of each order, twice as big.
    /// fn double(event: &Upstream<'_>, processing: &mut Processing<'_>) -> annals::Result<()> {
    ///     if let Some(placed) = event.decode::<Order>()? {
    ///         let OrderEvent::Placed { n } = placed.event;
    ///         processing.save(&mut Order::place(2 * n))?;
    ///     }
    ///     Ok(())
    /// }
    /// PolicyTest::new("Orders", "Doubled", double)
    ///     .given_aggregate(Order::place(1))
    ///     .given_aggregate(Order::place(5))
    ///     .when_processed()
    ///     .then_events::<Order>(vec![OrderEvent::Placed { n: 2 }, OrderEvent::Placed { n: 10 }]);
    /// ```
    ///
    /// # Panics
    ///
    /// When processing failed (with the error), when the stored events do
    /// not decode, or when they differ from `expected` (with both lists,
    /// position by position).
    #[track_caller]
    pub fn then_events<B: Aggregate>(self, expected: Vec<B::Event>) -> Self
    where
        B::Event: PartialEq,
    {
        if let Err(e) = &self.result {
            panic!(
                "expected the policy to succeed, but processing failed: {e}\nexpected events of {}:\n{}",
                B::NAME,
                list(&expected)
            );
        }
        let actual: Vec<B::Event> = match self.events::<B>() {
            Ok(events) => events.into_iter().map(|e| e.event).collect(),
            Err(e) => panic!("the follower's events do not decode as {}: {e}", B::NAME),
        };
        if actual != expected {
            panic!(
                "the follower {:?} stored other events of {} than expected: {}",
                self.follower.name(),
                B::NAME,
                diff(&expected, &actual, "stored")
            );
        }
        self
    }

    /// Checks that processing succeeded and stored no events at all in the
    /// follower.
    ///
    /// ```
    /// # use annals::prelude::*;
    /// # use annals::system::{Processing, Upstream};
    /// # use annals::testing::PolicyTest;
    /// # #[aggregate] #[derive(Debug)] pub struct Order { pub paid: bool }
    /// # #[aggregate] impl Order { #[event("Placed")] pub fn place() -> Self { Order { paid: false } } }
    /// PolicyTest::new("Orders", "Audit", |_: &Upstream<'_>, _: &mut Processing<'_>| Ok(()))
    ///     .given_aggregate(Order::place())
    ///     .when_processed()
    ///     .then_no_events();
    /// ```
    ///
    /// # Panics
    ///
    /// When processing failed, or stored events (listing their topics).
    #[track_caller]
    pub fn then_no_events(self) -> Self {
        if let Err(e) = &self.result {
            panic!("expected the policy to succeed, but processing failed: {e}");
        }
        self.then_no_events_stored()
    }

    /// Checks that processing failed with an error for which `check` is
    /// true (the follower then stored nothing of the failed event).
    ///
    /// ```
    /// # use annals::prelude::*;
    /// # use annals::system::{Processing, Upstream};
    /// # use annals::testing::PolicyTest;
    /// # #[aggregate] #[derive(Debug)] pub struct Order { pub paid: bool }
    /// # #[aggregate] impl Order { #[event("Placed")] pub fn place() -> Self { Order { paid: false } } }
    /// // Looks for a customer that the follower does not have.
    /// fn greet(_: &Upstream<'_>, processing: &mut Processing<'_>) -> annals::Result<()> {
    ///     let _: Order = processing.app().repository().get(Uuid::nil())?;
    ///     Ok(())
    /// }
    /// PolicyTest::new("Orders", "Greetings", greet)
    ///     .given_aggregate(Order::place())
    ///     .when_processed()
    ///     .then_error_matches(|e| e.is_not_found())
    ///     .then_no_events_stored();
    /// ```
    ///
    /// # Panics
    ///
    /// When processing succeeded (saying how many notifications it
    /// processed), or `check` is false for the error (showing it).
    #[track_caller]
    pub fn then_error_matches(self, check: impl FnOnce(&Error) -> bool) -> Self {
        match &self.result {
            Ok(n) => panic!(
                "expected processing to fail, but it succeeded ({n} notification(s) processed)"
            ),
            Err(e) if !check(e) => {
                panic!("processing failed, but its error does not match: {e} ({e:?})")
            }
            Err(_) => self,
        }
    }

    /// Checks that the follower stored no events (whether or not
    /// processing failed): after an error, that nothing of the failed
    /// notification was kept.
    ///
    /// See [`then_error_matches`](Self::then_error_matches) for an example.
    ///
    /// # Panics
    ///
    /// When the follower stored events (listing their topics).
    ///
    /// ```
    /// # use annals::system::{Processing, Upstream};
    /// # use annals::testing::PolicyTest;
    /// PolicyTest::new("Orders", "Audit", |_: &Upstream<'_>, _: &mut Processing<'_>| Ok(()))
    ///     .when_processed()
    ///     .then_no_events_stored();
    /// ```
    #[track_caller]
    pub fn then_no_events_stored(self) -> Self {
        let stored = match self.stored() {
            Ok(stored) => stored,
            Err(e) => panic!("the follower's log cannot be read: {e}"),
        };
        if !stored.is_empty() {
            let topics: Vec<&str> = stored.iter().map(|n| n.event.topic.as_str()).collect();
            panic!(
                "expected no events, but the follower {:?} stored {}:\n{}",
                self.follower.name(),
                topics.len(),
                list(&topics)
            );
        }
        self
    }

    /// Runs `check` on the follower application after processing (get its
    /// aggregates from its repository and assert on them).
    ///
    /// See [`PolicyTest::given_follower`] for an example.
    ///
    /// ```
    /// # use annals::system::{Processing, Upstream};
    /// # use annals::testing::PolicyTest;
    /// PolicyTest::new("Orders", "Audit", |_: &Upstream<'_>, _: &mut Processing<'_>| Ok(()))
    ///     .when_processed()
    ///     .then_follower(|audit| assert_eq!(audit.recorder().max_tracking_id("Orders").unwrap(), 0));
    /// ```
    ///
    /// # Panics
    ///
    /// When `check` panics.
    pub fn then_follower(self, check: impl FnOnce(&Application)) -> Self {
        check(&self.follower);
        self
    }
}
