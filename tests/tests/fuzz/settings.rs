//! The settings target: hostile values for every setting.

use std::panic::catch_unwind;

use annals::env::Env;
use annals::prelude::*;

use crate::knobs::{hex, hostile, iterations, panic_message, seed};
use crate::model::Pet;

/// Values that are hostile to any setting.
fn hostile_setting_value(rng: &mut fastrand::Rng) -> String {
    const FIXED: &[&str] = &[
        "",
        " ",
        "\t\n",
        "0",
        "1",
        "-1",
        "-0",
        "+5",
        "5 ",
        " 0.5",
        "0x10",
        "1_000",
        "NaN",
        "nan",
        "inf",
        "-inf",
        "infinity",
        "1e308",
        "1e309",
        "-1e308",
        "1e-320",
        "4.9e-324",
        "0.000000001",
        "0.0000000001",
        "18446744073709551615",
        "18446744073709551616",
        "9223372036854775807",
        "-9223372036854775808",
        "4294967295",
        "4294967296",
        "2147483647",
        "2147483648",
        "yes",
        "no",
        "TRUE",
        "Off",
        "maybe",
        "y\u{0}",
        "zlib",
        "ZLIB",
        "eventsourcing.compressor:ZlibCompressor",
        "aes",
        "eventsourcing.cipher:AESCipher",
        "memory",
        "sqlite",
        ":memory:",
        "ünïcödé",
        "٣",
        "５",
        "𝟓",
        "🐕",
        "\u{202e}5",
        "\u{0}",
        "a\u{0}b",
        "\u{feff}5",
        "\u{fffd}",
        "$(echo hi)",
        "'; DROP TABLE stored_events; --",
        "\"",
        "stored_events",
        "_",
        "a-b",
        "AAAAAAAAAAAAAAAAAAAAAA==",
        "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=",
        "====",
        "!!!!",
    ];
    match rng.usize(..8) {
        0..=3 => FIXED[rng.usize(..FIXED.len())].to_owned(),
        4 => "a".repeat([64, 1_000, 100_000][rng.usize(..3)]),
        5 => match rng.usize(..3) {
            0 => "9".repeat(rng.usize(1..5_000)),
            1 => format!("{}1", "0".repeat(rng.usize(1..5_000))),
            _ => format!("0.{}1", "0".repeat(rng.usize(1..500))),
        },
        6 => {
            let bytes: Vec<u8> = (0..rng.usize(..40)).map(|_| rng.u8(..)).collect();
            String::from_utf8_lossy(&bytes).into_owned()
        }
        _ => {
            use base64::Engine;
            let bytes: Vec<u8> = (0..rng.usize(..48)).map(|_| rng.u8(..)).collect();
            base64::engine::general_purpose::STANDARD.encode(bytes)
        }
    }
}

/// A value for `name`: often a plausible one (so the settings after it
/// are read), else a hostile one.
fn setting_value(rng: &mut fastrand::Rng, name: &str) -> String {
    if rng.usize(..3) == 0 {
        return hostile_setting_value(rng);
    }
    match name {
        "PERSISTENCE_MODULE" => [
            "memory",
            "popo",
            "sqlite",
            "eventsourcing.sqlite",
            " Memory ",
            "SQLITE",
        ][rng.usize(..6)]
        .to_owned(),
        "CIPHER_KEY" => {
            let len = [16, 24, 32, 31, 0][rng.usize(..5)];
            let key: Vec<u8> = (0..len).map(|_| rng.u8(..)).collect();
            use base64::Engine;
            base64::engine::general_purpose::STANDARD.encode(key)
        }
        "COMPRESSOR_TOPIC" => "zlib".to_owned(),
        "CIPHER_TOPIC" => "aes".to_owned(),
        "SQLITE_LOCK_TIMEOUT" | "POSTGRES_CONNECT_TIMEOUT" => {
            format!("{}", rng.f64() * 10.0)
        }
        "AGGREGATE_CACHE_MAXSIZE" | "POSTGRES_POOL_SIZE" => rng.usize(..100).to_string(),
        "SQLITE_TABLE_PREFIX" => ["app", "a1", "_x", "A_B"][rng.usize(..4)].to_owned(),
        _ => ["yes", "no", "1", "0", "t", "off"][rng.usize(..6)].to_owned(),
    }
}

