//! The compile cache: what a compiler left in `/sandbox`, kept under the SHA-256 of
//! everything that decided it (language, toolchain version and image, command, environment,
//! every source file), so an identical compile is not run again.
//!
//! One file per entry, `entries/<hex>`: a tar of the compiler's output files (`files/…`,
//! with their executable bit) and its `stdout` and `stderr`. An entry is written under
//! `tmp/`, synced, then renamed into place, so a reader sees a whole entry or none; a
//! crash leaves at most a file in `tmp/`, cleared at the next start. Entries are read back
//! into memory and copied into the next sandbox's `/sandbox` like any input file: no
//! sandbox ever sees the cache itself, let alone writes to it.
//!
//! The total size is bounded: the least recently used entries go first. Recency is the
//! entry's modification time, touched on every hit, so it survives a restart.

use std::collections::HashMap;
use std::fs::{self, File};
use std::io::{self, Read};
use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::{Mutex, PoisonError};
use std::time::SystemTime;

use sha2::{Digest, Sha256};

use crate::run::InputFile;

/// The most one entry may hold, as a share of the whole cache (larger ones are not kept).
const ENTRY_SHARE: u64 = 4;

/// What a compile produced.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Artifact {
    /// `/sandbox` after the compile.
    pub files: Vec<InputFile>,
    /// The compiler's stdout (warnings are kept with the artifact).
    pub stdout: Vec<u8>,
    /// Its stderr.
    pub stderr: Vec<u8>,
}

impl Artifact {
    fn size(&self) -> u64 {
        let files: u64 = self.files.iter().map(|f| f.contents.len() as u64 + f.path.len() as u64 + 512).sum();
        files + self.stdout.len() as u64 + self.stderr.len() as u64 + 1024
    }
}

/// An entry's name: the hex SHA-256 of what decided the compile.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Key(String);

impl Key {
    /// The key of a compile: each part length-prefixed, so no two different lists of parts
    /// hash the same bytes.
    pub fn new(parts: &[&[u8]]) -> Key {
        let mut h = Sha256::new();
        h.update(b"codeexec compile cache v1\0");
        for p in parts {
            h.update((p.len() as u64).to_le_bytes());
            h.update(p);
        }
        Key(hex::encode(h.finalize()))
    }

    /// The hex digest.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// The cache's place and size, and what is in it.
#[derive(Debug)]
pub struct CompileCache {
    entries: PathBuf,
    tmp: PathBuf,
    max_bytes: u64,
    index: Mutex<Index>,
}

#[derive(Debug, Default)]
struct Index {
    entries: HashMap<Key, Entry>,
    total: u64,
    /// Increases with each use; orders entries by recency within this process.
    clock: u64,
}

#[derive(Debug, Clone, Copy)]
struct Entry {
    bytes: u64,
    used: u64,
}

/// Counts of the cache, for `/health`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Stats {
    /// Entries.
    pub entries: usize,
    /// Their bytes on disk.
    pub bytes: u64,
    /// The bound.
    pub max_bytes: u64,
}

impl CompileCache {
    /// Opens (creating, mode 0700) the cache in `dir`, bounded to `max_bytes`: clears what an
    /// interrupted write left in `tmp/` and indexes the entries by recency.
    pub fn open(dir: &Path, max_bytes: u64) -> io::Result<CompileCache> {
        let entries = dir.join("entries");
        let tmp = dir.join("tmp");
        for d in [dir, &entries, &tmp] {
            fs::DirBuilder::new().recursive(true).mode(0o700).create(d)?;
            refuse_symlink(d)?;
        }
        fs::set_permissions(dir, fs::Permissions::from_mode(0o700))?;
        for e in fs::read_dir(&tmp)? {
            let _ = fs::remove_file(e?.path());
        }
        let mut found = Vec::new();
        for e in fs::read_dir(&entries)? {
            let e = e?;
            let name = e.file_name().to_string_lossy().into_owned();
            let meta = e.metadata()?;
            if !meta.is_file() || !is_hex_digest(&name) {
                continue;
            }
            found.push((meta.modified().unwrap_or(SystemTime::UNIX_EPOCH), Key(name), meta.len()));
        }
        found.sort();
        let mut index = Index::default();
        for (_, key, bytes) in found {
            index.clock += 1;
            index.total += bytes;
            index.entries.insert(key, Entry { bytes, used: index.clock });
        }
        let cache = CompileCache { entries, tmp, max_bytes, index: Mutex::new(index) };
        {
            let mut index = cache.lock();
            // an entry kept under a larger bound than this one's share goes too
            let large: Vec<Key> = index
                .entries
                .iter()
                .filter(|(_, e)| e.bytes > max_bytes / ENTRY_SHARE)
                .map(|(k, _)| k.clone())
                .collect();
            for k in large {
                cache.remove(&mut index, &k);
            }
            cache.evict(&mut index);
        }
        Ok(cache)
    }

