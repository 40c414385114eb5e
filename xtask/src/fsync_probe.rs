//! The disk's floor for a durable answer: how long a write the size of a
//! group commit and its `fdatasync` take on this machine, measured while
//! `/healthz` loads the CPU as the checks do. With `[store] sync = "full"`
//! every answer waits for at least one such sync, so no check's latency
//! percentile can be below this one's.

use std::fs::OpenOptions;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use anyhow::Context;

/// Pages a group commit writes at 10 clients (about 13 WAL frames of 4 KiB).
const PAGES: usize = 13;
/// Groups overwritten in turn, in place, as SQLite overwrites its WAL after
/// a restart: no sync has to journal a new file size.
const SLOTS: usize = 64;
/// Pause between two syncs, so that the probe adds little load of its own.
const PAUSE: Duration = Duration::from_millis(2);

pub struct FsyncProbe {
    stop: Arc<AtomicBool>,
    thread: JoinHandle<std::io::Result<Vec<Duration>>>,
}

/// p50, p99 and p99.9 of the syncs, in ms.
pub struct FsyncFloor {
    pub p50_ms: f64,
    pub p99_ms: f64,
    pub p999_ms: f64,
}

impl FsyncProbe {
    /// Starts syncing a scratch file in `dir` (on the database's disk).
    pub fn start(dir: &Path) -> FsyncProbe {
        let path = dir.join("fsync-probe");
        let stop = Arc::new(AtomicBool::new(false));
        let thread = std::thread::spawn({
            let stop = stop.clone();
            move || probe(&path, &stop)
        });
        FsyncProbe { stop, thread }
    }

    pub fn finish(self) -> anyhow::Result<FsyncFloor> {
        self.stop.store(true, Ordering::Relaxed);
        let mut times = self
            .thread
            .join()
            .map_err(|_| anyhow::anyhow!("the fsync probe panicked"))?
            .context("the fsync probe could not write its scratch file")?;
        anyhow::ensure!(!times.is_empty(), "the fsync probe made no sync");
        times.sort();
        let at = |q: f64| {
            let i = ((times.len() as f64 * q) as usize).min(times.len() - 1);
            times[i].as_secs_f64() * 1e3
        };
        Ok(FsyncFloor {
            p50_ms: at(0.5),
            p99_ms: at(0.99),
            p999_ms: at(0.999),
        })
    }
}

fn probe(path: &PathBuf, stop: &AtomicBool) -> std::io::Result<Vec<Duration>> {
    let file = OpenOptions::new()
        .create(true)
        .truncate(true)
        .read(true)
        .write(true)
        .open(path)?;
    let group = vec![0x5a_u8; PAGES * 4096];
    for slot in 0..SLOTS {
        file.write_all_at(&group, (slot * group.len()) as u64)?;
    }
    file.sync_all()?;
    let mut times = Vec::new();
    let mut slot = 0;
    while !stop.load(Ordering::Relaxed) {
        let started = Instant::now();
        file.write_all_at(&group, (slot % SLOTS * group.len()) as u64)?;
        file.sync_data()?;
        times.push(started.elapsed());
        slot += 1;
        std::thread::sleep(PAUSE);
    }
    drop(file);
    std::fs::remove_file(path)?;
    Ok(times)
}
