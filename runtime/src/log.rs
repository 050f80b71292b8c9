//! Reading an application's log: pages of notifications, and a catch-up
//! subscription that reads what is stored and then waits for more
//! ([`Application::subscribe`]).

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use crate::application::Application;
use crate::error::Result;
use crate::persistence::wake::{Backoff, Signal, Watch};
use crate::persistence::{Notification, NotificationQuery};

/// Pages through an application's notifications, in id order
/// (`app.log_reader()`): what is stored now, without waiting for more (for
/// that, see [`Subscription`]).
///
/// ```
/// # use annals::prelude::*;
/// # #[aggregate]
/// # #[derive(Debug)]
/// # pub struct Note { pub text: String }
/// # #[aggregate]
/// # impl Note {
/// #     #[event("Written")]
/// #     pub fn write(text: String) -> Self { Note { text } }
/// #     #[event("Edited")]
/// #     pub fn edit(&mut self, text: String) { self.text = text; }
/// # }
/// let app = Application::builder("Notes").build()?;
/// let mut note = Note::write("a".into());
/// note.edit("b".into());
/// note.edit("c".into());
/// app.save(&mut note)?;
///
/// let reader = app.log_reader().page_size(2).topics(["Note.Edited"]);
/// let ids = reader.read(1).map(|n| n.map(|n| n.id)).collect::<annals::Result<Vec<_>>>()?;
/// assert_eq!(ids, [2, 3]);
/// assert_eq!(reader.page(3)?.len(), 1);
/// # Ok::<(), annals::Error>(())
/// ```
pub struct NotificationLogReader {
    recorder: Arc<dyn crate::persistence::ProcessRecorder>,
    page_size: usize,
    topics: Vec<String>,
}

impl std::fmt::Debug for NotificationLogReader {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NotificationLogReader")
            .field("page_size", &self.page_size)
            .field("topics", &self.topics)
            .finish_non_exhaustive()
    }
}

impl NotificationLogReader {
    /// A reader of `app`'s log, 1,000 notifications a page.
    pub fn new(app: &Application) -> Self {
        Self {
            recorder: app.recorder().clone(),
            page_size: 1_000,
            topics: Vec::new(),
        }
    }

    /// Reads `page_size` notifications per select.
    pub fn page_size(mut self, page_size: usize) -> Self {
        self.page_size = page_size.max(1);
        self
    }

    /// Only notifications of these topics.
    pub fn topics<I: IntoIterator<Item = S>, S: Into<String>>(mut self, topics: I) -> Self {
        self.topics = topics.into_iter().map(Into::into).collect();
        self
    }

    /// One page from id `start` on (at most `page_size` notifications; fewer
    /// at the end of the log).
    ///
    /// # Errors
    ///
    /// Store errors.
    pub fn page(&self, start: u64) -> Result<Vec<Notification>> {
        self.recorder.select_notifications(
            &NotificationQuery::new(start, self.page_size).topics(self.topics.iter().cloned()),
        )
    }

    /// Every notification from id `start` on that is stored now, page by
    /// page (memory stays bounded by the page size). A store error is
    /// yielded as an `Err` item, and ends the iterator.
    pub fn read(&self, start: u64) -> impl Iterator<Item = Result<Notification>> + '_ {
        let mut next = start.max(1);
        let mut page = Vec::<Notification>::new().into_iter();
        let mut done = false;
        std::iter::from_fn(move || loop {
            if let Some(n) = page.next() {
                next = n.id + 1;
                return Some(Ok(n));
            }
            if done {
                return None;
            }
            match self.page(next) {
                Ok(p) => {
                    done = p.len() < self.page_size;
                    page = p.into_iter();
                }
                Err(e) => {
                    done = true;
                    return Some(Err(e));
                }
            }
        })
    }
}

/// Reads what is stored from a position, then waits for new events: an
/// iterator that ends only when stopped (see [`Subscription::stopper`]).
/// Woken in-process by the application's saves, by LISTEN/NOTIFY on
/// PostgreSQL, and otherwise by polling. A store error is yielded as an
/// `Err` item; the next call tries again.
///
/// Start it from the id after the last one the consumer has handled
/// (kept by the consumer, with what it did): a subscription keeps no
/// position of its own across restarts.
///
/// ```
/// # use annals::prelude::*;
/// # #[aggregate]
/// # #[derive(Debug)]
/// # pub struct Note { pub text: String }
/// # #[aggregate]
/// # impl Note {
/// #     #[event("Written")]
/// #     pub fn write(text: String) -> Self { Note { text } }
/// #     #[event("Edited")]
/// #     pub fn edit(&mut self, text: String) { self.text = text; }
/// # }
/// let app = Application::builder("Notes").build()?;
/// app.save(&mut Note::write("first".into()))?;
///
/// let subscription = app.subscribe(1, &[])?;
/// let stopper = subscription.stopper();
/// std::thread::scope(|s| {
///     s.spawn(|| {
///         app.save(&mut Note::write("second".into())).unwrap();
///     });
///     let mut seen = Vec::new();
///     for notification in subscription {
///         seen.push(notification?.id);
///         if seen.len() == 2 {
///             stopper.stop(); // the iterator ends at the next call
///         }
///     }
///     assert_eq!(seen, [1, 2]);
///     Ok::<(), annals::Error>(())
/// })?;
/// # Ok::<(), annals::Error>(())
/// ```
pub struct Subscription {
    reader: NotificationLogReader,
    next: u64,
    buffer: std::vec::IntoIter<Notification>,
    /// Raises `signal` at commits of other processes, while it lives.
    _watch: Watch,
    backoff: Backoff,
    poll: Duration,
    stopped: Arc<AtomicBool>,
    signal: Arc<Signal>,
}

