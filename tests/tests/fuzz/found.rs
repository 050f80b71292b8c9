//! What the fuzzer found, kept as tests.

use std::panic::catch_unwind;

use annals::env::Env;
use annals::prelude::*;

/// Found by `hostile_settings_never_panic` with `ANNALS_FUZZ_HOSTILE=1`:
/// a lock timeout of 2147483.648 seconds or more (more milliseconds than an
/// i32 holds) panics in rusqlite's `busy_timeout` ("too big") when the store
/// opens, instead of being a configuration error (or a clamp).
#[test]
fn a_huge_sqlite_lock_timeout_does_not_panic() {
    for value in ["2147483.648", "1e10"] {
        let vars = [
            ("PERSISTENCE_MODULE", "sqlite"),
            ("SQLITE_DBNAME", ":memory:"),
            ("SQLITE_LOCK_TIMEOUT", value),
        ];
        let env = Env::from_map("Fuzz", vars);
        let built = catch_unwind(|| {
            Application::builder("Fuzz")
                .with_env(&env)
                .and_then(|b| b.build())
                .map(drop)
        });
        assert!(built.is_ok(), "SQLITE_LOCK_TIMEOUT={value} panicked");
    }
}

/// Found by `hostile_settings_never_panic` with `ANNALS_FUZZ_HOSTILE=1`:
/// `AGGREGATE_CACHE_MAXSIZE` is the capacity the LRU cache allocates up
/// front. Above `isize::MAX / 8` or so (`18446744073709551615`,
/// `4611686018427387903`) hashbrown panics ("Hash table capacity
/// overflow"); lower but still huge (`1000000000000`) the allocation fails
/// and the process aborts ("memory allocation of 37383395344400 bytes
/// failed"), which no test can catch, so only the panicking values are
/// here.
#[test]
fn a_huge_aggregate_cache_size_does_not_panic() {
    for value in ["18446744073709551615", "4611686018427387903"] {
        let env = Env::from_map("Fuzz", [("AGGREGATE_CACHE_MAXSIZE", value)]);
        let built = catch_unwind(|| {
            Application::builder("Fuzz")
                .with_env(&env)
                .and_then(|b| b.build())
                .map(drop)
        });
        assert!(built.is_ok(), "AGGREGATE_CACHE_MAXSIZE={value} panicked");
    }
}
