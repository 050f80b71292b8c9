//! Peak memory while reading a long log with the notification log reader:
//! it must stay flat (bounded by the page size, not the log's length).

use std::process::Command;

use annals::log::NotificationLogReader;
use annals::persistence::sqlite::{SqliteConfig, SqliteRecorder};
use annals::persistence::{AggregateRecorder, StoredEvent};
use annals::Application;

use crate::Res;

/// The process's peak resident set so far, in KiB (Linux `VmHWM`).
pub(crate) fn peak_rss_kib() -> Res<u64> {
    let status = std::fs::read_to_string("/proc/self/status")?;
    let line = status
        .lines()
        .find(|l| l.starts_with("VmHWM:"))
        .ok_or("no VmHWM in /proc/self/status")?;
    Ok(line
        .split_whitespace()
        .nth(1)
        .ok_or("VmHWM has no value")?
        .parse()?)
}

/// Writes `n` notifications (workload-sized rows) into a new SQLite file.
fn fill(path: &str, n: usize) -> Res<()> {
    let recorder = SqliteRecorder::open(SqliteConfig::new(path))?;
    let mut batch = Vec::with_capacity(1_000);
    for i in 0..n {
        batch.push(StoredEvent {
            originator_id: format!("{:032x}", i / 10),
            originator_version: (i % 10) as u64 + 1,
            topic: "Dog.TrickAdded".into(),
            state: format!(
                "{{\"timestamp\":\"2026-11-23T08:04:05.709171000Z\",\"trick\":\"trick-{:04}-roll-over\"}}",
                i % 10
            )
            .into_bytes(),
        });
        if batch.len() == 1_000 {
            recorder.insert_events(&batch)?;
            batch.clear();
        }
    }
    recorder.insert_events(&batch)?;
    Ok(())
}

/// In a child process: reads every notification of the file through the
/// reader (pages of `page`) and prints `count peak_kib`.
pub(crate) fn child(path: &str, page: usize) -> Res<()> {
    let app = Application::builder("Dogs").sqlite(path).build()?;
    let before = peak_rss_kib()?;
    let mut count = 0u64;
    let mut last = 0;
    for n in NotificationLogReader::new(&app).page_size(page).read(1) {
        let n = n?;
        if n.id != last + 1 {
            return Err(format!("notification {} after {last}", n.id).into());
        }
        last = n.id;
        count += 1;
    }
    println!("{count} {before} {}", peak_rss_kib()?);
    Ok(())
}

/// Fills logs of `n / 10` and `n` notifications and reads each in a fresh
/// process; prints the peak memory of both.
pub(crate) fn run(n: usize) -> Res<()> {
    let dir = tempfile::tempdir()?;
    let exe = std::env::current_exe()?;
    println!("| notifications | page size | peak RSS before reading | peak RSS after reading |");
    println!("|---|---|---|---|");
    for size in [n / 10, n] {
        let path = dir.path().join(format!("log-{size}.db"));
        let path = path.to_string_lossy().into_owned();
        fill(&path, size)?;
        let output = Command::new(&exe)
            .arg("--reader-memory-child")
            .arg(&path)
            .output()?;
        if !output.status.success() {
            return Err(format!(
                "reader child failed: {}",
                String::from_utf8_lossy(&output.stderr)
            )
            .into());
        }
        let text = String::from_utf8(output.stdout)?;
        let figures: Vec<u64> = text
            .split_whitespace()
            .map(str::parse)
            .collect::<Result<_, _>>()?;
        let [count, before, after] = figures[..] else {
            return Err(format!("unexpected child output {text:?}").into());
        };
        if count != size as u64 {
            return Err(format!("read {count} of {size} notifications").into());
        }
        println!(
            "| {size} | 1000 | {} MiB | {} MiB |",
            before / 1024,
            after / 1024
        );
    }
    Ok(())
}
