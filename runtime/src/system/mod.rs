//! The system layer: applications that follow other applications' events.
//!
//! A [`System`] is declared from pipes of application names
//! (`["Orders", "Reservations", "Payments"]`: each follows the one before).
//! Followers are process applications ([`ProcessApplication`]): a
//! [`Policy`] turns each upstream event into new events, stored with the
//! tracking record of the upstream notification in one transaction, so
//! every upstream event is processed exactly once, across crashes and
//! restarts. Runners: [`SingleThreadedRunner`] (deterministic, in the
//! caller's thread), [`MultiThreadedRunner`] (a worker per follower), and
//! [`System::run_follower`] (one follower in this process; start one
//! process per follower to spread a system over processes and machines).

mod process;
mod projection;
mod read_model;
mod runner;
mod sync;

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

pub use process::{Policies, Policy, ProcessApplication, Processing, Upstream};
pub use projection::{ProjectFn, Projection};
pub use read_model::{Applied, ReadModel};

// Former paths, kept (hidden) so that code written against them still
// compiles: each item has one documented path, given in its doc.
#[doc(hidden)]
pub use crate::log::{NotificationLogReader, Stopper, Subscription};
#[doc(hidden)]
pub use crate::persistence::wake::{Notifier, Signal, Watch};
/// The former name of [`Stopper`](crate::log::Stopper).
#[doc(hidden)]
pub type StopHandle = crate::log::Stopper;
pub use runner::{MultiThreadedRunner, SingleThreadedRunner};
pub use sync::{FollowerReport, SyncOptions, SyncReport};

use crate::application::Application;
use crate::error::{Error, Result};

/// What a pipe can name an application by: the application itself (`&app`,
/// `&Arc<Application>`) or its name.
pub trait AppName {
    /// The application's name.
    fn app_name(&self) -> &str;
}

impl AppName for &str {
    fn app_name(&self) -> &str {
        self
    }
}

impl AppName for String {
    fn app_name(&self) -> &str {
        self
    }
}

impl AppName for &String {
    fn app_name(&self) -> &str {
        self
    }
}

impl AppName for &Application {
    fn app_name(&self) -> &str {
        self.name()
    }
}

impl AppName for &Arc<Application> {
    fn app_name(&self) -> &str {
        self.name()
    }
}

/// Applications and who follows whom: built with [`System::builder`], run
/// by a runner ([`SingleThreadedRunner`], [`MultiThreadedRunner`]) or one
/// follower at a time ([`System::run_follower`], [`System::pull`]).
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
/// use annals::system::{System, SingleThreadedRunner};
///
/// let orders = Arc::new(Application::builder("Orders").build()?);
/// let shipping = Arc::new(Application::builder("Shipping").build()?);
/// // A policy: a closure (or a `Policies`, or a type implementing `Policy`).
/// let ship = |upstream: &annals::system::Upstream<'_>, processing: &mut annals::system::Processing<'_>| {
///     if let Some(placed) = upstream.decode::<Order>()? {
///         let OrderEvent::Placed { item } = placed.event;
///         processing.save(&mut Parcel::pack(item))?;
///     }
///     Ok(())
/// };
/// let system = Arc::new(
///     System::builder()
///         .application(orders.clone())
///         .process(shipping.clone(), ship)
///         .pipe([&orders, &shipping]) // Shipping follows Orders
///         .build()?,
/// );
/// assert_eq!(system.followers(), ["Shipping"]);
/// assert_eq!(system.leaders("Shipping"), ["Orders"]);
///
/// orders.save(&mut Order::place("kettle".into()))?;
/// assert!(!system.is_caught_up("Shipping")?);
/// assert_eq!(system.pull("Shipping", 100)?, 1);
/// assert!(system.is_caught_up("Shipping")?);
/// # Ok::<(), annals::Error>(())
/// ```
pub struct System {
    apps: HashMap<String, Arc<Application>>,
    followers: HashMap<String, ProcessApplication>,
    projections: HashMap<String, Arc<dyn projection::Projects>>,
    /// Per follower, its leaders, in declaration order.
    leaders: HashMap<String, Vec<String>>,
    /// Followers in declaration order.
    order: Vec<String>,
}

impl std::fmt::Debug for System {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("System")
            .field("followers", &self.order)
            .field("leaders", &self.leaders)
            .finish_non_exhaustive()
    }
}

