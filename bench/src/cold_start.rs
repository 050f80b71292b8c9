//! The object store's cold start (issue #33, "Measure"): a fresh process
//! opens a store of N saves (one new aggregate of 2 events per save) and
//! gets one aggregate, and another reads the last 10 events of the log;
//! wall time of each process and its peak RSS, medians of `--cold-runs`.
//! Then 8 writers against 1 on a fresh directory store (fsync on).
//!
//! The stores are built once and kept (`--cold-cache`, by default
//! `target/cold-start`): a directory store of N saves in `dir-N`, written
//! through an application on object_store's `LocalFileSystem` without
//! fsync (the layout a location opens, only faster to build), and a
//! marker (`cold-start.json`) naming N and the aggregate to get. An S3 or
//! Azure store of N is the directory store's objects copied under
//! `{ANNALS_S3_LOCATION or ANNALS_AZURE_LOCATION}/cold-start-N`, its
//! marker written last beside them. `--cold-rebuild` builds them again
//! (after a change to what the object store writes).
//!
//! The children open the store as a user would: `PERSISTENCE_MODULE=object`
//! and `OBJECT_STORE_LOCATION` in their environment.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use annals::persistence::object::ObjectConfig;
use annals::prelude::*;
use object_store::path::Path as ObjPath;
use object_store::{ObjectStore, ObjectStoreExt, PutPayload};
use serde::{Deserialize, Serialize};

use crate::annals_sut::Dog;
use crate::reader_memory::peak_rss_kib;
use crate::workload::{fail, name, trick, Res};
use crate::{median, S3_LOCATION};

/// The application every cold-start store holds.
pub(crate) const APP: &str = "ColdStart";
/// Where the Azure rows run: `az://container/prefix`.
pub(crate) const AZURE_LOCATION: &str = "ANNALS_AZURE_LOCATION";
/// The marker of a built store: a file in a directory store, an object
/// beside the application's on S3 and Azure.
pub(crate) const MARKER: &str = "cold-start.json";

/// What `--cold-start` runs.
#[derive(Debug, Clone)]
pub(crate) struct Options {
    /// `dir`, `s3`, `azure`.
    pub stores: Vec<String>,
    /// Sizes for every store, instead of each store's own.
    pub sizes: Option<Vec<usize>>,
    /// Runs per size (medians).
    pub runs: usize,
    /// Where the directory stores are kept.
    pub cache: PathBuf,
    /// Build the stores again even if a marker says they are there.
    pub rebuild: bool,
    /// Saves of the writers' comparison (0: none).
    pub writer_saves: usize,
    /// Writer threads against one.
    pub writers: usize,
}

impl Options {
    /// The sizes.
    pub(crate) fn standard(cache: PathBuf) -> Self {
        Self {
            stores: vec!["dir".into(), "s3".into(), "azure".into()],
            sizes: None,
            runs: 3,
            cache,
            rebuild: false,
            writer_saves: 2_000,
            writers: 8,
        }
    }

    /// `--quick`: small directory stores built in `cache`, one run, a few
    /// writers' saves; every check still made.
    pub(crate) fn quick(cache: PathBuf) -> Self {
        Self {
            stores: vec!["dir".into()],
            sizes: Some(vec![1_000, 2_000]),
            runs: 1,
            cache,
            rebuild: false,
            writer_saves: 80,
            writers: 8,
        }
    }
}

/// A built store: how many saves, and the aggregate a child gets.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct Marker {
    pub(crate) saves: usize,
    /// The aggregate registered by the save numbered `index` (from 0),
    /// named `name(index)`.
    id: String,
    index: usize,
    /// annals-bench's version that built it.
    built_by: String,
}

/// The store kinds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Dir,
    S3,
    Azure,
}

impl Kind {
    fn label(self) -> &'static str {
        match self {
            Kind::Dir => "directory",
            Kind::S3 => "S3 (moto)",
            Kind::Azure => "Azurite",
        }
    }

    /// The sizes for this store.
    fn sizes(self) -> Vec<usize> {
        match self {
            Kind::Dir => vec![1_000, 100_000, 1_000_000],
            Kind::S3 => vec![1_000, 100_000],
            Kind::Azure => vec![1_000, 10_000],
        }
    }
}

