//! A bound, per service, on its plugin calls running at once, whatever the
//! capability (verifier, reconciler, plan policy, session charging): a
//! plugin spinning to its time limit holds at most that many cores, and the
//! other services' calls, the reads and the commits keep the rest. Taken
//! around each call itself (a microsecond for a healthy plugin), so a
//! service's own calls contend for it only while its plugin is slow. A
//! service keeps its bound across reloads and swaps (`Live`).

use std::sync::{Arc, Condvar, Mutex};

/// How many calls of one service's plugins run at once: half the cores,
/// at least one.
pub fn plugin_concurrency() -> usize {
    std::thread::available_parallelism().map_or(1, |n| (n.get() / 2).max(1))
}

#[derive(Debug)]
pub struct Slots {
    max: usize,
    used: Mutex<usize>,
    freed: Condvar,
}

/// A place taken; given back when dropped.
struct Slot(Arc<Slots>);

impl Slots {
    pub fn new(max: usize) -> Slots {
        Slots {
            max: max.max(1),
            used: Mutex::new(0),
            freed: Condvar::new(),
        }
    }

    /// Waits (blocking this worker thread) for a place.
    #[must_use = "the place is given back when the slot is dropped"]
    fn take(self: &Arc<Self>) -> Slot {
        let mut used = self.used.lock().unwrap_or_else(|e| e.into_inner());
        while *used >= self.max {
            used = self.freed.wait(used).unwrap_or_else(|e| e.into_inner());
        }
        *used += 1;
        Slot(self.clone())
    }

    /// Runs `call` holding a place.
    pub fn run<T>(self: &Arc<Self>, call: impl FnOnce() -> T) -> T {
        let _slot = self.take();
        call()
    }
}

impl Default for Slots {
    fn default() -> Slots {
        Slots::new(plugin_concurrency())
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        let mut used = self.0.used.lock().unwrap_or_else(|e| e.into_inner());
        *used -= 1;
        self.0.freed.notify_one();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::time::Duration;

    #[test]
    fn no_more_than_max_hold_a_place_at_once() {
        let slots = Arc::new(Slots::new(2));
        let holding = Arc::new(AtomicUsize::new(0));
        let most = Arc::new(AtomicUsize::new(0));
        let threads: Vec<_> = (0..8)
            .map(|_| {
                let (slots, holding, most) = (slots.clone(), holding.clone(), most.clone());
                std::thread::spawn(move || {
                    let _slot = slots.take();
                    let now = holding.fetch_add(1, Ordering::SeqCst) + 1;
                    most.fetch_max(now, Ordering::SeqCst);
                    std::thread::sleep(Duration::from_millis(10));
                    holding.fetch_sub(1, Ordering::SeqCst);
                })
            })
            .collect();
        for thread in threads {
            thread.join().unwrap();
        }
        assert_eq!(most.load(Ordering::SeqCst), 2);
    }
}
