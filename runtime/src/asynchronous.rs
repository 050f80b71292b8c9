//! The async facade (feature `tokio`): what a request handler needs, as
//! `async` functions that never block the runtime's worker threads.
//!
//! On a multi-threaded runtime a call runs the blocking core on the
//! thread that awaits it, inside `block_in_place`: tokio moves that
//! worker's other tasks to another thread first, so no worker is ever
//! blocked, and the call costs no hand-off (two thread wake-ups, measured
//! by `annals-bench --web`). One caveat follows: futures that the same
//! task polls beside the call (`join!`, `select!`) wait for it; spawn them
//! as tasks of their own instead. On a current-thread runtime the call
//! goes to tokio's blocking pool (`spawn_blocking`: up to 512 threads by
//! default, set with the runtime builder's `max_blocking_threads`).
//! Futures are `Send`. A dropped future never leaves half a save: a
//! blocking call, once begun, runs to its end, and a save is one
//! transaction (or one object) anyway, so it is stored whole or not at
//! all; the caller just does not learn which. A stream
//! ([`AsyncApplication::subscribe`], [`AsyncApplication::changes`]) holds
//! one blocking thread while it lives and stops it when dropped.
//!
//! ```
//! use std::sync::Arc;
//! use annals::asynchronous::AsyncApplication;
//! # use annals::prelude::*;
//! # #[aggregate]
//! # #[derive(Debug, Clone)]
//! # pub struct Account { pub balance: i64 }
//! # #[aggregate]
//! # impl Account {
//! #     #[event("Opened")]
//! #     pub fn open() -> Self { Account { balance: 0 } }
//! #     #[event("Deposited")]
//! #     fn deposited(&mut self, amount: i64) { self.balance += amount; }
//! #     pub fn deposit(&mut self, amount: i64) -> Result<(), String> {
//! #         if amount <= 0 { return Err(format!("cannot deposit {amount}")); }
//! #         self.deposited(amount);
//! #         Ok(())
//! #     }
//! # }
//!
//! # let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build().unwrap();
//! # runtime.block_on(async {
//! let bank = AsyncApplication::new(Arc::new(Application::builder("Bank").build()?));
//! let account = bank.save(Account::open()).await?;
//! bank.execute(account.id(), |a: &mut Account| a.deposit(10)).await?;
//! assert_eq!(bank.get::<Account>(account.id()).await?.balance, 10);
//! # Ok::<(), Box<dyn std::error::Error + Send + Sync>>(())
//! # }).unwrap();
//! ```

mod dcb;
mod dcb_app;
pub use dcb::{AsyncDcbRecorder, DcbStream};
pub use dcb_app::AsyncDcbApplication;

use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use crate::application::{Application, ApplicationBuilder, CommandError, CommandGuard};
use crate::clock::Timestamp;
use crate::domain::{Aggregate, DomainEvent};
use crate::error::Result;
use crate::log::Stopper;
use crate::persistence::Notification;

/// An [`Application`] for async code (see [the module](self)). Cheap to
/// clone: share it as a web framework's state.
#[derive(Clone)]
pub struct AsyncApplication {
    app: Arc<Application>,
}

impl std::fmt::Debug for AsyncApplication {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AsyncApplication")
            .field("name", &self.app.name())
            .finish()
    }
}

/// Runs `f` where it may block (see [the module](self)); a panic in it
/// goes on in the caller.
async fn blocking<T, F>(f: F) -> T
where
    F: FnOnce() -> T + Send + 'static,
    T: Send + 'static,
{
    // On a multi-threaded runtime the call runs right here, and the
    // worker's other tasks move to a thread of their own while it runs
    // (`block_in_place`): a hand-off to the blocking pool costs two
    // thread wake-ups per call (`annals-bench --web` measures it). A
    // current-thread runtime has no other worker to take over.
    if tokio::runtime::Handle::try_current()
        .is_ok_and(|h| h.runtime_flavor() == tokio::runtime::RuntimeFlavor::MultiThread)
    {
        return tokio::task::block_in_place(f);
    }
    // The caller's span (a request's, say) and subscriber go with the
    // call to the blocking pool, so that the store's spans nest in it.
    let span = tracing::Span::current();
    let dispatch = tracing::dispatcher::get_default(Clone::clone);
    let f = move || tracing::dispatcher::with_default(&dispatch, || span.in_scope(f));
    match tokio::task::spawn_blocking(f).await {
        Ok(value) => value,
        Err(e) => match e.try_into_panic() {
            Ok(panic) => std::panic::resume_unwind(panic),
            // Only a runtime shutting down cancels a blocking task.
            Err(e) => panic!("the runtime is shutting down: {e}"),
        },
    }
}

