//! A daemon in a container's cgroup (`runs.cgroup_nest = "always"`, as `auto` does in a
//! pod): on cgroup v2 it moves itself into a leaf and makes its runs' cgroups under its own
//! cgroup; on cgroup v1 it refuses, naming why. Runs in the cgroup-v2 VM
//! (`scripts/test-cgroup2-vm`) and on the hybrid host. Root only.

#![allow(clippy::tests_outside_test_module, clippy::unwrap_used)]

mod common;

use std::path::Path;
use std::time::{Duration, Instant};

use codeexec::cgroup::{Hierarchy, Mode};
use common::daemon::{Daemon, post_to, runtime};
use serde_json::json;

#[test]
fn a_daemon_in_a_containers_cgroup_nests_its_runs_under_it() {
    require_privileged!();
    let parent = format!("codeexec-nest-{}", std::process::id());
    let env = [("CODEEXEC_RUNS_CGROUP_NEST", "always"), ("CODEEXEC_RUNS_CGROUP_PARENT", parent.as_str())];
    let hierarchy = Hierarchy::detect(Path::new("/proc/self/mountinfo"), "x").unwrap();
    if hierarchy.mode() == Mode::V1 {
        // a container's v1 mounts already start at its own cgroups: "always" is a mistake here
        let out = std::process::Command::new(common::bin())
            .arg("serve")
            .env("CODEEXEC_SERVER_UNIX_SOCKET", format!("/tmp/{parent}.sock"))
            .envs(env)
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success() && err.contains("needs cgroup v2"), "{err}");
        return;
    }
    let root = Path::new("/sys/fs/cgroup");
    let container = root.join(format!("ce-pod-{}", std::process::id()));
    std::fs::create_dir(&container).unwrap();
    // what a runtime gives a container: the controllers, from its parent
    let _ = std::fs::write(root.join("cgroup.subtree_control"), "+memory +pids +cpu");
    let d = Daemon::start_in_cgroup(&container, &env);
    let daemon_pid = d.child.id().to_string();
    let leaf = container.join(format!("{parent}-daemon"));
    assert!(std::fs::read_to_string(leaf.join("cgroup.procs")).unwrap().lines().any(|p| p == daemon_pid));
    assert_eq!(std::fs::read_to_string(container.join("cgroup.procs")).unwrap(), "", "no process left in it");
    let rt = runtime();
    let run = std::thread::spawn({
        let unix = d.unix();
        move || runtime().block_on(post_to(&unix, "/v1/execute", &json!({"language": "bash", "code": "sleep 2"})))
    });
    let deadline = Instant::now() + Duration::from_secs(60);
    let tree = container.join(&parent);
    loop {
        let runs: Vec<_> =
            std::fs::read_dir(&tree).map(|r| r.flatten().map(|e| e.file_name()).collect()).unwrap_or_default();
        if runs.iter().any(|n| n.to_string_lossy().starts_with("run-")) {
            break;
        }
        assert!(Instant::now() < deadline, "no run cgroup under {}", tree.display());
        std::thread::sleep(Duration::from_millis(20));
    }
    assert_eq!(run.join().unwrap().json()["status"], "ok");
    drop(rt);
    drop(d);
    // the daemon is gone: its leaf and tree are empty, and go with the container
    for dir in [tree, leaf, container] {
        let _ = std::fs::remove_dir(&dir);
        assert!(!dir.exists(), "{} is left", dir.display());
    }
}
