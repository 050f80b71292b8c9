//! The mapper per event: domain event -> stored state (serialize, compress,
//! encrypt) and back, against plain serde_json of the same fields.
//! `cargo bench -p annals --bench mapper`
#![allow(missing_docs)] // criterion_group! generates an undocumented pub fn

use annals::cipher::{self, Cipher};
use annals::mapper::{Compressor, Mapper};
use annals::prelude::*;
use annals::{DomainEvent, Timestamp};
use criterion::{black_box, criterion_group, criterion_main, BenchmarkId, Criterion};
use serde::{Deserialize, Serialize};

/// The standard workload's aggregate (see WORKLOAD.md).
#[aggregate]
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Dog {
    /// The dog's name.
    pub name: String,
    /// Its tricks.
    pub tricks: Vec<String>,
}

#[aggregate]
impl Dog {
    /// Registers a dog.
    #[event("Registered")]
    pub fn register(name: String) -> Self {
        Dog {
            name,
            tricks: Vec::new(),
        }
    }

    /// Adds a trick.
    #[event("TrickAdded")]
    pub fn add_trick(&mut self, trick: String) {
        self.tricks.push(trick);
    }
}

/// The same fields as the stored state, for the plain serde_json baseline.
#[derive(Serialize, Deserialize)]
struct Plain {
    timestamp: Timestamp,
    trick: String,
}

fn mappers() -> Vec<(&'static str, Mapper)> {
    let cipher = || Some(Cipher::from_base64(&cipher::create_key()).expect("key"));
    vec![
        ("json", Mapper::new()),
        (
            "zlib",
            Mapper::new().with_compressor(Some(Compressor::Zlib)),
        ),
        ("aes", Mapper::new().with_cipher(cipher())),
        (
            "zlib+aes",
            Mapper::new()
                .with_compressor(Some(Compressor::Zlib))
                .with_cipher(cipher()),
        ),
    ]
}

fn bench(c: &mut Criterion) {
    let mut dog = Dog::register("dog-000042".into());
    dog.add_trick("trick-0001-roll-over".into());
    let event: DomainEvent<Dog> = dog.pending_events()[1].clone();
    let plain = Plain {
        timestamp: event.timestamp,
        trick: "trick-0001-roll-over".into(),
    };

    let mut encode = c.benchmark_group("encode");
    encode.bench_function("serde_json (baseline)", |b| {
        b.iter(|| serde_json::to_vec(black_box(&plain)).expect("json"))
    });
    for (name, mapper) in mappers() {
        encode.bench_with_input(BenchmarkId::new("annals", name), &mapper, |b, m| {
            b.iter(|| m.encode(black_box(&event)).expect("encode"))
        });
    }
    encode.finish();

    let mut decode = c.benchmark_group("decode");
    let json = serde_json::to_vec(&plain).expect("json");
    decode.bench_function("serde_json (baseline)", |b| {
        b.iter(|| serde_json::from_slice::<Plain>(black_box(&json)).expect("json"))
    });
    for (name, mapper) in mappers() {
        let stored = mapper.encode(&event).expect("encode");
        decode.bench_with_input(BenchmarkId::new("annals", name), &mapper, |b, m| {
            b.iter(|| m.decode::<Dog>(black_box(&stored)).expect("decode"))
        });
    }
    decode.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default();
    targets = bench
}
criterion_main!(benches);