/// Declares a [`System`]: its applications, its process applications
/// (each with its policy) and its pipes. See [`System`] for an example.
#[derive(Default)]
#[must_use]
pub struct SystemBuilder {
    apps: Vec<Arc<Application>>,
    followers: Vec<ProcessApplication>,
    projections: Vec<Arc<dyn projection::Projects>>,
    pipes: Vec<Vec<String>>,
}

impl std::fmt::Debug for SystemBuilder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let apps: Vec<&str> = self.apps.iter().map(|app| app.name()).collect();
        let followers: Vec<&str> = self.followers.iter().map(|p| p.app.name()).collect();
        f.debug_struct("SystemBuilder")
            .field("applications", &apps)
            .field("followers", &followers)
            .field("pipes", &self.pipes)
            .finish_non_exhaustive()
    }
}

impl SystemBuilder {
    /// An application that only leads (or any application the pipes
    /// name that has no policy).
    pub fn application(mut self, app: Arc<Application>) -> Self {
        self.apps.push(app);
        self
    }

    /// A process application: `app` following its leaders with `policy`.
    pub fn process(mut self, app: Arc<Application>, policy: impl Policy + 'static) -> Self {
        self.followers.push(ProcessApplication::new(app, policy));
        self
    }

    /// A projection, run by the system's runners like a process
    /// application: it follows the application it was made with (which
    /// must be one of the system's) and goes by its own name (which no
    /// application may have). Keep a clone of the `Arc` to query it.
    ///
    /// ```
    /// use std::sync::Arc;
    /// use annals::prelude::*;
    /// use annals::rusqlite::{self, Transaction};
    /// use annals::system::{Projection, SingleThreadedRunner, System, Upstream};
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
    /// let orders = Arc::new(Application::builder("Orders").build()?);
    /// let db = rusqlite::Connection::open_in_memory().map_err(annals::Error::user)?;
    /// db.execute_batch("CREATE TABLE items (item TEXT)").map_err(annals::Error::user)?;
    /// let items = Arc::new(Projection::new("items", orders.clone(), db, |up: &Upstream<'_>, tx: &mut Transaction<'_>| {
    ///     if let Some(placed) = up.decode::<Order>()? {
    ///         let OrderEvent::Placed { item } = placed.event;
    ///         tx.execute("INSERT INTO items VALUES (?1)", [item]).map_err(annals::Error::user)?;
    ///     }
    ///     Ok(())
    /// })?);
    /// let system = Arc::new(System::builder().application(orders.clone()).projection(items.clone()).build()?);
    /// orders.save(&mut Order::place("kettle".into()))?;
    /// assert_eq!(SingleThreadedRunner::new(system.clone()).run()?, 1);
    /// assert!(system.is_caught_up("items")?);
    /// # Ok::<(), annals::Error>(())
    /// ```
    pub fn projection<D: ReadModel>(mut self, projection: Arc<Projection<D>>) -> Self {
        self.projections.push(projection);
        self
    }

    /// A pipe: each application follows the one before it. Name them by
    /// the applications themselves (`[&orders, &payments]`) or by their
    /// names.
    pub fn pipe<I: IntoIterator<Item = S>, S: AppName>(mut self, apps: I) -> Self {
        self.pipes
            .push(apps.into_iter().map(|a| a.app_name().to_owned()).collect());
        self
    }

