//! A session's files, read and written from the host. The sandbox owns `/sandbox` and may
//! have put symlinks anywhere in it, so nothing here resolves a path by name from the host
//! root: `/sandbox` is opened once, through PID 1's root, as a descriptor, and every path
//! below it with `openat2(RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS | RESOLVE_NO_MAGICLINKS |
//! RESOLVE_NO_XDEV)`: a symlink anywhere on the way, `..` out, or another mount is refused
//! by the kernel (<https://man7.org/linux/man-pages/man2/openat2.2.html>).

use std::io::{Read, Write};
use std::os::fd::{AsFd, OwnedFd};

use nix::errno::Errno;
use nix::fcntl::{OFlag, OpenHow, ResolveFlag, openat2};
use nix::sys::stat::{Mode, SFlag, fstat, mkdirat};
use nix::unistd::{Gid, Uid, UnlinkatFlags, setfsgid, setfsuid, unlinkat};

use super::Session;
use crate::run::OutputFile;
use crate::sandbox::check_relative_path;

/// Most files a cell's `/sandbox/out` returns.
pub const MAX_ARTIFACTS: usize = 100;
/// Most bytes of them together.
pub const MAX_ARTIFACT_BYTES: u64 = 16 << 20;

/// Why a file operation failed.
#[derive(Debug, thiserror::Error)]
pub enum FileError {
    /// The path is not a clean relative one.
    #[error("bad path: {0}")]
    BadPath(String),
    /// Nothing there.
    #[error("no file {0:?}")]
    NotFound(String),
    /// Not a regular file (a directory, a symlink, a device...).
    #[error("{0:?} is not a regular file (or a symlink is on its way)")]
    NotAFile(String),
    /// Bigger than allowed.
    #[error("{path:?} has {size} bytes; at most {max} are read")]
    TooLarge {
        /// The path.
        path: String,
        /// Its size.
        size: u64,
        /// The bound.
        max: u64,
    },
    /// The session's disk is full.
    #[error("no space left in the session's /sandbox")]
    NoSpace,
    /// Another failure.
    #[error("{op} {path:?}")]
    Sys {
        /// The call.
        op: &'static str,
        /// The path.
        path: String,
        /// The cause.
        #[source]
        source: Errno,
    },
}

type Result<T> = std::result::Result<T, FileError>;

fn how(flags: OFlag, mode: Mode) -> OpenHow {
    OpenHow::new().flags(flags | OFlag::O_CLOEXEC | OFlag::O_NOFOLLOW).mode(mode).resolve(
        ResolveFlag::RESOLVE_BENEATH
            | ResolveFlag::RESOLVE_NO_SYMLINKS
            | ResolveFlag::RESOLVE_NO_MAGICLINKS
            | ResolveFlag::RESOLVE_NO_XDEV,
    )
}

fn sys(op: &'static str, path: &str) -> impl FnOnce(Errno) -> FileError {
    let path = path.to_owned();
    move |source| match source {
        Errno::ENOENT => FileError::NotFound(path),
        Errno::ELOOP | Errno::EXDEV | Errno::ENOTDIR | Errno::EISDIR => FileError::NotAFile(path),
        Errno::ENOSPC | Errno::EDQUOT => FileError::NoSpace,
        _ => FileError::Sys { op, path, source },
    }
}

/// `/sandbox` of the sandbox whose PID 1 is `pid`, as an `O_PATH` descriptor. The
/// `/proc/PID/root` link is the kernel's; below it only `sandbox`, a mount point on a
/// read-only root, is resolved, and no symlink is followed.
pub(super) fn open_workdir(pid: i32) -> Result<OwnedFd> {
    let root = format!("/proc/{pid}/root");
    let rootfd = nix::fcntl::open(root.as_str(), OFlag::O_PATH | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC, Mode::empty())
        .map_err(sys("open", &root))?;
    let h = OpenHow::new()
        .flags(OFlag::O_PATH | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC | OFlag::O_NOFOLLOW)
        .resolve(ResolveFlag::RESOLVE_BENEATH | ResolveFlag::RESOLVE_NO_SYMLINKS | ResolveFlag::RESOLVE_NO_MAGICLINKS);
    openat2(rootfd.as_fd(), "sandbox", h).map_err(sys("openat2", "/sandbox"))
}

