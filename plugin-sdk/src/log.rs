//! Logging to the host: lines appear in the host's log under the plugin's
//! name and in `rulehost eval`. Natively (in `cargo test`) they go to stderr.

pub use crate::__private::setup_world::rulehost::plugin::host::LogLevel;

/// Sends one log line to the host.
pub fn write(level: LogLevel, message: &str) {
    #[cfg(target_arch = "wasm32")]
    crate::__private::setup_world::rulehost::plugin::host::log(level, message);
    #[cfg(not(target_arch = "wasm32"))]
    eprintln!("[{level:?}] {message}");
}

/// Logs at info level: `rulehost_sdk::info!("lapse after {days} days")`.
#[macro_export]
macro_rules! info {
    ($($arg:tt)*) => { $crate::log::write($crate::log::LogLevel::Info, &format!($($arg)*)) };
}

/// Logs at debug level.
#[macro_export]
macro_rules! debug {
    ($($arg:tt)*) => { $crate::log::write($crate::log::LogLevel::Debug, &format!($($arg)*)) };
}

/// Logs at warn level.
#[macro_export]
macro_rules! warn {
    ($($arg:tt)*) => { $crate::log::write($crate::log::LogLevel::Warn, &format!($($arg)*)) };
}
