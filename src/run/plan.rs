//! From a request to what the sandbox is told: the explicit environment, the rlimits, the
//! tmpfs sizes, the input files packed into one memfd, the cgroup limits, and the root
//! filesystem (the host's own, with a generated `/etc`, or a given directory).

use std::io::Write;
use std::os::fd::OwnedFd;
use std::path::Path;

use super::{InputFile, RunError, RunRequest, sys};
use crate::cgroup;
use crate::limit::Limits;
use crate::sandbox::{self, FileEntry, Rlimit, RootSpec, StartRequest, TmpfsSizes};

/// The environment every program gets; a request may override or add to it.
const BASE_ENV: [(&str, &str); 3] =
    [("PATH", "/usr/local/bin:/usr/bin:/bin"), ("HOME", "/sandbox"), ("LANG", "C.UTF-8")];

/// Inodes of each writable tmpfs.
const INODES: u64 = 16_384;
/// Most input files a run may have (well under the inodes of `/sandbox`).
const MAX_FILES: usize = 1000;

/// Checks the request and turns it into the start request and the files' memfd.
pub(super) fn start_request(req: &RunRequest) -> Result<(StartRequest, Option<OwnedFd>), RunError> {
    let invalid = |m: String| RunError::Invalid(m);
    let Some(cmd) = req.argv.first() else { return Err(invalid("no command given".into())) };
    if cmd.is_empty() || req.argv.iter().any(|a| a.contains('\0')) {
        return Err(invalid("the command and its arguments must be non-empty and free of NUL bytes".into()));
    }
    let mut env: Vec<(String, String)> = BASE_ENV.iter().map(|(k, v)| ((*k).into(), (*v).into())).collect();
    for (k, v) in &req.env {
        if k.is_empty() || k.contains('=') || k.contains('\0') || v.contains('\0') {
            return Err(invalid(format!("bad environment variable name or value: {k:?}")));
        }
        env.retain(|(name, _)| name != k);
        env.push((k.clone(), v.clone()));
    }
    let (files, memfd) = pack_files(&req.files, req.limits.disk_bytes)?;
    let l = &req.limits;
    let cpu_secs = l.cpu_time.as_secs() + 1 + u64::from(l.cpu_time.subsec_nanos() > 0);
    let start = StartRequest {
        argv: req.argv.clone(),
        env: env.into_iter().map(|(k, v)| format!("{k}={v}")).collect(),
        rlimits: vec![
            Rlimit::Core(0),
            Rlimit::FileSize(l.file_size_bytes),
            Rlimit::OpenFiles(l.open_files.into()),
            Rlimit::Stack(l.stack_bytes),
            Rlimit::CpuSeconds(cpu_secs),
        ],
        files,
        sizes: tmpfs_sizes(l),
    };
    let size = serde_json::to_vec(&start).map(|v| v.len()).unwrap_or(usize::MAX);
    if size > sandbox::MAX_MESSAGE {
        return Err(invalid(format!(
            "the command, environment and file names take {size} bytes encoded; at most {} are accepted",
            sandbox::MAX_MESSAGE
        )));
    }
    Ok((start, memfd))
}

/// The tmpfs sizes for `limits`: the disk limit for `/sandbox` and `/tmp`, a quarter of it
/// for `/dev/shm`. Their pages are charged to the run's memory cgroup as well.
pub(super) fn tmpfs_sizes(l: &Limits) -> TmpfsSizes {
    TmpfsSizes {
        workdir_bytes: l.disk_bytes,
        tmp_bytes: l.disk_bytes,
        shm_bytes: (l.disk_bytes / 4).max(64 * 1024),
        inodes: INODES,
    }
}

