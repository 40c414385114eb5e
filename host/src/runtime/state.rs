//! What each wasmtime `Store` carries: a deny-all WASI context, the memory
//! limiter, and the log lines a call produced.

use std::sync::Arc;

use wasmtime::ResourceLimiter;
use wasmtime_wasi::{ResourceTable, WasiCtx, WasiCtxBuilder, WasiCtxView, WasiView};

use super::bindings::{v0_1, v0_2, v0_3};
use super::output::CapturedOutput;

/// Most log lines kept per call; more are counted, not kept.
const MAX_LOG_LINES: usize = 100;
/// Longest log line kept, in bytes; longer lines are cut.
const MAX_LOG_LINE: usize = 4096;
/// How much of a plugin's stdout and stderr is kept per call; the rest is
/// counted and dropped.
const STDIO_CAPACITY: usize = 64 << 10;

/// One line a plugin logged, through `host.log` or its stdout/stderr.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct LogLine {
    pub level: &'static str,
    pub message: String,
}

pub(crate) struct StoreState {
    plugin: Arc<str>,
    wasi: WasiCtx,
    table: ResourceTable,
    stdout: CapturedOutput,
    stderr: CapturedOutput,
    logs: Vec<LogLine>,
    dropped_logs: usize,
    memory_limit: usize,
    pub(crate) memory_exceeded: bool,
}

impl StoreState {
    /// No files, no environment, no arguments, no sockets; stdout and stderr
    /// are captured and sent to the log under the plugin's name.
    pub(crate) fn new(plugin: Arc<str>, memory_limit: u64) -> Self {
        let stdout = CapturedOutput::new(STDIO_CAPACITY);
        let stderr = CapturedOutput::new(STDIO_CAPACITY);
        let wasi = WasiCtxBuilder::new()
            .stdout(stdout.clone())
            .stderr(stderr.clone())
            .allow_blocking_current_thread(true)
            .build();
        StoreState {
            plugin,
            wasi,
            table: ResourceTable::new(),
            stdout,
            stderr,
            logs: Vec::new(),
            dropped_logs: 0,
            memory_limit: usize::try_from(memory_limit).unwrap_or(usize::MAX),
            memory_exceeded: false,
        }
    }

    fn push_log(&mut self, level: &'static str, message: &str) {
        if self.logs.len() >= MAX_LOG_LINES {
            self.dropped_logs += 1;
            return;
        }
        let mut end = message.len().min(MAX_LOG_LINE);
        while !message.is_char_boundary(end) {
            end -= 1;
        }
        let message = &message[..end];
        match level {
            "error" => tracing::error!(target: "plugin", plugin = %self.plugin, "{message}"),
            "warn" => tracing::warn!(target: "plugin", plugin = %self.plugin, "{message}"),
            "info" | "stdout" => {
                tracing::info!(target: "plugin", plugin = %self.plugin, "{message}")
            }
            // What a plugin prints is its own business: info, not a host warning.
            "stderr" => {
                tracing::info!(target: "plugin", plugin = %self.plugin, stream = "stderr", "{message}")
            }
            "debug" => tracing::debug!(target: "plugin", plugin = %self.plugin, "{message}"),
            _ => tracing::trace!(target: "plugin", plugin = %self.plugin, "{message}"),
        }
        self.logs.push(LogLine {
            level,
            message: message.to_owned(),
        });
    }

    /// Moves what the plugin wrote to stdout/stderr during the call into the
    /// log, then hands over the call's log lines.
    pub(crate) fn take_logs(&mut self) -> Vec<LogLine> {
        for (level, captured) in [
            ("stdout", self.stdout.take()),
            ("stderr", self.stderr.take()),
        ] {
            let Some((bytes, dropped)) = captured else {
                continue;
            };
            for line in String::from_utf8_lossy(&bytes)
                .lines()
                .filter(|l| !l.is_empty())
            {
                self.push_log(level, line);
            }
            if dropped > 0 {
                self.push_log("warn", &format!("{dropped} more bytes of {level} dropped"));
            }
        }
        if self.dropped_logs > 0 {
            let dropped = std::mem::take(&mut self.dropped_logs);
            self.logs.push(LogLine {
                level: "warn",
                message: format!("{dropped} more log lines dropped"),
            });
        }
        std::mem::take(&mut self.logs)
    }
}

impl WasiView for StoreState {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView {
            ctx: &mut self.wasi,
            table: &mut self.table,
        }
    }
}

/// `host.log`, the same in every contract version.
macro_rules! impl_host {
    ($version:ident) => {
        impl $version::Host for StoreState {
            fn log(&mut self, level: $version::LogLevel, message: String) {
                use $version::LogLevel as L;
                let level = match level {
                    L::Trace => "trace",
                    L::Debug => "debug",
                    L::Info => "info",
                    L::Warn => "warn",
                    L::Error => "error",
                };
                self.push_log(level, &message);
            }
        }
    };
}
impl_host!(v0_1);
impl_host!(v0_2);
impl_host!(v0_3);

impl ResourceLimiter for StoreState {
    fn memory_growing(
        &mut self,
        _current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        if desired > self.memory_limit {
            self.memory_exceeded = true;
            return Err(wasmtime::format_err!("memory limit exceeded"));
        }
        Ok(true)
    }

    fn table_growing(
        &mut self,
        _current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        Ok(desired <= 100_000)
    }
}
