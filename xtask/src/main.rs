//! Development tasks: `cargo xtask <task>`.
//!
//! - `plugins`: build every crate under `plugins/` for wasm32-wasip2 and copy
//!   the components to `plugins/dist/<name>.wasm`, where the host looks.
//! - `test`: `.ci/deps` (test dependencies: Chromium, aiosmtpd), `plugins`,
//!   then every test of the workspace.
//! - `serve`: `plugins`, then `rulehost serve` on the sample rules (SQLite
//!   file `rulehost.db` in the repository root; extra arguments pass through),
//!   and once it answers, `rulehost provisioning demo` (the walk-through's
//!   organizations and users; their passwords are printed once).
//! - `demo`: `plugins`, then the sandbox harness on the sample rules.
//! - `bench`: the whole benchmark suite: `core` (plugin calls, checks,
//!   reconciliation start, flow step), `reload`, then `load`.
//! - `load`: the HTTP load test: `rulehost serve` (release) on the sample
//!   rules, `wrk` against `POST /v1/checks`, communications and session
//!   events at 1, 10 and 100 clients.
//! - `ci`: what `.ci/run` runs: fmt check, clippy, and `test`.

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, bail};

mod fsync_probe;
mod load;
mod soak;

fn main() -> anyhow::Result<()> {
    let task = std::env::args().nth(1).unwrap_or_default();
    let root = workspace_root();
    std::env::set_current_dir(&root)?;
    match task.as_str() {
        "plugins" => build_plugins(&root),
        "test" => {
            install_test_deps(&root)?;
            build_plugins(&root)?;
            run_tests()
        }
        "serve" => {
            build_plugins(&root)?;
            // `cargo xtask serve -- --listen …` (as the README has it) and
            // `cargo xtask serve --listen …` both pass the flags to `serve`.
            let mut extra: Vec<String> = std::env::args().skip(2).collect();
            if extra.first().is_some_and(|a| a == "--") {
                extra.remove(0);
            }
            cargo(&["build", "--release", "-p", "rulehost"])?;
            serve_with_demo(&root, &extra)
        }
        "load" => {
            build_plugins(&root)?;
            cargo(&["build", "--release", "-p", "rulehost"])?;
            load::run(&root)
        }
        "soak" => {
            build_plugins(&root)?;
            cargo(&["build", "--release", "-p", "rulehost"])?;
            soak::run(&root)
        }
        "bench" => {
            build_plugins(&root)?;
            cargo(&["bench", "-p", "rulehost", "--bench", "core"])?;
            cargo(&["bench", "-p", "rulehost", "--bench", "reload"])?;
            cargo(&["build", "--release", "-p", "rulehost"])?;
            load::run(&root)
        }
        "demo" => {
            build_plugins(&root)?;
            cargo(&["run", "--release", "-p", "rulehost", "--", "test", "rules"])
        }
        "ci" => {
            cargo(&["fmt", "--all", "--", "--check"])?;
            cargo(&[
                "clippy",
                "--workspace",
                "--all-targets",
                "--",
                "-D",
                "warnings",
            ])?;
            build_plugins(&root)?;
            run_tests()
        }
        other => {
            bail!(
                "unknown task `{other}`; tasks: plugins, serve, test, demo, load, soak, bench, ci"
            )
        }
    }
}

/// Every test of the workspace (unit, integration, benches in test mode, doc
/// tests), closing with one line that totals all of them.
fn run_tests() -> anyhow::Result<()> {
    let (mut passed, mut failed) = (0u64, 0u64);
    let mut outcome = Ok(());
    for args in [
        &["test", "--workspace", "--all-targets"][..],
        &["test", "--workspace", "--doc"][..],
    ] {
        let (p, f, result) = cargo_test(args)?;
        passed += p;
        failed += f;
        if result.is_err() && outcome.is_ok() {
            outcome = result;
        }
    }
    println!("\nall tests: {passed} passed, {failed} failed");
    outcome
}

