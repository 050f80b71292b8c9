//! Process applications: a policy turns each upstream event into new
//! events of the follower's own aggregates, stored with the tracking record
//! of the upstream notification in one transaction: exactly once.

use std::cell::OnceCell;
use std::sync::Arc;

use crate::application::{Application, Encoded, Save};
use crate::domain::{self, Aggregate, DomainEvent, Metadata};
use crate::error::{Error, Result};
use crate::metrics::seconds_since;
use crate::persistence::{Notification, StoreTx, StoredEvent, Tracking};

/// An upstream event handed to a policy: its leader, its notification, and
/// the event decoded as one of an aggregate type's
/// ([`decode`](Self::decode)). See [`System`](super::System) for an
/// example.
pub struct Upstream<'a> {
    leader: &'a Application,
    notification: &'a Notification,
    /// What caused events carry; found when first needed (from the decoded
    /// event if the policy decoded it, else from the stored state), so an
    /// event nobody reacts to is not decoded for it.
    metadata: OnceCell<Metadata>,
}

impl std::fmt::Debug for Upstream<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Upstream")
            .field("leader", &self.leader.name())
            .field("notification_id", &self.notification.id)
            .field("topic", &self.notification.event.topic)
            .finish_non_exhaustive()
    }
}

impl<'a> Upstream<'a> {
    /// The upstream event of `notification` from `leader`.
    pub(crate) fn new(leader: &'a Application, notification: &'a Notification) -> Self {
        Self {
            leader,
            notification,
            metadata: OnceCell::new(),
        }
    }

    /// The metadata of events caused by one with this correlation id.
    fn caused(&self, correlation_id: Option<uuid::Uuid>) -> Metadata {
        let stored = &self.notification.event;
        let cause = domain::event_id(&stored.originator_id, stored.originator_version);
        Metadata {
            correlation_id: Some(correlation_id.unwrap_or(cause)),
            causation_id: Some(cause),
        }
    }

    /// The leader application's name.
    pub fn leader(&self) -> &str {
        self.leader.name()
    }

    /// The notification (id, topic, stored event).
    pub fn notification(&self) -> &Notification {
        self.notification
    }

    /// The event's topic.
    pub fn topic(&self) -> &str {
        &self.notification.event.topic
    }

    /// The event as one of aggregate `A`'s events, or `None` when its topic
    /// is not one of them: `match` on `A::Event` from here.
    ///
    /// # Errors
    ///
    /// Decoding errors (the state does not decrypt, decompress or
    /// deserialize; a version with no upcaster).
    pub fn decode<A: Aggregate>(&self) -> Result<Option<DomainEvent<A>>> {
        if crate::mapper::variant_of::<A>(self.topic()).is_none() {
            return Ok(None);
        }
        let stored = &self.notification.event;
        let mapper = self.leader.mapper();
        let event: DomainEvent<A> = if mapper.hash_chain() {
            // The link to the event before it, as `get` checks it: a
            // changed, moved or swapped event stops the follower here.
            let mut prev = self.previous_hash::<A>()?;
            mapper.decode_link(stored, &mut prev)?
        } else {
            mapper.decode(stored)?
        };
        let _ = self.metadata.set(self.caused(event.correlation_id));
        Ok(Some(event))
    }

    /// The event as one of the aggregate types of `V` (see
    /// [`AnyEvent`](macro@crate::AnyEvent)): one match for a follower of a
    /// log that holds several types. Hash chains are checked as
    /// [`decode`](Self::decode) checks them.
    ///
    /// # Errors
    ///
    /// [`Error::UnknownTopic`](crate::Error::UnknownTopic) for a topic of
    /// none of `V`'s types, unless `V` has an `#[other]` variant; decoding
    /// errors.
    pub fn decode_any<V: crate::AnyEvent>(&self) -> Result<V> {
        struct Of<'u, 'a>(&'u Upstream<'a>);
        impl crate::any_event::Decoder for Of<'_, '_> {
            fn decode<A: Aggregate>(self) -> Result<DomainEvent<A>> {
                let topic = self.0.topic().to_owned();
                self.0.decode::<A>()?.ok_or(crate::Error::UnknownTopic {
                    topic,
                    aggregate: A::NAME,
                    owner: None,
                })
            }
        }
        V::__decode(self.topic(), Of(self))
    }

