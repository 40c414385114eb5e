//! The driver: a thread that moves flows whose time has come (timers) and,
//! at start, every flow a crash left mid-way.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;
use std::time::Duration;

use super::FlowEngine;
use crate::notify::Signal;
use crate::store;

/// The longest the driver sleeps without looking.
const IDLE_POLL: Duration = Duration::from_secs(1);

pub struct Driver {
    stop: Arc<AtomicBool>,
    signal: Arc<Signal>,
    thread: Option<JoinHandle<()>>,
}

impl Driver {
    pub fn start(engine: Arc<FlowEngine>) -> std::io::Result<Driver> {
        let stop = Arc::new(AtomicBool::new(false));
        let signal = Arc::new(Signal::default());
        let thread = {
            let (stop, signal) = (stop.clone(), signal.clone());
            std::thread::Builder::new()
                .name("rulehost-flows".into())
                .spawn(move || {
                    while !stop.load(Ordering::Acquire) {
                        if let Err(e) = engine.advance_ready() {
                            tracing::error!("flow driver: {e}");
                        }
                        let wait = match engine.next_timer() {
                            Ok(Some(due)) => Duration::from_millis(
                                u64::try_from(due - store::now_ms()).unwrap_or(0),
                            ),
                            _ => IDLE_POLL,
                        };
                        signal.wait(wait.clamp(Duration::from_millis(5), IDLE_POLL));
                    }
                })?
        };
        Ok(Driver {
            stop,
            signal,
            thread: Some(thread),
        })
    }

    pub fn stop(&mut self) {
        self.stop.store(true, Ordering::Release);
        self.signal.raise();
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

impl Drop for Driver {
    fn drop(&mut self) {
        self.stop();
    }
}
