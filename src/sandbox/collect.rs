//! Files out: after the program's whole process tree is dead, PID 1 packs what `/sandbox`
//! holds into a sealed memfd for the runner (a compiler's output for the next stage, the
//! files a program wrote). It walks the tree from inside the sandbox's own mount namespace
//! with `openat` relative to each directory and never follows a symlink (`O_NOFOLLOW`,
//! `AT_SYMLINK_NOFOLLOW`): a symlink is reported as one, with its target's text; FIFOs,
//! sockets and device nodes are skipped. Nothing on the host side ever opens a path the
//! program could have written.

use std::io::{Read, Write};
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};

use nix::dir::Dir;
use nix::errno::Errno;
use nix::fcntl::{AtFlags, FcntlArg, OFlag, SealFlag, fcntl, openat, readlinkat};
use nix::sys::memfd::{MFdFlags, memfd_create};
use nix::sys::stat::{Mode, SFlag, fstat, fstatat};
use serde::{Deserialize, Serialize};

use super::channel::MAX_MESSAGE;

/// What the runner asks PID 1 to collect.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct CollectSpec {
    /// Most entries (files and symlinks) to report.
    pub max_files: u32,
    /// Most bytes of file contents to copy.
    pub max_bytes: u64,
}

/// One entry found under `/sandbox`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CollectedEntry {
    /// Relative to `/sandbox`.
    pub path: String,
    /// A file's bytes or a symlink's target.
    pub kind: CollectedKind,
}

/// A regular file (its bytes at `offset` in the memfd) or a symlink.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum CollectedKind {
    /// A regular file.
    File {
        /// Where its bytes start in the memfd.
        offset: u64,
        /// How many.
        len: u64,
        /// Any execute bit set.
        executable: bool,
    },
    /// A symlink, never followed.
    Symlink {
        /// Its target, as text (lossy when not UTF-8).
        target: String,
    },
}

/// What PID 1 found, sent with `Exited` (the memfd with the bytes rides along).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Collected {
    /// In path order.
    pub entries: Vec<CollectedEntry>,
    /// Some entries or bytes were left out (a cap was reached, a path was not UTF-8, the
    /// tree was too deep).
    pub truncated: bool,
}

/// Deepest directory nesting walked.
const MAX_DEPTH: usize = 32;
/// The manifest must fit one message with room to spare.
const MAX_MANIFEST: usize = MAX_MESSAGE / 2;

struct Walk {
    spec: CollectSpec,
    out: std::fs::File,
    written: u64,
    manifest_bytes: usize,
    found: Collected,
}

/// Packs `/sandbox` (already our working directory's mount) into a sealed memfd.
pub(super) fn collect(root: &str, spec: CollectSpec) -> Result<(Collected, OwnedFd), Errno> {
    let memfd = memfd_create("codeexec-out", MFdFlags::MFD_CLOEXEC | MFdFlags::MFD_ALLOW_SEALING)?;
    let out = std::fs::File::from(memfd);
    let mut w = Walk { spec, out, written: 0, manifest_bytes: 0, found: Collected::default() };
    let dir = nix::fcntl::open(root, dir_flags(), Mode::empty())?;
    w.dir(dir.as_fd(), "", 0)?;
    w.found.entries.sort_by(|a, b| a.path.cmp(&b.path));
    let memfd = OwnedFd::from(w.out);
    // nothing may change the bytes once the manifest describes them
    let seals = SealFlag::F_SEAL_SHRINK | SealFlag::F_SEAL_GROW | SealFlag::F_SEAL_WRITE | SealFlag::F_SEAL_SEAL;
    fcntl(memfd.as_fd(), FcntlArg::F_ADD_SEALS(seals))?;
    Ok((w.found, memfd))
}

fn dir_flags() -> OFlag {
    OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC
}

