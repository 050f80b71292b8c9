//! A batch of rows as the parameters of PostgreSQL's `unnest` insert, and
//! an originator id as a query parameter: checked here (NUL characters,
//! versions in range, UUIDs for a uuid column), not by the server.

use postgres::types::ToSql;
use uuid::Uuid;

use super::settings::OriginatorIdType;
use super::sql::Sql;
use annals_core::error::{Error, Result};
use annals_core::persistence::{to_i64, StoredEvent};
use annals_core::settings;

/// The `originator_id` column of an insert.
enum Ids<'a> {
    Uuid(Vec<Uuid>),
    Text(Vec<&'a str>),
}

/// The four columns of a batch of rows, as arrays for `unnest`.
pub(super) struct Columns<'a> {
    ids: Ids<'a>,
    versions: Vec<i64>,
    topics: Vec<&'a str>,
    states: Vec<&'a [u8]>,
}

impl<'a> Columns<'a> {
    /// Checks `events` without building their columns (a queued save,
    /// whose columns the writer's holder builds): no NUL in text, versions
    /// in range, ids of the column's type.
    pub(super) fn check(
        events: &[StoredEvent],
        id_type: OriginatorIdType,
        sql: &Sql,
    ) -> Result<()> {
        for e in events {
            text_fits(e, sql)?;
            to_i64("originator_version", e.originator_version)?;
            if id_type == OriginatorIdType::Uuid {
                parse_uuid(&e.originator_id, sql)?;
            }
        }
        Ok(())
    }

    /// The columns of `events`, checked as [`check`](Self::check) does.
    pub(super) fn new<I>(events: I, id_type: OriginatorIdType, sql: &Sql) -> Result<Self>
    where
        I: Iterator<Item = &'a StoredEvent> + Clone,
    {
        for e in events.clone() {
            text_fits(e, sql)?;
        }
        let ids = match id_type {
            OriginatorIdType::Uuid => Ids::Uuid(
                events
                    .clone()
                    .map(|e| parse_uuid(&e.originator_id, sql))
                    .collect::<Result<_>>()?,
            ),
            OriginatorIdType::Text => {
                Ids::Text(events.clone().map(|e| e.originator_id.as_str()).collect())
            }
        };
        Ok(Columns {
            ids,
            versions: events
                .clone()
                .map(|e| to_i64("originator_version", e.originator_version))
                .collect::<Result<_>>()?,
            topics: events.clone().map(|e| e.topic.as_str()).collect(),
            states: events.map(|e| e.state.as_slice()).collect(),
        })
    }

    pub(super) fn params(&self) -> [&(dyn ToSql + Sync); 4] {
        let ids: &(dyn ToSql + Sync) = match &self.ids {
            Ids::Uuid(ids) => ids,
            Ids::Text(ids) => ids,
        };
        [ids, &self.versions, &self.topics, &self.states]
    }
}

/// An error if `e`'s topic or id holds a NUL, which PostgreSQL's text
/// cannot: refused here, not by the server, whose error would abort the
/// transaction the save shares with others (group commit).
pub(super) fn text_fits(e: &StoredEvent, sql: &Sql) -> Result<()> {
    if e.topic.contains('\0') || e.originator_id.contains('\0') {
        return Err(Error::persistence(
            format!("inserting events ({})", sql.events),
            format!(
                "the event at version {} of stream {:?} (topic {:?}) has a NUL character in \
                 its topic or id, which PostgreSQL's text cannot hold",
                e.originator_version, e.originator_id, e.topic
            ),
        ));
    }
    Ok(())
}

/// `originator_id` as a UUID, for the uuid column of `sql`'s table.
pub(super) fn parse_uuid(originator_id: &str, sql: &Sql) -> Result<Uuid> {
    Uuid::parse_str(originator_id).map_err(|_| {
        Error::config(
            settings::ORIGINATOR_ID_TYPE.name,
            format!(
                "originator id {originator_id:?} is not a UUID, but the originator_id \
                 column of {} is uuid: set ORIGINATOR_ID_TYPE=text to store string ids \
                 (in new tables)",
                sql.events
            ),
        )
    })
}

/// One originator id as a query parameter.
pub(super) enum IdParam<'a> {
    Uuid(Uuid),
    Text(&'a str),
}

impl IdParam<'_> {
    pub(super) fn as_sql(&self) -> &(dyn ToSql + Sync) {
        match self {
            IdParam::Uuid(id) => id,
            IdParam::Text(id) => id,
        }
    }
}
