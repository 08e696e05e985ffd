//! Applying one layer (a tar stream) onto a root filesystem being built, safely: every
//! path is resolved one component at a time from the root's directory fd with
//! `O_NOFOLLOW`, so no symlink, whether from this layer or a lower one, is ever followed
//! on the host; `..` is refused; absolute paths are made relative; hard links must point
//! at a file already in the tree; device nodes and FIFOs are left out (a sandbox gets a
//! fresh `/dev`); setuid and setgid bits are dropped. Whiteouts (`.wh.NAME`) and opaque
//! directories (`.wh..wh..opq`) remove what lower layers put there, as the OCI image spec
//! says. Files keep their mode and mtime (Python checks its `.pyc` files against the
//! source's mtime) and belong to whoever unpacks, root in the daemon.

use std::collections::HashSet;
use std::io::{self, Read};
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;

use nix::dir::Dir;
use nix::errno::Errno;
use nix::fcntl::{AtFlags, OFlag, openat};
use nix::sys::stat::{Mode, SFlag, UtimensatFlags, fchmod, fstatat, futimens, mkdirat, utimensat};
use nix::sys::time::TimeSpec;
use nix::unistd::{LinkatFlags, UnlinkatFlags, linkat, symlinkat, unlinkat};

/// The deepest path a layer may hold (components): deeper is refused, which also bounds
/// the recursion of removals.
const MAX_DEPTH: usize = 256;
const WHITEOUT: &str = ".wh.";
const OPAQUE: &str = ".wh..wh..opq";

/// Why a layer cannot be applied.
#[derive(Debug, thiserror::Error)]
pub enum UnpackError {
    /// The layer would write outside the root or through a symlink, or is malformed.
    #[error("{path}: {why}")]
    Unsafe {
        /// The entry's path as the layer names it.
        path: String,
        /// What is wrong with it.
        why: String,
    },
    /// Reading the layer or writing the tree failed.
    #[error("{path}: {source}")]
    Io {
        /// The entry's path (or `(layer)` for the stream itself).
        path: String,
        /// The error.
        source: io::Error,
    },
}

fn unsafe_entry(path: &str, why: impl Into<String>) -> UnpackError {
    UnpackError::Unsafe { path: path.to_owned(), why: why.into() }
}

fn io_at(path: &str) -> impl Fn(Errno) -> UnpackError + '_ {
    move |e| UnpackError::Io { path: path.to_owned(), source: io::Error::from(e) }
}

/// What applying layers did, summed over them.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Stats {
    /// Regular files written.
    pub files: u64,
    /// Directories made.
    pub dirs: u64,
    /// Symlinks made.
    pub symlinks: u64,
    /// Hard links made.
    pub hardlinks: u64,
    /// Bytes of regular files written.
    pub bytes: u64,
    /// Whiteouts and opaque markers applied.
    pub whiteouts: u64,
    /// Device nodes and FIFOs left out.
    pub skipped_devices: u64,
    /// Entries whose setuid or setgid bit was dropped.
    pub setid_dropped: u64,
}

/// The components of a layer path: `./a//b/` is `[a, b]`, a leading `/` is dropped, and
/// `..` anywhere is refused.
fn components(path: &str) -> Result<Vec<&str>, UnpackError> {
    let mut out = Vec::new();
    for c in path.split('/') {
        match c {
            "" | "." => {}
            ".." => return Err(unsafe_entry(path, "the path has a `..` component")),
            c => out.push(c),
        }
    }
    if out.len() > MAX_DEPTH {
        return Err(unsafe_entry(path, format!("deeper than {MAX_DEPTH} components")));
    }
    Ok(out)
}

fn dir_flags() -> OFlag {
    OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC
}

/// Applies layers, in order, to the tree under one root directory.
#[derive(Debug)]
pub struct Unpacker {
    root: OwnedFd,
    stats: Stats,
    max_bytes: u64,
}

impl Unpacker {
    /// Unpacks into `root`, an empty directory the caller made, at most `max_bytes` of
    /// file contents in all (a layer is compressed: a small one can unpack to a full disk).
    pub fn new(root: &std::path::Path, max_bytes: u64) -> io::Result<Self> {
        let root = nix::fcntl::open(root, dir_flags(), Mode::empty()).map_err(io::Error::from)?;
        Ok(Self { root, stats: Stats::default(), max_bytes })
    }

    /// What has been done so far.
    pub fn stats(&self) -> Stats {
        self.stats
    }