impl AsyncApplication {
    /// The facade of `app`.
    pub fn new(app: Arc<Application>) -> Self {
        Self { app }
    }

    /// Builds the application on the blocking pool: opening a store
    /// blocks (PostgreSQL's client even runs a runtime of its own, which
    /// cannot start on a runtime's worker thread), so inside async code
    /// build it with this, not [`ApplicationBuilder::build`].
    ///
    /// # Errors
    ///
    /// As [`ApplicationBuilder::build`].
    pub async fn build(builder: ApplicationBuilder) -> Result<Self> {
        blocking(move || builder.build())
            .await
            .map(|app| Self::new(Arc::new(app)))
    }

    /// The application itself (its blocking API).
    pub fn sync(&self) -> &Arc<Application> {
        &self.app
    }

    /// Runs `f` with the application on the blocking pool: for work the
    /// facade has no method for (a transfer between two aggregates, a
    /// projection's pull).
    pub async fn call<T, F>(&self, f: F) -> T
    where
        F: FnOnce(&Application) -> T + Send + 'static,
        T: Send + 'static,
    {
        self.run(f).await
    }

    async fn run<T, F>(&self, f: F) -> T
    where
        F: FnOnce(&Application) -> T + Send + 'static,
        T: Send + 'static,
    {
        let app = self.app.clone();
        blocking(move || f(&app)).await
    }

    /// Saves `aggregate`'s pending events; gives it back saved.
    ///
    /// # Errors
    ///
    /// As [`Application::save`] (nothing stored, the events still pending
    /// on the aggregate the error leaves behind, which is dropped).
    pub async fn save<A: Aggregate>(&self, mut aggregate: A) -> Result<A> {
        self.run(move |app| app.save(&mut aggregate).map(|_| aggregate))
            .await
    }

    /// Saves several aggregates in one transaction.
    ///
    /// # Errors
    ///
    /// As [`Application::save`].
    pub async fn save_all<A: Aggregate>(&self, mut aggregates: Vec<A>) -> Result<Vec<A>> {
        self.run(move |app| app.save(aggregates.as_mut_slice()).map(|_| aggregates))
            .await
    }

    /// The current state of aggregate `id` ([`Application::get`]).
    ///
    /// # Errors
    ///
    /// As [`Application::get`].
    pub async fn get<A: Aggregate>(&self, id: impl Into<A::Id>) -> Result<A> {
        let id = id.into();
        self.run(move |app| app.get::<A>(id)).await
    }

    /// Aggregate `id`'s events folded by `projector`
    /// ([`Application::project`]).
    ///
    /// # Errors
    ///
    /// As [`Application::project`].
    pub async fn project<A, S>(
        &self,
        id: impl Into<A::Id>,
        initial: S,
        projector: impl FnMut(S, &crate::DomainEvent<A>) -> S + Send + 'static,
    ) -> Result<S>
    where
        A: Aggregate,
        S: Send + 'static,
    {
        let id = id.into();
        self.run(move |app| app.project::<A, S>(id, initial, projector))
            .await
    }

    /// Aggregate `id` at `version` ([`Application::get_at`]).
    ///
    /// # Errors
    ///
    /// As [`Application::get_at`].
    pub async fn get_at<A: Aggregate>(&self, id: impl Into<A::Id>, version: u64) -> Result<A> {
        let id = id.into();
        self.run(move |app| app.get_at::<A>(id, version)).await
    }

    /// Aggregate `id` as it was at `timestamp` ([`Application::get_as_of`]).
    ///
    /// # Errors
    ///
    /// As [`Application::get_as_of`].
    pub async fn get_as_of<A: Aggregate>(
        &self,
        id: impl Into<A::Id>,
        timestamp: Timestamp,
    ) -> Result<A> {
        let id = id.into();
        self.run(move |app| app.get_as_of::<A>(id, timestamp)).await
    }