fn checked(path: &str) -> Result<&str> {
    check_relative_path(path).map_err(FileError::BadPath)?;
    Ok(path)
}

impl Session {
    /// The bytes of `path` (relative to `/sandbox`), at most `max` of them.
    pub fn read_file(&self, path: &str, max: u64) -> Result<Vec<u8>> {
        let path = checked(path)?;
        let fd =
            openat2(self.workdir.as_fd(), path, how(OFlag::O_RDONLY, Mode::empty())).map_err(sys("openat2", path))?;
        read_regular(fd, path, max)
    }

    /// Writes `data` to `path` (relative to `/sandbox`), making its directories, owned by
    /// the program's user inside. The calling thread creates them as that user (its
    /// filesystem ids): the sandbox's tmpfs belongs to its user namespace, where our root
    /// has no id, so files root made there could not be owned by anyone (EOVERFLOW).
    pub fn write_file(&self, path: &str, data: &[u8]) -> Result<()> {
        let path = checked(path)?;
        let _as_owner = FsIds::become_(self.owner);
        let (dir, name) = match path.rsplit_once('/') {
            Some((dir, name)) => (Some(self.make_dirs(dir)?), name),
            None => (None, path),
        };
        let at = dir.as_ref().map_or(self.workdir.as_fd(), AsFd::as_fd);
        let flags = OFlag::O_WRONLY | OFlag::O_CREAT | OFlag::O_TRUNC;
        let fd = openat2(at, name, how(flags, Mode::from_bits_truncate(0o644))).map_err(sys("openat2", path))?;
        let st = fstat(&fd).map_err(sys("fstat", path))?;
        if SFlag::from_bits_truncate(st.st_mode) & SFlag::S_IFMT != SFlag::S_IFREG {
            return Err(FileError::NotAFile(path.to_owned()));
        }
        let mut f = std::fs::File::from(fd);
        f.write_all(data).map_err(|e| sys("write", path)(Errno::from_raw(e.raw_os_error().unwrap_or(0))))
    }

    /// Removes the file `path`; false when there was none.
    pub fn delete_file(&self, path: &str) -> Result<bool> {
        let path = checked(path)?;
        let (dir, name) = match path.rsplit_once('/') {
            Some((dir, name)) => {
                let h = how(OFlag::O_PATH | OFlag::O_DIRECTORY, Mode::empty());
                match openat2(self.workdir.as_fd(), dir, h) {
                    Ok(fd) => (Some(fd), name),
                    Err(Errno::ENOENT) => return Ok(false),
                    Err(e) => return Err(sys("openat2", dir)(e)),
                }
            }
            None => (None, path),
        };
        let at = dir.as_ref().map_or(self.workdir.as_fd(), AsFd::as_fd);
        match unlinkat(at, name, UnlinkatFlags::NoRemoveDir) {
            Ok(()) => Ok(true),
            Err(Errno::ENOENT) => Ok(false),
            Err(e) => Err(sys("unlinkat", path)(e)),
        }
    }

    /// Each directory of `dir` in turn, made (owned by the program) where missing.
    fn make_dirs(&self, dir: &str) -> Result<OwnedFd> {
        let mut at: Option<OwnedFd> = None;
        for part in dir.split('/') {
            let parent = at.as_ref().map_or(self.workdir.as_fd(), AsFd::as_fd);
            match mkdirat(parent, part, Mode::from_bits_truncate(0o755)) {
                Ok(()) | Err(Errno::EEXIST) => {}
                Err(e) => return Err(sys("mkdirat", dir)(e)),
            }
            let fd = openat2(parent, part, how(OFlag::O_RDONLY | OFlag::O_DIRECTORY, Mode::empty()))
                .map_err(sys("openat2", dir))?;
            at = Some(fd);
        }
        at.ok_or_else(|| FileError::BadPath(dir.to_owned()))
    }

