//! The driver: a thread that moves flows whose time has come (timers) and,
//! at start, every flow a crash left mid-way.

use std::sync::Arc;
use std::time::Duration;

use super::FlowEngine;
use crate::notify::{Signal, Worker};
use crate::store;

/// The longest the driver sleeps without looking.
const IDLE_POLL: Duration = Duration::from_secs(1);

pub struct Driver(Worker);

impl Driver {
    pub fn start(engine: Arc<FlowEngine>) -> std::io::Result<Driver> {
        let worker = Worker::start("rulehost-flows", Arc::new(Signal::default()), move || {
            if let Err(e) = engine.advance_ready() {
                tracing::error!("flow driver: {e}");
            }
            let wait = match engine.next_timer() {
                Ok(Some(due)) => {
                    Duration::from_millis(u64::try_from(due - store::now_ms()).unwrap_or(0))
                }
                _ => IDLE_POLL,
            };
            wait.clamp(Duration::from_millis(5), IDLE_POLL)
        })?;
        Ok(Driver(worker))
    }

    pub fn stop(&mut self) {
        self.0.stop();
    }
}