    /// The hash recorded by the event before this one in its stream (none
    /// for a stream's first event).
    fn previous_hash<A: Aggregate>(&self) -> Result<Option<domain::EventHash>> {
        let stored = &self.notification.event;
        if stored.originator_version <= A::INITIAL_VERSION {
            return Ok(None);
        }
        let before = stored.originator_version - 1;
        let query = crate::persistence::EventQuery::all()
            .up_to(before)
            .descending()
            .limit(1);
        let rows = self
            .leader
            .recorder()
            .select_events(&stored.originator_id, &query)?;
        match rows.first() {
            Some(prev) if prev.originator_version == before => {
                self.leader.mapper().recorded_hash::<A>(prev).map(Some)
            }
            _ => Err(Error::Integrity {
                aggregate: A::NAME,
                id: stored.originator_id.clone(),
                version: stored.originator_version,
                message: format!("version {before}, the event before it, is missing"),
            }),
        }
    }

    /// What events caused by this one carry: its id as causation id, its
    /// correlation id (or its own id) as theirs.
    ///
    /// # Errors
    ///
    /// The stored state cannot be read (decrypted, decompressed, parsed).
    pub fn metadata(&self) -> Result<Metadata> {
        if let Some(metadata) = self.metadata.get() {
            return Ok(*metadata);
        }
        let header = self.leader.mapper().header(&self.notification.event)?;
        let metadata = self.caused(header.correlation_id);
        let _ = self.metadata.set(metadata);
        Ok(metadata)
    }
}

/// The writes of a policy to the follower's own tables.
type Writes = Box<dyn FnMut(&mut StoreTx<'_>) -> Result<()>>;

/// What a policy does with the events it causes: saves them, all with the
/// tracking record, when the policy returns; and, with
/// [`write`](Self::write), its writes to the follower's own tables in the
/// same transaction. [`app`](Self::app) is the follower, to get its
/// aggregates. See [`System`](super::System) for an example.
pub struct Processing<'a> {
    app: &'a Application,
    upstream: &'a Upstream<'a>,
    events: Encoded,
    writes: Vec<Writes>,
}

impl std::fmt::Debug for Processing<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Processing")
            .field("follower", &self.app.name())
            .field("upstream", self.upstream)
            .field("writes", &self.writes.len())
            .finish_non_exhaustive()
    }
}

