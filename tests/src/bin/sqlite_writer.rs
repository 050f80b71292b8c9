//! The second process of the SQLite multi-process test: appends versions
//! 1..=N to its own stream "child" and races for the stream "shared"; prints
//! how many versions of "shared" it won.

use annals::persistence::sqlite::{SqliteConfig, SqliteRecorder};
use annals::persistence::AggregateRecorder;
use annals::testing::contract::event;

fn main() {
    let mut args = std::env::args().skip(1);
    let (Some(path), Some(n)) = (args.next(), args.next()) else {
        eprintln!("usage: sqlite_writer DB_PATH N");
        std::process::exit(2);
    };
    let n: u64 = n.parse().unwrap_or_else(|e| {
        eprintln!("N: {e}");
        std::process::exit(2)
    });
    let recorder = SqliteRecorder::open(SqliteConfig::new(path)).unwrap_or_else(|e| {
        eprintln!("{e}");
        std::process::exit(1)
    });
    let mut wins = 0;
    for v in 1..=n {
        if let Err(e) = recorder.insert_events(&[event("child", v, "T")]) {
            eprintln!("own stream, version {v}: {e}");
            std::process::exit(1);
        }
        match recorder.insert_events(&[event("shared", v, "T")]) {
            Ok(_) => wins += 1,
            Err(e) if e.is_conflict() => {}
            Err(e) => {
                eprintln!("shared stream, version {v}: {e}");
                std::process::exit(1);
            }
        }
    }
    println!("{wins}");
}
