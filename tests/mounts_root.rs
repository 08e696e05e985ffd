//! Host directories through the real daemon: the operator declares them in the
//! configuration file, a request names them, the sandbox sees each at `/mnt/<name>`.
//! Shown: a read-only mount is visible and not writable; a writable one is, and what the
//! program writes lands on the host as uid 1000; an undeclared name is refused; a symlink
//! inside a mount resolves inside the sandbox, never on the host; a mount not asked for is
//! not there; a declared path that is a symlink stops the daemon at start. Root only.

// An integration test crate is all tests: the lints for tests inside `src/` do not fit it.
#![allow(clippy::tests_outside_test_module, clippy::unwrap_used)]

mod common;

use std::os::unix::fs::MetadataExt;

use hyper::StatusCode;
use serde_json::{Value, json};

use common::daemon::{Daemon, post, runtime};

/// A read-only `data` (a file, a subdirectory, a symlink to `/etc`) and a writable
/// `scratch` owned by 1000, in a fresh directory.
struct Dirs {
    _tmp: tempfile::TempDir,
    data: std::path::PathBuf,
    scratch: std::path::PathBuf,
}

fn dirs() -> Dirs {
    let tmp = tempfile::tempdir().unwrap();
    let base = tmp.path().canonicalize().unwrap();
    let data = base.join("data");
    std::fs::create_dir_all(data.join("sub")).unwrap();
    std::fs::write(data.join("hello.txt"), "hello from the host\n").unwrap();
    std::fs::write(data.join("sub/deep.txt"), "deep\n").unwrap();
    std::os::unix::fs::symlink("/etc", data.join("etc-link")).unwrap();
    let scratch = base.join("scratch");
    std::fs::create_dir(&scratch).unwrap();
    nix::unistd::chown(&scratch, Some(nix::unistd::Uid::from_raw(1000)), Some(nix::unistd::Gid::from_raw(1000)))
        .unwrap();
    // the sandbox's uid must get through the temp dir's 0700
    std::fs::set_permissions(&base, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    Dirs { _tmp: tmp, data, scratch }
}

fn config(d: &Dirs) -> String {
    format!(
        "[mounts.data]\npath = {:?}\n\n[mounts.scratch]\npath = {:?}\nwritable = true\n",
        d.data.display().to_string(),
        d.scratch.display().to_string()
    )
}

async fn sh(d: &Daemon, mounts: Value, script: &str) -> Value {
    let r = post(&d.unix(), None, &json!({"language": "bash", "code": script, "mounts": mounts})).await;
    let v = r.json();
    assert_eq!(r.status, StatusCode::OK, "{v}");
    v
}

#[test]
fn a_read_only_mount_is_visible_and_not_writable() {
    require_privileged!();
    let dirs = dirs();
    let d = Daemon::start_with(None, Some(&config(&dirs)), &[]);
    let script = "cat /mnt/data/hello.txt /mnt/data/sub/deep.txt; stat -c '%u %a' /mnt/data/hello.txt; \
                  if touch /mnt/data/new 2>/dev/null; then echo WROTE; else echo refused; fi; \
                  if rm /mnt/data/hello.txt 2>/dev/null; then echo REMOVED; else echo kept; fi";
    let v = runtime().block_on(sh(&d, json!(["data"]), script));
    assert_eq!(v["status"], "ok", "{v:#}");
    assert_eq!(v["stdout"], "hello from the host\ndeep\n0 644\nrefused\nkept\n", "{v:#}");
    assert!(!dirs.data.join("new").exists());
    assert!(dirs.data.join("hello.txt").exists());
}

#[test]
fn a_writable_mount_takes_the_programs_files_as_uid_1000() {
    require_privileged!();
    let dirs = dirs();
    let d = Daemon::start_with(None, Some(&config(&dirs)), &[]);
    // a file of the host's root in the directory is root's inside, and stays as it is
    std::fs::write(dirs.scratch.join("roots.txt"), "root's\n").unwrap();
    let script = "echo written > /mnt/scratch/out.txt && mkdir /mnt/scratch/d && id -u && stat -c %u /mnt/scratch/out.txt; \
                  stat -c %u /mnt/scratch/roots.txt; \
                  if echo x >> /mnt/scratch/roots.txt 2>/dev/null; then echo CHANGED; else echo refused; fi; \
                  grep ' /mnt/scratch ' /proc/self/mountinfo | grep -o 'nosuid,nodev' | head -1";
    let v = runtime().block_on(sh(&d, json!(["scratch"]), script));
    assert_eq!(v["status"], "ok", "{v:#}");
    assert_eq!(v["stdout"], "1000\n1000\n0\nrefused\nnosuid,nodev\n", "{v:#}");
    assert_eq!(std::fs::read_to_string(dirs.scratch.join("roots.txt")).unwrap(), "root's\n");
    let out = dirs.scratch.join("out.txt");
    assert_eq!(std::fs::read_to_string(&out).unwrap(), "written\n");
    let meta = std::fs::metadata(&out).unwrap();
    assert_eq!((meta.uid(), meta.gid()), (1000, 1000), "stored as 1000:1000 on the host");
    assert!(dirs.scratch.join("d").is_dir());
    // a later run sees it
    let v = runtime().block_on(sh(&d, json!(["scratch"]), "cat /mnt/scratch/out.txt"));
    assert_eq!(v["stdout"], "written\n");
}

#[test]
fn a_symlink_in_a_mount_resolves_inside_the_sandbox() {
    require_privileged!();
    let dirs = dirs();
    let d = Daemon::start_with(None, Some(&config(&dirs)), &[]);
    // the sandbox's /etc/passwd is generated (it has the sandbox user), the host's is not
    let v = runtime().block_on(sh(&d, json!(["data"]), "cat /mnt/data/etc-link/passwd"));
    let out = v["stdout"].as_str().unwrap();
    assert!(out.contains("sandbox:x:1000:1000"), "{v:#}");
    let host = std::fs::read_to_string("/etc/passwd").unwrap();
    assert!(!host.contains("sandbox:x:1000:1000:sandbox:/sandbox"), "the host's passwd looks like the sandbox's");
    // a link the program makes in a writable mount is only a link on the host; the daemon
    // never follows it (it never reads the mount at all)
    let v = runtime().block_on(sh(
        &d,
        json!(["scratch"]),
        "ln -s /etc/shadow /mnt/scratch/evil && readlink /mnt/scratch/evil",
    ));
    assert_eq!(v["stdout"], "/etc/shadow\n", "{v:#}");
    let link = dirs.scratch.join("evil");
    assert!(std::fs::symlink_metadata(&link).unwrap().file_type().is_symlink());
}

#[test]
fn only_declared_and_requested_mounts_are_there() {
    require_privileged!();
    let dirs = dirs();
    let d = Daemon::start_with(None, Some(&config(&dirs)), &[]);
    let r =
        runtime().block_on(post(&d.unix(), None, &json!({"language": "bash", "code": "ls /mnt", "mounts": ["etc"]})));
    assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY, "{}", r.json());
    assert!(r.json()["error"]["message"].as_str().unwrap().contains("no host directory named \"etc\""));
    // not asked for: the mount point is there, empty
    let v = runtime().block_on(sh(&d, json!([]), "ls -A /mnt/data | wc -l; ls /mnt"));
    assert_eq!(v["stdout"], "0\ndata\nscratch\n", "{v:#}");
    let caps = runtime().block_on(common::daemon::get(&d.unix(), None, "/v1/capabilities")).json();
    assert_eq!(caps["mounts"].as_array().unwrap().len(), 2, "{caps}");
}

#[test]
fn a_declared_path_that_is_a_symlink_stops_the_daemon_at_start() {
    require_privileged!();
    let dirs = dirs();
    let link = dirs.data.with_file_name("data-link");
    std::os::unix::fs::symlink(&dirs.data, &link).unwrap();
    let text = format!("[mounts.data]\npath = {:?}\n", link.display().to_string());
    let path = dirs.data.with_file_name("bad.toml");
    std::fs::write(&path, text).unwrap();
    // `timeout`: should the check fail to stop it, the daemon must not hang the test
    let out = std::process::Command::new("timeout")
        .args(["30", common::bin(), "serve", "--config", path.to_str().unwrap()])
        .env("CODEEXEC_SERVER_UNIX_SOCKET", dirs.data.with_file_name("sock"))
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("mounts.data") && err.contains("symlink"), "{err}");
}
