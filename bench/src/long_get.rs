//! Getting one long stream: time and peak memory of `app.get` of an
//! aggregate of N (and N/10) events on SQLite, each in a fresh process,
//! beside the memory the aggregate itself needs (its tricks, built
//! directly): replay must cost rows a page at a time, not the stream.

use std::process::Command;
use std::time::Instant;

use annals::persistence::sqlite::{SqliteConfig, SqliteRecorder};
use annals::persistence::{AggregateRecorder, StoredEvent};
use annals::prelude::*;

use crate::annals_sut::Dog;
use crate::reader_memory::peak_rss_kib;
use crate::workload::{check_dog, name, trick};
use crate::Res;

const ID: &str = "0123456789abcdef0123456789abcdef";

/// Writes one stream of `n` workload events into a new SQLite file.
fn fill(path: &str, n: usize) -> Res<()> {
    let recorder = SqliteRecorder::open(SqliteConfig::new(path))?;
    let mut batch = Vec::with_capacity(10_000);
    for version in 1..=n as u64 {
        let state = if version == 1 {
            format!(
                "{{\"timestamp\":\"2026-11-23T08:04:05.709171000Z\",\"name\":\"{}\"}}",
                name(0)
            )
        } else {
            format!(
                "{{\"timestamp\":\"2026-11-23T08:04:05.709171000Z\",\"trick\":\"{}\"}}",
                trick(version as usize - 1)
            )
        };
        batch.push(StoredEvent {
            originator_id: ID.into(),
            originator_version: version,
            topic: if version == 1 {
                "Dog.Registered"
            } else {
                "Dog.TrickAdded"
            }
            .into(),
            state: state.into_bytes(),
        });
        if batch.len() == 10_000 {
            recorder.insert_events(&batch)?;
            batch.clear();
        }
    }
    recorder.insert_events(&batch)?;
    Ok(())
}

/// In a child process: gets the stream (or, with `floor`, only builds
/// the tricks it holds) and prints `before_kib after_kib millis`.
pub(crate) fn child(path: &str, n: usize, floor: bool) -> Res<()> {
    let app = Application::builder("Dogs").sqlite(path).build()?;
    let before = peak_rss_kib()?;
    let started = Instant::now();
    if floor {
        let tricks: Vec<String> = (1..n).map(trick).collect();
        std::hint::black_box(&tricks);
    } else {
        let id: annals::Uuid = ID.parse()?;
        let dog = app.get::<Dog>(id)?;
        check_dog("long get", 0, &dog.name, &dog.tricks, dog.version(), n)?;
    }
    let millis = started.elapsed().as_secs_f64() * 1e3;
    println!("{before} {} {millis:.0}", peak_rss_kib()?);
    Ok(())
}

/// Fills streams of `n / 10` and `n` events and gets each in a fresh
/// process; prints time and peak memory.
pub(crate) fn run(n: usize) -> Res<()> {
    let dir = tempfile::tempdir()?;
    let exe = std::env::current_exe()?;
    println!("| events | get ms | peak RSS before | peak RSS after | the tricks alone (floor) |");
    println!("|---|---|---|---|---|");
    for size in [n / 10, n] {
        let path = dir.path().join(format!("long-{size}.db"));
        let path = path.to_string_lossy().into_owned();
        fill(&path, size)?;
        let mut figures = Vec::new();
        for floor in [false, true] {
            let mut command = Command::new(&exe);
            command
                .arg("--long-get-child")
                .arg(&path)
                .arg("--long-get-size")
                .arg(size.to_string());
            if floor {
                command.arg("--long-get-floor");
            }
            let output = command.output()?;
            if !output.status.success() {
                return Err(format!(
                    "long get child failed: {}",
                    String::from_utf8_lossy(&output.stderr)
                )
                .into());
            }
            let text = String::from_utf8(output.stdout)?;
            let parsed: Vec<f64> = text
                .split_whitespace()
                .map(str::parse)
                .collect::<Result<_, _>>()?;
            let [before, after, millis] = parsed[..] else {
                return Err(format!("unexpected child output {text:?}").into());
            };
            figures.push((before, after, millis));
        }
        let (get, floor) = (figures[0], figures[1]);
        println!(
            "| {size} | {:.0} | {:.0} MiB | {:.0} MiB | {:.0} MiB |",
            get.2,
            get.0 / 1024.0,
            get.1 / 1024.0,
            (floor.1 - floor.0) / 1024.0 + floor.0 / 1024.0,
        );
    }
    Ok(())
}
