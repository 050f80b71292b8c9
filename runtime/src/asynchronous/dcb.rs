//! The DCB store's calls for async code: [`AsyncDcbRecorder`].

use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use super::{blocking, STREAM_BUFFER};
use crate::error::Result;
use crate::persistence::dcb::{
    DcbAppendCondition, DcbEvent, DcbQuery, DcbReadResponse, DcbRecorder, DcbSequencedEvent,
    DcbSubscription,
};

/// A [`DcbRecorder`] for async code: its calls as `Send` futures that
/// never block the runtime's workers (as [`AsyncApplication`](super::AsyncApplication)'s),
/// and its subscription as a [`Stream`](futures_core::Stream). Cheap to
/// clone.
///
/// ```
/// use std::sync::Arc;
/// use annals::asynchronous::AsyncDcbRecorder;
/// use annals::persistence::dcb::{DcbAppendCondition, DcbEvent, DcbQuery, DcbQueryItem, MemoryDcbRecorder};
///
/// # let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build().unwrap();
/// # runtime.block_on(async {
/// let store = AsyncDcbRecorder::new(Arc::new(MemoryDcbRecorder::new()));
/// let course = DcbQuery::item(DcbQueryItem::new().tags(["course-1"]));
/// let read = store.read(course.clone(), None, None).await?;
/// let condition = DcbAppendCondition::new(course).after(read.head);
/// let event = DcbEvent::new("CourseRegistered", b"{}".to_vec()).tags(["course-1"]);
/// assert_eq!(store.append(vec![event.clone()], Some(condition.clone())).await?, 1);
/// assert!(store.append(vec![event], Some(condition)).await.unwrap_err().is_conflict());
/// # Ok::<(), annals::Error>(())
/// # }).unwrap();
/// ```
#[derive(Debug, Clone)]
pub struct AsyncDcbRecorder {
    recorder: Arc<dyn DcbRecorder>,
}

impl AsyncDcbRecorder {
    /// The facade of `recorder`.
    pub fn new(recorder: Arc<dyn DcbRecorder>) -> Self {
        Self { recorder }
    }

    /// The store it calls.
    pub fn recorder(&self) -> &Arc<dyn DcbRecorder> {
        &self.recorder
    }

    /// [`DcbRecorder::read`].
    ///
    /// # Errors
    ///
    /// Store errors.
    pub async fn read(
        &self,
        query: DcbQuery,
        after: Option<u64>,
        limit: Option<usize>,
    ) -> Result<DcbReadResponse> {
        let recorder = self.recorder.clone();
        blocking(move || recorder.read(&query, after, limit)).await
    }

    /// [`DcbRecorder::append`].
    ///
    /// # Errors
    ///
    /// A [`Conflict`](crate::Error::Conflict) when the condition fails;
    /// store errors.
    pub async fn append(
        &self,
        events: Vec<DcbEvent>,
        condition: Option<DcbAppendCondition>,
    ) -> Result<u64> {
        let recorder = self.recorder.clone();
        blocking(move || recorder.append(&events, condition.as_ref())).await
    }

    /// The events that match `query` after position `after`, then each
    /// new one as it is appended ([`DcbSubscription`]): a
    /// [`Stream`](futures_core::Stream) that ends only when dropped (its
    /// thread then stops within a tenth of a second).
    ///
    /// ```
    /// use std::sync::Arc;
    /// use std::future::poll_fn;
    /// use std::pin::Pin;
    /// use annals::asynchronous::AsyncDcbRecorder;
    /// use annals::persistence::dcb::{DcbEvent, DcbQuery, MemoryDcbRecorder};
    /// use futures_core::Stream;
    ///
    /// # let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build().unwrap();
    /// # runtime.block_on(async {
    /// let store = AsyncDcbRecorder::new(Arc::new(MemoryDcbRecorder::new()));
    /// let mut events = store.subscribe(DcbQuery::all(), None).await?;
    /// store.append(vec![DcbEvent::new("A", vec![])], None).await?;
    /// let first = poll_fn(|cx| Pin::new(&mut events).poll_next(cx)).await;
    /// assert_eq!(first.transpose()?.map(|e| e.position), Some(1));
    /// # Ok::<(), annals::Error>(())
    /// # }).unwrap();
    /// ```
    ///
    /// # Errors
    ///
    /// The subscription cannot start (its store's watcher, its thread).
    pub async fn subscribe(&self, query: DcbQuery, after: Option<u64>) -> Result<DcbStream> {
        let recorder = self.recorder.clone();
        let mut subscription =
            blocking(move || DcbSubscription::new(recorder, query, after)).await?;
        let (tx, rx) = tokio::sync::mpsc::channel(STREAM_BUFFER);
        std::thread::Builder::new()
            .name("annals-dcb-subscribe".into())
            .spawn(move || {
                while !tx.is_closed() {
                    let item = match subscription.next_timeout(Duration::from_millis(100)) {
                        Ok(Some(event)) => Ok(event),
                        Ok(None) => continue,
                        Err(e) => Err(e),
                    };
                    if tx.blocking_send(item).is_err() {
                        return;
                    }
                }
            })
            .map_err(|e| crate::Error::persistence("starting a DCB subscription's thread", e))?;
        Ok(DcbStream { rx })
    }
}

/// The events of [`AsyncDcbRecorder::subscribe`], as they are appended;
/// dropping it stops its thread.
#[derive(Debug)]
pub struct DcbStream {
    rx: tokio::sync::mpsc::Receiver<Result<DcbSequencedEvent>>,
}

impl futures_core::Stream for DcbStream {
    type Item = Result<DcbSequencedEvent>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        self.rx.poll_recv(cx)
    }
}