impl Processing<'_> {
    /// The follower application (to get its aggregates).
    pub fn app(&self) -> &Application {
        self.app
    }

    /// Adds the pending events of one or several aggregates to what this
    /// notification causes, with its causation and correlation ids. They
    /// are stored (or not) together with the tracking record, after the
    /// policy returns `Ok`.
    ///
    /// # Errors
    ///
    /// An event does not encode; the upstream event's metadata cannot be
    /// read.
    pub fn save<S: Save>(&mut self, mut aggregates: S) -> Result<()> {
        let metadata = self.upstream.metadata()?;
        aggregates.encode_pending(self.app.mapper(), &metadata, &mut self.events)?;
        aggregates.forget_pending();
        Ok(())
    }

    /// Adds writes to the follower's own tables (a search index, a read
    /// model, an outbox) to what this notification causes: after the
    /// policy returns `Ok`, `writes` runs in the transaction that stores
    /// the events it saved and the notification's tracking record, right
    /// after them, so the rows are stored exactly once with the tracking
    /// record, or not at all. A notification tracked already (processed by
    /// another process meanwhile) conflicts before `writes` runs; an error
    /// of `writes` stores nothing and stops the follower, as a policy's
    /// error does. Calls add up, run in order. The follower's store must
    /// be SQLite or PostgreSQL ([`StoreTx`]); a dry run
    /// ([`ProcessApplication::dry_run`]) does not run them.
    ///
    /// ```
    /// # use std::sync::Arc;
    /// # use annals::prelude::*;
    /// # #[aggregate]
    /// # #[derive(Debug)]
    /// # pub struct Order { pub item: String }
    /// # #[aggregate]
    /// # impl Order {
    /// #     #[event("Placed")]
    /// #     pub fn place(item: String) -> Self { Order { item } }
    /// # }
    /// use annals::persistence::StoreTx;
    /// use annals::system::{Policies, System};
    ///
    /// # let dir = std::env::temp_dir().join(format!("annals-doc-{}", Uuid::new_v4()));
    /// # std::fs::create_dir_all(&dir).map_err(annals::Error::user)?;
    /// # let db = dir.join("search.db").to_string_lossy().into_owned();
    /// let orders = Arc::new(Application::builder("Orders").build()?);
    /// let search = Arc::new(Application::builder("Search").sqlite(db).build()?);
    /// let index = Policies::new().on::<Order>(|placed, processing| {
    ///     let OrderEvent::Placed { item } = placed.event.clone();
    ///     let id = placed.originator_id.to_string();
    ///     processing.write(move |tx: &mut StoreTx<'_>| {
    ///         let conn = tx.sqlite()?;
    ///         conn.execute_batch("CREATE TABLE IF NOT EXISTS items (item TEXT, id TEXT)")
    ///             .map_err(annals::Error::user)?;
    ///         conn.execute("INSERT INTO items VALUES (?1, ?2)", [&item, &id])
    ///             .map_err(annals::Error::user)?;
    ///         Ok(())
    ///     });
    ///     Ok(())
    /// });
    /// let system = System::builder()
    ///     .application(orders.clone())
    ///     .process(search.clone(), index)
    ///     .pipe([&orders, &search])
    ///     .build()?;
    /// orders.save(&mut Order::place("kettle".into()))?;
    /// assert_eq!(system.pull("Search", 10)?, 1);
    /// assert_eq!(system.pull("Search", 10)?, 0); // once
    /// # Ok::<(), annals::Error>(())
    /// ```
    pub fn write(&mut self, writes: impl FnMut(&mut StoreTx<'_>) -> Result<()> + 'static) {
        self.writes.push(Box::new(writes));
    }
}

/// A policy: what a process application does with each upstream event.
/// Implemented by closures `Fn(&Upstream, &mut Processing) -> Result<()>`
/// and by [`Policies`] (typed handlers per leader aggregate type); a type
/// of one's own can hold state (a client, settings).
///
/// ```
/// # use std::sync::Arc;
/// # use annals::prelude::*;
/// # #[aggregate]
/// # #[derive(Debug)]
/// # pub struct Order { pub item: String }
/// # #[aggregate]
/// # impl Order {
/// #     #[event("Placed")]
/// #     pub fn place(item: String) -> Self { Order { item } }
/// # }
/// # #[aggregate]
/// # #[derive(Debug)]
/// # pub struct Parcel { pub item: String }
/// # #[aggregate]
/// # impl Parcel {
/// #     #[event("Packed")]
/// #     pub fn pack(item: String) -> Self { Parcel { item } }
/// # }
/// use annals::system::{Policy, Processing, Upstream};
///
/// /// Packs every order, unless its item is on the list.
/// struct Shipping { refused: Vec<String> }
///
/// impl Policy for Shipping {
///     fn process(&self, event: &Upstream<'_>, processing: &mut Processing<'_>) -> annals::Result<()> {
///         let Some(placed) = event.decode::<Order>()? else { return Ok(()) };
///         let OrderEvent::Placed { item } = placed.event;
///         if !self.refused.contains(&item) {
///             processing.save(&mut Parcel::pack(item))?;
///         }
///         Ok(())
///     }
/// }
///
/// let orders = Arc::new(Application::builder("Orders").build()?);
/// let shipping = Arc::new(Application::builder("Shipping").build()?);
/// let system = annals::system::System::builder()
///     .application(orders.clone())
///     .process(shipping.clone(), Shipping { refused: vec!["gun".into()] })
///     .pipe([&orders, &shipping])
///     .build()?;
/// orders.save(&mut Order::place("kettle".into()))?;
/// orders.save(&mut Order::place("gun".into()))?;
/// assert_eq!(system.pull("Shipping", 10)?, 2); // both processed,
/// assert_eq!(shipping.last_notification_id()?, Some(1)); // one parcel
/// # Ok::<(), annals::Error>(())
/// ```
pub trait Policy: Send + Sync {
    /// Processes one upstream event; saves what it causes through
    /// `processing`. An error stops the follower (nothing of this event is
    /// stored; it is processed again when the follower restarts).
    ///
    /// # Errors
    ///
    /// Whatever stops the follower: wrap an error of one's own with
    /// [`Error::user`].
    fn process(&self, event: &Upstream<'_>, processing: &mut Processing<'_>) -> Result<()>;
}