/// One run's figures.
#[derive(Debug, Clone, Copy)]
struct Run {
    get_wall: f64,
    tail_wall: f64,
    get_inside: f64,
    tail_inside: f64,
    rss_kib: f64,
}

/// What a child prints.
#[derive(Debug, Serialize, Deserialize)]
pub(crate) struct ChildOut {
    /// From before the application is built to the answer, in seconds.
    seconds: f64,
    /// VmHWM at the end, KiB.
    peak_rss_kib: u64,
}

/// In a child process: opens the store from the environment and gets the
/// marker's aggregate (`get`) or reads the last 10 events (`tail`),
/// checking the answer; prints [`ChildOut`] as JSON.
pub(crate) fn child(what: &str, saves: usize, id: &str, index: usize) -> Res<()> {
    let started = Instant::now();
    let app = Application::builder(APP).from_env()?.build()?;
    match what {
        "get" => {
            let id: Uuid = id.parse()?;
            let dog: Dog = app.get(id)?;
            if dog.name != name(index) || dog.tricks != [trick(1)] || dog.version() != 2 {
                return fail(format!(
                    "cold start: got {} {:?} at version {}, expected {} with one trick",
                    dog.name,
                    dog.tricks,
                    dog.version(),
                    name(index)
                ));
            }
        }
        "tail" => {
            let last = app
                .last_notification_id()?
                .ok_or("cold start: the log is empty")?;
            if last != 2 * saves as u64 {
                return fail(format!(
                    "cold start: the last notification is {last}, expected {}",
                    2 * saves
                ));
            }
            let tail = app.notifications(last - 9, 10)?;
            let ids: Vec<u64> = tail.iter().map(|n| n.id).collect();
            if ids != (last - 9..=last).collect::<Vec<_>>() {
                return fail(format!("cold start: the last 10 events are {ids:?}"));
            }
        }
        "log" => {
            // The whole log, a page of 1,000 at a time, as a follower
            // that starts from nothing reads it.
            let mut next = 1;
            loop {
                let page = app.notifications(next, 1_000)?;
                let Some(last) = page.last() else { break };
                if page.first().map(|n| n.id) != Some(next)
                    || last.id != next + page.len() as u64 - 1
                {
                    return fail(format!("cold start: a page from {next} skips ids"));
                }
                next = last.id + 1;
            }
            if next != 2 * saves as u64 + 1 {
                return fail(format!(
                    "cold start: read {} events, expected {}",
                    next - 1,
                    2 * saves
                ));
            }
        }
        other => return fail(format!("unknown cold-start child {other:?}")),
    }
    let seconds = started.elapsed().as_secs_f64();
    let out = ChildOut {
        seconds,
        peak_rss_kib: peak_rss_kib()?,
    };
    println!("{}", serde_json::to_string(&out)?);
    Ok(())
}