/// Runs `cargo test`, passing its output through and adding up its
/// `test result:` lines.
fn cargo_test(args: &[&str]) -> anyhow::Result<(u64, u64, anyhow::Result<()>)> {
    use std::io::{BufRead, BufReader};
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    eprintln!("$ cargo {}", args.join(" "));
    let mut child = Command::new(cargo)
        .args(args)
        .stdout(std::process::Stdio::piped())
        .spawn()
        .context("cannot run cargo")?;
    let (mut passed, mut failed) = (0, 0);
    if let Some(stdout) = child.stdout.take() {
        for line in BufReader::new(stdout).lines() {
            let line = line?;
            println!("{line}");
            if let Some(rest) = line.strip_prefix("test result: ") {
                passed += count_before(rest, " passed");
                failed += count_before(rest, " failed");
            }
        }
    }
    let status = child.wait()?;
    let result = if status.success() {
        Ok(())
    } else {
        Err(anyhow::anyhow!(
            "`cargo {}` failed ({status})",
            args.join(" ")
        ))
    };
    Ok((passed, failed, result))
}

/// The number just before `word` in `text` (`ok. 12 passed; 0 failed`).
fn count_before(text: &str, word: &str) -> u64 {
    text.find(word)
        .and_then(|end| text[..end].rsplit(|c: char| !c.is_ascii_digit()).next())
        .and_then(|n| n.parse().ok())
        .unwrap_or(0)
}

fn workspace_root() -> PathBuf {
    let manifest_dir = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    manifest_dir
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or(manifest_dir)
}

fn cargo(args: &[&str]) -> anyhow::Result<()> {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    eprintln!("$ cargo {}", args.join(" "));
    let status = Command::new(cargo)
        .args(args)
        .status()
        .context("cannot run cargo")?;
    if !status.success() {
        bail!("`cargo {}` failed ({status})", args.join(" "));
    }
    Ok(())
}

/// The plugin crates: every folder under `plugins/` with a Cargo.toml.
fn plugin_crates(root: &Path) -> anyhow::Result<Vec<String>> {
    let mut names = Vec::new();
    for entry in std::fs::read_dir(root.join("plugins"))? {
        let path = entry?.path();
        if path.join("Cargo.toml").is_file()
            && let Some(name) = path.file_name()
        {
            names.push(name.to_string_lossy().into_owned());
        }
    }
    names.sort();
    Ok(names)
}

/// What the tests need beyond Rust (Chromium, aiosmtpd): `.ci/deps`
/// installs whatever is missing.
fn install_test_deps(root: &Path) -> anyhow::Result<()> {
    let status = Command::new("bash")
        .arg(root.join(".ci").join("deps"))
        .status()
        .context("cannot run .ci/deps")?;
    if !status.success() {
        bail!(".ci/deps could not install the test dependencies ({status}); see its output above");
    }
    Ok(())
}

/// Installs the wasm32-wasip2 target when rustup manages the toolchain and lacks it.
fn ensure_wasm_target() -> anyhow::Result<()> {
    let Ok(installed) = Command::new("rustup")
        .args(["target", "list", "--installed"])
        .output()
    else {
        return Ok(()); // no rustup: the toolchain's owner provides the target
    };
    if String::from_utf8_lossy(&installed.stdout)
        .lines()
        .any(|l| l.trim() == "wasm32-wasip2")
    {
        return Ok(());
    }
    eprintln!("$ rustup target add wasm32-wasip2");
    let status = Command::new("rustup")
        .args(["target", "add", "wasm32-wasip2"])
        .status()?;
    if !status.success() {
        bail!("could not install the wasm32-wasip2 target; run `rustup target add wasm32-wasip2`");
    }
    Ok(())
}