    /// Applies one uncompressed tar stream.
    pub fn apply(&mut self, layer: impl Read) -> Result<(), UnpackError> {
        let mut archive = tar::Archive::new(layer);
        // paths written by this layer: a whiteout or opaque marker removes only what lower
        // layers made
        let mut ours: HashSet<String> = HashSet::new();
        let entries = archive.entries().map_err(|e| UnpackError::Io { path: "(layer)".into(), source: e })?;
        for entry in entries {
            let mut entry = entry.map_err(|e| UnpackError::Io { path: "(layer)".into(), source: e })?;
            let raw = String::from_utf8_lossy(&entry.path_bytes()).into_owned();
            let comps = components(&raw)?;
            let Some((name, parents)) = comps.split_last() else {
                continue; // the root itself: its mode stays ours
            };
            let parent = self.parent(&raw, parents, &mut ours, true)?;
            let parent_path = parents.join("/");
            let path = comps.join("/");
            if *name == OPAQUE {
                prune(parent.as_fd(), &parent_path, &ours, 0).map_err(io_at(&raw))?;
                self.stats.whiteouts += 1;
                continue;
            }
            if let Some(hidden) = name.strip_prefix(WHITEOUT) {
                if hidden.is_empty() || hidden == "." || hidden == ".." || hidden.starts_with(WHITEOUT) {
                    return Err(unsafe_entry(&raw, "a malformed whiteout"));
                }
                let hidden_path = join(&parent_path, hidden);
                if !ours.contains(&hidden_path) {
                    remove_all(parent.as_fd(), hidden, 0).map_err(io_at(&raw))?;
                }
                self.stats.whiteouts += 1;
                continue;
            }
            let header = entry.header();
            let kind = header.entry_type();
            let mut mode = header.mode().map_err(|e| UnpackError::Io { path: raw.clone(), source: e })? & 0o7777;
            if mode & 0o6000 != 0 {
                self.stats.setid_dropped += 1;
                mode &= 0o1777;
            }
            let mtime = header.mtime().unwrap_or(0);
            let mtime = TimeSpec::new(i64::try_from(mtime).unwrap_or(0), 0);
            if kind.is_character_special() || kind.is_block_special() || kind.is_fifo() {
                self.stats.skipped_devices += 1;
                continue;
            }
            let existing = lstat(parent.as_fd(), name).map_err(io_at(&raw))?;
            if kind.is_dir() {
                match existing {
                    Some(k) if k == SFlag::S_IFDIR => {}
                    Some(_) => {
                        remove_all(parent.as_fd(), name, 0).map_err(io_at(&raw))?;
                        mkdirat(parent.as_fd(), *name, Mode::from_bits_truncate(0o700)).map_err(io_at(&raw))?;
                    }
                    None => mkdirat(parent.as_fd(), *name, Mode::from_bits_truncate(0o700)).map_err(io_at(&raw))?,
                }
                let fd = openat(parent.as_fd(), *name, dir_flags(), Mode::empty()).map_err(io_at(&raw))?;
                fchmod(&fd, Mode::from_bits_truncate(mode)).map_err(io_at(&raw))?;
                ours.insert(path);
                self.stats.dirs += 1;
                continue;
            }
            if existing.is_some() {
                remove_all(parent.as_fd(), name, 0).map_err(io_at(&raw))?;
            }
            if kind.is_symlink() {
                let target = entry
                    .link_name_bytes()
                    .ok_or_else(|| unsafe_entry(&raw, "a symlink without a target"))?
                    .into_owned();
                if target.is_empty() {
                    return Err(unsafe_entry(&raw, "a symlink without a target"));
                }
                symlinkat(std::ffi::OsStr::from_bytes(&target), parent.as_fd(), *name).map_err(io_at(&raw))?;
                let _ = utimensat(parent.as_fd(), *name, &mtime, &mtime, UtimensatFlags::NoFollowSymlink);
                self.stats.symlinks += 1;
            } else if kind.is_hard_link() {
                let target = entry
                    .link_name_bytes()
                    .ok_or_else(|| unsafe_entry(&raw, "a hard link without a target"))?
                    .into_owned();
                let target = String::from_utf8_lossy(&target).into_owned();
                let tcomps = components(&target)?;
                let Some((tname, tparents)) = tcomps.split_last() else {
                    return Err(unsafe_entry(&raw, "a hard link to the root"));
                };
                let tparent = self.parent(&target, tparents, &mut ours, false)?;
                match lstat(tparent.as_fd(), tname).map_err(io_at(&raw))? {
                    Some(k) if k == SFlag::S_IFREG => {}
                    Some(_) => return Err(unsafe_entry(&raw, format!("a hard link to {target}, which is not a file"))),
                    None => {
                        return Err(unsafe_entry(&raw, format!("a hard link to {target}, which is not in the image")));
                    }
                }
                linkat(tparent.as_fd(), *tname, parent.as_fd(), *name, LinkatFlags::empty()).map_err(io_at(&raw))?;
                self.stats.hardlinks += 1;
            } else if kind.is_file() || kind == tar::EntryType::Continuous {
                let flags = OFlag::O_WRONLY | OFlag::O_CREAT | OFlag::O_EXCL | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC;
                let fd = openat(parent.as_fd(), *name, flags, Mode::from_bits_truncate(0o600)).map_err(io_at(&raw))?;
                let mut file = std::fs::File::from(fd);
                let room = self.max_bytes.saturating_sub(self.stats.bytes);
                let n = io::copy(&mut (&mut entry).take(room.saturating_add(1)), &mut file)
                    .map_err(|e| UnpackError::Io { path: raw.clone(), source: e })?;
                if n > room {
                    return Err(unsafe_entry(
                        &raw,
                        format!("the image unpacks to more than {} MiB", self.max_bytes >> 20),
                    ));
                }
                fchmod(&file, Mode::from_bits_truncate(mode)).map_err(io_at(&raw))?;
                futimens(&file, &mtime, &mtime).map_err(io_at(&raw))?;
                self.stats.files += 1;
                self.stats.bytes += n;
            } else {
                return Err(unsafe_entry(&raw, format!("unsupported entry type {kind:?}")));
            }
            ours.insert(path);
        }
        Ok(())
    }