/// Whether `files` can go into `/sandbox`: at most 1000, clean relative names, none twice,
/// no name both a file and another's directory.
pub fn check_files(files: &[InputFile]) -> Result<(), RunError> {
    if files.len() > MAX_FILES {
        return Err(RunError::Invalid(format!("{} input files; at most {MAX_FILES}", files.len())));
    }
    let mut seen = std::collections::HashSet::new();
    for f in files {
        sandbox::check_relative_path(&f.path).map_err(RunError::Invalid)?;
        if !seen.insert(f.path.as_str()) {
            return Err(RunError::Invalid(format!("file {:?} is given twice", f.path)));
        }
    }
    // "a" and "a/b" cannot both be files
    for f in files {
        let mut parent = f.path.as_str();
        while let Some((dir, _)) = parent.rsplit_once('/') {
            if seen.contains(dir) {
                return Err(RunError::Invalid(format!(
                    "{dir:?} is given as a file and as the directory of {:?}",
                    f.path
                )));
            }
            parent = dir;
        }
    }
    Ok(())
}

/// All input files in one memfd, back to back, with their offsets.
fn pack_files(files: &[InputFile], disk: u64) -> Result<(Vec<FileEntry>, Option<OwnedFd>), RunError> {
    if files.is_empty() {
        return Ok((Vec::new(), None));
    }
    check_files(files)?;
    let total: u64 = files.iter().map(|f| f.contents.len() as u64).sum();
    if total > disk {
        return Err(RunError::Invalid(format!(
            "the input files ({total} bytes) do not fit in /sandbox ({disk} bytes)"
        )));
    }
    let memfd = nix::sys::memfd::memfd_create("codeexec-files", nix::sys::memfd::MFdFlags::MFD_CLOEXEC)
        .map_err(sys("memfd_create"))?;
    let mut out = std::fs::File::from(memfd);
    let mut entries = Vec::with_capacity(files.len());
    let mut offset = 0u64;
    for f in files {
        out.write_all(&f.contents).map_err(|source| RunError::State { path: "memfd".into(), source })?;
        let len = f.contents.len() as u64;
        entries.push(FileEntry { path: f.path.clone(), offset, len, executable: f.executable });
        offset += len;
    }
    Ok((entries, Some(out.into())))
}

/// The cgroup limits of a run.
pub(super) fn cgroup_limits(l: &Limits) -> cgroup::Limits {
    cgroup::Limits {
        memory_bytes: l.memory_bytes,
        // one more for our PID 1
        pids: u64::from(l.processes) + 1,
        cpu_quota_us: u64::from(l.cpu_millicores) * 100,
        cpu_period_us: 100_000,
    }
}

/// `rootfs/host.toml`: the host root's directories and generated `/etc`.
#[derive(Debug, serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct HostRoot {
    dirs: Vec<String>,
    etc_binds: Vec<String>,
    etc_prefixes: Vec<String>,
    etc_files: std::collections::BTreeMap<String, String>,
}

const HOST_ROOT: &str = include_str!("../../rootfs/host.toml");

fn host_root() -> Result<HostRoot, RunError> {
    toml::from_str(HOST_ROOT).map_err(|e| RunError::Rootfs { path: "rootfs/host.toml".into(), why: e.to_string() })
}