impl Walk {
    fn dir(&mut self, dir: BorrowedFd<'_>, prefix: &str, depth: usize) -> Result<(), Errno> {
        if depth >= MAX_DEPTH {
            self.found.truncated = true;
            return Ok(());
        }
        let dup = nix::unistd::dup(dir)?;
        let mut listing = Dir::from_fd(dup)?;
        let mut names = Vec::new();
        for entry in listing.iter() {
            let entry = entry?;
            let name = entry.file_name().to_bytes();
            if name == b"." || name == b".." {
                continue;
            }
            match std::str::from_utf8(name) {
                Ok(n) => names.push(n.to_owned()),
                Err(_) => self.found.truncated = true,
            }
        }
        drop(listing);
        names.sort();
        for name in names {
            let path = if prefix.is_empty() { name.clone() } else { format!("{prefix}/{name}") };
            // what is there, not what the directory entry said
            let st = match fstatat(dir, name.as_str(), AtFlags::AT_SYMLINK_NOFOLLOW) {
                Ok(st) => st,
                Err(Errno::ENOENT) => continue,
                Err(e) => return Err(e),
            };
            let kind = SFlag::from_bits_truncate(st.st_mode & SFlag::S_IFMT.bits());
            if kind == SFlag::S_IFDIR {
                let sub = openat(dir, name.as_str(), dir_flags(), Mode::empty())?;
                self.dir(sub.as_fd(), &path, depth + 1)?;
            } else if kind == SFlag::S_IFLNK {
                let target = readlinkat(dir, name.as_str())?.to_string_lossy().into_owned();
                self.push(CollectedEntry { path, kind: CollectedKind::Symlink { target } });
            } else if kind == SFlag::S_IFREG {
                self.file(dir, &name, path)?;
            }
            // FIFOs, sockets and device nodes are not program output
        }
        Ok(())
    }

    fn file(&mut self, dir: BorrowedFd<'_>, name: &str, path: String) -> Result<(), Errno> {
        if self.full() {
            self.found.truncated = true;
            return Ok(());
        }
        let flags = OFlag::O_RDONLY | OFlag::O_NOFOLLOW | OFlag::O_NONBLOCK | OFlag::O_CLOEXEC;
        let fd = openat(dir, name, flags, Mode::empty())?;
        let st = fstat(&fd)?;
        if SFlag::from_bits_truncate(st.st_mode & SFlag::S_IFMT.bits()) != SFlag::S_IFREG {
            return Ok(());
        }
        let size = u64::try_from(st.st_size).unwrap_or(0);
        if self.written.saturating_add(size) > self.spec.max_bytes {
            self.found.truncated = true;
            return Ok(());
        }
        let offset = self.written;
        let mut src = std::fs::File::from(fd).take(size);
        let copied = std::io::copy(&mut src, &mut self.out).map_err(io_errno)?;
        self.written += copied;
        let executable = st.st_mode & 0o111 != 0;
        self.push(CollectedEntry { path, kind: CollectedKind::File { offset, len: copied, executable } });
        Ok(())
    }

    fn full(&self) -> bool {
        self.found.entries.len() >= self.spec.max_files as usize || self.manifest_bytes >= MAX_MANIFEST
    }

    fn push(&mut self, entry: CollectedEntry) {
        if self.full() {
            self.found.truncated = true;
            return;
        }
        // a generous estimate of the entry's JSON
        self.manifest_bytes += entry.path.len() * 2 + 96;
        if let CollectedKind::Symlink { target } = &entry.kind {
            self.manifest_bytes += target.len() * 2;
        }
        self.found.entries.push(entry);
    }
}

fn io_errno(e: std::io::Error) -> Errno {
    e.raw_os_error().map_or(Errno::EIO, Errno::from_raw)
}

/// Reads the collected entries' bytes back from the memfd (runner side).
pub fn read_collected(found: &Collected, memfd: OwnedFd) -> Result<Vec<(String, CollectedFile)>, Errno> {
    let mut f = std::fs::File::from(memfd);
    let size = f.metadata().map_err(io_errno)?.len();
    let mut out = Vec::with_capacity(found.entries.len());
    for e in &found.entries {
        let file = match &e.kind {
            CollectedKind::Symlink { target } => CollectedFile::Symlink(target.clone()),
            CollectedKind::File { offset, len, executable } => {
                let end = offset.checked_add(*len).ok_or(Errno::EBADMSG)?;
                if end > size {
                    return Err(Errno::EBADMSG);
                }
                let mut bytes = vec![0u8; usize::try_from(*len).map_err(|_| Errno::EFBIG)?];
                std::os::unix::fs::FileExt::read_exact_at(&f, &mut bytes, *offset).map_err(io_errno)?;
                CollectedFile::File { bytes, executable: *executable }
            }
        };
        out.push((e.path.clone(), file));
    }
    let _ = f.flush();
    Ok(out)
}

/// One collected entry's contents, as the runner reads them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CollectedFile {
    /// A regular file.
    File {
        /// Its bytes.
        bytes: Vec<u8>,
        /// Any execute bit set.
        executable: bool,
    },
    /// A symlink's target.
    Symlink(String),
}
