//! `annals dcb`: a DCB store's events by query, its head, and its new
//! events as they are appended.

use std::sync::Arc;

use annals::persistence::dcb::{
    self, DcbQuery, DcbQueryItem, DcbRecorder, DcbSequencedEvent, DcbSubscription,
};
use base64::Engine as _;
use serde::Serialize;

use crate::output::Output;
use crate::settings::Settings;
use crate::Result;

/// Which events: one query item, of these types (any when none) with all
/// these tags.
#[derive(Debug, Default)]
pub(crate) struct Selection {
    pub types: Vec<String>,
    pub tags: Vec<String>,
}

impl Selection {
    fn query(&self) -> DcbQuery {
        if self.types.is_empty() && self.tags.is_empty() {
            return DcbQuery::all();
        }
        DcbQuery::item(
            DcbQueryItem::new()
                .types(self.types.iter().cloned())
                .tags(self.tags.iter().cloned()),
        )
    }
}

/// One event as `--json` shows it: the data base64, and as JSON too when
/// it is JSON.
#[derive(Serialize)]
struct Shown<'a> {
    position: u64,
    #[serde(rename = "type")]
    type_: &'a str,
    tags: &'a [String],
    /// The data, base64 (as stored: any bytes).
    data: String,
    /// The data parsed, when it is JSON.
    #[serde(skip_serializing_if = "Option::is_none")]
    json: Option<serde_json::Value>,
}

fn show(out: &Output, event: &DcbSequencedEvent) {
    let data = &event.event.data;
    let shown = Shown {
        position: event.position,
        type_: &event.event.type_,
        tags: &event.event.tags,
        data: base64::engine::general_purpose::STANDARD.encode(data),
        json: serde_json::from_slice(data).ok(),
    };
    out.value(&shown, || {
        // Text shows UTF-8 data as it is, other bytes as base64.
        let data = match std::str::from_utf8(data) {
            Ok(text) => text.to_owned(),
            Err(_) => format!("base64:{}", shown.data),
        };
        format!(
            "{}\t{}\t{}\t{data}",
            event.position,
            event.event.type_,
            event.event.tags.join(",")
        )
    });
}

fn open(settings: &Settings) -> Result<Arc<dyn DcbRecorder>> {
    Ok(dcb::open(settings.app(), &settings.env())?)
}

/// `dcb read`: the events after `after` that match, at most `limit`.
pub(crate) fn read(
    settings: &Settings,
    out: &Output,
    selection: &Selection,
    after: Option<u64>,
    limit: Option<usize>,
) -> Result<()> {
    let store = open(settings)?;
    let query = selection.query();
    let mut after = after;
    let mut left = limit.unwrap_or(usize::MAX);
    // In pages, so a large store is not read into memory at once.
    while left > 0 {
        let page = store.read(&query, after, Some(left.min(1_000)))?;
        let Some(last) = page.events.last().map(|e| e.position) else {
            break;
        };
        for event in &page.events {
            show(out, event);
        }
        left -= page.events.len();
        after = Some(last);
    }
    Ok(())
}

/// `dcb head`: the store's last position.
pub(crate) fn head(settings: &Settings, out: &Output) -> Result<()> {
    let store = open(settings)?;
    // Without a limit, a read's head is the store's last position, whatever
    // the query matched: a query of a type no event has reads nothing (an
    // index seek where the store has one) and gives it.
    let nothing = DcbQuery::item(DcbQueryItem::new().types(["annals: no such type (dcb head)"]));
    let head = store.read(&nothing, None, None)?.head;
    out.value(&serde_json::json!({ "head": head }), || {
        head.map_or_else(|| "empty".to_owned(), |h| h.to_string())
    });
    Ok(())
}

/// `dcb follow`: the events after `after` that match, then each new one,
/// until interrupted or `limit` are shown.
pub(crate) fn follow(
    settings: &Settings,
    out: &Output,
    selection: &Selection,
    after: Option<u64>,
    limit: Option<usize>,
) -> Result<()> {
    let limit = limit.unwrap_or(usize::MAX);
    if limit == 0 {
        return Ok(());
    }
    let store = open(settings)?;
    let mut subscription = DcbSubscription::new(store, selection.query(), after)?;
    let stopper = subscription.stopper();
    crate::inspect::on_signal(move || stopper.stop())?;
    for (shown, event) in subscription.by_ref().enumerate() {
        show(out, &event?);
        if shown + 1 >= limit {
            break;
        }
    }
    Ok(())
}
