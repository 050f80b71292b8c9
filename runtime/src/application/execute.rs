//! Commands: `execute` and its forms, which load an aggregate, run a
//! command on it and save what it recorded, taking their turn per
//! aggregate and retrying conflicts with other processes.

use super::{Application, CommandGuard, RetryPolicy};
use crate::domain::{Aggregate, AggregateId};
use crate::error::{Error, Result};

impl Application {
    /// Loads aggregate `id`, runs `command` on it and saves what it
    /// recorded. Commands on one aggregate in this application run one
    /// after another (they never conflict with each other); on a conflict
    /// with another process (it saved the aggregate meanwhile) the command
    /// is loaded and run again after a jittered pause, as the application's
    /// [`RetryPolicy`] says (10 tries by default). The command's own error is returned as
    /// [`CommandError::Rejected`], typed; nothing is saved then.
    ///
    /// ```
    /// use annals::prelude::*;
    /// use annals::CommandError;
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
    ///     fn deposited(&mut self, amount: i64) { self.balance += amount; }
    ///     pub fn deposit(&mut self, amount: i64) -> Result<(), String> {
    ///         if amount <= 0 {
    ///             return Err(format!("cannot deposit {amount}"));
    ///         }
    ///         self.deposited(amount);
    ///         Ok(())
    ///     }
    /// }
    ///
    /// let app = Application::builder("Bank").build()?;
    /// let mut account = Account::open();
    /// app.save(&mut account)?;
    /// app.execute(account.id(), |a: &mut Account| a.deposit(10))?;
    /// let refused = app.execute(account.id(), |a: &mut Account| a.deposit(-5));
    /// assert!(matches!(refused, Err(CommandError::Rejected(why)) if why == "cannot deposit -5"));
    /// assert_eq!(app.get::<Account>(account.id())?.balance, 10);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    ///
    /// # Errors
    ///
    /// [`CommandError::Rejected`] with the command's error;
    /// [`CommandError::Failed`] when loading or saving failed (a conflict
    /// on every try included).
    pub fn execute<A, T, E, F>(
        &self,
        id: impl Into<A::Id>,
        command: F,
    ) -> Result<T, CommandError<E>>
    where
        A: Aggregate,
        F: FnMut(&mut A) -> Result<T, E>,
    {
        self.execute_with(id, self.retry, command)
    }

    /// A decider: loads aggregate `id`, asks `decide` which events a
    /// command triggers, given the state (read-only: a decision changes
    /// nothing), records them ([`Aggregate::record`]: each event's body
    /// evolves the state) and saves them with the optimistic check of the
    /// version they were decided on. As [`execute`](Self::execute), the
    /// decisions on one aggregate take turns, and a conflict with another
    /// process decides again on the state reloaded. Returns the
    /// aggregate's version after the save (the same when no event was
    /// decided: nothing is saved).
    ///
    /// ```
    /// use annals::prelude::*;
    /// use annals::CommandError;
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
    ///     fn deposited(&mut self, amount: i64) { self.balance += amount; }
    /// }
    ///
    /// /// The command, deciding events from the state: no `&mut self`.
    /// fn deposit(account: &Account, amount: i64) -> Result<Vec<AccountEvent>, String> {
    ///     if amount <= 0 {
    ///         return Err(format!("cannot deposit {amount}"));
    ///     }
    ///     Ok(vec![AccountEvent::Deposited { amount }])
    /// }
    ///
    /// let app = Application::builder("Bank").build()?;
    /// let mut account = Account::open();
    /// app.save(&mut account)?;
    /// assert_eq!(app.decide(account.id(), |a: &Account| deposit(a, 10))?, 2);
    /// let refused = app.decide(account.id(), |a: &Account| deposit(a, -5));
    /// assert!(matches!(refused, Err(CommandError::Rejected(why)) if why == "cannot deposit -5"));
    /// assert_eq!(app.get::<Account>(account.id())?.balance, 10);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    ///
    /// # Errors
    ///
    /// [`CommandError::Rejected`] with the decision's error (nothing is
    /// saved); [`CommandError::Failed`] when loading or saving failed (a
    /// conflict on every try included), or with [`Error::WrongEvent`]
    /// when a decided event creates an aggregate.
    pub fn decide<A, E, F>(&self, id: impl Into<A::Id>, decide: F) -> Result<u64, CommandError<E>>
    where
        A: Aggregate,
        F: FnMut(&A) -> Result<Vec<A::Event>, E>,
    {
        let id = id.into();
        let _held = self.lock_commands::<A>(std::slice::from_ref(&id));
        self.decide_held(id, decide)
    }

