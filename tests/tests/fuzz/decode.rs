//! The decode target: mutated rows through every decoder of the mapper.

use std::io::Write as _;
use std::panic::{catch_unwind, AssertUnwindSafe};

use annals::domain::EventHash;
use annals::mapper::Mapper;
use annals::persistence::StoredEvent;
use annals::prelude::*;

use crate::corpus::{corpus, Kind, Seed};
use crate::knobs::{hex, hostile, iterations, panic_message, seed};
use crate::model::{Cat, Pet};
use crate::modes::{Codec, MODES};
use crate::mutations::{mutate_bytes, mutate_json, mutate_row};

/// Which layer a mutation was made at.
#[derive(Debug, Clone, Copy)]
enum Layer {
    /// The JSON, then compressed and encrypted as the mapper would.
    Json,
    /// The JSON tree (parsed, changed, written), then sealed.
    JsonTree,
    /// The compressed bytes, then encrypted.
    Compressed,
    /// The stored bytes.
    Stored,
    /// The row's topic, version or id (sealed for the changed row, or not).
    Row,
}

/// One input: the row fed to the decoders, the layer mutated, and the
/// bytes of that layer (to reproduce: they are sealed again).
struct Input {
    row: StoredEvent,
    layer: Layer,
    inner: Vec<u8>,
    prev: Option<EventHash>,
    kind: Kind,
}

fn make_input(rng: &mut fastrand::Rng, codec: &Codec, seeds: &[Seed]) -> Input {
    let seed = &seeds[rng.usize(..seeds.len())];
    let mut row = seed.row.clone();
    let layer = match rng.usize(..10) {
        0..=2 => Layer::Json,
        3..=4 => Layer::JsonTree,
        5..=6 if codec.mode.zlib => Layer::Compressed,
        5..=7 => Layer::Stored,
        _ => Layer::Row,
    };
    let rounds = if rng.usize(..4) == 0 {
        rng.usize(2..6)
    } else {
        1
    };
    let inner = match layer {
        Layer::Json | Layer::JsonTree => {
            let others: Vec<&[u8]> = seeds.iter().map(|s| s.json.as_slice()).collect();
            let mut json = seed.json.clone();
            for _ in 0..rounds {
                match layer {
                    Layer::JsonTree => {
                        if let Some(changed) = mutate_json(rng, &json) {
                            json = changed;
                        } else {
                            mutate_bytes(rng, &mut json, &others);
                        }
                    }
                    _ => mutate_bytes(rng, &mut json, &others),
                }
            }
            if rng.usize(..8) == 0 {
                mutate_row(rng, &mut row);
            }
            row.state = codec.encrypt(&codec.compress(&json), &row);
            json
        }
        Layer::Compressed => {
            let others: Vec<&[u8]> = seeds.iter().map(|s| s.compressed.as_slice()).collect();
            let mut compressed = seed.compressed.clone();
            for _ in 0..rounds {
                mutate_bytes(rng, &mut compressed, &others);
            }
            row.state = codec.encrypt(&compressed, &row);
            compressed
        }
        Layer::Stored => {
            let others: Vec<&[u8]> = seeds.iter().map(|s| s.row.state.as_slice()).collect();
            for _ in 0..rounds {
                mutate_bytes(rng, &mut row.state, &others);
            }
            row.state.clone()
        }
        Layer::Row => {
            for _ in 0..rounds {
                mutate_row(rng, &mut row);
            }
            if rng.bool() {
                row.state = codec.encrypt(&seed.compressed, &row);
            }
            seed.json.clone()
        }
    };
    let prev = match rng.usize(..6) {
        0 => None,
        1 => Some(std::array::from_fn(|_| rng.u8(..))),
        _ => seed.prev,
    };
    Input {
        row,
        layer,
        inner,
        prev,
        kind: seed.kind,
    }
}

impl Input {
    fn describe(&self, mode: &str, call: &str, message: &str) -> String {
        format!(
            "mode {mode}, {call} panicked: {message}\n  layer {:?} (of a {:?} row), mutated \
             bytes: {}\n  (as text: {:?})\n  row: topic {:?}, id {:?}, version {}, state {}\n  \
             prev: {:?}",
            self.layer,
            self.kind,
            hex(&self.inner),
            String::from_utf8_lossy(&self.inner),
            self.row.topic,
            self.row.originator_id,
            self.row.originator_version,
            hex(&self.row.state),
            self.prev.map(|h| hex(&h)),
        )
    }
}

