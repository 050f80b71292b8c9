//! The SQLite recorder.