/// The root to prepare: a directory given, or the host's own (`rootfs/host.toml`).
/// The root of `rootfs` (the host's when `None`); `image`: it is an image's unpacked tree
/// (root's files, shown as root's inside through idmapped mounts).
pub(super) fn root_spec(rootfs: Option<&Path>, image: bool) -> Result<RootSpec, RunError> {
    if let Some(dir) = rootfs {
        let bad = |why: &str| RunError::Rootfs { path: dir.to_owned(), why: why.into() };
        let meta = std::fs::metadata(dir).map_err(|e| bad(&e.to_string()))?;
        if !meta.is_dir() {
            return Err(bad("not a directory"));
        }
        let dir = dir.canonicalize().map_err(|e| bad(&e.to_string()))?;
        return Ok(if image { RootSpec::Image(dir) } else { RootSpec::Dir(dir) });
    }
    let host = host_root()?;
    let mut etc_binds = host.etc_binds;
    if let Ok(entries) = std::fs::read_dir("/etc") {
        let mut more: Vec<String> = entries
            .flatten()
            .filter_map(|e| e.file_name().into_string().ok())
            .filter(|n| host.etc_prefixes.iter().any(|p| n.starts_with(p.as_str())))
            .collect();
        more.sort();
        etc_binds.extend(more);
    }
    Ok(RootSpec::Host { dirs: host.dirs, etc_files: host.etc_files.into_iter().collect(), etc_binds })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn start_request_has_an_explicit_environment() {
        let req = RunRequest {
            argv: vec!["python3".into(), "-c".into(), "1".into()],
            env: vec![("LANG".into(), "en_US.UTF-8".into()), ("X".into(), "1".into())],
            ..RunRequest::default()
        };
        let (start, memfd) = start_request(&req).unwrap();
        assert!(memfd.is_none());
        assert_eq!(start.env, ["PATH=/usr/local/bin:/usr/bin:/bin", "HOME=/sandbox", "LANG=en_US.UTF-8", "X=1"]);
        assert!(start.rlimits.contains(&Rlimit::Core(0)));
        assert!(start.rlimits.contains(&Rlimit::CpuSeconds(6)));
    }

    #[test]
    fn bad_requests_are_refused() {
        let bad = |req: RunRequest| start_request(&req).unwrap_err().to_string();
        assert!(bad(RunRequest::default()).contains("no command"));
        let r = RunRequest { argv: vec!["x".into()], env: vec![("A=B".into(), "1".into())], ..Default::default() };
        assert!(bad(r).contains("environment"));
        let f = |p: &str| InputFile { path: p.into(), contents: b"x".to_vec(), executable: false };
        let r = RunRequest { argv: vec!["x".into()], files: vec![f("../x")], ..Default::default() };
        assert!(bad(r).contains(".."));
        let r = RunRequest { argv: vec!["x".into()], files: vec![f("a"), f("a")], ..Default::default() };
        assert!(bad(r).contains("twice"));
        let r = RunRequest { argv: vec!["x".into()], files: vec![f("a/b/c"), f("a")], ..Default::default() };
        assert_eq!(bad(r), "invalid request: \"a\" is given as a file and as the directory of \"a/b/c\"");
        let r = RunRequest { argv: vec!["x".into()], files: vec![f("a/b"), f("a/c"), f("ab")], ..Default::default() };
        assert!(start_request(&r).is_ok(), "siblings and a shared prefix of names are fine");
        let many = (0..=MAX_FILES).map(|i| f(&format!("f{i}"))).collect();
        let r = RunRequest { argv: vec!["x".into()], files: many, ..Default::default() };
        assert!(bad(r).contains("at most 1000"));
        let r = RunRequest { argv: vec!["x".into(), "y".repeat(2 << 20)], ..Default::default() };
        assert!(bad(r).contains("at most"));
    }

    #[test]
    fn the_host_root_definition_parses_and_knows_the_program_id() {
        let host = host_root().unwrap();
        assert!(host.dirs.contains(&"usr".to_owned()));
        let id = super::super::PROGRAM_ID;
        assert!(host.etc_files["passwd"].contains(&format!("sandbox:x:{id}:{id}:")), "passwd names the program's id");
        assert!(host.etc_files["group"].contains(&format!("sandbox:x:{id}:")));
        for name in host.etc_files.keys().chain(&host.etc_binds).chain(&host.dirs) {
            sandbox::check_relative_path(name).unwrap();
        }
    }

    #[test]
    fn files_are_packed_back_to_back() {
        let files = vec![
            InputFile { path: "a.txt".into(), contents: b"hello".to_vec(), executable: false },
            InputFile { path: "bin/run".into(), contents: b"#!/bin/sh\n".to_vec(), executable: true },
        ];
        let (entries, memfd) = pack_files(&files, 1 << 20).unwrap();
        assert_eq!(entries[1].offset, 5);
        assert_eq!(entries[1].len, 10);
        let mut f = std::fs::File::from(memfd.unwrap());
        let mut s = String::new();
        std::io::Seek::rewind(&mut f).unwrap();
        std::io::Read::read_to_string(&mut f, &mut s).unwrap();
        assert_eq!(s, "hello#!/bin/sh\n");
        assert!(pack_files(&files, 4).is_err(), "over the disk limit");
    }
}