/// Every decoder of `mapper` over `row`, each in `catch_unwind`: how many
/// returned errors, and the panics (call, message).
fn decode_all(
    mapper: &Mapper,
    row: &StoredEvent,
    prev: Option<EventHash>,
) -> (usize, Vec<(&'static str, String)>) {
    let mut errors = 0;
    let mut panics = Vec::new();
    let mut run = |call: &'static str, f: &mut dyn FnMut() -> bool| match catch_unwind(
        AssertUnwindSafe(&mut *f),
    ) {
        Ok(true) => {}
        Ok(false) => errors += 1,
        Err(payload) => panics.push((call, panic_message(&*payload))),
    };
    run("decode::<Pet>", &mut || mapper.decode::<Pet>(row).is_ok());
    run("decode::<Cat>", &mut || mapper.decode::<Cat>(row).is_ok());
    run("decode_link::<Pet>", &mut || {
        let mut p = prev;
        mapper.decode_link::<Pet>(row, &mut p).is_ok()
    });
    run("decode_link::<Cat>", &mut || {
        let mut p = prev;
        mapper.decode_link::<Cat>(row, &mut p).is_ok()
    });
    run("header", &mut || mapper.header(row).is_ok());
    run("decode_snapshot::<Pet>", &mut || {
        mapper.decode_snapshot::<Pet>(row).is_ok()
    });
    run("decode_snapshot::<Cat>", &mut || {
        mapper.decode_snapshot::<Cat>(row).is_ok()
    });
    run("recorded_hash::<Pet>", &mut || {
        mapper.recorded_hash::<Pet>(row).is_ok()
    });
    run("recorded_hash::<Cat>", &mut || {
        mapper.recorded_hash::<Cat>(row).is_ok()
    });
    (errors, panics)
}

/// The valid rows decode: the fuzzer starts from real records.
fn check_seeds(codec: &Codec, seeds: &[Seed]) {
    for seed in seeds {
        let m = &codec.mapper;
        let mut prev = seed.prev;
        let ok = match seed.kind {
            Kind::PetEvent => m.decode_link::<Pet>(&seed.row, &mut prev).map(drop),
            Kind::CatEvent => m.decode_link::<Cat>(&seed.row, &mut prev).map(drop),
            Kind::PetSnapshot => m.decode_snapshot::<Pet>(&seed.row).map(drop),
            Kind::CatSnapshot => m.decode_snapshot::<Cat>(&seed.row).map(drop),
        };
        ok.unwrap_or_else(|e| panic!("mode {}: a valid {:?} row: {e}", codec.mode.name, seed.kind));
        if codec.mode.chain && matches!(seed.kind, Kind::PetEvent | Kind::CatEvent) {
            assert_eq!(
                m.recorded_hash::<Pet>(&seed.row).ok(),
                prev,
                "mode {}",
                codec.mode.name
            );
        }
    }
}

#[test]
fn decoding_mutated_rows_never_panics() {
    let (iters, seed) = (iterations(), seed());
    let mut rng = fastrand::Rng::with_seed(seed);
    println!("fuzz decode: seed {seed} (ANNALS_FUZZ_SEED), {iters} inputs (ANNALS_FUZZ_ITERS)");
    let per_mode = iters.div_ceil(MODES.len());
    let (mut inputs, mut calls, mut errors) = (0, 0, 0);
    let mut failures = Vec::new();
    let started = std::time::Instant::now();
    for &mode in MODES {
        let codec = Codec::new(mode, &mut rng);
        let seeds = corpus(&codec, &mut rng);
        check_seeds(&codec, &seeds);
        let (mut mode_errors, mut mode_panics) = (0, 0);
        let mode_started = std::time::Instant::now();
        for _ in 0..per_mode {
            let input = make_input(&mut rng, &codec, &seeds);
            let (e, panics) = decode_all(&codec.mapper, &input.row, input.prev);
            inputs += 1;
            calls += 9;
            mode_errors += e;
            mode_panics += panics.len();
            for (call, message) in panics {
                if failures.len() < 20 {
                    failures.push(input.describe(mode.name, call, &message));
                }
            }
        }
        errors += mode_errors;
        println!(
            "fuzz decode [{}]: {per_mode} inputs, {} calls, {mode_errors} errors, {mode_panics} \
             panics ({:.1?})",
            mode.name,
            per_mode * 9,
            mode_started.elapsed()
        );
    }
    if hostile() {
        let (e, panics) = zlib_bomb();
        calls += 9;
        errors += e;
        failures.extend(panics);
    }
    println!(
        "fuzz: {inputs} inputs, {calls} decoder calls, {errors} errors, {} panics ({:.1?}, seed \
         {seed})",
        failures.len(),
        started.elapsed()
    );
    assert!(
        failures.is_empty(),
        "decoding panicked (seed {seed}):\n{}",
        failures.join("\n")
    );
}

/// A zlib stream that inflates beyond `MAX_STATE` (256 MiB of spaces):
/// must be an error, not an allocation that takes the process down.
fn zlib_bomb() -> (usize, Vec<String>) {
    let mut rng = fastrand::Rng::with_seed(1);
    let codec = Codec::new(MODES[2], &mut rng);
    let mut encoder = flate2::write::ZlibEncoder::new(Vec::new(), flate2::Compression::best());
    let chunk = vec![b' '; 1 << 20];
    for _ in 0..300 {
        encoder.write_all(&chunk).expect("in memory");
    }
    let row = StoredEvent {
        originator_id: Uuid::nil().simple().to_string(),
        originator_version: 1,
        topic: "Pet.Tagged".into(),
        state: encoder.finish().expect("in memory"),
    };
    println!(
        "fuzz decode [zlib bomb]: {} bytes -> 300 MiB",
        row.state.len()
    );
    let (errors, panics) = decode_all(&codec.mapper, &row, None);
    let panics = panics
        .into_iter()
        .map(|(call, message)| format!("zlib bomb: {call} panicked: {message}"))
        .collect();
    (errors, panics)
}