/// The store of `saves` in `dir`, built unless its marker says it is.
pub(crate) fn directory_store(dir: &Path, saves: usize, rebuild: bool) -> Res<Marker> {
    let marker_path = dir.join(MARKER);
    if !rebuild {
        if let Ok(bytes) = std::fs::read(&marker_path) {
            let marker: Marker = serde_json::from_slice(&bytes)?;
            if marker.saves == saves {
                eprintln!(
                    "cold start: reusing {} ({saves} saves, built by {})",
                    dir.display(),
                    marker.built_by
                );
                return Ok(marker);
            }
        }
    }
    if dir.exists() {
        std::fs::remove_dir_all(dir)?;
    }
    std::fs::create_dir_all(dir)?;
    // What `ObjectConfig::location(dir)` opens (a LocalFileSystem with
    // the directory as its prefix, the application under it), without
    // its fsync: a million synced saves would take hours.
    let store = object_store::local::LocalFileSystem::new_with_prefix(dir)?;
    let app = Application::builder(APP)
        .store(ObjectConfig::with_store(Arc::new(store), ""))
        .build()?;
    let middle = saves / 2;
    let mut chosen = None;
    let started = Instant::now();
    let step = (saves / 10).max(10_000);
    eprintln!("cold start: building {} ({saves} saves)", dir.display());
    // One writer: one object per save, whatever the store does with
    // concurrent saves (a store that stores queued saves as one object
    // would build fewer, larger objects from several writers).
    for i in 0..saves {
        let mut dog = Dog::register(name(i));
        dog.add_trick(trick(1));
        app.save(&mut dog)?;
        if i == middle {
            chosen = Some(dog.id());
        }
        if (i + 1).is_multiple_of(step) {
            let secs = started.elapsed().as_secs_f64();
            eprintln!(
                "  {} / {saves} saves, {secs:.0} s, {:.0} saves/s",
                i + 1,
                (i + 1) as f64 / secs
            );
        }
    }
    let last = app.last_notification_id()?.unwrap_or(0);
    if last != 2 * saves as u64 {
        return fail(format!(
            "cold start: built {last} events, expected {}",
            2 * saves
        ));
    }
    drop(app);
    let id = chosen.ok_or("no middle aggregate")?;
    let marker = Marker {
        saves,
        id: id.to_string(),
        index: middle,
        built_by: env!("CARGO_PKG_VERSION").into(),
    };
    std::fs::write(&marker_path, serde_json::to_vec_pretty(&marker)?)?;
    eprintln!(
        "cold start: built {saves} saves in {:.1} s",
        started.elapsed().as_secs_f64()
    );
    Ok(marker)
}

/// Every file under `dir` but the marker, as paths relative to it.
pub(crate) fn files(dir: &Path) -> Res<Vec<PathBuf>> {
    let mut out = Vec::new();
    let mut todo = vec![PathBuf::new()];
    while let Some(rel) = todo.pop() {
        for entry in std::fs::read_dir(dir.join(&rel))? {
            let entry = entry?;
            let path = rel.join(entry.file_name());
            if entry.file_type()?.is_dir() {
                todo.push(path);
            } else if path != Path::new(MARKER) {
                out.push(path);
            }
        }
    }
    Ok(out)
}

/// The object store and prefix of an `s3://` or `az://` location.
pub(crate) fn cloud_store(location: &str) -> Res<(Arc<dyn ObjectStore>, ObjPath)> {
    if location.starts_with("s3://") {
        return crate::raw::s3_store(location);
    }
    let rest = ["az://", "azure://"]
        .iter()
        .find_map(|s| location.strip_prefix(s))
        .ok_or_else(|| format!("{location:?} is neither s3:// nor az://"))?;
    let (container, prefix) = rest.split_once('/').unwrap_or((rest, ""));
    let store = object_store::azure::MicrosoftAzureBuilder::from_env()
        .with_container_name(container)
        .build()?;
    Ok((Arc::new(store), ObjPath::from(prefix)))
}

