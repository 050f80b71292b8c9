//! LISTEN/NOTIFY: every commit of events sends `NOTIFY {name}_events`; a
//! listener is a dedicated connection that waits for it, and the store's
//! watcher raises a follower's signal from a thread of its own.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use postgres::fallible_iterator::FallibleIterator;
use postgres::Client;

use super::pool::described;
use super::recorder::PostgresRecorder;
use annals_core::error::{Error, Result};
use annals_core::persistence::wake::{Signal, Watch};

impl PostgresRecorder {
    /// A dedicated connection that has run `LISTEN` on this application's
    /// channel: [`Listener::wait`] returns when events were committed.
    ///
    /// # Errors
    ///
    /// The server cannot be reached, or refuses the `LISTEN`.
    pub fn listen(&self) -> Result<Listener> {
        let context = format!("listening to {}", self.sql.channel);
        let mut client = self.transport.connect().map_err(|e| {
            Error::persistence(
                format!("connecting to {}", self.config.server()),
                described(e),
            )
        })?;
        client
            .batch_execute(&format!("LISTEN \"{}\"", self.sql.channel))
            .map_err(|e| Error::persistence(context, described(e)))?;
        Ok(Listener {
            client,
            channel: self.sql.channel.clone(),
        })
    }
}

/// Raises `signal` at every NOTIFY of `recorder`'s channel; reconnects
/// when the listening connection breaks (and raises the signal then: what
/// was missed is found by looking).
pub(super) fn watch(recorder: &PostgresRecorder, signal: &Arc<Signal>) -> Result<Watch> {
    let name = format!("postgres {}", recorder.sql.channel);
    let recorder = recorder.clone();
    watch_listening(&name, signal, move || recorder.listen())
}

/// Raises `signal` at every NOTIFY a listener from `listen` receives; on a
/// broken connection, drops it and makes a new one (raising the signal
/// then: what was missed is found by looking). The events' and the DCB
/// store's watchers, which differ only in their channel.
pub(super) fn watch_listening(
    name: &str,
    signal: &Arc<Signal>,
    mut listen: impl FnMut() -> Result<Listener> + Send + 'static,
) -> Result<Watch> {
    let mut listener = Some(listen()?);
    Watch::spawn(name, signal, move |timeout| match listener.as_mut() {
        None => {
            listener = Some(listen()?);
            Ok(true)
        }
        Some(l) => match l.wait(timeout) {
            Ok(woke) => Ok(woke),
            Err(e) => {
                listener = None;
                Err(e)
            }
        },
    })
}

/// A dedicated connection listening to one application's channel: followers
/// wait on it instead of polling.
pub struct Listener {
    client: Client,
    channel: String,
}

impl fmt::Debug for Listener {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Listener")
            .field("channel", &self.channel)
            .finish_non_exhaustive()
    }
}

impl Listener {
    /// `client`, which has run `LISTEN` on `channel`.
    pub(super) fn new(client: Client, channel: String) -> Self {
        Self { client, channel }
    }

    /// Waits up to `timeout` for a commit of events: true if one (or more)
    /// happened since the last call, false on timeout. Every notification
    /// already received is consumed. A wake-up says "look", not what to
    /// read: select notifications after the last one seen.
    ///
    /// # Errors
    ///
    /// The connection broke (the server closed it, I/O failed): make a new
    /// listener.
    pub fn wait(&mut self, timeout: Duration) -> Result<bool> {
        let context = || format!("waiting for notifications on {}", self.channel);
        let woke = {
            let mut notifications = self.client.notifications();
            let woke = notifications
                .timeout_iter(timeout)
                .next()
                .map_err(|e| Error::persistence(context(), described(e)))?
                .is_some();
            if woke {
                let mut pending = notifications.iter();
                while pending
                    .next()
                    .map_err(|e| Error::persistence(context(), described(e)))?
                    .is_some()
                {}
            }
            woke
        };
        if !woke && self.client.is_closed() {
            return Err(Error::persistence(
                context(),
                "the connection closed: listen again",
            ));
        }
        Ok(woke)
    }
}

/// How often a watcher of eventsourcing_django's tables looks for new
/// rows.
const POLL_EVERY: std::time::Duration = std::time::Duration::from_millis(100);

impl PostgresRecorder {
    /// Raises `signal` when the application's highest notification id
    /// moves, looked up every 100 ms: the watcher of eventsourcing_django's
    /// tables, whose Django writers send no NOTIFY.
    pub(super) fn poll_for_new_rows(&self, signal: &Arc<Signal>) -> Result<Watch> {
        use annals_core::persistence::ApplicationRecorder as _;
        let name = format!("postgres {} (polled)", self.sql.events);
        let recorder = self.clone();
        let mut last = recorder.max_notification_id()?;
        Watch::spawn(&name, signal, move |timeout| {
            let until = std::time::Instant::now() + timeout;
            loop {
                let max = recorder.max_notification_id()?;
                if max != last {
                    last = max;
                    return Ok(true);
                }
                let now = std::time::Instant::now();
                if now >= until {
                    return Ok(false);
                }
                std::thread::sleep(POLL_EVERY.min(until - now));
            }
        })
    }
}