    /// The artifact under `key`, if any (and it becomes the most recently used). An entry
    /// that cannot be read is dropped. The entry is opened under the lock (so eviction
    /// cannot unlink it in between) and read after, so hits do not wait for each other.
    pub fn get(&self, key: &Key) -> Option<Artifact> {
        let path = self.entries.join(key.as_str());
        let opened = {
            let mut index = self.lock();
            index.entries.get(key)?;
            index.clock += 1;
            let clock = index.clock;
            if let Some(e) = index.entries.get_mut(key) {
                e.used = clock;
            }
            File::options().read(true).write(true).open(&path)
        };
        match opened.and_then(|f| {
            // recency that survives a restart; a failure only costs that
            let _ = f.set_modified(SystemTime::now());
            read_entry(f)
        }) {
            Ok(a) => Some(a),
            Err(e) => {
                tracing::warn!(entry = %path.display(), error = %e, "dropping an unreadable compile cache entry");
                self.remove(&mut self.lock(), key);
                None
            }
        }
    }

    /// Keeps `artifact` under `key`, written atomically, then evicts the least recently used
    /// entries beyond the bound. An artifact over a quarter of the bound is not kept.
    pub fn put(&self, key: &Key, artifact: &Artifact) -> io::Result<()> {
        if artifact.size() > self.max_bytes / ENTRY_SHARE {
            return Ok(());
        }
        let tmp = tempfile::NamedTempFile::new_in(&self.tmp)?;
        write_entry(tmp.as_file(), artifact)?;
        tmp.as_file().sync_all()?;
        let bytes = tmp.as_file().metadata()?.len();
        let mut index = self.lock();
        tmp.persist(self.entries.join(key.as_str())).map_err(|e| e.error)?;
        if let Some(old) = index.entries.remove(key) {
            index.total -= old.bytes;
        }
        index.clock += 1;
        let used = index.clock;
        index.total += bytes;
        index.entries.insert(key.clone(), Entry { bytes, used });
        self.evict(&mut index);
        Ok(())
    }

    /// How many entries and bytes it holds.
    pub fn stats(&self) -> Stats {
        let index = self.lock();
        Stats { entries: index.entries.len(), bytes: index.total, max_bytes: self.max_bytes }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Index> {
        self.index.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn evict(&self, index: &mut Index) {
        while index.total > self.max_bytes {
            let Some(oldest) = index.entries.iter().min_by_key(|(_, e)| e.used).map(|(k, _)| k.clone()) else {
                break;
            };
            self.remove(index, &oldest);
        }
    }

    fn remove(&self, index: &mut Index, key: &Key) {
        if let Some(e) = index.entries.remove(key) {
            index.total -= e.bytes;
        }
        let _ = fs::remove_file(self.entries.join(key.as_str()));
    }
}

fn refuse_symlink(d: &Path) -> io::Result<()> {
    if fs::symlink_metadata(d)?.file_type().is_symlink() {
        return Err(io::Error::other(format!("{} is a symlink", d.display())));
    }
    Ok(())
}

fn is_hex_digest(name: &str) -> bool {
    name.len() == 64 && name.bytes().all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase())
}

fn write_entry(file: &File, a: &Artifact) -> io::Result<()> {
    let mut tar = tar::Builder::new(io::BufWriter::new(file));
    let mut add = |path: &str, bytes: &[u8], mode: u32| {
        let mut h = tar::Header::new_gnu();
        h.set_size(bytes.len() as u64);
        h.set_mode(mode);
        h.set_entry_type(tar::EntryType::Regular);
        tar.append_data(&mut h, path, bytes)
    };
    add("stdout", &a.stdout, 0o600)?;
    add("stderr", &a.stderr, 0o600)?;
    for f in &a.files {
        add(&format!("files/{}", f.path), &f.contents, if f.executable { 0o700 } else { 0o600 })?;
    }
    tar.into_inner()?.into_inner().map_err(io::IntoInnerError::into_error)?;
    Ok(())
}

/// Reads an entry this cache wrote; anything else in it is an error.
fn read_entry(file: File) -> io::Result<Artifact> {
    let bad = |m: String| io::Error::new(io::ErrorKind::InvalidData, m);
    let len = file.metadata()?.len();
    let mut a = Artifact::default();
    let mut tar = tar::Archive::new(io::BufReader::new(file));
    for e in tar.entries()? {
        let mut e = e?;
        if e.header().entry_type() != tar::EntryType::Regular {
            return Err(bad("an entry that is not a file".into()));
        }
        let name = String::from_utf8(e.path_bytes().into_owned()).map_err(|_| bad("a name not UTF-8".into()))?;
        let executable = e.header().mode()? & 0o100 != 0;
        // a damaged header's size is not trusted beyond the file's
        let mut bytes = Vec::with_capacity(usize::try_from(e.size().min(len)).unwrap_or(0));
        e.read_to_end(&mut bytes)?;
        match name.as_str() {
            "stdout" => a.stdout = bytes,
            "stderr" => a.stderr = bytes,
            _ => {
                let rel = name.strip_prefix("files/").ok_or_else(|| bad(format!("unexpected member {name:?}")))?;
                crate::sandbox::check_relative_path(rel).map_err(|e| bad(format!("member {name:?}: {e}")))?;
                a.files.push(InputFile { path: rel.to_owned(), contents: bytes, executable });
            }
        }
    }
    Ok(a)
}

#[cfg(test)]
mod tests;