/// The cloud store of `saves` at `location`: the directory store's
/// objects copied there (everything under the prefix removed first),
/// unless its marker says it is there.
pub(crate) fn cloud_copy(location: &str, dir: &Path, marker: &Marker, rebuild: bool) -> Res<()> {
    let (store, prefix) = cloud_store(location)?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    let marker_path = prefix.clone().join(MARKER);
    if !rebuild {
        if let Ok(got) = runtime.block_on(async { store.get(&marker_path).await }) {
            let bytes = runtime.block_on(got.bytes())?;
            let there: Marker = serde_json::from_slice(&bytes)?;
            if there.saves == marker.saves && there.id == marker.id {
                eprintln!("cold start: reusing {location} ({} saves)", marker.saves);
                return Ok(());
            }
        }
    }
    let started = Instant::now();
    let tasks = 32;
    // Whatever a former copy left.
    let old: Vec<ObjPath> = runtime.block_on(async {
        let mut listed = store.list(Some(&prefix));
        let mut paths = Vec::new();
        while let Some(meta) = std::future::poll_fn(|cx| listed.as_mut().poll_next(cx)).await {
            paths.push(meta?.location);
        }
        Ok::<_, object_store::Error>(paths)
    })?;
    if !old.is_empty() {
        eprintln!(
            "cold start: removing {} objects under {location}",
            old.len()
        );
        let chunks: Vec<Vec<ObjPath>> = old
            .chunks(old.len().div_ceil(tasks))
            .map(<[ObjPath]>::to_vec)
            .collect();
        runtime.block_on(async {
            let mut set = tokio::task::JoinSet::new();
            for chunk in chunks {
                let store = store.clone();
                set.spawn(async move {
                    for path in chunk {
                        store.delete(&path).await?;
                    }
                    Ok::<_, object_store::Error>(())
                });
            }
            while let Some(r) = set.join_next().await {
                r??;
            }
            Ok::<_, crate::workload::Error>(())
        })?;
    }
    let files = files(dir)?;
    eprintln!(
        "cold start: copying {} objects of {} to {location}",
        files.len(),
        dir.display()
    );
    let done = Arc::new(AtomicUsize::new(0));
    let total = files.len();
    let step = (total / 10).max(1_000);
    let chunks: Vec<Vec<PathBuf>> = files
        .chunks(total.div_ceil(tasks).max(1))
        .map(<[PathBuf]>::to_vec)
        .collect();
    runtime.block_on(async {
        let mut set = tokio::task::JoinSet::new();
        for chunk in chunks {
            let store = store.clone();
            let prefix = prefix.clone();
            let dir = dir.to_owned();
            let done = done.clone();
            set.spawn(async move {
                for rel in chunk {
                    let bytes = std::fs::read(dir.join(&rel))?;
                    let mut to = prefix.clone();
                    for part in rel.iter() {
                        to = to.join(part.to_str().ok_or("a non-UTF-8 file name")?);
                    }
                    store.put(&to, PutPayload::from(bytes)).await?;
                    let n = done.fetch_add(1, Ordering::Relaxed) + 1;
                    if n.is_multiple_of(step) {
                        eprintln!(
                            "  {n} / {total} objects, {:.0} s",
                            started.elapsed().as_secs_f64()
                        );
                    }
                }
                Ok::<_, crate::workload::Error>(())
            });
        }
        while let Some(r) = set.join_next().await {
            r??;
        }
        Ok::<_, crate::workload::Error>(())
    })?;
    runtime.block_on(async {
        store
            .put(
                &marker_path,
                PutPayload::from(serde_json::to_vec_pretty(marker)?),
            )
            .await?;
        Ok::<_, crate::workload::Error>(())
    })?;
    eprintln!(
        "cold start: copied {total} objects in {:.1} s",
        started.elapsed().as_secs_f64()
    );
    Ok(())
}

/// One child: wall seconds, and what it printed.
pub(crate) fn run_child(what: &str, location: &str, marker: &Marker) -> Res<(f64, ChildOut)> {
    let exe = std::env::current_exe()?;
    let started = Instant::now();
    let output = Command::new(exe)
        .arg("--cold-child")
        .arg(what)
        .arg("--cold-child-saves")
        .arg(marker.saves.to_string())
        .arg("--cold-child-id")
        .arg(&marker.id)
        .arg("--cold-child-index")
        .arg(marker.index.to_string())
        .env("PERSISTENCE_MODULE", "object")
        .env("OBJECT_STORE_LOCATION", location)
        .output()?;
    let wall = started.elapsed().as_secs_f64();
    if !output.status.success() {
        return fail(format!(
            "cold-start child {what} on {location} failed ({}): {}",
            output.status,
            String::from_utf8_lossy(&output.stderr).trim()
        ));
    }
    let out: ChildOut = serde_json::from_slice(&output.stdout).map_err(|e| {
        format!(
            "cold-start child {what}: {e} in {:?}",
            String::from_utf8_lossy(&output.stdout)
        )
    })?;
    if out.peak_rss_kib == 0 {
        return fail(format!("cold-start child {what}: no peak RSS"));
    }
    Ok((wall, out))
}

/// One row of the table: medians over runs.
#[derive(Debug, Clone, Serialize)]
struct Row {
    store: &'static str,
    saves: usize,
    get_s: f64,
    tail_s: f64,
    get_inside_s: f64,
    tail_inside_s: f64,
    peak_rss_mb: f64,
}