/// `SQLITE_DBNAME` only ever names `:memory:` or a file in `dir`.
fn dbname(rng: &mut fastrand::Rng, dir: &std::path::Path) -> String {
    let file = match rng.usize(..6) {
        0 => return ":memory:".to_owned(),
        1 => format!(
            "file:{}?mode=memory&cache=shared",
            dir.join("shared").display()
        ),
        2 => {
            // A hostile file name, kept inside `dir` (no separators).
            let name: String = hostile_setting_value(rng)
                .chars()
                .filter(|c| *c != '/' && *c != '\\')
                .take(100)
                .collect();
            return dir.join(format!("db-{name}")).display().to_string();
        }
        _ => format!("db{}.sqlite", rng.usize(..3)),
    };
    if file.starts_with("file:") {
        file
    } else {
        dir.join(file).display().to_string()
    }
}

const APP_NAMES: &[&str] = &["Fuzz", "fuzz-app", "", "ünï", "A_1"];

/// A map of hostile settings for `app`, and whether it is allowed in this
/// run (never PostgreSQL; without `ANNALS_FUZZ_HOSTILE`, no values known to
/// abort or panic in dependencies).
fn settings_map(
    rng: &mut fastrand::Rng,
    app: &str,
    dir: &std::path::Path,
    hostile: bool,
) -> Vec<(String, String)> {
    let prefix: String = app
        .chars()
        .filter(|c| c.is_ascii_alphanumeric() || *c == '_')
        .collect::<String>()
        .to_ascii_uppercase();
    let mut vars = Vec::new();
    for setting in annals::settings::ALL {
        if rng.usize(..3) == 0 {
            continue;
        }
        let value = if setting.name == "SQLITE_DBNAME" && rng.usize(..8) > 0 {
            dbname(rng, dir)
        } else {
            setting_value(rng, setting.name)
        };
        let key = match rng.usize(..4) {
            0 => format!("{prefix}_{}", setting.name),
            1 => {
                // Both: the prefixed one wins.
                vars.push((setting.name.to_owned(), hostile_setting_value(rng)));
                format!("{prefix}_{}", setting.name)
            }
            _ => setting.name.to_owned(),
        };
        vars.push((key, value));
    }
    let env = Env::from_map(app, vars.clone());
    let effective = |name: &str| env.get(name).map(|(_, v)| v);
    // Never PostgreSQL (nor a store of the user's own: none is registered).
    if let Some(module) = effective("PERSISTENCE_MODULE") {
        let module = module.trim().to_ascii_lowercase();
        let module = module.strip_prefix("eventsourcing.").unwrap_or(&module);
        if module.starts_with("postgres") {
            vars.retain(|(k, _)| !k.ends_with("PERSISTENCE_MODULE"));
        }
    }
    // A SQLite store only in `dir` or in memory.
    if let Some(name) = effective("SQLITE_DBNAME") {
        let inside = name == ":memory:"
            || name.starts_with(&*dir.display().to_string())
            || name.starts_with(&format!("file:{}", dir.display()));
        if !inside {
            vars.retain(|(k, _)| !k.ends_with("SQLITE_DBNAME"));
            vars.push(("SQLITE_DBNAME".to_owned(), ":memory:".to_owned()));
        }
    }
    // Known defects, being fixed elsewhere: a huge SQLite lock timeout
    // panics in rusqlite (hostile runs keep it: the panic is caught and
    // reported); a huge cache size aborts the process on allocation, which
    // no run can catch (hostile runs try a few, last).
    let too_long = effective("SQLITE_LOCK_TIMEOUT")
        .and_then(|v| v.trim().parse::<f64>().ok())
        .is_some_and(|s| s > 1000.0);
    let too_big = effective("AGGREGATE_CACHE_MAXSIZE")
        .and_then(|v| v.trim().parse::<usize>().ok())
        .is_some_and(|n| n > 10_000);
    if too_long && !hostile {
        vars.retain(|(k, _)| !k.ends_with("SQLITE_LOCK_TIMEOUT"));
    }
    if too_big {
        vars.retain(|(k, _)| !k.ends_with("AGGREGATE_CACHE_MAXSIZE"));
    }
    vars
}

