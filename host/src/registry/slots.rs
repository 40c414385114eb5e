//! A bound, per service, on its plugin calls running at once, whatever the
//! capability (verifier, reconciler, plan policy, session charging): a
//! plugin spinning to its time limit holds at most that many cores, and the
//! other services' calls, the reads and the commits keep the rest. Taken
//! around each call itself (a microsecond for a healthy plugin), so a
//! service's own calls contend for it only while its plugin is slow; then
//! they take their places in the order they asked. A service keeps its
//! bound across reloads and swaps (`Live`).

use std::sync::{Arc, Condvar, Mutex};

/// How many calls of one service's plugins run at once: half the cores,
/// at least one.
pub fn plugin_concurrency() -> usize {
    std::thread::available_parallelism().map_or(1, |n| (n.get() / 2).max(1))
}

#[derive(Debug)]
pub struct Slots {
    max: usize,
    state: Mutex<State>,
    freed: Condvar,
}

/// Places taken, and tickets handed out and served: places go in the order
/// they were asked for, so a call that keeps coming back (a busy service's
/// next request) cannot keep one that waits from its turn.
#[derive(Debug, Default)]
struct State {
    used: usize,
    next: u64,
    serving: u64,
}

/// A place taken; given back when dropped.
struct Slot(Arc<Slots>);

impl Slots {
    pub fn new(max: usize) -> Slots {
        Slots {
            max: max.max(1),
            state: Mutex::new(State::default()),
            freed: Condvar::new(),
        }
    }

    /// Waits (blocking this worker thread) for a place, in turn.
    #[must_use = "the place is given back when the slot is dropped"]
    fn take(self: &Arc<Self>) -> Slot {
        let mut state = self.lock();
        let ticket = state.next;
        state.next += 1;
        while state.serving != ticket || state.used >= self.max {
            state = self.freed.wait(state).unwrap_or_else(|e| e.into_inner());
        }
        state.serving += 1;
        state.used += 1;
        // The next in line may find a place too.
        self.freed.notify_all();
        Slot(self.clone())
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
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
        self.0.lock().used -= 1;
        // Only the first in line may take it; it is one of the waiters.
        self.0.freed.notify_all();
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

    #[test]
    fn places_go_in_the_order_they_were_asked_for() {
        let slots = Arc::new(Slots::new(1));
        let held = slots.take();
        let order = Arc::new(Mutex::new(Vec::new()));
        let mut threads = Vec::new();
        for n in 0u64..6 {
            let (slots2, order2) = (slots.clone(), order.clone());
            threads.push(std::thread::spawn(move || {
                let slot = slots2.take();
                order2.lock().unwrap().push((n, "first"));
                // Each comes back at once, as a busy service's calls do:
                // behind those already waiting.
                drop(slot);
                let _again = slots2.take();
                order2.lock().unwrap().push((n, "again"));
            }));
            // The next asks only once this one waits in line.
            while slots.lock().next < n + 2 {
                std::thread::yield_now();
            }
        }
        drop(held);
        for thread in threads {
            thread.join().unwrap();
        }
        let order = order.lock().unwrap();
        let firsts: Vec<_> = (0..6).map(|n| (n, "first")).collect();
        assert_eq!(order[..6], firsts[..], "{order:?}");
    }
}
