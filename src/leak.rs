//! Finds what codeexec runs may have left on the host: cgroups under our parent, processes
//! running as our host ids, mounts of ours in the host's mount table, and stray entries in
//! the state directory. The test suite runs it last and fails on any finding.

use std::fs;
use std::path::Path;

use crate::cgroup::Hierarchy;
use crate::run::RunnerConfig;

/// Everything found, one line each; empty when the host is clean.
pub fn find(config: &RunnerConfig) -> Vec<String> {
    let mut found = Vec::new();
    match Hierarchy::detect(&config.mountinfo, &config.cgroup_parent) {
        Ok(h) => {
            found.extend(h.leftovers().into_iter().map(|p| format!("cgroup {}", p.display())));
            found.extend(
                h.parents().into_iter().filter(|p| p.exists()).map(|p| format!("cgroup parent {}", p.display())),
            );
        }
        Err(e) => found.push(format!("cannot read the cgroup layout: {e}")),
    }
    let ids = u64::from(config.uid_base)..u64::from(config.uid_base) + 2 * u64::from(config.slots);
    for (pid, uid) in process_uids() {
        if ids.contains(&uid) {
            found.push(format!("process {pid} runs as host uid {uid}, a sandbox id"));
        }
    }
    let state = config.state_dir.to_string_lossy().into_owned();
    if let Ok(mounts) = fs::read_to_string(&config.mountinfo) {
        for line in mounts.lines() {
            if line.contains("codeexec-") || line.split(' ').nth(4).is_some_and(|m| m.starts_with(&state)) {
                found.push(format!("mount {line}"));
            }
        }
    }
    if let Ok(entries) = fs::read_dir(&config.state_dir) {
        for e in entries.flatten() {
            if e.file_name() != "slots" {
                found.push(format!("state entry {}", e.path().display()));
            }
        }
    }
    found
}

/// (pid, real uid) of every process.
fn process_uids() -> Vec<(u32, u64)> {
    let Ok(dir) = fs::read_dir("/proc") else { return Vec::new() };
    dir.flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<u32>().ok())
        .filter_map(|pid| {
            let status = fs::read_to_string(Path::new("/proc").join(pid.to_string()).join("status")).ok()?;
            let uid = status.lines().find_map(|l| l.strip_prefix("Uid:"))?.split_whitespace().next()?.parse().ok()?;
            Some((pid, uid))
        })
        .collect()
}
