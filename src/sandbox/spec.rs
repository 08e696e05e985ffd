//! What the runner asks of the sandbox: the root filesystems prepared once per zygote, and
//! the per-run spawn request. Both are plain data (the request crosses a socket as JSON).

use std::net::Ipv4Addr;
use std::path::PathBuf;

use serde::{Deserialize, Serialize};

/// A root filesystem the zygote prepares once (read-only, shared by every run).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum RootSpec {
    /// Top-level directories of the host (`/usr`, `/bin`, ...), read-only, with a
    /// generated `/etc`.
    Host {
        /// The host's top-level entries to bind (missing ones are skipped).
        dirs: Vec<String>,
        /// Files written into the generated `/etc`: (name, contents).
        etc_files: Vec<(String, String)>,
        /// Entries of the host's `/etc` bound read-only into it where they exist
        /// (`ld.so.cache`, `alternatives`, ...).
        etc_binds: Vec<String>,
    },
    /// Any directory tree: each top-level entry bound read-only (symlinks recreated).
    Dir(PathBuf),
    /// An image's unpacked tree (root's files on the host): bound as `Dir`, and in each
    /// sandbox its top-level directories are covered by idmapped copies, so that its files
    /// are root's inside too, not `nobody`'s.
    Image(PathBuf),
}

/// A resource limit set on the program (soft = hard).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Rlimit {
    /// `RLIMIT_CORE`: always 0 here, as `core_pattern` may write into the work dir.
    Core(u64),
    /// `RLIMIT_FSIZE` in bytes.
    FileSize(u64),
    /// `RLIMIT_NOFILE`.
    OpenFiles(u64),
    /// `RLIMIT_STACK` in bytes.
    Stack(u64),
    /// `RLIMIT_CPU` in seconds: a per-process backstop behind the cgroup's CPU check.
    CpuSeconds(u64),
}

/// A file to place in `/sandbox` before the program starts; its bytes are at `offset`
/// in the memfd passed with the request.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FileEntry {
    /// Relative path under `/sandbox` (checked: no `..`, no absolute path, no empty part).
    pub path: String,
    /// Offset of the contents in the files memfd.
    pub offset: u64,
    /// Length of the contents.
    pub len: u64,
    /// Mode 0755 instead of 0644.
    pub executable: bool,
}

/// What a sandbox is made with, before any request is known: its PID 1 prepares all
/// of this and then waits for a [`StartRequest`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SpawnRequest {
    /// Index of the prepared root in the zygote's configuration.
    pub root: usize,
    /// The hostname inside.
    pub hostname: String,
    /// The uid and gid the program runs as, inside the user namespace (not 0).
    pub program_id: u32,
    /// The writable tmpfs sizes it is mounted with (a start request may resize them).
    pub sizes: TmpfsSizes,
    /// The user namespace's id map, written by the zygote right after the clone.
    pub ids: IdMap,
    /// Whether a cgroup2 directory to clone into comes with the request.
    pub into_cgroup: bool,
    /// How many `cgroup.procs` files (to write PID 1's pid into) come with the request.
    pub cgroup_procs: usize,
    /// A network link to give the sandbox (else it has only `lo`).
    pub network: Option<NetLink>,
    /// The host directories to attach under `/mnt`, by index into the zygote's
    /// [`HostMount`]s.
    pub mounts: Vec<usize>,
    /// A Landlock ruleset for the program, under the namespaces and seccomp (`None`: none,
    /// where the kernel has no Landlock or the operator turned it off).
    pub landlock: Option<Landlock>,
}

/// What the program's Landlock ruleset leaves open beyond reading and executing anything
/// it can see and writing under the sandbox's own writable tmpfs mounts (`/sandbox`,
/// `/tmp`, `/dev/shm`) and to its device nodes (`/dev/null`, ...). Rights a kernel's
/// Landlock ABI lacks are left out (its TCP rules need ABI 4, Linux 6.7).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Landlock {
    /// Host mounts writable under `/mnt/<name>` (checked: one path component each).
    pub writable_mounts: Vec<String>,
    /// TCP bind and connect stay allowed (a run with a network link); else both are
    /// refused, on any port.
    pub tcp: bool,
}

