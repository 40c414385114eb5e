//! A bound, per service, on its plugin calls running at once: a plugin
//! spinning to its time limit holds at most that many cores, and the other
//! services' checks, the reads and the commits keep the rest. Taken around
//! the call itself (a microsecond for a healthy plugin), so a service's
//! own checks contend for it only while its plugin is slow.

use std::sync::{Arc, Condvar, Mutex};

pub(crate) struct Slots {
    max: usize,
    used: Mutex<usize>,
    freed: Condvar,
}

/// A place taken; given back when dropped.
pub(crate) struct Slot(Arc<Slots>);

impl Slots {
    pub fn new(max: usize) -> Slots {
        Slots {
            max: max.max(1),
            used: Mutex::new(0),
            freed: Condvar::new(),
        }
    }

    /// Waits (blocking this worker thread) for a place.
    pub fn take(self: &Arc<Self>) -> Slot {
        let mut used = self.used.lock().unwrap_or_else(|e| e.into_inner());
        while *used >= self.max {
            used = self.freed.wait(used).unwrap_or_else(|e| e.into_inner());
        }
        *used += 1;
        Slot(self.clone())
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
