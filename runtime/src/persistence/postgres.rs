//! The PostgreSQL recorder.
