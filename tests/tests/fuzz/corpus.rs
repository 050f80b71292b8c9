//! The corpus: valid rows of both aggregates, in a mode's encoding.

use annals::domain::EventHash;
use annals::persistence::StoredEvent;
use annals::prelude::*;

use crate::model::{Cat, Collar, Pet};
use crate::modes::Codec;

/// One valid stored row, its layers, and the hash of the event before it.
#[derive(Clone)]
pub(crate) struct Seed {
    pub(crate) row: StoredEvent,
    pub(crate) json: Vec<u8>,
    pub(crate) compressed: Vec<u8>,
    pub(crate) prev: Option<EventHash>,
    pub(crate) kind: Kind,
}

#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) enum Kind {
    PetEvent,
    PetSnapshot,
    CatEvent,
    CatSnapshot,
}

pub(crate) fn string(rng: &mut fastrand::Rng) -> String {
    const PIECES: &[&str] = &[
        "Fido", "", " ", "ünï", "🐕", "\"", "\\", "\u{0}", "\u{202e}", "a\nb", "{}", "[", "é",
        "\u{fffd}",
    ];
    (0..rng.usize(0..4))
        .map(|_| PIECES[rng.usize(..PIECES.len())])
        .collect()
}

/// Valid rows of both aggregates, encoded by `codec`.
pub(crate) fn corpus(codec: &Codec, rng: &mut fastrand::Rng) -> Vec<Seed> {
    let mut seeds = Vec::new();
    let push = |seeds: &mut Vec<Seed>, row: StoredEvent, prev, kind| {
        let compressed = codec.decrypt(&row);
        let json = codec.decompress(&compressed);
        seeds.push(Seed {
            row,
            json,
            compressed,
            prev,
            kind,
        });
    };
    for _ in 0..3 {
        let mut pet = Pet::adopt(string(rng), rng.u32(..));
        pet.tag(string(rng));
        pet.weigh([0.0, -1.5, 1e300, f64::MIN_POSITIVE][rng.usize(..4)]);
        pet.own(Uuid::from_u128(rng.u128(..)));
        pet.score(
            rng.i64(..),
            rng.bool().then(|| string(rng)),
            (0..rng.usize(..8)).map(|_| rng.u8(..)).collect(),
        );
        pet.collar(Collar {
            colour: string(rng),
            size: rng.u8(..),
        });
        let mut prev = None;
        let events: Vec<_> = pet.pending_events().to_vec();
        for event in &events {
            let before = prev;
            let row = codec.mapper.encode_link(event, &mut prev).expect("encodes");
            push(&mut seeds, row, before, Kind::PetEvent);
        }
        let row = codec.mapper.encode_snapshot(&pet).expect("snapshot");
        push(&mut seeds, row, None, Kind::PetSnapshot);
        pet.leave();
        let left = pet.pending_events().last().expect("left").clone();
        let before = prev;
        let row = codec.mapper.encode_link(&left, &mut prev).expect("encodes");
        push(&mut seeds, row, before, Kind::PetEvent);

        let mut cat = Cat::born_with_id(format!("cat-{}", rng.u16(..)), string(rng), rng.u8(..));
        cat.nap(string(rng), rng.u16(..));
        cat.nap(string(rng), rng.u16(..));
        let mut prev = None;
        let events: Vec<_> = cat.pending_events().to_vec();
        for event in &events {
            let before = prev;
            let row = codec.mapper.encode_link(event, &mut prev).expect("encodes");
            push(&mut seeds, row, before, Kind::CatEvent);
        }
        let row = codec.mapper.encode_snapshot(&cat).expect("snapshot");
        push(&mut seeds, row, None, Kind::CatSnapshot);
    }
    seeds
}
