//! A wake-up call between threads: "there may be work now".

use std::sync::{Condvar, Mutex};
use std::time::Duration;

#[derive(Debug, Default)]
pub struct Signal {
    raised: Mutex<bool>,
    condvar: Condvar,
}

impl Signal {
    pub fn raise(&self) {
        *self.raised.lock().unwrap_or_else(|e| e.into_inner()) = true;
        self.condvar.notify_all();
    }

    /// Waits until raised or `timeout` passes; lowers the signal.
    pub fn wait(&self, timeout: Duration) {
        let raised = self.raised.lock().unwrap_or_else(|e| e.into_inner());
        let (mut raised, _) = self
            .condvar
            .wait_timeout_while(raised, timeout, |raised| !*raised)
            .unwrap_or_else(|e| e.into_inner());
        *raised = false;
    }
}
