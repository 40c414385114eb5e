//! The store under faults it cannot prevent, on the real binary: an fsync
//! that fails (a shim preloaded into `rulehost serve` makes `fsync` and
//! `fdatasync` return EIO while a flag file exists).

use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::json;

use crate::server::{Host, Setup};

/// Builds the fsync shim with the system C compiler into `dir`.
fn fsync_shim(dir: &Path) -> PathBuf {
    let source = dir.join("failsync.c");
    std::fs::write(
        &source,
        r#"#define _GNU_SOURCE
#include <dlfcn.h>
#include <errno.h>
#include <stdlib.h>
#include <unistd.h>
static int failing(void) {
    const char *flag = getenv("FAIL_FSYNC_FLAG");
    return flag && access(flag, F_OK) == 0;
}
int fsync(int fd) {
    if (failing()) { errno = EIO; return -1; }
    int (*real)(int) = (int (*)(int))dlsym(RTLD_NEXT, "fsync");
    return real(fd);
}
int fdatasync(int fd) {
    if (failing()) { errno = EIO; return -1; }
    int (*real)(int) = (int (*)(int))dlsym(RTLD_NEXT, "fdatasync");
    return real(fd);
}
"#,
    )
    .unwrap();
    let shim = dir.join("failsync.so");
    let built = Command::new("cc")
        .args(["-shared", "-fPIC", "-o"])
        .arg(&shim)
        .arg(&source)
        .arg("-ldl")
        .status()
        .expect("cc (gcc) builds the fsync shim");
    assert!(built.success(), "cannot build the fsync shim");
    shim
}

fn check(host: &Host, id: &str) -> u16 {
    host.post(
        "/v1/checks",
        &json!({"service": "support-contract", "account_id": "acme-1", "request_id": id}),
    )
    .status
}

/// With `sync = "full"` a failed fsync fails the commit: the check that
/// waited on it gets an error and is not stored, checks before and after it
/// are, and a restart after `kill -9` agrees.
#[test]
fn a_failed_fsync_fails_its_group_and_later_writes_work() {
    let setup = Setup::new("");
    let tools = tempfile::tempdir().unwrap();
    let shim = fsync_shim(tools.path());
    let flag = tools.path().join("fail-now");
    let env = [
        ("LD_PRELOAD", shim.to_str().unwrap()),
        ("FAIL_FSYNC_FLAG", flag.to_str().unwrap()),
    ];
    let host = setup.start_with_env(&env);
    let reply = host.put(
        "/v1/accounts/acme-1",
        &json!({"status": "active", "paid_up": true, "tier": "standard"}),
    );
    assert!(reply.status < 300, "{reply}");
    assert_eq!(check(&host, "before"), 200);

    std::fs::write(&flag, b"").unwrap();
    let failed = host.post(
        "/v1/checks",
        &json!({"service": "support-contract", "account_id": "acme-1", "request_id": "lost"}),
    );
    assert_eq!(failed.status, 500, "{failed}");
    assert_eq!(failed.json["error"]["code"], "internal", "{failed}");
    std::fs::remove_file(&flag).unwrap();

    assert_eq!(check(&host, "after"), 200);
    assert_eq!(host.get("/v1/requests/lost").status, 404);
    host.kill9();
    let host = setup.start();
    for id in ["before", "after"] {
        assert_eq!(host.get(&format!("/v1/requests/{id}")).status, 200, "{id}");
    }
    assert_eq!(host.get("/v1/requests/lost").status, 404);
    let decisions = host.get("/v1/decisions?account=acme-1");
    let ids: Vec<&str> = decisions.json["decisions"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|d| d["request_id"].as_str())
        .collect();
    assert_eq!(ids, ["after", "before"], "{decisions}");
}