impl std::fmt::Debug for Subscription {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Subscription")
            .field("next", &self.next)
            .field("reader", &self.reader)
            .finish_non_exhaustive()
    }
}

impl Subscription {
    /// Subscribes to `app`'s log from id `start` on (with a topic filter
    /// if `topics` is not empty); `app.subscribe(start, topics)`.
    ///
    /// # Errors
    ///
    /// The store's watcher cannot start (PostgreSQL: no `LISTEN`
    /// connection).
    pub fn new(app: &Application, start: u64, topics: &[&str]) -> Result<Self> {
        let signal = Signal::new();
        // One signal, raised by saves in this process, by the stopper and
        // by the store's watcher (commits of any process).
        app.notifier().subscribe(&signal);
        let watch = app.recorder().watch(&signal)?;
        Ok(Self {
            reader: NotificationLogReader::new(app).topics(topics.iter().copied()),
            next: start.max(1),
            buffer: Vec::new().into_iter(),
            _watch: watch,
            backoff: Backoff::default(),
            poll: Duration::from_millis(500),
            stopped: Arc::new(AtomicBool::new(false)),
            signal,
        })
    }

    /// How long to wait before looking again when no wake-up comes (for
    /// writers in other processes on SQLite). Default 500 ms.
    pub fn poll_interval(mut self, poll: Duration) -> Self {
        self.poll = poll;
        self
    }

    /// A handle that stops the subscription from another thread.
    pub fn stopper(&self) -> Stopper {
        Stopper {
            stopped: self.stopped.clone(),
            signal: self.signal.clone(),
        }
    }
}

/// Stops a [`Subscription`] (its iterator then ends), a follower loop
/// ([`System::run_follower`](crate::system::System::run_follower)) or a
/// projection's [`Projection::run`](crate::system::Projection::run).
/// Cloneable and `Send`: stop from another thread, or from the loop itself
/// (see the example on [`Subscription`]).
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
/// # let orders = Arc::new(Application::builder("Orders").build()?);
/// # let shipping = Arc::new(Application::builder("Shipping").build()?);
/// # let policy = annals::system::Policies::new().on::<Order>(|placed, processing| {
/// #     let OrderEvent::Placed { item } = &placed.event;
/// #     processing.save(&mut Parcel::pack(item.clone()))
/// # });
/// # let system = Arc::new(annals::system::System::builder()
/// #     .application(orders.clone())
/// #     .process(shipping.clone(), policy)
/// #     .pipe([&orders, &shipping])
/// #     .build()?);
/// use std::time::Duration;
/// use annals::log::Stopper;
///
/// let stop = Stopper::new();
/// std::thread::scope(|s| {
///     let follower = s.spawn(|| system.run_follower("Shipping", &stop, Duration::from_millis(100)));
///     orders.save(&mut Order::place("kettle".into()))?;
///     while !system.is_caught_up("Shipping")? {
///         std::thread::sleep(Duration::from_millis(5));
///     }
///     stop.stop();
///     follower.join().expect("no panic")
/// })?;
/// assert!(stop.is_stopped());
/// assert_eq!(shipping.last_notification_id()?, Some(1));
/// # Ok::<(), annals::Error>(())
/// ```

#[derive(Debug, Clone, Default)]
pub struct Stopper {
    stopped: Arc<AtomicBool>,
    signal: Arc<Signal>,
}

impl Stopper {
    /// A stopper that has not stopped anything yet.
    pub fn new() -> Self {
        Self::default()
    }

    /// Stops what it was given to (after the notification it is on).
    pub fn stop(&self) {
        self.stopped.store(true, Ordering::SeqCst);
        self.signal.raise();
    }

    /// Whether [`stop`](Self::stop) was called.
    pub fn is_stopped(&self) -> bool {
        self.stopped.load(Ordering::SeqCst)
    }

    /// The signal raised by [`stop`](Self::stop) (and by whatever else the
    /// loop subscribes it to).
    pub(crate) fn signal(&self) -> &Arc<Signal> {
        &self.signal
    }
}

impl Iterator for Subscription {
    type Item = Result<Notification>;

