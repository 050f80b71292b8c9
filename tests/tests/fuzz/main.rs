//! Mutation fuzzing of everything that reads stored or configured bytes:
//!
//! - the decode path of the [`Mapper`] (`decode`, `decode_link`, `header`,
//!   `decode_snapshot`, `recorded_hash`) in every codec mode (plain, zlib,
//!   AES-GCM bound and unbound, zlib + AES-GCM; with and without hash
//!   chaining), over rows whose state, topic, version and id were mutated;
//! - settings parsing: hostile values for every setting of
//!   [`annals::settings::ALL`] through `Env::from_map`,
//!   `ApplicationBuilder::with_env` and `build` (memory and SQLite only).
//!
//! Decoding and building may return `Ok` or `Err`; a panic fails the test
//! with the input that caused it (hex). Knobs (environment variables):
//!
//! - `ANNALS_FUZZ_ITERS`: mutated rows for the decode target (default
//!   `DEFAULT_ITERS`, a few seconds in a debug build), split over the
//!   modes; the settings target runs a tenth as many inputs;
//! - `ANNALS_FUZZ_SEED`: the seed (default fixed; printed);
//! - `ANNALS_FUZZ_HOSTILE=1`: also values that are known to take the
//!   process down or panic in dependencies (huge `AGGREGATE_CACHE_MAXSIZE`
//!   and `SQLITE_LOCK_TIMEOUT`, a zlib bomb). See the report of the fuzz
//!   branch; they are kept out of the default run because an abort cannot
//!   be caught.

mod corpus;
mod decode;
mod found;
mod knobs;
mod model;
mod modes;
mod mutations;
mod settings;
