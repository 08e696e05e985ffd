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
pub(super) struct CollectedEntry {
    /// Relative to `/sandbox`.
    pub path: String,
    /// A file's bytes or a symlink's target.
    pub kind: CollectedKind,
}

/// A regular file (its bytes at `offset` in the memfd) or a symlink.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(super) enum CollectedKind {
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

/// What `Exited` carries when files were collected: where the manifest (a JSON
/// [`Manifest`]) sits in the memfd that rides along, after the files' bytes. The message
/// stays small whatever the program left; the runner checks everything it reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Packed {
    /// Where the manifest starts.
    pub manifest_offset: u64,
    /// Its length.
    pub manifest_len: u64,
}

/// What PID 1 found: the manifest of the memfd.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub(super) struct Manifest {
    /// In path order.
    pub entries: Vec<CollectedEntry>,
    /// Some entries or bytes were left out (a cap was reached, a path was not UTF-8, the
    /// tree was too deep).
    pub truncated: bool,
}

/// Deepest directory nesting walked.
const MAX_DEPTH: usize = 32;
/// Most bytes of manifest (entries are measured as serialized; the runner refuses more).
const MAX_MANIFEST: u64 = 8 << 20;
/// Longest symlink target reported (the kernel's own limit).
const MAX_TARGET: usize = 4096;

struct Walk {
    spec: CollectSpec,
    out: std::fs::File,
    written: u64,
    manifest_bytes: u64,
    found: Manifest,
}

/// Packs `/sandbox` (already our working directory's mount) into a sealed memfd: the
/// files' bytes back to back, then the manifest.
pub(super) fn collect(root: &str, spec: CollectSpec) -> Result<(Packed, OwnedFd), Errno> {
    let memfd = memfd_create("codeexec-out", MFdFlags::MFD_CLOEXEC | MFdFlags::MFD_ALLOW_SEALING)?;
    let out = std::fs::File::from(memfd);
    let mut w = Walk { spec, out, written: 0, manifest_bytes: 0, found: Manifest::default() };
    let dir = nix::fcntl::open(root, dir_flags(), Mode::empty())?;
    w.dir(dir.as_fd(), "", 0)?;
    w.found.entries.sort_by(|a, b| a.path.cmp(&b.path));
    let manifest = serde_json::to_vec(&w.found).map_err(|_| Errno::EINVAL)?;
    w.out.write_all(&manifest).map_err(io_errno)?;
    let packed = Packed { manifest_offset: w.written, manifest_len: manifest.len() as u64 };
    let memfd = OwnedFd::from(w.out);
    // nothing may change the bytes once the manifest describes them
    let seals = SealFlag::F_SEAL_SHRINK | SealFlag::F_SEAL_GROW | SealFlag::F_SEAL_WRITE | SealFlag::F_SEAL_SEAL;
    fcntl(memfd.as_fd(), FcntlArg::F_ADD_SEALS(seals))?;
    Ok((packed, memfd))
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
        let mut listing = Dir::from_fd(openat(dir, ".", dir_flags(), Mode::empty())?)?;
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
                let mut target = readlinkat(dir, name.as_str())?.to_string_lossy().into_owned();
                if target.len() > MAX_TARGET {
                    let mut end = MAX_TARGET;
                    while !target.is_char_boundary(end) {
                        end -= 1;
                    }
                    target.truncate(end);
                    self.found.truncated = true;
                }
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
        self.found.entries.len() >= self.spec.max_files as usize || self.manifest_bytes >= MAX_MANIFEST / 2
    }

    fn push(&mut self, entry: CollectedEntry) {
        // measured as it will be written; an entry that does not fit is left out (its
        // bytes stay in the memfd, unreferenced)
        let size = serde_json::to_vec(&entry).map_or(u64::MAX, |v| v.len() as u64 + 1);
        if self.found.entries.len() >= self.spec.max_files as usize
            || self.manifest_bytes.saturating_add(size) > MAX_MANIFEST - 64
        {
            self.found.truncated = true;
            return;
        }
        self.manifest_bytes += size;
        self.found.entries.push(entry);
    }
}

fn io_errno(e: std::io::Error) -> Errno {
    e.raw_os_error().map_or(Errno::EIO, Errno::from_raw)
}

