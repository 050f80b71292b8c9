//! Sync stores over async clients (feature `tokio`): one runtime per
//! kind of client for the whole process, started on first use, and
//! [`block_on`] to call into it from any thread.
//!
//! One runtime, because a client's pooled connections belong to the
//! runtime that opened them and make progress only while it runs: with a
//! runtime per recorder, a connection kept alive by one recorder's runtime
//! and taken from a shared pool by another's stalls until it times out.
//! Its worker threads drive every connection all the time, whichever
//! thread waits on a call. Never dropped, so never shut down from inside
//! an async context.
//!
//! ```
//! use annals_core::bridge::{block_on, SharedRuntime};
//!
//! static RUNTIME: SharedRuntime = SharedRuntime::new("my-store", "starting my store's runtime");
//!
//! let runtime = RUNTIME.handle()?;
//! assert_eq!(block_on(&runtime, async { 1 + 1 }), 2);
//! # Ok::<(), annals_core::Error>(())
//! ```

use std::future::Future;
use std::sync::{Mutex, OnceLock};

use crate::error::{Error, Result};

/// A process-wide multi-threaded runtime (two workers), started on the
/// first [`handle`](Self::handle): declare one as a `static` per kind of
/// client.
#[derive(Debug)]
pub struct SharedRuntime {
    thread_name: &'static str,
    starting_what: &'static str,
    runtime: OnceLock<tokio::runtime::Runtime>,
    // Started under a lock, so two opens at once start one; a failure to
    // start (no threads to be had now) is not kept: the next open tries
    // again.
    starting: Mutex<()>,
}

impl SharedRuntime {
    /// A runtime whose threads are named `thread_name`; a failure to start
    /// it is an [`Error::Persistence`] saying `starting_what`.
    pub const fn new(thread_name: &'static str, starting_what: &'static str) -> Self {
        Self {
            thread_name,
            starting_what,
            runtime: OnceLock::new(),
            starting: Mutex::new(()),
        }
    }

    /// The runtime, started if it was not.
    ///
    /// # Errors
    ///
    /// [`Error::Persistence`] when it cannot be started.
    pub fn handle(&self) -> Result<tokio::runtime::Handle> {
        if let Some(runtime) = self.runtime.get() {
            return Ok(runtime.handle().clone());
        }
        let _starting = self.starting.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(runtime) = self.runtime.get() {
            return Ok(runtime.handle().clone());
        }
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .thread_name(self.thread_name)
            .enable_all()
            .build()
            .map_err(|e| Error::persistence(self.starting_what, e))?;
        Ok(self.runtime.get_or_init(|| runtime).handle().clone())
    }
}

/// Runs `future` on `runtime`, from the calling thread; on a thread of
/// its own when the caller is itself inside a tokio runtime (where
/// `Handle::block_on` would panic).
pub fn block_on<F: Future + Send>(runtime: &tokio::runtime::Handle, future: F) -> F::Output
where
    F::Output: Send,
{
    if tokio::runtime::Handle::try_current().is_ok() {
        std::thread::scope(|scope| {
            scope
                .spawn(|| runtime.block_on(future))
                .join()
                .unwrap_or_else(|panic| std::panic::resume_unwind(panic))
        })
    } else {
        runtime.block_on(future)
    }
}