fn build_plugins(root: &Path) -> anyhow::Result<()> {
    ensure_wasm_target()?;
    let crates = plugin_crates(root)?;
    let mut args = vec!["build", "--target", "wasm32-wasip2", "--profile", "plugin"];
    for name in &crates {
        args.push("-p");
        args.push(name);
    }
    cargo(&args)?;
    let target =
        std::env::var_os("CARGO_TARGET_DIR").map_or_else(|| root.join("target"), PathBuf::from);
    let built = target.join("wasm32-wasip2").join("plugin");
    let dist = root.join("plugins").join("dist");
    std::fs::create_dir_all(&dist)?;
    for name in &crates {
        let from = built.join(format!("{}.wasm", name.replace('-', "_")));
        let to = dist.join(format!("{name}.wasm"));
        // Write then rename, so a watching host never sees half a file.
        let tmp = dist.join(format!(".{name}.wasm.tmp"));
        std::fs::copy(&from, &tmp).with_context(|| format!("cannot copy {}", from.display()))?;
        std::fs::rename(&tmp, &to)?;
    }
    eprintln!("built {} plugins into {}", crates.len(), dist.display());
    Ok(())
}

/// `rulehost serve` (release) with `extra` flags, and once it answers, the
/// provisioning walk-through's people (`rulehost provisioning demo`, which
/// keeps what a previous run made). Waits for the server to end.
fn serve_with_demo(root: &Path, extra: &[String]) -> anyhow::Result<()> {
    let binary = root.join("target/release/rulehost");
    let mut server = std::process::Command::new(&binary)
        .arg("serve")
        .args(extra)
        .spawn()
        .with_context(|| format!("cannot start {}", binary.display()))?;
    let flag = |name: &str, default: &str| {
        extra
            .iter()
            .position(|a| a == name)
            .and_then(|i| extra.get(i + 1).cloned())
            .unwrap_or_else(|| default.to_owned())
    };
    let (listen, public, db) = (
        flag("--listen", "127.0.0.1:7700"),
        flag("--public-listen", "127.0.0.1:7701"),
        flag("--db", "rulehost.db"),
    );
    let health = format!("http://{listen}/healthz");
    let up = (0..600).any(|_| {
        std::thread::sleep(std::time::Duration::from_millis(100));
        ureq::get(&health).call().is_ok()
    });
    if up {
        let status = std::process::Command::new(&binary)
            .args(["provisioning", "--host", &format!("http://{listen}")])
            .args(["--token-file", &format!("{db}.operator-token")])
            .args(["demo", "--public", &format!("http://{public}")])
            .status();
        if !status.is_ok_and(|s| s.success()) {
            eprintln!(
                "xtask: `rulehost provisioning demo` failed; the host serves without the walk-through's people"
            );
        }
    } else {
        eprintln!("xtask: {health} did not answer within a minute; no provisioning demo");
    }
    let status = server.wait()?;
    anyhow::ensure!(status.success(), "rulehost serve exited with {status}");
    Ok(())
}

#[cfg(test)]
mod tidy {
    //! Repository rules that no compiler checks.

    use std::path::{Path, PathBuf};

    fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
        let Ok(entries) = std::fs::read_dir(dir) else {
            return;
        };
        for entry in entries.flatten() {
            let path = entry.path();
            let name = entry.file_name().to_string_lossy().into_owned();
            if name.starts_with('.') || name == "target" || name == "dist" {
                continue;
            }
            if path.is_dir() {
                rust_files(&path, out);
            } else if name.ends_with(".rs") {
                out.push(path);
            }
        }
    }

    #[test]
    fn every_rust_file_starts_with_a_module_doc() {
        let mut files = Vec::new();
        rust_files(&super::workspace_root(), &mut files);
        assert!(files.len() > 50, "found only {} files", files.len());
        let missing: Vec<_> = files
            .iter()
            .filter(|f| !std::fs::read_to_string(f).is_ok_and(|text| text.starts_with("//!")))
            .collect();
        assert!(
            missing.is_empty(),
            "start these with a `//!` line saying what the file owns: {missing:?}"
        );
    }
}