fn measure(kind: Kind, location: &str, marker: &Marker, runs: usize) -> Res<Row> {
    let mut all = Vec::new();
    for run in 0..runs {
        let (get_wall, get) = run_child("get", location, marker)?;
        let (tail_wall, tail) = run_child("tail", location, marker)?;
        let r = Run {
            get_wall,
            tail_wall,
            get_inside: get.seconds,
            tail_inside: tail.seconds,
            rss_kib: get.peak_rss_kib.max(tail.peak_rss_kib) as f64,
        };
        eprintln!(
            "  {} {} run {}/{runs}: get {:.3} s, last 10 {:.3} s, peak RSS {:.1} MB",
            kind.label(),
            marker.saves,
            run + 1,
            r.get_wall,
            r.tail_wall,
            r.rss_kib / 1024.0
        );
        all.push(r);
    }
    let med = |f: fn(&Run) -> f64| median(all.iter().map(f).collect()).unwrap_or(f64::NAN);
    Ok(Row {
        store: kind.label(),
        saves: marker.saves,
        get_s: med(|r| r.get_wall),
        tail_s: med(|r| r.tail_wall),
        get_inside_s: med(|r| r.get_inside),
        tail_inside_s: med(|r| r.tail_inside),
        peak_rss_mb: med(|r| r.rss_kib) / 1024.0,
    })
}