    /// `decide`'s tries, while the caller holds aggregate `id`'s command
    /// lock.
    pub(crate) fn decide_held<A, E, F>(
        &self,
        id: A::Id,
        mut decide: F,
    ) -> Result<u64, CommandError<E>>
    where
        A: Aggregate,
        F: FnMut(&A) -> Result<Vec<A::Event>, E>,
    {
        /// A try's failure: the decision's, or recording its events.
        enum Failed<E> {
            Rejected(E),
            Recording(Error),
        }
        let outcome = self.execute_held(id, self.retry, |aggregate: &mut A| {
            let events = decide(aggregate).map_err(Failed::Rejected)?;
            for event in events {
                aggregate.record(event).map_err(Failed::Recording)?;
            }
            Ok(aggregate.version())
        });
        outcome.map_err(|e| match e {
            CommandError::Rejected(Failed::Rejected(e)) => CommandError::Rejected(e),
            CommandError::Rejected(Failed::Recording(e)) | CommandError::Failed(e) => {
                CommandError::Failed(e)
            }
        })
    }

    /// Like [`execute`](Self::execute), trying at most `tries` times (at
    /// least once).
    ///
    /// # Errors
    ///
    /// As [`execute`](Self::execute).
    pub fn execute_with_retries<A, T, E, F>(
        &self,
        id: impl Into<A::Id>,
        tries: u32,
        command: F,
    ) -> Result<T, CommandError<E>>
    where
        A: Aggregate,
        F: FnMut(&mut A) -> Result<T, E>,
    {
        let policy = RetryPolicy {
            tries,
            ..self.retry
        };
        self.execute_with(id, policy, command)
    }

    /// Like [`execute`](Self::execute), once per idempotency key: the
    /// command's events are stored with `key` and its output (as JSON) in
    /// one transaction, and a later call with the same key (a client's
    /// retry after a timeout or a crash, in this process or another)
    /// returns that first output without running the command again, so
    /// nothing is stored twice.
    ///
    /// Each try holds the aggregate's command lock, looks the key up and,
    /// if it is stored, returns its output; else runs the command and
    /// saves its events with the key. A conflict (another process saved
    /// the aggregate, or stored the key: a concurrent retry) is tried again
    /// after a pause, as [`execute`](Self::execute) does, and that try
    /// finds the key if the other stored it. A command that records no
    /// event stores its key all the same.
    ///
    /// A rejected command ([`CommandError::Rejected`]) stores nothing, its
    /// key neither: it changed nothing, so a retry runs it again and may
    /// succeed if the aggregate changed meanwhile (a deposit made the
    /// withdrawal possible). A key names one request: used again for
    /// another command, it answers the first command's output (or fails
    /// to decode, if its type differs).
    ///
    /// ```
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
    /// let app = Application::builder("Bank").build()?;
    /// let mut account = Account::open();
    /// app.save(&mut account)?;
    /// let deposit = |key: &str| {
    ///     app.execute_once(key, account.id(), |a: &mut Account| {
    ///         a.deposit(10);
    ///         Ok::<_, String>(a.balance) // the output: the new balance
    ///     })
    /// };
    /// assert_eq!(deposit("request-1")?, 10);
    /// // The client did not hear back, and sends the request again.
    /// assert_eq!(deposit("request-1")?, 10, "the first answer, not a second deposit");
    /// assert_eq!(app.get::<Account>(account.id())?.balance, 10);
    /// assert_eq!(deposit("request-2")?, 20, "another request");
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    ///
    /// # Errors
    ///
    /// As [`execute`](Self::execute); [`Error::Encode`] when the output
    /// does not serialize; [`Error::Decode`] when the key's stored output
    /// is not a `T`; [`Error::Config`] naming `PERSISTENCE_MODULE` for a
    /// store that keeps no keys (see [`ProcessRecorder::insert_events_keyed`](crate::persistence::ProcessRecorder::insert_events_keyed)).
    pub fn execute_once<A, T, E, F>(
        &self,
        key: &str,
        id: impl Into<A::Id>,
        command: F,
    ) -> Result<T, CommandError<E>>
    where
        A: Aggregate,
        T: serde::Serialize + serde::de::DeserializeOwned,
        F: FnMut(&mut A) -> Result<T, E>,
    {
        let id = id.into();
        let _held = self.lock_commands::<A>(std::slice::from_ref(&id));
        self.execute_once_held(key, id, command)
    }

    /// How [`execute`](Self::execute) retries a command that conflicted
    /// with another process ([`ApplicationBuilder::retry_policy`](super::ApplicationBuilder::retry_policy)).
    pub fn retry_policy(&self) -> RetryPolicy {
        self.retry
    }

