//! The built `annals` binary against SQLite and PostgreSQL stores that the
//! tests make (and their DCB stores, and UmaDB when CI starts it): exit codes, what each command shows, `--json` output that
//! parses, and export/import between stores (100,000 events, an import
//! killed halfway).

mod bulk_import;
mod compact;
mod dcb;
mod ending;
mod export_import;
mod follow;
mod followers;
mod inspect;
mod mysql;
mod personal;
mod python;
mod settings;
mod support;
mod usage;
mod verify;
