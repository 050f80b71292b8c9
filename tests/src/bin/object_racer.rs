//! A process of the object store's race: appends to the stream "shared"
//! in the directory store DIR until it holds TARGET versions, each time
//! taking the version after the last one it sees (so two racers collide
//! all the time); prints how many versions it stored.

use annals::persistence::object::ObjectConfig;
use annals::persistence::{EventQuery, Store};
use annals::testing::contract::event;

fn main() {
    let mut args = std::env::args().skip(1);
    let (Some(dir), Some(target)) = (args.next(), args.next()) else {
        eprintln!("usage: object_racer DIR TARGET");
        std::process::exit(2);
    };
    let target: u64 = target.parse().unwrap_or_else(|e| {
        eprintln!("TARGET: {e}");
        std::process::exit(2)
    });
    let recorder = match ObjectConfig::location(&dir).open("Race") {
        Ok(recorders) => recorders.events,
        Err(e) => {
            eprintln!("{}", e.report());
            std::process::exit(1)
        }
    };
    let last = EventQuery::all().descending().limit(1);
    let mut wins = 0u64;
    loop {
        let version = match recorder.select_events("shared", &last) {
            Ok(rows) => rows.first().map_or(0, |e| e.originator_version),
            Err(e) => {
                eprintln!("{}", e.report());
                std::process::exit(1)
            }
        };
        if version >= target {
            break;
        }
        match recorder.insert_events(&[event("shared", version + 1, "Race.Stepped")]) {
            Ok(_) => wins += 1,
            Err(e) if e.is_conflict() => {}
            Err(e) => {
                eprintln!("{}", e.report());
                std::process::exit(1)
            }
        }
    }
    println!("{wins}");
}