    fn next(&mut self) -> Option<Self::Item> {
        loop {
            if self.stopped.load(Ordering::SeqCst) {
                return None;
            }
            if let Some(n) = self.buffer.next() {
                self.next = n.id + 1;
                return Some(Ok(n));
            }
            match self.reader.page(self.next) {
                Ok(page) => {
                    self.backoff.reset();
                    if page.is_empty() {
                        self.signal.wait(self.poll);
                    } else {
                        self.buffer = page.into_iter();
                    }
                }
                // The store failed (a server restarting): look again after
                // a pause, from the same position.
                Err(e) if e.is_persistence() => {
                    tracing::warn!(error = %e.report(), "reading the log failed; retrying");
                    self.backoff.wait(&self.signal);
                }
                Err(e) => return Some(Err(e)),
            }
        }
    }
}

/// The changes of one aggregate, as they happen, history included
/// (`app.changes::<Dog>(id)`): every event of its stream from version 1,
/// decoded, then each new one as it is stored (by any process), until
/// stopped. evsrc's aggregate change observer, as an iterator: the
/// observer pulls at its own pace, holds no lock of the store's, and can
/// stop, where a callback would run inside the save and could not.
///
/// ```
/// # use annals::prelude::*;
/// # #[aggregate]
/// # #[derive(Debug)]
/// # pub struct Note { pub text: String }
/// # #[aggregate]
/// # impl Note {
/// #     #[event("Written")]
/// #     pub fn write(text: String) -> Self { Note { text } }
/// #     #[event("Edited")]
/// #     pub fn edit(&mut self, text: String) { self.text = text; }
/// # }
/// let app = Application::builder("Notes").build()?;
/// let mut note = Note::write("first".into());
/// app.save(&mut note)?;
/// app.save(&mut Note::write("another note".into()))?;
///
/// let changes = app.changes::<Note>(note.id())?;
/// let stopper = changes.stopper();
/// note.edit("second".into());
/// app.save(&mut note)?;
/// let mut seen = Vec::new();
/// for event in changes {
///     let event = event?;
///     seen.push(event.originator_version);
///     if event.originator_version == 2 {
///         stopper.stop();
///     }
/// }
/// assert_eq!(seen, [1, 2]); // the history, then the new event; not the other note's
/// # Ok::<(), annals::Error>(())
/// ```
pub struct Changes<A: crate::domain::Aggregate> {
    history: std::vec::IntoIter<crate::domain::DomainEvent<A>>,
    /// The last version yielded: later events of the log at or below it
    /// were in the history.
    version: u64,
    stored_id: String,
    subscription: Subscription,
    mapper: crate::mapper::Mapper,
}

impl<A: crate::domain::Aggregate> std::fmt::Debug for Changes<A> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Changes")
            .field("id", &self.stored_id)
            .field("version", &self.version)
            .finish_non_exhaustive()
    }
}

impl<A: crate::domain::Aggregate> Changes<A> {
    /// The changes of aggregate `id` of `app` (see the type).
    ///
    /// # Errors
    ///
    /// Reading the stream or starting the subscription failed; a stored
    /// event does not decode; [`Error::StreamEnded`](crate::Error::StreamEnded)
    /// when the stream was archived or deleted (the iterator also yields
    /// it when the stream is ended while it runs).
    pub fn new(app: &Application, id: &A::Id) -> Result<Self> {
        use crate::domain::AggregateId as _;
        // The log position first, then the history: what is stored in
        // between is in both, and skipped by version.
        let start = app.recorder().max_notification_id()? + 1;
        let stored_id = id.to_stored();
        let mapper = app.mapper().clone();
        let history = app
            .recorder()
            .select_events(&stored_id, &crate::persistence::EventQuery::all())?
            .iter()
            .map(|stored| {
                if annals_core::ending::is_tombstone(&stored.topic) {
                    return Err(annals_core::ending::ended_error(stored));
                }
                mapper.decode::<A>(stored)
            })
            .collect::<Result<Vec<_>>>()?;
        let topics: Vec<&str> = Vec::new();
        Ok(Self {
            history: history.into_iter(),
            version: 0,
            stored_id,
            subscription: Subscription::new(app, start, &topics)?,
            mapper,
        })
    }

    /// A handle that stops the iterator from another thread (or the loop).
    pub fn stopper(&self) -> Stopper {
        self.subscription.stopper()
    }
}

impl<A: crate::domain::Aggregate> Iterator for Changes<A> {
    type Item = Result<crate::domain::DomainEvent<A>>;

    fn next(&mut self) -> Option<Self::Item> {
        if let Some(event) = self.history.next() {
            self.version = event.originator_version;
            return Some(Ok(event));
        }
        loop {
            let notification = match self.subscription.next()? {
                Ok(notification) => notification,
                Err(e) => return Some(Err(e)),
            };
            let stored = &notification.event;
            if stored.originator_id != self.stored_id || stored.originator_version <= self.version {
                continue;
            }
            self.version = stored.originator_version;
            if annals_core::ending::is_tombstone(&stored.topic) {
                // The stream was ended for good: nothing more will come.
                return Some(Err(annals_core::ending::ended_error(stored)));
            }
            return Some(self.mapper.decode::<A>(stored));
        }
    }
}
