//! How soon a follower sees a commit: the time from a save's start until a
//! catch-up [`Subscription`] yields the new notification.
//!
//! Two cases per store: the subscription on the application that saves
//! (woken in-process), and on a second application over the same tables
//! (as another process would be: woken by the store's own signal, LISTEN/
//! NOTIFY on PostgreSQL, or by polling).

use std::sync::mpsc;
use std::time::{Duration, Instant};

use annals::log::Subscription;
use annals::Application;

use crate::annals_sut::Dog;
use crate::Res;

/// The subscriptions' poll interval: the most a missed wake-up can cost.
const POLL: Duration = Duration::from_millis(500);

/// Measures `saves` wake-ups per case and prints the median and the 90th
/// percentile, in milliseconds.
pub(crate) fn run(
    saves: usize,
    postgres: Option<annals::persistence::postgres::PostgresConfig>,
) -> Res<()> {
    let dir = tempfile::tempdir()?;
    let path = dir.path().join("wake.db");
    let path = path.to_str().ok_or("temporary path is not UTF-8")?;
    let sqlite = |name: &str| Application::builder(name).sqlite(path).build();
    println!(
        "wake-up latency: save start -> subscription yields it ({saves} saves, poll {POLL:?})"
    );
    println!("| store | subscriber | median ms | p90 ms |");
    println!("|---|---|---|---|");
    let writer = sqlite("Wake")?;
    report("sqlite", "same application", &writer, &writer, saves)?;
    let other = sqlite("Wake")?;
    report("sqlite", "second application", &writer, &other, saves)?;
    if let Some(config) = postgres {
        let name = format!("wake_{}", std::process::id());
        let writer = Application::builder(&name)
            .postgres(config.clone())
            .build()?;
        report("postgres", "same application", &writer, &writer, saves)?;
        let other = Application::builder(&name).postgres(config).build()?;
        report("postgres", "second application", &writer, &other, saves)?;
    }
    Ok(())
}

fn report(
    store: &str,
    who: &str,
    writer: &Application,
    reader: &Application,
    saves: usize,
) -> Res<()> {
    let mut ms = latencies(writer, reader, saves)?;
    ms.sort_by(f64::total_cmp);
    let at = |q: f64| ms[((ms.len() - 1) as f64 * q).round() as usize];
    println!("| {store} | {who} | {:.2} | {:.2} |", at(0.5), at(0.9));
    Ok(())
}

fn latencies(writer: &Application, reader: &Application, saves: usize) -> Res<Vec<f64>> {
    let start = writer.recorder().max_notification_id()? + 1;
    let subscription = Subscription::new(reader, start, &[])?.poll_interval(POLL);
    let stopper = subscription.stopper();
    let (seen_tx, seen_rx) = mpsc::channel();
    std::thread::scope(|scope| -> Res<Vec<f64>> {
        scope.spawn(move || {
            for n in subscription {
                if seen_tx.send(n.map(|_| Instant::now())).is_err() {
                    break;
                }
            }
        });
        let mut out = Vec::with_capacity(saves);
        let result = (|| -> Res<()> {
            for i in 0..saves {
                // Let the subscriber go back to waiting first.
                std::thread::sleep(Duration::from_millis(20));
                let mut dog = Dog::register(format!("dog-{i:06}"));
                let began = Instant::now();
                writer.save(&mut dog)?;
                let seen = seen_rx.recv_timeout(POLL * 4)??;
                out.push((seen - began).as_secs_f64() * 1e3);
            }
            Ok(())
        })();
        stopper.stop();
        result.map(|()| out)
    })
}