/// A sandbox's way out: a veth pair whose host end the zygote creates in its own network
/// namespace, with the peer created right in PID 1's as `eth0`; PID 1 gives `eth0` its
/// address and a default route through the host end. What the traffic may reach is the
/// host's firewall's business, not the sandbox's.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NetLink {
    /// The host end's name (at most 15 bytes).
    pub host_if: String,
    /// The host end's address, the sandbox's gateway.
    pub host_addr: Ipv4Addr,
    /// The sandbox end's address.
    pub sandbox_addr: Ipv4Addr,
    /// The prefix length of both.
    pub prefix_len: u8,
}

/// A host directory the operator offers to sandboxes, at `/mnt/<name>`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HostMount {
    /// Its name: the mount point under `/mnt` (checked: one path component).
    pub name: String,
    /// The host directory (absolute, canonical, no symlink in it).
    pub path: PathBuf,
    /// Writable inside (else read-only).
    pub writable: bool,
}

/// The user namespace map of one run: inside root and the program's id, each mapped to
/// one unprivileged host id that no other run uses at the same time.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct IdMap {
    /// The host id of root inside.
    pub root_host: u32,
    /// The program's id inside (not 0).
    pub program: u32,
    /// Its host id.
    pub program_host: u32,
}

impl IdMap {
    /// The lines of `uid_map` and `gid_map`.
    pub(super) fn lines(&self) -> String {
        format!("0 {} 1\n{} {} 1\n", self.root_host, self.program, self.program_host)
    }
}

/// Sizes of the sandbox's writable tmpfs mounts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct TmpfsSizes {
    /// `/sandbox`, in bytes.
    pub workdir_bytes: u64,
    /// `/tmp`, in bytes.
    pub tmp_bytes: u64,
    /// `/dev/shm`, in bytes.
    pub shm_bytes: u64,
    /// Inodes of each.
    pub inodes: u64,
}

/// The program to run in a prepared sandbox.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StartRequest {
    /// The program and its arguments; `argv[0]` without a `/` is looked up in `PATH`.
    pub argv: Vec<String>,
    /// The whole environment, `NAME=value` each.
    pub env: Vec<String>,
    /// Limits set on the program right before `execve`.
    pub rlimits: Vec<Rlimit>,
    /// Files to create in `/sandbox` (their bytes come in a memfd with the request).
    pub files: Vec<FileEntry>,
    /// The tmpfs sizes for this run.
    pub sizes: TmpfsSizes,
}

/// Checks a relative path for `/sandbox`: no absolute path, no `.` or `..`, no empty
/// component, no NUL, at most 4096 bytes and 255 per component.
pub fn check_relative_path(path: &str) -> Result<(), String> {
    if path.is_empty() || path.len() > 4096 {
        return Err("a file name must be 1 to 4096 bytes long".into());
    }
    if path.starts_with('/') {
        return Err(format!("{path:?} is absolute; file names are relative to /sandbox"));
    }
    if path.contains('\0') {
        return Err("a file name must not contain NUL".into());
    }
    for part in path.split('/') {
        match part {
            "" => return Err(format!("{path:?} has an empty path component")),
            "." | ".." => return Err(format!("{path:?} must not contain . or .. components")),
            p if p.len() > 255 => return Err(format!("{path:?} has a component longer than 255 bytes")),
            _ => {}
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn relative_paths_are_checked() {
        assert!(check_relative_path("main.py").is_ok());
        assert!(check_relative_path("src/lib/a.rs").is_ok());
        for bad in ["", "/etc/passwd", "../x", "a/../../x", "a//b", "a/./b", "a\0b", "a/"] {
            assert!(check_relative_path(bad).is_err(), "{bad:?}");
        }
        assert!(check_relative_path(&"x".repeat(256)).is_err());
    }
}