    /// Runs `f` while no other command of this application runs on any of
    /// aggregates `ids` ([`execute`](Self::execute) holds its aggregate
    /// the same way): for a command that changes several aggregates in one
    /// save, so that it never conflicts with this process's other
    /// commands. Conflicts with other processes remain; retry them after
    /// [`RetryPolicy::pause`].
    ///
    /// ```
    /// use annals::prelude::*;
    ///
    /// #[aggregate]
    /// #[derive(Debug)]
    /// pub struct Account { pub balance: i64 }
    ///
    /// #[aggregate]
    /// impl Account {
    ///     #[event("Opened")]
    ///     pub fn open(balance: i64) -> Self { Account { balance } }
    ///     #[event("Moved")]
    ///     pub fn moved(&mut self, amount: i64) { self.balance += amount; }
    /// }
    ///
    /// let app = Application::builder("Bank").build()?;
    /// let (mut a, mut b) = (Account::open(10), Account::open(0));
    /// app.save((&mut a, &mut b))?;
    /// app.exclusive::<Account, _>(&[a.id(), b.id()], || -> annals::Result<()> {
    ///     let mut from: Account = app.get(a.id())?;
    ///     let mut to: Account = app.get(b.id())?;
    ///     from.moved(-4);
    ///     to.moved(4);
    ///     app.save((&mut from, &mut to)).map(drop)
    /// })?;
    /// assert_eq!(app.get::<Account>(b.id())?.balance, 4);
    /// # Ok::<(), annals::Error>(())
    /// ```
    pub fn exclusive<A: Aggregate, R>(&self, ids: &[A::Id], f: impl FnOnce() -> R) -> R {
        let _held = self.lock_commands::<A>(ids);
        f()
    }

    /// Holds the command locks of aggregates `ids` until the guard is
    /// dropped (see [`exclusive`](Self::exclusive)). Commands waiting for
    /// one aggregate take their turns in the order they came.
    pub fn lock_commands<A: Aggregate>(&self, ids: &[A::Id]) -> CommandGuard<'_> {
        self.commands
            .lock(ids.iter().map(AggregateId::to_stored).collect())
    }

    /// Like [`lock_commands`](Self::lock_commands), waiting without
    /// blocking the thread (for async code: see
    /// [`AsyncApplication::lock_commands`](crate::asynchronous::AsyncApplication::lock_commands)).
    #[cfg(feature = "tokio")]
    pub(crate) async fn lock_commands_async<A: Aggregate>(
        &self,
        ids: &[A::Id],
    ) -> CommandGuard<'_> {
        self.commands
            .acquire(ids.iter().map(AggregateId::to_stored).collect())
            .await
    }

    /// The body of `execute`: one command at a time on aggregate `id` in
    /// this process, retried by `policy` when another process stored first.
    fn execute_with<A, T, E, F>(
        &self,
        id: impl Into<A::Id>,
        policy: RetryPolicy,
        command: F,
    ) -> Result<T, CommandError<E>>
    where
        A: Aggregate,
        F: FnMut(&mut A) -> Result<T, E>,
    {
        let id = id.into();
        let _held = self.lock_commands::<A>(std::slice::from_ref(&id));
        self.execute_held(id, policy, command)
    }

    /// `execute`'s tries, while the caller holds aggregate `id`'s command
    /// lock (the async facade waits for it without blocking a thread).
    pub(crate) fn execute_held<A, T, E, F>(
        &self,
        id: A::Id,
        policy: RetryPolicy,
        command: F,
    ) -> Result<T, CommandError<E>>
    where
        A: Aggregate,
        F: FnMut(&mut A) -> Result<T, E>,
    {
        self.run_command(
            id,
            policy,
            command,
            || Ok(None),
            |aggregate, _| self.save(aggregate),
        )
    }

    /// `execute_once`'s tries, while the caller holds aggregate `id`'s
    /// command lock.
    pub(crate) fn execute_once_held<A, T, E, F>(
        &self,
        key: &str,
        id: A::Id,
        command: F,
    ) -> Result<T, CommandError<E>>
    where
        A: Aggregate,
        T: serde::Serialize + serde::de::DeserializeOwned,
        F: FnMut(&mut A) -> Result<T, E>,
    {
        self.run_command(
            id,
            self.retry,
            command,
            || self.outcome::<T>(key),
            |aggregate, output| self.save_once(key, aggregate, output),
        )
    }

    /// The body of `execute` and `execute_once`, while the caller holds
    /// aggregate `id`'s command lock: each try asks `done` for an output
    /// stored before (returned as it is), else gets the aggregate, runs
    /// `command` and `store`s what it recorded with its output; a conflict
    /// is retried by `policy`.
    fn run_command<A, T, E, F>(
        &self,
        id: A::Id,
        policy: RetryPolicy,
        mut command: F,
        mut done: impl FnMut() -> Result<Option<T>>,
        mut store: impl FnMut(&mut A, &T) -> Result<Vec<u64>>,
    ) -> Result<T, CommandError<E>>
    where
        A: Aggregate,
        F: FnMut(&mut A) -> Result<T, E>,
    {
        let tries = policy.tries;
        let span = tracing::debug_span!(
            "execute",
            application = self.name.as_str(),
            aggregate = A::NAME,
            id = %id,
            attempt = tracing::field::Empty,
        );
        let _entered = span.enter();
        let mut tried = 0;
        loop {
            tried += 1;
            span.record("attempt", tried);
            if let Some(value) = done()? {
                tracing::debug!(aggregate = A::NAME, id = %id, "the idempotency key is stored: its first outcome, the command not run");
                return Ok(value);
            }
            let mut aggregate: A = self.repository.get(id.clone())?;
            let value = command(&mut aggregate).map_err(CommandError::Rejected)?;
            match store(&mut aggregate, &value) {
                Ok(_) => return Ok(value),
                Err(e) if e.is_conflict() && tried < tries.max(1) => {
                    // Not this process's: its commands on the aggregate
                    // wait for this one. Another's, then: pause, jittered.
                    let pause = policy.pause(tried);
                    self.repository.metrics.retries.increment(1);
                    tracing::info!(aggregate = A::NAME, id = %id, tried, ?pause, "conflict; retrying the command");
                    std::thread::sleep(pause);
                }
                Err(e) => return Err(CommandError::Failed(e)),
            }
        }
    }
}