    /// Runs `command` on aggregate `id` and saves what it triggered,
    /// trying again on a conflict ([`Application::execute`]).
    ///
    /// # Errors
    ///
    /// As [`Application::execute`].
    pub async fn execute<A, T, E, F>(
        &self,
        id: impl Into<A::Id>,
        command: F,
    ) -> Result<T, CommandError<E>>
    where
        A: Aggregate,
        F: FnMut(&mut A) -> Result<T, E> + Send + 'static,
        T: Send + 'static,
        E: Send + 'static,
    {
        let id = id.into();
        // The turn on the aggregate is awaited here, not on a thread: a
        // hundred requests queued for one account hold no thread each.
        let _held = self
            .app
            .lock_commands_async::<A>(std::slice::from_ref(&id))
            .await;
        let policy = self.app.retry_policy();
        self.run(move |app| app.execute_held(id, policy, command))
            .await
    }

    /// [`Application::decide`]: a decider, its turn on the aggregate
    /// awaited without holding a thread, its tries on the blocking pool.
    ///
    /// # Errors
    ///
    /// As [`Application::decide`].
    pub async fn decide<A, E, F>(
        &self,
        id: impl Into<A::Id>,
        decide: F,
    ) -> Result<u64, CommandError<E>>
    where
        A: Aggregate,
        F: FnMut(&A) -> Result<Vec<A::Event>, E> + Send + 'static,
        E: Send + 'static,
    {
        let id = id.into();
        let _held = self
            .app
            .lock_commands_async::<A>(std::slice::from_ref(&id))
            .await;
        self.run(move |app| app.decide_held(id, decide)).await
    }