/// Builds an application from `vars`; if it builds, saves and reads back
/// an aggregate. Ok(true): built and round-tripped.
fn build_and_use(app: &str, vars: &[(String, String)]) -> annals::Result<bool> {
    let env = Env::from_map(app, vars.iter().cloned());
    let application = Application::builder(app).with_env(&env)?.build()?;
    let mut pet = Pet::adopt("Fido".into(), 3);
    pet.tag("good".into());
    application.save(&mut pet)?;
    let copy: Pet = application.get(pet.id())?;
    assert_eq!(copy.tags, pet.tags, "read back what was saved");
    Ok(true)
}

#[test]
fn hostile_settings_never_panic() {
    let hostile = hostile();
    let iters = (iterations() / 10).max(1);
    let seed = seed();
    let mut rng = fastrand::Rng::with_seed(seed ^ 0x5e77_1265);
    let dir = tempfile::tempdir().expect("temp dir");
    println!(
        "fuzz settings: seed {seed}, {iters} inputs, hostile values {}",
        if hostile { "on" } else { "off" }
    );
    let (mut built, mut errors) = (0, 0);
    let (mut memory, mut sqlite) = (0, 0);
    let mut failures = Vec::new();
    let started = std::time::Instant::now();
    let mut extra: Vec<Vec<(String, String)>> = Vec::new();
    if hostile {
        // After the random inputs, last to first: the one that aborts the
        // process (an allocation of 37 TB) last.
        for value in [
            "1000000000000",
            "4611686018427387903",
            "18446744073709551615",
        ] {
            extra.push(vec![("AGGREGATE_CACHE_MAXSIZE".into(), value.into())]);
        }
        // rusqlite's busy_timeout takes milliseconds as an i32: 2147483.647
        // seconds is the most it takes.
        for value in [
            "2147483.647",
            "2147483.648",
            "1e10",
            "1e15",
            "18446744073709551615",
            "1e19",
        ] {
            extra.push(vec![
                ("PERSISTENCE_MODULE".into(), "sqlite".into()),
                ("SQLITE_DBNAME".into(), ":memory:".into()),
                ("SQLITE_LOCK_TIMEOUT".into(), value.into()),
            ]);
        }
    }
    let extras = extra.len();
    for i in 0..iters + extras {
        if i == iters && extras > 0 {
            // The last extra input aborts the process: say what came before.
            println!(
                "fuzz settings [random, hostile]: {iters} inputs, {built} built, {errors} errors, \
                 {} panics{}",
                failures.len(),
                failures
                    .first()
                    .map_or(String::new(), |f| format!("; the first:\n{f}"))
            );
        }
        let app = APP_NAMES[rng.usize(..APP_NAMES.len())];
        let vars = match i.checked_sub(iters) {
            None => settings_map(&mut rng, app, dir.path(), hostile),
            Some(_) => extra.pop().expect("one per extra input"),
        };
        let env = Env::from_map(app, vars.clone());
        let module = env
            .get("PERSISTENCE_MODULE")
            .map(|(_, m)| m.trim().to_ascii_lowercase());
        if module.as_deref().is_some_and(|m| m.contains("sqlite")) {
            sqlite += 1;
        } else {
            memory += 1;
        }
        if i >= iters {
            println!("fuzz settings [hostile]: {vars:?}");
        }
        match catch_unwind(|| build_and_use(app, &vars)) {
            Ok(Ok(_)) => built += 1,
            Ok(Err(e)) => {
                errors += 1;
                if i >= iters {
                    println!("  -> error: {e}");
                }
            }
            Err(payload) => {
                let message = panic_message(&*payload);
                if i >= iters {
                    println!("  -> PANIC: {message}");
                }
                if failures.len() < 20 {
                    let shown: Vec<String> = vars
                        .iter()
                        .map(|(k, v)| format!("{k}={v:?} (hex {})", hex(v.as_bytes())))
                        .collect();
                    failures.push(format!(
                        "app {app:?}: panicked: {message}\n  {}",
                        shown.join("\n  ")
                    ));
                }
            }
        }
    }
    println!(
        "fuzz settings: {} inputs ({memory} memory, {sqlite} sqlite), {built} built and \
         round-tripped, {errors} errors, {} panics ({:.1?})",
        iters + extras,
        failures.len(),
        started.elapsed()
    );
    assert!(
        failures.is_empty(),
        "building from settings panicked (seed {seed}):\n{}",
        failures.join("\n")
    );
}
