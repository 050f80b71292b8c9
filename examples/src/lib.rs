//! Domain models and applications shared by the examples (run them with
//! `cargo run --example dog_school` and `cargo run --example world`).

pub mod bank;
pub mod courses;
pub mod dog_school;
pub mod searchable_content;
pub mod service;
pub mod shop;
pub mod styles;
pub mod world;

use tracing_subscriber::EnvFilter;

/// Installs a tracing subscriber that writes to stderr what `RUST_LOG`
/// asks for (`RUST_LOG=annals=debug` shows the library's spans as they
/// close; silent when unset). Each example calls it first; a second call,
/// or a subscriber installed already, leaves the first in place.
pub fn init_tracing() {
    let _ = tracing_subscriber::fmt()
        .with_env_filter(EnvFilter::from_default_env())
        .with_span_events(tracing_subscriber::fmt::format::FmtSpan::CLOSE)
        .with_writer(std::io::stderr)
        // Colours only for a terminal: a service's log file or journal
        // gets plain text.
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .try_init();
}
