//! What a durable answer costs on this disk: how long a write the size of a
//! group commit (at 10 clients) and its `fdatasync` take, measured while
//! `/healthz` loads the CPU as the checks do. With `[store] sync = "full"`
//! every answer waits for a COMMIT that makes such a sync, so this is the
//! typical cost beneath a check's latency (a smaller group, as at 1
//! client, syncs fewer pages).

use std::fs::OpenOptions;
use std::os::unix::fs::FileExt;
use std::path::Path;
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
    thread: Option<JoinHandle<std::io::Result<Vec<Duration>>>>,
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
        FsyncProbe {
            stop,
            thread: Some(thread),
        }
    }

    pub fn finish(mut self) -> anyhow::Result<FsyncFloor> {
        self.stop.store(true, Ordering::Relaxed);
        let thread = self.thread.take().context("the fsync probe was stopped")?;
        let mut times = thread
            .join()
            .map_err(|_| anyhow::anyhow!("the fsync probe panicked"))?
            .context("the fsync probe could not write its scratch file")?;
        anyhow::ensure!(!times.is_empty(), "the fsync probe made no sync");
        times.sort();
        // Nearest rank: the smallest time that at least `q` of all are within.
        let at = |q: f64| {
            let rank = (times.len() as f64 * q).ceil() as usize;
            times[rank.clamp(1, times.len()) - 1].as_secs_f64() * 1e3
        };
        Ok(FsyncFloor {
            p50_ms: at(0.5),
            p99_ms: at(0.99),
            p999_ms: at(0.999),
        })
    }
}

/// Stops the probe when the run ends early (a failed wrk).
impl Drop for FsyncProbe {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// Removes the scratch file however the probe ends.
struct Scratch<'a>(&'a Path);

impl Drop for Scratch<'_> {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(self.0);
    }
}

fn probe(path: &Path, stop: &AtomicBool) -> std::io::Result<Vec<Duration>> {
    let _scratch = Scratch(path);
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
    Ok(times)
}