    /// The directory holding an entry, opened component by component without following
    /// a symlink; missing ones are made when `create` (and count as this layer's).
    fn parent(
        &self,
        raw: &str,
        comps: &[&str],
        ours: &mut HashSet<String>,
        create: bool,
    ) -> Result<OwnedFd, UnpackError> {
        let mut dir = nix::unistd::dup(&self.root).map_err(io_at(raw))?;
        for (i, c) in comps.iter().enumerate() {
            let next = match openat(dir.as_fd(), *c, dir_flags(), Mode::empty()) {
                Ok(fd) => fd,
                Err(Errno::ENOENT) if create => {
                    mkdirat(dir.as_fd(), *c, Mode::from_bits_truncate(0o755)).map_err(io_at(raw))?;
                    ours.insert(comps[..=i].join("/"));
                    openat(dir.as_fd(), *c, dir_flags(), Mode::empty()).map_err(io_at(raw))?
                }
                Err(Errno::ENOENT) => {
                    return Err(unsafe_entry(raw, format!("{} is not in the image", comps[..=i].join("/"))));
                }
                Err(Errno::ELOOP | Errno::ENOTDIR) => {
                    return Err(unsafe_entry(
                        raw,
                        format!("{} is not a directory (a symlink or a file)", comps[..=i].join("/")),
                    ));
                }
                Err(e) => return Err(io_at(raw)(e)),
            };
            dir = next;
        }
        Ok(dir)
    }
}

fn join(parent: &str, name: &str) -> String {
    if parent.is_empty() { name.to_owned() } else { format!("{parent}/{name}") }
}

/// The type of `name` in `dir`, not following a symlink; `None` if absent.
fn lstat(dir: BorrowedFd<'_>, name: &str) -> Result<Option<SFlag>, Errno> {
    match fstatat(dir, name, AtFlags::AT_SYMLINK_NOFOLLOW) {
        Ok(st) => Ok(Some(SFlag::from_bits_truncate(st.st_mode & SFlag::S_IFMT.bits()))),
        Err(Errno::ENOENT) => Ok(None),
        Err(e) => Err(e),
    }
}

/// The names in a directory, without `.` and `..`.
fn children(dir: BorrowedFd<'_>) -> Result<Vec<String>, Errno> {
    let fd = openat(dir, ".", dir_flags(), Mode::empty())?;
    let mut listing = Dir::from_fd(fd)?;
    let mut names = Vec::new();
    for e in listing.iter() {
        let e = e?;
        let n = e.file_name().to_bytes();
        if n != b"." && n != b".." {
            names.push(String::from_utf8_lossy(n).into_owned());
        }
    }
    Ok(names)
}

/// Removes `name` in `dir` and, for a directory, all it holds; a symlink is removed, never
/// followed. Absent is fine.
fn remove_all(dir: BorrowedFd<'_>, name: &str, depth: usize) -> Result<(), Errno> {
    match lstat(dir, name)? {
        None => Ok(()),
        Some(k) if k == SFlag::S_IFDIR => {
            if depth > MAX_DEPTH {
                return Err(Errno::ELOOP);
            }
            let sub = openat(dir, name, dir_flags(), Mode::empty())?;
            for child in children(sub.as_fd())? {
                remove_all(sub.as_fd(), &child, depth + 1)?;
            }
            unlinkat(dir, name, UnlinkatFlags::RemoveDir)
        }
        Some(_) => unlinkat(dir, name, UnlinkatFlags::NoRemoveDir),
    }
}

/// An opaque directory: removes what lower layers put under `dir` (at `path`), keeping
/// this layer's entries (`ours`) and, inside directories this layer also made, pruning
/// the same way.
fn prune(dir: BorrowedFd<'_>, path: &str, ours: &HashSet<String>, depth: usize) -> Result<(), Errno> {
    if depth > MAX_DEPTH {
        return Err(Errno::ELOOP);
    }
    for child in children(dir)? {
        let child_path = join(path, &child);
        if !ours.contains(&child_path) {
            remove_all(dir, &child, depth + 1)?;
        } else if lstat(dir, &child)? == Some(SFlag::S_IFDIR) {
            let sub = openat(dir, child.as_str(), dir_flags(), Mode::empty())?;
            prune(sub.as_fd(), &child_path, ours, depth + 1)?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests;
