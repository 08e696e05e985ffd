//! Nesting: a daemon in a container (a Kubernetes pod) makes its cgroup tree under its own
//! cgroup, so that runs count against the pod's limits and stay inside what the runtime
//! delegated to it.
//!
//! On cgroup v2 a privileged container sees either its own cgroup as the mount's root (in
//! a cgroup namespace) or the node's whole tree with its own cgroup somewhere in it
//! (kubernetes#119669, #121190). Either way the daemon reads its cgroup from
//! `/proc/self/cgroup` and, because cgroup v2 lets only a cgroup without processes give
//! controllers to its children ("no internal processes", cgroup-v2.rst), first moves the
//! processes of its cgroup into a leaf `<own>/<parent>-daemon`, then enables the
//! controllers in `<own>` and makes its tree at `<own>/<parent>` (go-judge does the same
//! when it runs in a container). On cgroup v1 a container's mounts already show its own
//! cgroups as their roots, so nothing changes there.

use std::fs;
use std::path::Path;
use std::str::FromStr;

use super::{CgroupError, Layout, Result, read_file, write_file};

/// Whether the tree goes under the daemon's own cgroup.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Nest {
    /// When the daemon runs in a container on cgroup v2 (see [`in_container`]).
    Auto,
    /// Always (cgroup v2 only).
    Always,
    /// Never: the tree is at each hierarchy's root, as on a host.
    Never,
}

impl FromStr for Nest {
    type Err = String;
    fn from_str(s: &str) -> std::result::Result<Self, String> {
        match s {
            "auto" => Ok(Nest::Auto),
            "always" => Ok(Nest::Always),
            "never" => Ok(Nest::Never),
            _ => Err(format!("runs.cgroup_nest {s:?}: auto, always or never")),
        }
    }
}

/// Path parts of a container's cgroup, as container runtimes name them.
const CONTAINER_MARKERS: [&str; 5] = ["kubepods", "docker", "containerd", "crio", "libpod"];

/// The daemon's cgroup2 path, from the text of `/proc/self/cgroup` (its `0::PATH` line).
pub fn own_path(proc_self_cgroup: &str) -> Option<&str> {
    proc_self_cgroup.lines().find_map(|l| l.strip_prefix("0::")).map(str::trim)
}

/// Whether a process in cgroup `own` under the cgroup2 mount `mount` runs in a container:
/// its path names a container runtime's cgroup, or it is the root of a cgroup namespace
/// (the mount's root is not the real root: only a non-root cgroup has `cgroup.type`).
pub fn in_container(mount: &Path, own: &str) -> bool {
    if own == "/" {
        return mount.join("cgroup.type").exists();
    }
    own.split('/').any(|part| CONTAINER_MARKERS.iter().any(|m| part.contains(m)))
}