impl<F> Policy for F
where
    F: Fn(&Upstream<'_>, &mut Processing<'_>) -> Result<()> + Send + Sync,
{
    fn process(&self, event: &Upstream<'_>, processing: &mut Processing<'_>) -> Result<()> {
        self(event, processing)
    }
}

/// A handler of one leader aggregate type's events.
type Handler = Box<dyn Fn(&Upstream<'_>, &mut Processing<'_>) -> Result<()> + Send + Sync>;

/// A policy made of typed handlers, one per leader aggregate type: each
/// gets the events of its type already decoded; events of other types are
/// not decoded, and pass.
///
/// ```
/// use std::sync::Arc;
/// use annals::prelude::*;
/// use annals::system::{Policies, System, SingleThreadedRunner};
///
/// #[aggregate]
/// #[derive(Debug)]
/// pub struct Order { pub item: String }
/// #[aggregate]
/// impl Order {
///     #[event("Placed")]
///     pub fn place(item: String) -> Self { Order { item } }
/// }
///
/// #[aggregate]
/// #[derive(Debug)]
/// pub struct Parcel { pub item: String }
/// #[aggregate]
/// impl Parcel {
///     #[event("Packed")]
///     pub fn pack(item: String) -> Self { Parcel { item } }
/// }
///
/// let orders = Arc::new(Application::builder("Orders").build()?);
/// let shipping = Arc::new(Application::builder("Shipping").build()?);
/// let policy = Policies::new().on::<Order>(|placed, processing| {
///     let OrderEvent::Placed { item } = &placed.event;
///     processing.save(&mut Parcel::pack(item.clone()))
/// });
/// let system = Arc::new(
///     System::builder()
///         .application(orders.clone())
///         .process(shipping.clone(), policy)
///         .pipe([&orders, &shipping])
///         .build()?,
/// );
/// orders.save(&mut Order::place("kettle".into()))?;
/// assert_eq!(SingleThreadedRunner::new(system).run()?, 1);
/// assert_eq!(shipping.last_notification_id()?, Some(1));
/// # Ok::<(), annals::Error>(())
/// ```
#[derive(Default)]
pub struct Policies {
    handlers: Vec<(&'static str, Handler)>,
}

impl std::fmt::Debug for Policies {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let types: Vec<&str> = self.handlers.iter().map(|(name, _)| *name).collect();
        f.debug_struct("Policies").field("on", &types).finish()
    }
}

impl Policies {
    /// A policy with no handlers yet.
    pub fn new() -> Self {
        Self::default()
    }

