//! A world that remembers what was made so, stored on SQLite with every
//! part of the pipeline on: zlib compression, AES-GCM encryption and a
//! snapshot every 5 events. `cargo run --example world`

use annals::cipher;
use annals::mapper::Compressor;
use annals::persistence::{EventQuery, NotificationQuery};
use annals::prelude::*;
use annals_examples::world::World;

const HISTORY: [&str; 4] = ["dinosaurs", "trucks", "internet", "annals"];

fn main() -> annals::Result<()> {
    annals_examples::init_tracing();
    let path = std::env::temp_dir().join("annals-world-example.db");
    for suffix in ["", "-wal", "-shm"] {
        let _ = std::fs::remove_file(format!("{}{suffix}", path.display()));
    }
    let app = Application::builder("Worlds")
        .sqlite(path.to_string_lossy())
        .compressor(Some(Compressor::Zlib))
        .cipher_key(cipher::create_key())
        .snapshot_every::<World>(5)
        .build()?;

    let mut world = World::create();
    app.save(&mut world)?;
    for what in HISTORY {
        world.make_it_so(what.to_owned());
        app.save(&mut world)?;
    }

    let copy: World = app.repository().get(world.id())?;
    assert_eq!(copy.history, HISTORY);
    assert_eq!(copy.version(), 5);
    println!(
        "world {} at version {}: {:?}",
        copy.id(),
        copy.version(),
        copy.history
    );

    // One snapshot: at version 5, the fifth event.
    let snapshots = app.snapshots().expect("snapshotting is on");
    let stored_id = world.id().simple().to_string();
    let snapshot_rows = snapshots
        .recorder()
        .select_events(&stored_id, &EventQuery::all())?;
    assert_eq!(snapshot_rows.len(), 1);
    let snapshot: World = snapshots.get(world.id())?.expect("a snapshot");
    assert_eq!((snapshot.version(), snapshot.history.len()), (5, 4));
    println!(
        "snapshots: {} (at version {})",
        snapshot_rows.len(),
        snapshot.version()
    );

    // Nothing readable in what is stored: events and snapshot are
    // compressed, then encrypted.
    let events = app
        .recorder()
        .select_notifications(&NotificationQuery::new(1, 100))?;
    assert_eq!(events.len(), 5);
    let states = events
        .iter()
        .map(|n| &n.event.state)
        .chain(snapshot_rows.iter().map(|s| &s.state));
    for state in states {
        for plain in HISTORY
            .iter()
            .map(|w| w.as_bytes())
            .chain([&b"timestamp"[..]])
        {
            assert!(
                !state.windows(plain.len()).any(|w| w == plain),
                "plaintext {:?} in stored bytes",
                String::from_utf8_lossy(plain)
            );
        }
    }
    println!(
        "stored bytes hold no plaintext ({} records checked)",
        events.len() + snapshot_rows.len()
    );
    Ok(())
}
