//! `--allocs`: how many allocations each system makes per event on the
//! save and get paths (W1, W2, W4, W5), counted by DHAT's allocator
//! (`--features dhat-heap`) within the same timed sections the workload
//! measures, so the checks that follow a section are not counted.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use crate::workload::Res;
use crate::Store;
#[cfg(feature = "dhat-heap")]
use crate::{open, workload::Sizes, Config, System};

#[cfg(feature = "dhat-heap")]
#[global_allocator]
static ALLOC: dhat::Alloc = dhat::Alloc;

/// Whether a profiler runs (then sections are counted).
static COUNTING: AtomicBool = AtomicBool::new(false);
/// The allocations of each section since the last `take`.
static SECTIONS: Mutex<Vec<u64>> = Mutex::new(Vec::new());

fn blocks() -> u64 {
    #[cfg(feature = "dhat-heap")]
    if COUNTING.load(Ordering::Relaxed) {
        return dhat::HeapStats::get().total_blocks;
    }
    0
}

fn sections() -> std::sync::MutexGuard<'static, Vec<u64>> {
    SECTIONS.lock().unwrap_or_else(|e| e.into_inner())
}

/// Times one measured section of a workload and, under `--allocs`, counts
/// its allocations.
pub(crate) struct Stopwatch {
    start: Instant,
    blocks: u64,
}

impl Stopwatch {
    pub(crate) fn start() -> Self {
        Self {
            blocks: blocks(),
            start: Instant::now(),
        }
    }

    pub(crate) fn stop(self) -> Duration {
        let elapsed = self.start.elapsed();
        if COUNTING.load(Ordering::Relaxed) {
            let n = blocks() - self.blocks;
            sections().push(n);
        }
        elapsed
    }
}

/// The sizes: DHAT records a backtrace per allocation, so smaller than the
/// workload's, but the same shapes.
#[cfg(feature = "dhat-heap")]
const SIZES: Sizes = Sizes {
    aggregates: 200,
    events: 10,
    page: 1000,
    long: 2_000,
    long_batch: 100,
    batches: 5,
    batch: 100,
    threads: 1,
    snapshotting: false,
};

/// Runs every system on `stores` and prints allocations per event.
pub(crate) fn run(stores: &[Store], profile: Option<&std::path::Path>) -> Res<()> {
    #[cfg(not(feature = "dhat-heap"))]
    {
        let _ = (stores, profile);
        crate::workload::fail(
            "--allocs counts with DHAT's allocator: build with --features dhat-heap".into(),
        )
    }
    #[cfg(feature = "dhat-heap")]
    {
        let _profiler = match profile {
            Some(file) => dhat::Profiler::builder().file_name(file).build(),
            None => dhat::Profiler::builder().testing().build(),
        };
        COUNTING.store(true, Ordering::SeqCst);
        let s = SIZES;
        let w1 = (s.aggregates * s.events) as f64;
        println!(
            "Allocations per event, within the timed sections ({} aggregates x {} events, \
             long stream {} in saves of {}, W5 {} x {})\n",
            s.aggregates, s.events, s.long, s.long_batch, s.batches, s.batch
        );
        println!("| system / store | W1 save | W2 get | W4 write | W4 get | W4 get-snap (per get) | W5 save |");
        println!("|---|---|---|---|---|---|---|");
        for config in Config::ALL {
            if !stores.contains(&config.store) || config.zlib_aes {
                continue;
            }
            let mut row = vec![config.label()];
            let (mut sut, _dir) = open(config, "w123", false)?;
            sut.w1(&s)?;
            sut.w2(&s)?;
            let cqrs = config.system == System::Cqrs;
            if !cqrs {
                drop(sut);
                let (mut sut, _dir) = open(config, "w4", false)?;
                sut.w4(&s)?;
                drop(sut);
                let (mut sut, _dir) = open(config, "w5", false)?;
                sut.w5(&s)?;
            }
            let counted = std::mem::take(&mut *sections());
            let per = [
                w1,
                w1,
                s.long as f64,
                s.long as f64,
                1.0,
                (s.batches * s.batch) as f64,
            ];
            for (k, n) in counted.iter().enumerate() {
                row.push(format!(
                    "{:.1}",
                    *n as f64 / per.get(k).copied().unwrap_or(1.0)
                ));
            }
            while row.len() < 7 {
                row.push("-".into());
            }
            println!("| {} |", row.join(" | "));
        }
        COUNTING.store(false, Ordering::SeqCst);
        Ok(())
    }
}