    /// Handles the events of leader aggregate type `A`: `handler` gets
    /// each one decoded (match on `A::Event` in `event.event`).
    #[must_use]
    pub fn on<A: Aggregate>(
        mut self,
        handler: impl Fn(&DomainEvent<A>, &mut Processing<'_>) -> Result<()> + Send + Sync + 'static,
    ) -> Self {
        self.handlers.push((
            A::NAME,
            Box::new(move |upstream, processing| match upstream.decode::<A>()? {
                Some(event) => handler(&event, processing),
                None => Ok(()),
            }),
        ));
        self
    }
}

impl Policy for Policies {
    fn process(&self, event: &Upstream<'_>, processing: &mut Processing<'_>) -> Result<()> {
        self.handlers
            .iter()
            .try_for_each(|(_, handler)| handler(event, processing))
    }
}

/// A follower: an application, its policy and its leaders.
#[derive(Clone)]
pub struct ProcessApplication {
    pub(crate) app: Arc<Application>,
    pub(crate) policy: Arc<dyn Policy>,
}

impl std::fmt::Debug for ProcessApplication {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ProcessApplication")
            .field("name", &self.app.name())
            .finish_non_exhaustive()
    }
}

impl ProcessApplication {
    /// `app` processing upstream events with `policy`.
    pub fn new(app: Arc<Application>, policy: impl Policy + 'static) -> Self {
        Self {
            app,
            policy: Arc::new(policy),
        }
    }

    /// The application.
    pub fn app(&self) -> &Arc<Application> {
        &self.app
    }

    /// Processes one notification of `leader` unless it is tracked already;
    /// true if it was processed now. A conflict on the follower's own
    /// aggregates (another writer changed one) runs the policy again, up to
    /// 3 times.
    ///
    /// # Errors
    ///
    /// The policy's error; store errors (a conflict after 3 tries).
    pub fn process_notification(
        &self,
        leader: &Application,
        notification: &Notification,
    ) -> Result<bool> {
        Ok(self.process(leader, notification)?.is_some())
    }

    /// Like [`process_notification`](Self::process_notification), but only
    /// runs the policy and encodes what it causes, storing nothing:
    /// returns how many events would be stored.
    ///
    /// # Errors
    ///
    /// The policy's error; an event that does not encode.
    pub fn dry_run(&self, leader: &Application, notification: &Notification) -> Result<usize> {
        let (events, _, _) = self.run_policy(leader, notification)?;
        Ok(events.len())
    }

    fn run_policy(
        &self,
        leader: &Application,
        notification: &Notification,
    ) -> Result<(Vec<StoredEvent>, Tracking, Vec<Writes>)> {
        let upstream = Upstream::new(leader, notification);
        let mut processing = Processing {
            app: &self.app,
            upstream: &upstream,
            events: Encoded::default(),
            writes: Vec::new(),
        };
        // A tombstone (a stream ended for good) is no event of an
        // aggregate: tracked, never given to the policy.
        if !annals_core::ending::is_tombstone(&notification.event.topic) {
            self.policy.process(&upstream, &mut processing)?;
        }
        let tracking = Tracking {
            application_name: leader.name().to_owned(),
            notification_id: notification.id,
        };
        Ok((processing.events.events, tracking, processing.writes))
    }