    /// The regular files directly in `/sandbox/out` changed at or after `since`: a cell's
    /// artifacts (at most [`MAX_ARTIFACTS`] files and [`MAX_ARTIFACT_BYTES`]; the bool says
    /// whether some were left out).
    pub(super) fn artifacts(&self, since: std::time::SystemTime) -> (Vec<OutputFile>, bool) {
        let h = how(OFlag::O_RDONLY | OFlag::O_DIRECTORY, Mode::empty());
        let Ok(dirfd) = openat2(self.workdir.as_fd(), "out", h) else { return (Vec::new(), false) };
        let Ok(mut dir) = nix::dir::Dir::from_fd(dirfd) else { return (Vec::new(), false) };
        let since = since.duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_secs());
        let names: Vec<String> = dir
            .iter()
            .filter_map(|e| e.ok())
            .filter_map(|e| e.file_name().to_str().ok().map(str::to_owned))
            .filter(|n| n != "." && n != "..")
            .collect();
        let (mut files, mut left_out, mut total) = (Vec::new(), false, 0u64);
        for name in names {
            let path = format!("out/{name}");
            let Ok(fd) = openat2(self.workdir.as_fd(), path.as_str(), how(OFlag::O_RDONLY, Mode::empty())) else {
                continue;
            };
            let Ok(st) = fstat(&fd) else { continue };
            let mtime = u64::try_from(st.st_mtime).unwrap_or(0);
            if SFlag::from_bits_truncate(st.st_mode) & SFlag::S_IFMT != SFlag::S_IFREG || mtime < since {
                continue;
            }
            let size = u64::try_from(st.st_size).unwrap_or(u64::MAX);
            if files.len() >= MAX_ARTIFACTS || total.saturating_add(size) > MAX_ARTIFACT_BYTES {
                left_out = true;
                continue;
            }
            let executable = st.st_mode & 0o111 != 0;
            if let Ok(bytes) = read_regular(fd, &path, MAX_ARTIFACT_BYTES - total) {
                total += bytes.len() as u64;
                files.push(OutputFile { path, content: crate::run::FileContent::File { bytes, executable } });
            }
        }
        files.sort_by(|a, b| a.path.cmp(&b.path));
        (files, left_out)
    }
}

/// The calling thread's filesystem uid and gid set to a sandbox's program's host id for
/// as long as this lives (setfsuid(2): per thread; going from 0 to another id drops the
/// file capabilities from the effective set, and going back restores them).
struct FsIds {
    uid: Uid,
    gid: Gid,
}

impl FsIds {
    fn become_(id: u32) -> FsIds {
        let gid = setfsgid(Gid::from_raw(id));
        let uid = setfsuid(Uid::from_raw(id));
        FsIds { uid, gid }
    }
}

impl Drop for FsIds {
    fn drop(&mut self) {
        setfsuid(self.uid);
        setfsgid(self.gid);
    }
}

/// The contents of an open regular file, refused when bigger than `max`.
fn read_regular(fd: OwnedFd, path: &str, max: u64) -> Result<Vec<u8>> {
    let st = fstat(&fd).map_err(sys("fstat", path))?;
    if SFlag::from_bits_truncate(st.st_mode) & SFlag::S_IFMT != SFlag::S_IFREG {
        return Err(FileError::NotAFile(path.to_owned()));
    }
    let size = u64::try_from(st.st_size).unwrap_or(u64::MAX);
    if size > max {
        return Err(FileError::TooLarge { path: path.to_owned(), size, max });
    }
    let mut data = Vec::with_capacity(usize::try_from(size).unwrap_or(0));
    // a file that grows while read is cut at `max`
    std::fs::File::from(fd)
        .take(max)
        .read_to_end(&mut data)
        .map_err(|e| sys("read", path)(Errno::from_raw(e.raw_os_error().unwrap_or(0))))?;
    Ok(data)
}
