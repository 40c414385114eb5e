//! A background thread that repeats one step until stopped: the step says
//! how long to wait before the next one, and a `Signal` cuts the wait short
//! when there may be work.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;
use std::time::Duration;

use super::Signal;

pub struct Worker {
    stop: Arc<AtomicBool>,
    signal: Arc<Signal>,
    thread: Option<JoinHandle<()>>,
}

impl Worker {
    /// Runs `step` on a thread named `name` until stopped; a zero wait runs
    /// the next step at once.
    pub fn start(
        name: &str,
        signal: Arc<Signal>,
        mut step: impl FnMut() -> Duration + Send + 'static,
    ) -> std::io::Result<Worker> {
        let stop = Arc::new(AtomicBool::new(false));
        let thread = {
            let (stop, signal) = (stop.clone(), signal.clone());
            std::thread::Builder::new()
                .name(name.into())
                .spawn(move || {
                    while !stop.load(Ordering::Acquire) {
                        let wait = step();
                        if !wait.is_zero() {
                            signal.wait(wait);
                        }
                    }
                })?
        };
        Ok(Worker {
            stop,
            signal,
            thread: Some(thread),
        })
    }

    /// Stops after the step in progress, if any.
    pub fn stop(&mut self) {
        self.stop.store(true, Ordering::Release);
        self.signal.raise();
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

impl Drop for Worker {
    fn drop(&mut self) {
        self.stop();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::AtomicU32;

    #[test]
    fn a_signal_cuts_the_wait_short_and_stop_ends_the_loop() {
        let signal = Arc::new(Signal::default());
        let runs = Arc::new(AtomicU32::new(0));
        let counted = runs.clone();
        let mut worker = Worker::start("test-worker", signal.clone(), move || {
            counted.fetch_add(1, Ordering::SeqCst);
            Duration::from_secs(60)
        })
        .unwrap();
        while runs.load(Ordering::SeqCst) == 0 {
            std::thread::yield_now();
        }
        signal.raise();
        let started = std::time::Instant::now();
        while runs.load(Ordering::SeqCst) < 2 && started.elapsed() < Duration::from_secs(5) {
            std::thread::yield_now();
        }
        assert!(
            runs.load(Ordering::SeqCst) >= 2,
            "the signal woke the worker"
        );
        worker.stop();
        let after = runs.load(Ordering::SeqCst);
        std::thread::sleep(Duration::from_millis(20));
        assert_eq!(runs.load(Ordering::SeqCst), after, "no step after stop");
    }
}