    /// The system, after checking the graph: every name is registered
    /// once, every follower has a policy, no application follows itself.
    ///
    /// # Errors
    ///
    /// [`Error::Config`] (setting `"system"`) when two applications have
    /// one name, a pipe names an application that was not registered, an
    /// application follows itself, a follower has no policy (it was
    /// registered with [`application`](Self::application), not
    /// [`process`](Self::process)), or a process application is in no pipe.
    pub fn build(self) -> Result<System> {
        let graph = |message: String| Error::config("system", message);
        let mut apps: HashMap<String, Arc<Application>> = HashMap::new();
        let mut followers = HashMap::new();
        for app in &self.apps {
            if apps.insert(app.name().to_owned(), app.clone()).is_some() {
                return Err(graph(format!(
                    "the name {:?} is used by two applications",
                    app.name()
                )));
            }
        }
        for follower in &self.followers {
            let name = follower.app.name().to_owned();
            if apps.insert(name.clone(), follower.app.clone()).is_some() {
                return Err(graph(format!(
                    "the name {name:?} is used by two applications"
                )));
            }
            followers.insert(name, follower.clone());
        }
        let mut leaders: HashMap<String, Vec<String>> = HashMap::new();
        let mut order = Vec::new();
        for pipe in &self.pipes {
            for name in pipe {
                if !apps.contains_key(name) {
                    return Err(graph(format!("the pipe {pipe:?} names {name:?}, which is not an application of this system")));
                }
            }
            for pair in pipe.windows(2) {
                let (leader, follower) = (&pair[0], &pair[1]);
                if leader == follower {
                    return Err(graph(format!("{follower:?} follows itself: a cycle that cannot run (it would process its own events forever)")));
                }
                if !followers.contains_key(follower) {
                    return Err(graph(format!("{follower:?} follows {leader:?} but is not a process application: register it with `process(app, policy)`")));
                }
                let list = leaders.entry(follower.clone()).or_default();
                if !list.contains(leader) {
                    list.push(leader.clone());
                }
                if !order.contains(follower) {
                    order.push(follower.clone());
                }
            }
        }
        let mut projections = HashMap::new();
        for projection in &self.projections {
            let name = projection.name().to_owned();
            let leader = projection.leader().name().to_owned();
            if apps.contains_key(&name) || projections.contains_key(&name) {
                return Err(graph(format!(
                    "the name {name:?} is used twice (by a projection and another follower or application)"
                )));
            }
            if !apps.contains_key(&leader) {
                return Err(graph(format!(
                    "the projection {name:?} follows {leader:?}, which is not an application of this system"
                )));
            }
            leaders.insert(name.clone(), vec![leader]);
            order.push(name.clone());
            projections.insert(name, projection.clone());
        }
        let unused: HashSet<&String> = followers
            .keys()
            .filter(|f| !leaders.contains_key(*f))
            .collect();
        if let Some(name) = unused.into_iter().next() {
            return Err(graph(format!(
                "{name:?} is a process application but follows nothing: put it in a pipe"
            )));
        }
        Ok(System {
            apps,
            followers,
            projections,
            leaders,
            order,
        })
    }
}

impl System {
    /// Declares a system.
    pub fn builder() -> SystemBuilder {
        SystemBuilder::default()
    }

    /// The application named `name`.
    ///
    /// # Errors
    ///
    /// [`Error::Config`] when no application of the system has that name.
    pub fn app(&self, name: &str) -> Result<&Arc<Application>> {
        self.apps
            .get(name)
            .ok_or_else(|| Error::config("system", format!("no application is named {name:?}")))
    }

    /// The followers, in declaration order.
    pub fn followers(&self) -> &[String] {
        &self.order
    }

    /// The leaders of follower `name`.
    pub fn leaders(&self, name: &str) -> &[String] {
        self.leaders.get(name).map_or(&[], Vec::as_slice)
    }

    pub(crate) fn projection(&self, name: &str) -> Option<&Arc<dyn projection::Projects>> {
        self.projections.get(name)
    }

    fn follower(&self, name: &str) -> Result<&ProcessApplication> {
        self.followers.get(name).ok_or_else(|| {
            Error::config(
                "system",
                format!("{name:?} is not a follower of this system"),
            )
        })
    }

    /// Processes, for follower `name`, up to `limit` new notifications of
    /// each leader; returns how many were processed.
    ///
    /// # Errors
    ///
    /// [`Error::Config`] when `name` is not a follower; the policy's error
    /// (the notification is left unprocessed: it is processed again next
    /// time); store errors (a conflict on the follower's aggregates, after
    /// 3 tries).
    pub fn pull(&self, name: &str, limit: usize) -> Result<usize> {
        if let Some(projection) = self.projections.get(name) {
            return projection.pull();
        }
        let follower = self.follower(name)?;
        let mut processed = 0;
        for leader in self.leaders(name) {
            processed += follower.pull(self.app(leader)?, limit)?;
        }
        Ok(processed)
    }

    /// How many events each application has stored (its max notification
    /// id), in name order.
    pub(crate) fn stored(&self) -> Result<Vec<u64>> {
        let mut names: Vec<&String> = self.apps.keys().collect();
        names.sort();
        names
            .into_iter()
            .map(|name| self.apps[name].recorder().max_notification_id())
            .collect()
    }

    /// Whether follower `name` has processed everything its leaders have
    /// stored.
    ///
    /// # Errors
    ///
    /// [`Error::Config`] when `name` is not a follower; store errors.
    pub fn is_caught_up(&self, name: &str) -> Result<bool> {
        if let Some(projection) = self.projections.get(name) {
            return Ok(projection.pending()? == 0);
        }
        let follower = self.follower(name)?;
        for leader in self.leaders(name) {
            let stored = self.app(leader)?.recorder().max_notification_id()?;
            if follower.app.recorder().max_tracking_id(leader)? < stored {
                return Ok(false);
            }
        }
        Ok(true)
    }
}
