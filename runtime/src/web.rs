//! axum support (feature `axum`): annals' errors as HTTP responses with
//! the right status and a JSON body, and the [`AsyncApplication`] as a
//! handler's shared state.
//!
//! | error | status |
//! |---|---|
//! | [`Error::NotFound`] | 404 |
//! | [`Error::StreamEnded`] (archived or deleted; the message does not say where to) | 410 |
//! | [`Error::Conflict`] (after the command's retries; the message names the aggregate, id and version, not the store's words) | 409 |
//! | [`CommandError::Rejected`] (the domain said no) | 422 |
//! | [`Error::Persistence`] (the store is unavailable) | 503 |
//! | anything else (a corrupt event, a bad setting) | 500 |
//!
//! The body is `{"error": "<kind>", "message": "<what happened>"}`; a 500's
//! message never carries a store's inner error chain (it is logged).
//!
//! ```
//! use std::sync::Arc;
//! use annals::asynchronous::AsyncApplication;
//! use annals::web::ApiError;
//! use axum::extract::{Path, State};
//! use axum::{routing::get, Json, Router};
//! # use annals::prelude::*;
//! # #[aggregate]
//! # #[derive(Debug, Clone)]
//! # pub struct Note { pub text: String }
//! # #[aggregate]
//! # impl Note {
//! #     #[event("Written")]
//! #     pub fn write(text: String) -> Self { Note { text } }
//! # }
//!
//! async fn note(State(app): State<AsyncApplication>, Path(id): Path<Uuid>) -> Result<Json<String>, ApiError> {
//!     Ok(Json(app.get::<Note>(id).await?.text))
//! }
//!
//! let app = AsyncApplication::new(Arc::new(Application::builder("Notes").build()?));
//! let router: Router = Router::new().route("/notes/{id}", get(note)).with_state(app);
//! # Ok::<(), annals::Error>(())
//! ```

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;

use crate::application::CommandError;
#[cfg(doc)]
use crate::asynchronous::AsyncApplication;
use crate::error::Error;

/// An error a handler returns: a status, a kind and a message, sent as
/// JSON. Made from [`Error`] and [`CommandError`] by `?`, or by hand for
/// the handler's own checks ([`ApiError::new`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiError {
    /// The HTTP status.
    pub status: StatusCode,
    /// A short, stable name of the kind of error (`not_found`, ...).
    pub kind: &'static str,
    /// What happened, for people.
    pub message: String,
}

impl ApiError {
    /// An error with this status, kind and message.
    pub fn new(status: StatusCode, kind: &'static str, message: impl Into<String>) -> Self {
        Self {
            status,
            kind,
            message: message.into(),
        }
    }
}

impl From<Error> for ApiError {
    fn from(e: Error) -> Self {
        match &e {
            Error::NotFound { .. } => Self::new(StatusCode::NOT_FOUND, "not_found", e.to_string()),
            Error::StreamEnded {
                id, archived_to, ..
            } => {
                let how = if archived_to.is_some() {
                    "archived"
                } else {
                    "deleted"
                };
                Self::new(StatusCode::GONE, "gone", format!("{id} was {how}"))
            }
            Error::Conflict { .. } => {
                // What the client sees is built from the aggregate, its id
                // and version: the store's own words (a constraint's name,
                // a table's) go to the log only.
                tracing::info!(error = %e.report(), "conflict");
                let what = "another writer stored first; nothing was stored, reload and retry";
                let message = match e.conflict_subject() {
                    Some(subject) => format!("{subject}: {what}"),
                    None => what.to_owned(),
                };
                Self::new(StatusCode::CONFLICT, "conflict", message)
            }
            Error::Persistence { .. } => {
                tracing::warn!(error = %e.report(), "the store is unavailable");
                Self::new(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "unavailable",
                    "the store is unavailable; try again",
                )
            }
            _ => {
                tracing::error!(error = %e.report(), "request failed");
                Self::new(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "internal",
                    "the request failed; the server's log says why",
                )
            }
        }
    }
}

impl<E: std::fmt::Display> From<CommandError<E>> for ApiError {
    fn from(e: CommandError<E>) -> Self {
        match e {
            CommandError::Rejected(why) => Self::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                "rejected",
                why.to_string(),
            ),
            CommandError::Failed(e) => e.into(),
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = serde_json::json!({"error": self.kind, "message": self.message});
        (self.status, Json(body)).into_response()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_error_has_its_status() {
        let not_found = Error::NotFound {
            aggregate: "Dog",
            id: "1".into(),
        };
        assert_eq!(ApiError::from(not_found).status, StatusCode::NOT_FOUND);
        // An ended stream is gone; where it was archived to is not said.
        let gone = ApiError::from(Error::StreamEnded {
            id: "1".into(),
            archived_to: Some("/srv/archive.db".into()),
            at: "2026-01-01T00:00:00Z".into(),
        });
        assert_eq!(gone.status, StatusCode::GONE);
        assert_eq!(gone.message, "1 was archived");
        assert_eq!(
            ApiError::from(Error::conflict("taken")).status,
            StatusCode::CONFLICT
        );
        // A 409 names the aggregate, id and version, never the store's
        // own text.
        let conflict = ApiError::from(Error::Conflict {
            aggregate: Some("Account"),
            id: Some("3f2b".into()),
            version: Some(2),
            message: "inserting events: UNIQUE constraint failed: stored_events.originator_id"
                .into(),
        });
        assert_eq!(conflict.status, StatusCode::CONFLICT);
        assert!(
            conflict.message.starts_with("Account 3f2b at version 2: "),
            "{}",
            conflict.message
        );
        assert!(
            !conflict.message.contains("UNIQUE") && !conflict.message.contains("stored_events"),
            "{}",
            conflict.message
        );
        assert_eq!(
            ApiError::from(Error::persistence("reading", "down")).status,
            StatusCode::SERVICE_UNAVAILABLE
        );
        let rejected: CommandError<&str> = CommandError::Rejected("insufficient funds");
        let api = ApiError::from(rejected);
        assert_eq!(
            (api.status, api.message.as_str()),
            (StatusCode::UNPROCESSABLE_ENTITY, "insufficient funds")
        );
        let internal = ApiError::from(Error::config("X", "bad"));
        assert_eq!(internal.status, StatusCode::INTERNAL_SERVER_ERROR);
        assert!(
            !internal.message.contains("bad"),
            "no inner detail in a 500"
        );
    }
}
