//! Finds what codeexec runs may have left on the host: cgroups under our parent, processes
//! running as our host ids, mounts of ours in the host's mount table, stray entries in
//! the state directory, and network links, tables and namespaces of network runs and their
//! tests. The test suite runs it last and fails on any finding.

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
    found.extend(network_leftovers());
    found
}

/// Network runs' links (`ceh*`) and nftables table in this network namespace, and the test
/// suite's and benchmark's throwaway namespaces.
fn network_leftovers() -> Vec<String> {
    let mut found = Vec::new();
    match crate::sandbox::links_with_prefix(crate::network::IF_PREFIX) {
        Ok(links) => found.extend(links.into_iter().map(|l| format!("network link {l}"))),
        Err(e) => found.push(format!("cannot list network links: {}", crate::error_chain(&e))),
    }
    // `nft` may be missing where network runs were never used; then there is no table
    if let Ok(out) = std::process::Command::new("nft").args(["list", "tables"]).output() {
        let tables = String::from_utf8_lossy(&out.stdout);
        found.extend(tables.lines().filter(|l| l.trim() == "table inet codeexec").map(|l| format!("nftables {l}")));
    }
    if let Ok(entries) = fs::read_dir("/run") {
        for e in entries.flatten() {
            let name = e.file_name().to_string_lossy().into_owned();
            if name.starts_with("codeexec-network-") && name.ends_with(".forwarding") {
                found.push(format!("forwarding turned on and never off again: /run/{name}"));
            }
        }
    }
    if let Ok(entries) = fs::read_dir("/run/netns") {
        for e in entries.flatten() {
            let name = e.file_name().to_string_lossy().into_owned();
            if name.starts_with("ce-h-") || name.starts_with("ce-i-") || name.starts_with("codeexec-") {
                found.push(format!("network namespace {name}"));
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