    /// Holds the command locks of aggregates `ids` until the guard is
    /// dropped, waiting for them without blocking a thread
    /// ([`Application::lock_commands`]): for a command on several
    /// aggregates in one save.
    ///
    /// ```
    /// # use std::sync::Arc;
    /// # use annals::asynchronous::AsyncApplication;
    /// # use annals::prelude::*;
    /// # #[aggregate]
    /// # #[derive(Debug)]
    /// # pub struct Account { pub balance: i64 }
    /// # #[aggregate]
    /// # impl Account {
    /// #     #[event("Opened")]
    /// #     pub fn open(balance: i64) -> Self { Account { balance } }
    /// #     #[event("Moved")]
    /// #     pub fn moved(&mut self, amount: i64) { self.balance += amount; }
    /// # }
    /// # tokio::runtime::Builder::new_current_thread().build()?.block_on(async {
    /// let app = AsyncApplication::new(Arc::new(Application::builder("Bank").build()?));
    /// let (a, b) = (app.save(Account::open(10)).await?, app.save(Account::open(0)).await?);
    /// let (a, b) = (a.id(), b.id());
    /// let _held = app.lock_commands::<Account>(&[a, b]).await;
    /// app.call(move |app| -> annals::Result<()> {
    ///     let (mut from, mut to): (Account, Account) = (app.get(a)?, app.get(b)?);
    ///     from.moved(-4);
    ///     to.moved(4);
    ///     app.save((&mut from, &mut to)).map(drop)
    /// })
    /// .await?;
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// # })?;
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub async fn lock_commands<A: Aggregate>(&self, ids: &[A::Id]) -> CommandGuard<'_> {
        self.app.lock_commands_async::<A>(ids).await
    }

    /// Like [`execute`](Self::execute), trying at most `tries` times.
    ///
    /// # Errors
    ///
    /// As [`Application::execute`].
    pub async fn execute_with_retries<A, T, E, F>(
        &self,
        id: impl Into<A::Id>,
        tries: u32,
        command: F,
    ) -> Result<T, CommandError<E>>
    where
        A: Aggregate,
        F: FnMut(&mut A) -> Result<T, E> + Send + 'static,
        T: Send + 'static,
        E: Send + 'static,
    {
        let id = id.into();
        self.run(move |app| app.execute_with_retries(id, tries, command))
            .await
    }

    /// Runs `command` on aggregate `id` once per idempotency `key`: a
    /// retried request with the same key gets the first one's output
    /// back, and nothing is stored twice ([`Application::execute_once`]).
    ///
    /// ```
    /// use std::sync::Arc;
    /// use annals::asynchronous::AsyncApplication;
    /// use annals::prelude::*;
    ///
    /// #[aggregate]
    /// #[derive(Debug)]
    /// pub struct Account { pub balance: i64 }
    ///
    /// #[aggregate]
    /// impl Account {
    ///     #[event("Opened")]
    ///     pub fn open() -> Self { Account { balance: 0 } }
    ///     #[event("Deposited")]
    ///     pub fn deposit(&mut self, amount: i64) { self.balance += amount; }
    /// }
    ///
    /// # let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build().unwrap();
    /// # runtime.block_on(async {
    /// let bank = AsyncApplication::new(Arc::new(Application::builder("Bank").build()?));
    /// let account = bank.save(Account::open()).await?;
    /// for _try in 0..2 {
    ///     let balance = bank
    ///         .execute_once("request-1".to_owned(), account.id(), |a: &mut Account| {
    ///             a.deposit(10);
    ///             Ok::<_, String>(a.balance)
    ///         })
    ///         .await?;
    ///     assert_eq!(balance, 10); // both tries: one deposit
    /// }
    /// assert_eq!(bank.get::<Account>(account.id()).await?.balance, 10);
    /// # Ok::<(), Box<dyn std::error::Error + Send + Sync>>(())
    /// # }).unwrap();
    /// ```
    ///
    /// # Errors
    ///
    /// As [`Application::execute_once`].
    pub async fn execute_once<A, T, E, F>(
        &self,
        key: impl Into<String>,
        id: impl Into<A::Id>,
        command: F,
    ) -> Result<T, CommandError<E>>
    where
        A: Aggregate,
        F: FnMut(&mut A) -> Result<T, E> + Send + 'static,
        T: serde::Serialize + serde::de::DeserializeOwned + Send + 'static,
        E: Send + 'static,
    {
        let (key, id) = (key.into(), id.into());
        let _held = self
            .app
            .lock_commands_async::<A>(std::slice::from_ref(&id))
            .await;
        self.run(move |app| app.execute_once_held(&key, id, command))
            .await
    }

    /// [`Application::archive_stream`]: copies stream `id`'s events to
    /// `archive` as stored, then removes them, leaving a tombstone.
    ///
    /// # Errors
    ///
    /// As [`Application::archive_stream`].
    pub async fn archive_stream<I: crate::domain::AggregateId>(
        &self,
        id: I,
        archive: crate::application::Archive,
    ) -> Result<crate::application::EndedStream> {
        self.run(move |app| app.archive_stream(id, &archive)).await
    }

    /// [`Application::delete_stream`]: removes stream `id`'s events,
    /// leaving a tombstone.
    ///
    /// ```
    /// # use std::sync::Arc;
    /// # use annals::asynchronous::AsyncApplication;
    /// # use annals::prelude::*;
    /// # #[aggregate]
    /// # #[derive(Debug)]
    /// # pub struct Account { pub balance: i64 }
    /// # #[aggregate]
    /// # impl Account {
    /// #     #[event("Opened")]
    /// #     pub fn open(balance: i64) -> Self { Account { balance } }
    /// # }
    /// # tokio::runtime::Builder::new_current_thread().build()?.block_on(async {
    /// let app = AsyncApplication::new(Arc::new(Application::builder("Bank").build()?));
    /// let id = app.save(Account::open(10)).await?.id();
    /// let ended = app.delete_stream(id).await?;
    /// assert_eq!(ended.removed, 1);
    /// assert!(app.get::<Account>(id).await.unwrap_err().is_stream_ended());
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// # })?;
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    ///
    /// # Errors
    ///
    /// As [`Application::delete_stream`].
    pub async fn delete_stream<I: crate::domain::AggregateId>(
        &self,
        id: I,
    ) -> Result<crate::application::EndedStream> {
        self.run(move |app| app.delete_stream(id)).await
    }

    /// Up to `limit` notifications from id `start` on.
    ///
    /// # Errors
    ///
    /// Store errors.
    pub async fn notifications(&self, start: u64, limit: usize) -> Result<Vec<Notification>> {
        self.run(move |app| app.notifications(start, limit)).await
    }

    /// The id of the last notification, if any.
    ///
    /// # Errors
    ///
    /// Store errors.
    pub async fn last_notification_id(&self) -> Result<Option<u64>> {
        self.run(Application::last_notification_id).await
    }

    /// The log from id `start` on (topics filtered when given), then each
    /// new notification as it is stored: a [`Stream`](futures_core::Stream)
    /// that ends only when dropped ([`Application::subscribe`]).
    ///
    /// # Errors
    ///
    /// The subscription cannot start.
    pub async fn subscribe(
        &self,
        start: u64,
        topics: Vec<String>,
    ) -> Result<Streamed<Result<Notification>>> {
        let app = self.app.clone();
        let thread = format!("annals-subscribe-{}", app.name());
        let open = move || {
            let topics: Vec<&str> = topics.iter().map(String::as_str).collect();
            app.subscribe(start, &topics)
        };
        spawn_stream(
            thread,
            "subscription",
            open,
            crate::log::Subscription::stopper,
        )
        .await
    }

    /// Aggregate `id`'s events, its history and then each new one, as a
    /// [`Stream`](futures_core::Stream) ([`Application::changes`]).
    ///
    /// # Errors
    ///
    /// The stream cannot start; the history does not decode.
    pub async fn changes<A: Aggregate>(
        &self,
        id: impl Into<A::Id>,
    ) -> Result<Streamed<Result<DomainEvent<A>>>> {
        let id = id.into();
        let app = self.app.clone();
        let thread = format!("annals-changes-{}", app.name());
        let open = move || app.changes::<A>(id);
        spawn_stream(thread, "change stream", open, crate::log::Changes::stopper).await
    }

    /// Waits until `follower` has processed notification `notification_id`
    /// of this application (its tracking record says so), looking every
    /// few milliseconds, for at most `timeout`; whether it had.
    ///
    /// # Errors
    ///
    /// Store errors.
    pub async fn wait_for(
        &self,
        follower: &AsyncApplication,
        notification_id: u64,
        timeout: Duration,
    ) -> Result<bool> {
        let leader = self.app.name().to_owned();
        let deadline = tokio::time::Instant::now() + timeout;
        let mut pause = Duration::from_millis(1);
        loop {
            let leader = leader.clone();
            let processed = follower
                .run(move |f| f.recorder().has_tracking_id(&leader, notification_id))
                .await?;
            if processed {
                return Ok(true);
            }
            if tokio::time::Instant::now() >= deadline {
                return Ok(false);
            }
            tokio::time::sleep(pause.min(deadline - tokio::time::Instant::now())).await;
            pause = (pause * 2).min(Duration::from_millis(50));
        }
    }
}