/// Reads what PID 1 collected back from its memfd (runner side). PID 1 runs in the
/// sandbox after the program, so nothing in the memfd is trusted: it must be sealed, no
/// larger than the caps allow, the manifest in bounds and no larger than PID 1 may write,
/// the files back to back within `max_bytes`, at most `max_files` entries, every path
/// relative and clean, none twice, none inside another entry.
pub fn read_collected(packed: Packed, memfd: OwnedFd, spec: CollectSpec) -> Result<Collected, String> {
    let bad = |why: &str| format!("the sandbox's file report is malformed: {why}");
    let seals = fcntl(memfd.as_fd(), FcntlArg::F_GET_SEALS).map_err(|e| bad(e.desc()))?;
    let need = (SealFlag::F_SEAL_SHRINK | SealFlag::F_SEAL_GROW | SealFlag::F_SEAL_WRITE).bits();
    if seals & need != need {
        return Err(bad("the memfd is not sealed"));
    }
    let f = std::fs::File::from(memfd);
    let meta = f.metadata().map_err(|e| bad(&e.to_string()))?;
    if !meta.is_file() {
        return Err(bad("not a memfd"));
    }
    let size = meta.len();
    let Packed { manifest_offset, manifest_len } = packed;
    if manifest_len > MAX_MANIFEST
        || manifest_offset > spec.max_bytes
        || manifest_offset.checked_add(manifest_len) != Some(size)
    {
        return Err(bad("the manifest is out of bounds"));
    }
    let mut manifest = vec![0u8; usize::try_from(manifest_len).map_err(|_| bad("manifest size"))?];
    std::os::unix::fs::FileExt::read_exact_at(&f, &mut manifest, manifest_offset).map_err(|e| bad(&e.to_string()))?;
    let found: Manifest = serde_json::from_slice(&manifest).map_err(|e| bad(&e.to_string()))?;
    if found.entries.len() > spec.max_files as usize {
        return Err(bad("too many entries"));
    }
    let mut seen: std::collections::BTreeSet<&str> = std::collections::BTreeSet::new();
    let mut ranges: Vec<(u64, u64)> = Vec::new();
    let mut out = Vec::with_capacity(found.entries.len());
    for e in &found.entries {
        check_path(&e.path).map_err(|why| bad(&format!("{:?}: {why}", e.path)))?;
        if !seen.insert(&e.path) {
            return Err(bad("an entry twice"));
        }
        let file = match &e.kind {
            CollectedKind::Symlink { target } => {
                if target.len() > MAX_TARGET {
                    return Err(bad("a symlink target is too long"));
                }
                CollectedFile::Symlink(target.clone())
            }
            CollectedKind::File { offset, len, executable } => {
                // back to back, all before the manifest (which bounds them by max_bytes)
                let end = offset.checked_add(*len).ok_or_else(|| bad("a file's range overflows"))?;
                if end > manifest_offset {
                    return Err(bad("a file's range is out of bounds"));
                }
                ranges.push((*offset, end));
                let mut bytes = vec![0u8; usize::try_from(*len).map_err(|_| bad("file size"))?];
                std::os::unix::fs::FileExt::read_exact_at(&f, &mut bytes, *offset).map_err(|e| bad(&e.to_string()))?;
                CollectedFile::File { bytes, executable: *executable }
            }
        };
        out.push((e.path.clone(), file));
    }
    // no path inside another entry ("a" a file and "a/b" too): the entry just before a
    // path's children in sorted order may be a sibling ("a-b" sorts between "a" and "a/b"),
    // so every proper prefix of each path is looked up
    for p in &seen {
        let mut at = 0;
        while let Some(i) = p[at..].find('/') {
            if seen.contains(&p[..at + i]) {
                return Err(bad("an entry inside another"));
            }
            at += i + 1;
        }
    }
    // the files' bytes do not overlap (each byte of the memfd is read at most once, so the
    // bytes read are bounded by max_bytes)
    ranges.sort_unstable();
    if ranges.windows(2).any(|w| w[1].0 < w[0].1) {
        return Err(bad("files' ranges overlap"));
    }
    Ok(Collected { entries: out, truncated: found.truncated })
}

/// A path as PID 1 may report it: relative, UTF-8 components that are not empty, `.` or
/// `..`, at most [`MAX_DEPTH`] deep plus the name, within the kernel's path length.
fn check_path(path: &str) -> Result<(), &'static str> {
    if path.is_empty() || path.len() > 4096 {
        return Err("empty or too long");
    }
    let mut depth = 0;
    for c in path.split('/') {
        if c.is_empty() || c == "." || c == ".." || c.contains('\0') {
            return Err("not a clean relative path");
        }
        depth += 1;
    }
    if depth > MAX_DEPTH + 1 {
        return Err("too deep");
    }
    Ok(())
}

/// The files read back: each path with its contents, and whether some were left out.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Collected {
    /// In path order.
    pub entries: Vec<(String, CollectedFile)>,
    /// A cap was reached.
    pub truncated: bool,
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

#[cfg(test)]
mod tests;
