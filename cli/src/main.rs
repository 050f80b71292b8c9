//! `annals`: an operator's command line for annals stores.
//!
//! It reads an application's store without its Rust types: the streams,
//! their events decoded to JSON, the notification log (also as it grows),
//! hash chains, counts and settings; it creates tables, it moves
//! events between any two stores as JSON lines, and it ends streams for
//! good (`archive`, `delete`). `annals dcb` reads an
//! application's DCB store (read by query, head, follow). It is configured like the
//! library (the same environment variables), and flags override them.
//!
//! Exit codes: 0 done; 1 an error (the message names it); 2 a usage error
//! (`delete` without `--yes` too);
//! 3 `verify` found a broken hash chain; 4 `verify` found no hash chain to
//! check (the store was written without hash chaining).

mod args;
mod dcb;
mod ending;
mod followers;
mod inspect;
mod output;
mod settings;
mod transfer;
mod verify;

use std::process::ExitCode;

use clap::Parser;

use crate::args::{Cli, Command, DcbCommand, KeysCommand};

/// What a command found, for the exit code.
enum Outcome {
    /// It did what was asked.
    Done,
    /// `verify` found a broken chain.
    Broken,
    /// `verify` found no chain to check.
    NotChained,
}

/// Why a command failed.
#[derive(Debug, thiserror::Error)]
enum CliError {
    /// annals failed: a setting, the store, a row.
    #[error("{}", .0.report())]
    Annals(#[from] annals::Error),
    /// A file or the terminal failed.
    #[error("{context}: {source}")]
    Io {
        /// What was being done.
        context: String,
        /// The error.
        source: std::io::Error,
    },
    /// The input is wrong.
    #[error("{0}")]
    Invalid(String),
    /// The arguments are wrong (found after parsing): exit 2, as clap's.
    #[error("{0}")]
    Usage(String),
}

type Result<T, E = CliError> = std::result::Result<T, E>;

fn io(context: impl Into<String>) -> impl FnOnce(std::io::Error) -> CliError {
    let context = context.into();
    move |source| CliError::Io { context, source }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    // RUST_LOG drives the library's spans and events, on stderr; silent
    // by default.
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
        .with_writer(std::io::stderr)
        .init();
    match run(cli) {
        Ok(Outcome::Done) => ExitCode::SUCCESS,
        Ok(Outcome::Broken) => ExitCode::from(3),
        Ok(Outcome::NotChained) => ExitCode::from(4),
        Err(e) => {
            eprintln!("annals: {e}");
            match e {
                CliError::Usage(_) => ExitCode::from(2),
                _ => ExitCode::FAILURE,
            }
        }
    }
}

fn selection(query: args::DcbQueryArgs) -> dcb::Selection {
    dcb::Selection {
        types: query.types,
        tags: query.tags,
    }
}

fn run(cli: Cli) -> Result<Outcome> {
    let out = output::Output::new(cli.global.json, cli.global.quiet);
    // Every command but keygen works on an application's store.
    let settings = || settings::Settings::new(&cli.global);
    match cli.command {
        Command::Keygen => {
            let key = annals::cipher::create_key();
            out.value(&serde_json::json!({ "key": key }), || key.clone());
        }
        Command::Migrate => {
            let settings = settings()?;
            settings.builder()?.migrate()?;
            out.value(&serde_json::json!({ "migrated": settings.app() }), || {
                format!("the tables of {} are ready", settings.app())
            });
        }
        Command::Forget { subject } => {
            let had = settings()?.open()?.forget(&subject)?;
            out.value(
                &serde_json::json!({ "subject": subject, "forgotten": had }),
                || {
                    if had {
                        format!("subject {subject} forgotten: its data key is erased")
                    } else {
                        format!(
                            "subject {subject} has no data key (no personal data saved, or forgotten before)"
                        )
                    }
                },
            );
        }
        Command::Keys(KeysCommand::Rotate) => {
            let rotation = settings()?.open()?.rotate_keys()?;
            out.value(
                &serde_json::json!({ "rewrapped": rotation.rewrapped, "current": rotation.current }),
                || {
                    format!(
                        "{} data keys re-wrapped by the current master key, {} already were",
                        rotation.rewrapped, rotation.current
                    )
                },
            );
        }
        Command::Streams => inspect::streams(&settings()?, &out)?,
        Command::Compact => {
            let settings = settings()?;
            let env = settings.env();
            let store = env.get("PERSISTENCE_MODULE").map(|(_, v)| v);
            // The object store's names, compared as the application
            // compares them (without case).
            let module = store.as_deref().map(|m| m.trim().to_ascii_lowercase());
            if !matches!(module.as_deref(), Some("object" | "object_store")) {
                return Err(CliError::Usage(format!(
                    "compact packs an object store's saves; this application's store is {}",
                    store
                        .as_deref()
                        .unwrap_or("memory (PERSISTENCE_MODULE is unset)")
                )));
            }
            let done = annals::persistence::object::ObjectConfig::from_env(&env)?
                .compact(settings.app())?;
            out.value(
                &serde_json::json!({ "packs": done.packs, "saves": done.saves }),
                || format!("{} saves packed into {} packs", done.saves, done.packs),
            );
        }
        Command::Events { id, from, to } => inspect::events(&settings()?, &out, &id, from, to)?,
        Command::Log {
            from,
            limit,
            follow,
            topics,
        } => inspect::log(&settings()?, &out, from, limit, follow, &topics)?,
        Command::Info => inspect::info(&settings()?, &out)?,
        Command::Verify {
            id,
            heads,
            heads_out,
        } => {
            let heads = verify::Heads {
                check: heads.as_deref(),
                write: heads_out.as_deref(),
            };
            return verify::verify(&settings()?, &out, id.as_deref(), &heads);
        }
        Command::Export {
            output,
            plain,
            tracking,
            no_snapshots,
            from,
        } => {
            let options = transfer::ExportOptions {
                plain,
                tracking,
                snapshots: !no_snapshots,
                from,
            };
            transfer::export(&settings()?, &out, output.as_deref(), &options)?
        }
        Command::Import {
            input,
            batch,
            compare,
            dry_run,
            save_path,
        } => {
            let options = transfer::ImportOptions {
                batch,
                compare,
                dry_run,
                save_path,
            };
            transfer::import(&settings()?, &out, input.as_deref(), &options)?
        }
        Command::Followers { leader_set } => {
            followers::followers(&settings()?, &cli.global, &out, &leader_set)?
        }
        Command::Archive { id, to } => ending::archive(&settings()?, &out, &id, &to)?,
        Command::Delete { id, yes } => ending::delete(&settings()?, &out, &id, yes)?,
        Command::Dcb(command) => match command {
            DcbCommand::Read {
                query,
                after,
                limit,
            } => dcb::read(&settings()?, &out, &selection(query), after, limit)?,
            DcbCommand::Head => dcb::head(&settings()?, &out)?,
            DcbCommand::Follow {
                query,
                after,
                limit,
            } => dcb::follow(&settings()?, &out, &selection(query), after, limit)?,
        },
    }
    Ok(Outcome::Done)
}
