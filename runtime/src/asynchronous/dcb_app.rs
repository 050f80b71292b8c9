//! DCB decisions for async code: [`AsyncDcbApplication`].

use super::blocking;
use crate::application::CommandError;
use crate::dcb::{Boundary, DcbApplication, Folded, NewEvent, Slice};
use crate::error::Result;

/// A [`DcbApplication`] for async code: its calls as `Send` futures that
/// run where they may block (as [`AsyncApplication`](super::AsyncApplication)'s:
/// the read, the decision, the append and a retry's pause). Cheap to
/// clone.
///
/// ```
/// use std::sync::Arc;
/// use annals::asynchronous::AsyncDcbApplication;
/// use annals::dcb::{DcbApplication, Perspective, Tagged};
/// use annals::persistence::dcb::MemoryDcbRecorder;
/// use serde::{Deserialize, Serialize};
///
/// #[derive(Serialize, Deserialize, Tagged)]
/// struct Opened { #[tag(prefix = "door-")] door: u32 }
///
/// #[derive(Clone)]
/// struct Door { id: u32, open: bool }
///
/// impl Perspective for Door {
///     type Events = Opened;
///     fn tags(&self) -> Vec<String> { vec![format!("door-{}", self.id)] }
///     fn apply(&mut self, _: Opened) { self.open = true; }
/// }
///
/// # let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build().unwrap();
/// # runtime.block_on(async {
/// let app = AsyncDcbApplication::new(DcbApplication::new(Arc::new(MemoryDcbRecorder::new())));
/// let open = |door: &Door| {
///     if door.open { Err("already open") } else { Ok(vec![Opened { door: door.id }.into()]) }
/// };
/// assert_eq!(app.decide(Door { id: 1, open: false }, open).await.unwrap(), Some(1));
/// assert!(app.decide(Door { id: 1, open: false }, open).await.is_err());
/// assert!(app.read(Door { id: 1, open: false }).await?.state.open);
/// # Ok::<(), annals::Error>(())
/// # }).unwrap();
/// ```
#[derive(Debug, Clone)]
pub struct AsyncDcbApplication {
    app: DcbApplication,
}

impl AsyncDcbApplication {
    /// The facade of `app`.
    pub fn new(app: DcbApplication) -> Self {
        Self { app }
    }

    /// The application it calls.
    pub fn app(&self) -> &DcbApplication {
        &self.app
    }

    /// [`DcbApplication::read`].
    ///
    /// # Errors
    ///
    /// As that.
    pub async fn read<B>(&self, state: B) -> Result<Folded<B>>
    where
        B: Boundary + Send + 'static,
    {
        let app = self.app.clone();
        blocking(move || app.read(state)).await
    }

    /// [`DcbApplication::append`].
    ///
    /// # Errors
    ///
    /// As that.
    pub async fn append(&self, events: Vec<NewEvent>) -> Result<u64> {
        let app = self.app.clone();
        blocking(move || app.append(events)).await
    }

    /// [`DcbApplication::decide`].
    ///
    /// # Errors
    ///
    /// As that.
    pub async fn decide<B, E, F>(
        &self,
        state: B,
        decision: F,
    ) -> std::result::Result<Option<u64>, CommandError<E>>
    where
        B: Boundary + Clone + Send + 'static,
        E: Send + 'static,
        F: FnMut(&B) -> std::result::Result<Vec<NewEvent>, E> + Send + 'static,
    {
        let app = self.app.clone();
        blocking(move || app.decide(state, decision)).await
    }

    /// [`DcbApplication::run`].
    ///
    /// # Errors
    ///
    /// As that.
    pub async fn run<S>(&self, slice: S) -> std::result::Result<Option<u64>, CommandError<S::Error>>
    where
        S: Slice + Send + 'static,
        S::Error: Send + 'static,
    {
        let app = self.app.clone();
        blocking(move || app.run(&slice)).await
    }
}