pub(crate) fn thousands(n: usize) -> String {
    let s = n.to_string();
    let mut out = String::new();
    for (i, c) in s.chars().enumerate() {
        if i > 0 && (s.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

pub(crate) fn secs(s: f64) -> String {
    if s < 10.0 {
        format!("{s:.2} s")
    } else {
        format!("{s:.1} s")
    }
}

/// Saves per second of `threads` writers saving `saves` new aggregates
/// (2 events each) in one application on a fresh directory store, opened
/// by its location (fsync on).
fn writers(cache: &Path, saves: usize, threads: usize) -> Res<f64> {
    std::fs::create_dir_all(cache)?;
    let dir = tempfile::tempdir_in(cache)?;
    let location = dir.path().join("store");
    let app = Application::builder("Writers")
        .store(ObjectConfig::location(
            location.to_str().ok_or("a non-UTF-8 path")?,
        ))
        .build()?;
    let next = AtomicUsize::new(0);
    let started = Instant::now();
    std::thread::scope(|s| -> Res<()> {
        let handles: Vec<_> = (0..threads)
            .map(|_| {
                s.spawn(|| -> Res<()> {
                    loop {
                        let i = next.fetch_add(1, Ordering::Relaxed);
                        if i >= saves {
                            return Ok(());
                        }
                        let mut dog = Dog::register(name(i));
                        dog.add_trick(trick(1));
                        app.save(&mut dog)?;
                    }
                })
            })
            .collect();
        for h in handles {
            h.join().map_err(|_| "a writer thread panicked")??;
        }
        Ok(())
    })?;
    let elapsed = started.elapsed();
    let last = app.last_notification_id()?.unwrap_or(0);
    if last != 2 * saves as u64 {
        return fail(format!(
            "writers: {last} events stored, expected {}",
            2 * saves
        ));
    }
    Ok(saves as f64 / elapsed.max(Duration::from_nanos(1)).as_secs_f64())
}

/// `--cold-start`: builds (or reuses) the stores, measures each size in
/// fresh processes, prints the table, the ratios and the writers.
pub(crate) fn run(options: &Options) -> Res<()> {
    let mut rows: Vec<Row> = Vec::new();
    let mut notes = Vec::new();
    for store in &options.stores {
        let kind = match store.as_str() {
            "dir" | "directory" => Kind::Dir,
            "s3" => Kind::S3,
            "azure" | "az" => Kind::Azure,
            other => return fail(format!("unknown cold-start store {other:?}")),
        };
        let base = match kind {
            Kind::Dir => None,
            Kind::S3 | Kind::Azure => {
                let var = if kind == Kind::S3 {
                    S3_LOCATION
                } else {
                    AZURE_LOCATION
                };
                match std::env::var(var) {
                    Ok(base) => Some(base.trim_end_matches('/').to_owned()),
                    Err(_) => {
                        let msg = format!("{} skipped: {var} is not set", kind.label());
                        eprintln!("{msg}");
                        notes.push(msg);
                        continue;
                    }
                }
            }
        };
        let sizes = options.sizes.clone().unwrap_or_else(|| kind.sizes());
        for &saves in &sizes {
            if saves < 10 {
                return fail(format!("cold start: {saves} saves; at least 10"));
            }
            let dir = options.cache.join(format!("dir-{saves}"));
            let marker = directory_store(&dir, saves, options.rebuild)?;
            let location = match &base {
                None => dir.to_str().ok_or("a non-UTF-8 path")?.to_owned(),
                Some(base) => {
                    let location = format!("{base}/cold-start-{saves}");
                    cloud_copy(&location, &dir, &marker, options.rebuild)?;
                    location
                }
            };
            eprintln!("cold start: measuring {} {saves}", kind.label());
            rows.push(measure(kind, &location, &marker, options.runs)?);
        }
    }

    println!(
        "Cold start of the object store: fresh processes (PERSISTENCE_MODULE=object, OBJECT_STORE_LOCATION), one new aggregate of 2 events per save, medians of {} run(s)\n",
        options.runs
    );
    println!("| store | saves | open + get one aggregate | read the last 10 events | peak RSS | in-process: get / last 10 |");
    println!("|---|---|---|---|---|---|");
    for r in &rows {
        println!(
            "| {} | {} | {} | {} | {:.1} MB | {} / {} |",
            r.store,
            thousands(r.saves),
            secs(r.get_s),
            secs(r.tail_s),
            r.peak_rss_mb,
            secs(r.get_inside_s),
            secs(r.tail_inside_s)
        );
    }
    println!();
    let mut stores: Vec<&'static str> = rows.iter().map(|r| r.store).collect();
    stores.dedup();
    for store in stores {
        let of: Vec<&Row> = rows.iter().filter(|r| r.store == store).collect();
        let (Some(small), Some(large)) = (
            of.iter().min_by_key(|r| r.saves),
            of.iter().max_by_key(|r| r.saves),
        ) else {
            continue;
        };
        let max_rss = of.iter().map(|r| r.peak_rss_mb).fold(0.0, f64::max);
        if large.saves > small.saves {
            let ratio = large.get_s / small.get_s;
            println!(
                "- {store}: {} saves / {}: open + get {ratio:.1}x (target 2x: {}), last 10 events {:.1}x; peak RSS at most {max_rss:.1} MB (target 64 MB: {})",
                thousands(large.saves),
                thousands(small.saves),
                if ratio <= 2.0 { "met" } else { "not met" },
                large.tail_s / small.tail_s,
                if max_rss < 64.0 { "met" } else { "not met" },
            );
        }
    }
    if options.writer_saves > 0 {
        let mut one = Vec::new();
        let mut many = Vec::new();
        for run in 0..options.runs {
            one.push(writers(&options.cache, options.writer_saves, 1)?);
            many.push(writers(
                &options.cache,
                options.writer_saves,
                options.writers,
            )?);
            eprintln!(
                "  writers run {}/{}: 1 writer {:.0} saves/s, {} writers {:.0} saves/s",
                run + 1,
                options.runs,
                one[run],
                options.writers,
                many[run]
            );
        }
        let (one, many) = (
            median(one).unwrap_or(f64::NAN),
            median(many).unwrap_or(f64::NAN),
        );
        let ratio = many / one;
        println!(
            "- {} writers vs 1 on a directory (fsync on, {} saves of a new aggregate of 2 events each): {many:.0} vs {one:.0} saves/s, {ratio:.2}x (target 3x: {})",
            options.writers,
            thousands(options.writer_saves),
            if ratio >= 3.0 { "met" } else { "not met" }
        );
    }
    for n in notes {
        println!("- {n}");
    }
    Ok(())
}