/// The parent to make our tree at: `parent`, or `<own>/<parent>` after the move
/// described in the module documentation. `proc_self_cgroup` is the text of
/// `/proc/self/cgroup`. Must run before any other thread or process of ours exists.
pub fn nest(nest: Nest, layout: &Layout, proc_self_cgroup: &str, parent: &str) -> Result<String> {
    let root = match (nest, layout) {
        (Nest::Never, _) | (Nest::Auto, Layout::V1 { .. }) => return Ok(parent.to_owned()),
        (Nest::Always, Layout::V1 { .. }) => {
            return Err(CgroupError::NoHierarchy(
                "runs.cgroup_nest = \"always\" needs cgroup v2 (on v1 a container's mounts already start at its own cgroups)"
                    .into(),
            ));
        }
        (_, Layout::V2 { root }) => root,
    };
    let own = own_path(proc_self_cgroup)
        .ok_or_else(|| CgroupError::NoHierarchy("/proc/self/cgroup has no cgroup2 (0::) line".into()))?;
    if nest == Nest::Auto && !in_container(root, own) {
        return Ok(parent.to_owned());
    }
    let rel = own.trim_matches('/');
    let own_dir = root.join(rel);
    let leaf = own_dir.join(format!("{parent}-daemon"));
    match fs::create_dir(&leaf) {
        Err(e) if e.kind() != std::io::ErrorKind::AlreadyExists => {
            return Err(CgroupError::Io { op: "create", path: leaf, source: e });
        }
        _ => {}
    }
    // each write moves one process; a process that exits meanwhile is gone anyway
    for pid in read_file(&own_dir.join("cgroup.procs"))?.lines().map(str::trim).filter(|p| !p.is_empty()) {
        match write_file(&leaf.join("cgroup.procs"), pid) {
            Err(CgroupError::Io { source, .. }) if source.raw_os_error() == Some(libc::ESRCH) => {}
            other => other?,
        }
    }
    let nested = if rel.is_empty() { parent.to_owned() } else { format!("{rel}/{parent}") };
    tracing::info!(own = %own_dir.display(), leaf = %leaf.display(), parent = %nested, "the cgroup tree is nested under the daemon's own cgroup");
    Ok(nested)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v2(root: &Path) -> Layout {
        Layout::V2 { root: root.to_owned() }
    }

    #[test]
    fn the_own_path_is_the_cgroup2_line() {
        let text = "12:memory:/x\n0::/kubepods.slice/pod1/cri-containerd-2.scope\n";
        assert_eq!(own_path(text), Some("/kubepods.slice/pod1/cri-containerd-2.scope"));
        assert_eq!(own_path("4:memory:/a\n"), None);
    }

    #[test]
    fn containers_are_told_from_hosts() {
        let t = tempfile::tempdir().unwrap();
        assert!(in_container(t.path(), "/kubepods/besteffort/pod9/abc"));
        assert!(in_container(t.path(), "/system.slice/docker-1234.scope"));
        assert!(!in_container(t.path(), "/system.slice/codeexec.service"), "a systemd service is not a container");
        assert!(!in_container(t.path(), "/"), "the real root");
        fs::write(t.path().join("cgroup.type"), "domain\n").unwrap();
        assert!(in_container(t.path(), "/"), "the root of a cgroup namespace");
    }

    #[test]
    fn a_pods_daemon_moves_into_a_leaf_and_nests_its_tree() {
        let t = tempfile::tempdir().unwrap();
        let own = t.path().join("kubepods/pod1/ctr");
        fs::create_dir_all(&own).unwrap();
        fs::write(own.join("cgroup.procs"), "41\n").unwrap();
        fs::create_dir(own.join("codeexec-daemon")).unwrap();
        let proc_self = "0::/kubepods/pod1/ctr\n";
        let parent = nest(Nest::Auto, &v2(t.path()), proc_self, "codeexec").unwrap();
        assert_eq!(parent, "kubepods/pod1/ctr/codeexec");
        assert_eq!(fs::read_to_string(own.join("codeexec-daemon/cgroup.procs")).unwrap(), "41", "moved");
        // a host's daemon keeps the tree at the root unless told
        assert_eq!(nest(Nest::Auto, &v2(t.path()), "0::/user.slice/s.scope\n", "codeexec").unwrap(), "codeexec");
        assert_eq!(nest(Nest::Never, &v2(t.path()), proc_self, "codeexec").unwrap(), "codeexec");
    }

    #[test]
    fn in_a_cgroup_namespace_the_tree_stays_at_the_mount_but_the_daemon_moves() {
        let t = tempfile::tempdir().unwrap();
        fs::write(t.path().join("cgroup.type"), "domain\n").unwrap();
        fs::write(t.path().join("cgroup.procs"), "1\n").unwrap();
        fs::create_dir(t.path().join("codeexec-daemon")).unwrap();
        assert_eq!(nest(Nest::Auto, &v2(t.path()), "0::/\n", "codeexec").unwrap(), "codeexec");
        assert_eq!(fs::read_to_string(t.path().join("codeexec-daemon/cgroup.procs")).unwrap(), "1");
    }

    #[test]
    fn always_on_v1_is_refused() {
        let p = Path::new("/x").to_path_buf();
        let v1 =
            Layout::V1 { memory: p.clone(), pids: p.clone(), cpu: p.clone(), usage: super::super::Usage::CpuAcct(p) };
        assert!(nest(Nest::Always, &v1, "0::/\n", "codeexec").is_err());
        assert_eq!(nest(Nest::Auto, &v1, "0::/a/docker\n", "codeexec").unwrap(), "codeexec");
    }
}
