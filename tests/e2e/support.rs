//! Paths to the built plugins and the binary, and small helpers.
//!
//! The helpers panic when they cannot do their job (clippy denies `panic`
//! outside `#[test]` functions, hence the `allow`s): a test's setup failing
//! must stop the test with a clear message.

use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::Arc;

use rulehost::runtime::{Plugin, Runtime, RuntimeOptions};

pub fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_default()
}

pub fn plugins_dir() -> PathBuf {
    repo_root().join("plugins").join("dist")
}

pub fn rules_dir() -> PathBuf {
    repo_root().join("rules")
}

/// The bytes of a built plugin; a clear failure when plugins are not built.
#[allow(clippy::panic)]
pub fn plugin_bytes(name: &str) -> Vec<u8> {
    let path = plugins_dir().join(format!("{name}.wasm"));
    std::fs::read(&path).unwrap_or_else(|e| {
        panic!(
            "cannot read {} ({e}): build the plugins first with `cargo xtask plugins`",
            path.display()
        )
    })
}

#[allow(clippy::panic)]
pub fn runtime() -> Runtime {
    Runtime::new(RuntimeOptions::default()).unwrap_or_else(|e| panic!("runtime: {e}"))
}

#[allow(clippy::panic)]
pub fn load(runtime: &Runtime, name: &str) -> Arc<Plugin> {
    runtime
        .load(name, &plugin_bytes(name))
        .unwrap_or_else(|e| panic!("load {name}: {e}"))
}

/// Runs the real `rulehost` binary in the repository root.
pub fn rulehost(args: &[&str]) -> Output {
    rulehost_with(args, |_| {})
}

#[allow(clippy::panic)]
pub fn rulehost_with(args: &[&str], configure: impl FnOnce(&mut Command)) -> Output {
    let mut command = command(args);
    configure(&mut command);
    command
        .output()
        .unwrap_or_else(|e| panic!("cannot run rulehost: {e}"))
}

/// Runs `rulehost` (as [`rulehost`]) with `input` on its standard input.
#[allow(clippy::panic)]
pub fn rulehost_stdin(args: &[&str], input: &str) -> Output {
    let mut child = command(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot run rulehost: {e}"));
    if let Some(mut stdin) = child.stdin.take() {
        stdin
            .write_all(input.as_bytes())
            .unwrap_or_else(|e| panic!("cannot write to rulehost's stdin: {e}"));
    }
    child
        .wait_with_output()
        .unwrap_or_else(|e| panic!("cannot run rulehost: {e}"))
}

/// The `rulehost` binary with `args`, then `--plugins plugins/dist`, run in
/// the repository root with a compile cache shared by the tests.
fn command(args: &[&str]) -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_rulehost"));
    command
        .args(args)
        .current_dir(repo_root())
        .arg("--plugins")
        .arg(plugins_dir());
    command.env(
        "RULEHOST_CACHE_DIR",
        std::env::temp_dir().join("rulehost-e2e-cache"),
    );
    command
}

/// Runs `rulehost` with exactly `args` (no `--plugins` added): for `--help`.
#[allow(clippy::panic)]
pub fn rulehost_bare(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_rulehost"))
        .args(args)
        .current_dir(repo_root())
        .output()
        .unwrap_or_else(|e| panic!("cannot run rulehost: {e}"))
}

pub fn stdout(output: &Output) -> String {
    String::from_utf8_lossy(&output.stdout).into_owned()
}

pub fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

/// Copies the folder `from` into `to`, recursively.
#[allow(clippy::panic)] // a test's setup failing must stop the test
pub fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap_or_else(|e| panic!("create {}: {e}", to.display()));
    let entries =
        std::fs::read_dir(from).unwrap_or_else(|e| panic!("read {}: {e}", from.display()));
    for entry in entries {
        let entry = entry.unwrap_or_else(|e| panic!("read {}: {e}", from.display()));
        let path = entry.path();
        let target = to.join(entry.file_name());
        if path.is_dir() {
            copy_dir(&path, &target);
        } else {
            std::fs::copy(&path, &target)
                .unwrap_or_else(|e| panic!("copy {} to {}: {e}", path.display(), target.display()));
        }
    }
}