/// Why [`Application::execute`] did not carry out a command: the command
/// refused (its own error, typed), or annals failed.
///
/// ```
/// use annals::prelude::*;
/// use annals::CommandError;
///
/// #[aggregate]
/// #[derive(Debug)]
/// pub struct Account { pub balance: i64 }
///
/// #[aggregate]
/// impl Account {
///     #[event("Opened")]
///     pub fn open() -> Self { Account { balance: 10 } }
///     #[event("Withdrawn")]
///     fn withdrawn(&mut self, amount: i64) { self.balance -= amount; }
///     pub fn withdraw(&mut self, amount: i64) -> Result<(), String> {
///         if amount > self.balance {
///             return Err("insufficient funds".into());
///         }
///         self.withdrawn(amount);
///         Ok(())
///     }
/// }
///
/// let app = Application::builder("Bank").build()?;
/// let mut account = Account::open();
/// app.save(&mut account)?;
/// match app.execute(account.id(), |a: &mut Account| a.withdraw(50)) {
///     Ok(()) => unreachable!("the balance is 10"),
///     Err(CommandError::Rejected(why)) => assert_eq!(why, "insufficient funds"),
///     Err(CommandError::Failed(e)) => return Err(e.into()),
/// }
/// // A missing aggregate is a failure of annals, not of the command.
/// let missing = app.execute(Uuid::new_v4(), |a: &mut Account| a.withdraw(5));
/// assert!(matches!(missing, Err(CommandError::Failed(e)) if e.is_not_found()));
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug, thiserror::Error)]
pub enum CommandError<E> {
    /// The command returned its error: nothing was saved.
    #[error("the command was rejected: {0}")]
    Rejected(E),
    /// Loading or saving failed.
    #[error(transparent)]
    Failed(#[from] Error),
}

impl CommandError<std::convert::Infallible> {
    /// The error of a command that cannot refuse: it can only have
    /// failed, with annals' error.
    ///
    /// ```
    /// use annals::prelude::*;
    ///
    /// #[aggregate]
    /// #[derive(Debug)]
    /// pub struct Counter { pub count: u32 }
    /// #[aggregate]
    /// impl Counter {
    ///     #[event("Started")]
    ///     pub fn start() -> Self { Counter { count: 0 } }
    ///     #[event("Incremented")]
    ///     pub fn increment(&mut self) { self.count += 1; }
    /// }
    ///
    /// fn increment(app: &Application, id: Uuid) -> annals::Result<()> {
    ///     app.execute(id, |c: &mut Counter| Ok::<_, std::convert::Infallible>(c.increment()))
    ///         .map_err(annals::CommandError::into_error)
    /// }
    ///
    /// let app = Application::builder("Counters").build()?;
    /// let mut counter = Counter::start();
    /// app.save(&mut counter)?;
    /// increment(&app, counter.id())?;
    /// assert!(increment(&app, Uuid::new_v4()).unwrap_err().is_not_found());
    /// # Ok::<(), annals::Error>(())
    /// ```
    pub fn into_error(self) -> Error {
        match self {
            CommandError::Failed(e) => e,
            CommandError::Rejected(never) => match never {},
        }
    }
}