    /// Processes one notification unless it is tracked already: how many
    /// events it caused, or `None` when it was processed before.
    pub(crate) fn process(
        &self,
        leader: &Application,
        notification: &Notification,
    ) -> Result<Option<usize>> {
        let span = tracing::debug_span!(
            "process",
            follower = self.app.name(),
            leader = leader.name(),
            notification_id = notification.id,
            topic = notification.event.topic.as_str(),
            originator_id = notification.event.originator_id.as_str(),
            originator_version = notification.event.originator_version,
            attempt = tracing::field::Empty,
            events = tracing::field::Empty,
            processed = tracing::field::Empty,
        );
        let _entered = span.enter();
        let recorder = self.app.recorder();
        let mut attempt = 1;
        loop {
            span.record("attempt", attempt);
            if recorder.has_tracking_id(leader.name(), notification.id)? {
                span.record("processed", false);
                return Ok(None);
            }
            let (ran, new_keys) =
                crate::personal::collecting_new_keys(|| self.run_policy(leader, notification));
            let (events, tracking, mut writes) = match ran {
                Ok(ran) => ran,
                Err(e) => {
                    if let Some(ring) = self.app.mapper().keys() {
                        ring.drop_unconfirmed(&new_keys);
                    }
                    return Err(e);
                }
            };
            if let (Some(ring), false) = (self.app.mapper().keys(), new_keys.is_empty()) {
                // Written first, each in a transaction of its own: a key
                // with no data is harmless.
                let all = ring.insert_all(&new_keys)?;
                ring.confirm(&new_keys);
                if !all {
                    if attempt < 3 {
                        attempt += 1;
                        continue;
                    }
                    // Never store events sealed with a key the store does
                    // not hold: they could not be read.
                    return Err(Error::conflict(
                        "other writers kept giving this policy's subjects data keys first",
                    ));
                }
            }
            let start = std::time::Instant::now();
            let stored = if writes.is_empty() {
                recorder.insert_events_tracked(&events, &tracking)
            } else {
                recorder.insert_events_with(&events, Some(&tracking), &mut |tx| {
                    writes.iter_mut().try_for_each(|write| write(tx))
                })
            };
            let metrics = &self.app.repository().metrics;
            if !events.is_empty() {
                metrics.save_seconds.record(seconds_since(start));
                metrics.outcome(&stored, events.len());
            } else if stored.as_ref().is_err_and(Error::is_conflict) {
                metrics.conflicts.increment(1);
            }
            match stored {
                Ok(_) => {
                    span.record("processed", true);
                    span.record("events", events.len());
                    self.app.notifier().notify();
                    return Ok(Some(events.len()));
                }
                Err(Error::Conflict { .. }) if attempt < 3 => {
                    tracing::info!(
                        follower = self.app.name(),
                        notification_id = notification.id,
                        attempt,
                        "conflict; processing the notification again"
                    );
                    attempt += 1;
                }
                Err(e) => return Err(e),
            }
        }
    }

    /// Processes every notification of `leader` after the last one tracked,
    /// up to `limit`; returns how many were processed.
    ///
    /// # Errors
    ///
    /// As [`process_notification`](Self::process_notification); the
    /// notifications before the failing one stay processed.
    pub fn pull(&self, leader: &Application, limit: usize) -> Result<usize> {
        let span = tracing::debug_span!(
            "pull",
            follower = self.app.name(),
            leader = leader.name(),
            from = tracing::field::Empty,
            selected = tracing::field::Empty,
            processed = tracing::field::Empty,
            first_notification_id = tracing::field::Empty,
            last_notification_id = tracing::field::Empty,
        );
        let _entered = span.enter();
        let start = self.app.recorder().max_tracking_id(leader.name())? + 1;
        span.record("from", start);
        let page = leader
            .recorder()
            .select_notifications(&crate::persistence::NotificationQuery::new(start, limit))?;
        span.record("selected", page.len());
        let mut processed = 0;
        // Tracked up to here: the position, for the gauges.
        let mut position = start - 1;
        let pulled = page.iter().try_for_each(|notification| {
            if self.process_notification(leader, notification)? {
                if processed == 0 {
                    span.record("first_notification_id", notification.id);
                }
                span.record("last_notification_id", notification.id);
                processed += 1;
            }
            position = notification.id;
            Ok(())
        });
        // A short page read up to the leader's newest notification; after
        // a full one, ask.
        let newest = match page.last() {
            Some(last) if page.len() < limit => Ok(last.id),
            None if limit > 0 => Ok(position),
            _ => leader.recorder().max_notification_id(),
        };
        if let Ok(newest) = newest {
            crate::metrics::follower_at(self.app.name(), leader.name(), position, newest);
        }
        pulled?;
        span.record("processed", processed);
        Ok(processed)
    }
}