/// How many items a stream's thread reads ahead.
const STREAM_BUFFER: usize = 64;

/// Opens a blocking iterator on a thread of its own (`thread` names it)
/// and feeds what it yields into a [`Streamed`]; `what` names it in
/// errors. Returns once the iterator is open, with its error if it could
/// not be.
async fn spawn_stream<I, T, F>(
    thread: String,
    what: &'static str,
    open: F,
    stopper: fn(&I) -> Stopper,
) -> Result<Streamed<T>>
where
    F: FnOnce() -> Result<I> + Send + 'static,
    I: Iterator<Item = T> + 'static,
    T: Send + 'static,
{
    let (tx, rx) = tokio::sync::mpsc::channel(STREAM_BUFFER);
    let (started, ready) = tokio::sync::oneshot::channel();
    std::thread::Builder::new()
        .name(thread)
        .spawn(move || {
            let items = match open() {
                Ok(items) => items,
                Err(e) => {
                    let _ = started.send(Err(e));
                    return;
                }
            };
            if started.send(Ok(stopper(&items))).is_err() {
                return;
            }
            for item in items {
                if tx.blocking_send(item).is_err() {
                    return;
                }
            }
        })
        .map_err(|e| crate::Error::persistence(format!("starting a {what}'s thread"), e))?;
    let stopper = ready.await.map_err(|_| {
        crate::Error::persistence(format!("starting a {what}"), "its thread ended")
    })??;
    Ok(Streamed { rx, stopper })
}

/// A stream fed by a blocking thread (see [`AsyncApplication::subscribe`]);
/// dropping it stops the thread.
#[derive(Debug)]
pub struct Streamed<T> {
    rx: tokio::sync::mpsc::Receiver<T>,
    stopper: Stopper,
}

impl<T> futures_core::Stream for Streamed<T> {
    type Item = T;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<T>> {
        self.rx.poll_recv(cx)
    }
}

impl<T> Drop for Streamed<T> {
    fn drop(&mut self) {
        self.stopper.stop();
    }
}
