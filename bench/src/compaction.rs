//! `--compaction`: what packing the object store's old saves buys a
//! reader (issue #33, item 3). A fresh process reads the whole log (pages
//! of 1,000 from notification 1, as a new follower does) of a store of N
//! saves as written, and of a copy of it compacted; wall time, medians of
//! `--cold-runs`; and the compaction's own time, in this process.
//!
//! The stores are the cold start's (`--cold-cache`): the packed copy of
//! `dir-N` is `dir-N-packed` (compacted without fsync, as the stores are
//! built), of an S3 or Azure store `.../cold-start-N-packed`; each is
//! compacted once, its time kept in a marker (`packed.json`) beside it.

use std::path::Path;
use std::sync::Arc;
use std::time::Instant;

use annals::persistence::object::ObjectConfig;
use object_store::ObjectStoreExt as _;
use serde::{Deserialize, Serialize};

use crate::cold_start::{
    cloud_copy, directory_store, files, run_child, secs, thousands, Options, APP, AZURE_LOCATION,
};
use crate::workload::{fail, Res};
use crate::{median, S3_LOCATION};

/// The marker of a packed copy: how long its compaction took.
const PACKED: &str = "packed.json";

#[derive(Debug, Serialize, Deserialize)]
struct Packed {
    saves: usize,
    packs: u64,
    seconds: f64,
}

/// Compacts `config`'s application, timed.
fn compact(config: &ObjectConfig, saves: usize) -> Res<Packed> {
    let started = Instant::now();
    let done = config.compact(APP)?;
    let seconds = started.elapsed().as_secs_f64();
    let expected = (saves / annals::persistence::object::SEGMENT_SAVES as usize).saturating_sub(1);
    if done.packs as usize != expected {
        return fail(format!(
            "compaction: {} packs of {saves} saves, expected {expected}",
            done.packs
        ));
    }
    Ok(Packed {
        saves,
        packs: done.packs,
        seconds,
    })
}

/// The packed copy of the directory store `dir` of `saves`, made unless
/// its marker says it is there.
fn packed_directory(dir: &Path, saves: usize, rebuild: bool) -> Res<(String, Packed)> {
    let packed_dir = dir.with_file_name(format!(
        "{}-packed",
        dir.file_name().and_then(|n| n.to_str()).unwrap_or("dir")
    ));
    let location = packed_dir.to_str().ok_or("a non-UTF-8 path")?.to_owned();
    if !rebuild {
        if let Ok(bytes) = std::fs::read(packed_dir.join(PACKED)) {
            let packed: Packed = serde_json::from_slice(&bytes)?;
            if packed.saves == saves {
                return Ok((location, packed));
            }
        }
    }
    if packed_dir.exists() {
        std::fs::remove_dir_all(&packed_dir)?;
    }
    for rel in files(dir)? {
        let to = packed_dir.join(&rel);
        std::fs::create_dir_all(to.parent().ok_or("a file with no directory")?)?;
        std::fs::copy(dir.join(&rel), to)?;
    }
    let store = object_store::local::LocalFileSystem::new_with_prefix(&packed_dir)?;
    let packed = compact(&ObjectConfig::with_store(Arc::new(store), ""), saves)?;
    std::fs::write(packed_dir.join(PACKED), serde_json::to_vec(&packed)?)?;
    Ok((location, packed))
}

/// The packed copy of the cloud store at `base/cold-start-N`, made unless
/// its marker says it is there.
fn packed_cloud(base: &str, dir: &Path, saves: usize, rebuild: bool) -> Res<(String, Packed)> {
    let location = format!("{base}/cold-start-{saves}-packed");
    let marker = directory_store(dir, saves, false)?;
    let (store, prefix) = crate::cold_start::cloud_store(&location)?;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let marker_path = prefix.clone().join(PACKED);
    if !rebuild {
        if let Ok(got) = runtime.block_on(store.get(&marker_path)) {
            let packed: Packed = serde_json::from_slice(&runtime.block_on(got.bytes())?)?;
            if packed.saves == saves {
                return Ok((location, packed));
            }
        }
    }
    // Copied afresh: a packed copy kept from before has its tombstones.
    cloud_copy(&location, dir, &marker, true)?;
    let packed = compact(&ObjectConfig::location(&location), saves)?;
    runtime.block_on(store.put(&marker_path, serde_json::to_vec(&packed)?.into()))?;
    Ok((location, packed))
}

/// `--compaction`: for each store and size, the whole log read by a fresh
/// process, as written and packed.
pub(crate) fn run(options: &Options) -> Res<()> {
    let mut lines = Vec::new();
    for store in &options.stores {
        let (label, base) = match store.as_str() {
            "dir" | "directory" => ("directory", None),
            "s3" | "azure" | "az" => {
                let (label, var) = if store == "s3" {
                    ("S3 (moto)", S3_LOCATION)
                } else {
                    ("Azurite", AZURE_LOCATION)
                };
                match std::env::var(var) {
                    Ok(base) => (label, Some(base.trim_end_matches('/').to_owned())),
                    Err(_) => {
                        eprintln!("{label} skipped: {var} is not set");
                        continue;
                    }
                }
            }
            other => return fail(format!("unknown store {other:?}")),
        };
        let sizes = options
            .sizes
            .clone()
            .unwrap_or_else(|| vec![10_000, 100_000]);
        for saves in sizes {
            let dir = options.cache.join(format!("dir-{saves}"));
            let marker = directory_store(&dir, saves, options.rebuild)?;
            let (plain, (packed_at, packed)) = match &base {
                None => (
                    dir.to_str().ok_or("a non-UTF-8 path")?.to_owned(),
                    packed_directory(&dir, saves, options.rebuild)?,
                ),
                Some(base) => {
                    let plain = format!("{base}/cold-start-{saves}");
                    cloud_copy(&plain, &dir, &marker, options.rebuild)?;
                    (plain, packed_cloud(base, &dir, saves, options.rebuild)?)
                }
            };
            let mut as_written = Vec::new();
            let mut packed_runs = Vec::new();
            for run in 0..options.runs {
                as_written.push(run_child("log", &plain, &marker)?.0);
                packed_runs.push(run_child("log", &packed_at, &marker)?.0);
                eprintln!(
                    "  {label} {saves} run {}/{}: the log as written {:.2} s, packed {:.2} s",
                    run + 1,
                    options.runs,
                    as_written[run],
                    packed_runs[run]
                );
            }
            let (a, p) = (
                median(as_written).unwrap_or(f64::NAN),
                median(packed_runs).unwrap_or(f64::NAN),
            );
            lines.push(format!(
                "| {label} | {} | {} | {} | {:.1}x | {} ({} packs) |",
                thousands(saves),
                secs(a),
                secs(p),
                a / p,
                secs(packed.seconds),
                packed.packs
            ));
        }
    }
    println!(
        "The whole log read by a fresh process (pages of 1,000 from notification 1), as written and packed; medians of {} run(s)\n",
        options.runs
    );
    println!("| store | saves | as written | packed | as written ÷ packed | compaction |");
    println!("|---|---|---|---|---|---|");
    for line in lines {
        println!("{line}");
    }
    Ok(())
}
