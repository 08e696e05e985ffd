//! Root filesystem images: OCI image layouts imported into a content-addressed store,
//! unpacked once and read-only afterwards.
//!
//! The store (`/var/lib/codeexec/images` by default, mode 0700):
//!
//! ```text
//! lock                 flock: held exclusively by an import or a removal
//! names.json           {"python:3.11": "sha256:…"}, replaced atomically
//! images/<hex>/        one per manifest digest
//!     image.json       what `image ls` shows (config digest, env, layers, sizes…)
//!     rootfs/          the unpacked tree
//!     lease            flock: held shared by whoever uses the image; removal needs it
//!                      exclusively, so an image in use is never removed under a run
//! tmp/                 imports in progress; what is left there after a crash is removed
//!                      by the next import or removal, and never used
//! ```
//!
//! An import unpacks into `tmp/`, then renames the whole directory into `images/` and
//! only then names it: a failed or interrupted import leaves nothing anyone can use.
//! Importing an image already in the store (the same manifest digest) only adds the name.

pub mod layout;
pub mod unpack;

use std::collections::BTreeMap;
use std::fs::{File, OpenOptions};
use std::io::{self, Read, Write};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::time::Instant;

use nix::fcntl::{Flock, FlockArg};
use serde::{Deserialize, Serialize};

use layout::{Compression, Layout, Verified};
use unpack::{Stats, Unpacker};

/// Where the daemon and `codeexec image` keep images unless told otherwise.
pub const DEFAULT_STORE: &str = "/var/lib/codeexec/images";
/// The most an image may unpack to.
pub const MAX_UNPACKED: u64 = 32 << 30;

/// Why an image operation failed.
#[derive(Debug, thiserror::Error)]
pub enum ImageError {
    /// Reading or writing a file failed.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The error.
        source: io::Error,
    },
    /// The layout or archive is not a usable OCI image layout.
    #[error("{0}")]
    Layout(String),
    /// A blob's content does not match its descriptor.
    #[error("blob {what}: {why}")]
    Digest {
        /// The blob's digest as the descriptor gives it.
        what: String,
        /// What did not match.
        why: String,
    },
    /// A media type codeexec does not handle.
    #[error("unsupported media type {0}")]
    MediaType(String),
    /// The image is for another platform.
    #[error("{0}")]
    Platform(String),
    /// A layer would write outside its root, or holds what an image may not.
    #[error("layer {layer}: {source}")]
    Unpack {
        /// The layer's digest.
        layer: String,
        /// What went wrong.
        source: unpack::UnpackError,
    },
    /// A bad image name.
    #[error("{0:?} is not an image name (lower-case letters, digits, `._-/`, then an optional `:tag`)")]
    Name(String),
    /// No image of that name or digest.
    #[error("no image {0:?} in the store")]
    NotFound(String),
    /// The image is in use.
    #[error("image {0} is in use by a run or a daemon; it cannot be removed now")]
    InUse(String),
}

impl ImageError {
    fn io(path: &Path, source: io::Error) -> Self {
        Self::Io { path: path.to_owned(), source }
    }
}

/// One layer as the store records it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LayerRecord {
    /// The blob's digest.
    pub digest: String,
    /// Its compressed size.
    pub size: u64,
    /// How it was compressed.
    pub compression: Compression,
}

/// An image in the store.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Record {
    /// The manifest's digest: the image's identity.
    pub digest: String,
    /// The names that point at it (filled in from `names.json`, not stored here).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub names: Vec<String>,
    /// The config's digest.
    pub config_digest: String,
    /// `linux/amd64` and the like.
    pub platform: String,
    /// The config's environment (`NAME=value`).
    pub env: Vec<String>,
    /// The config's working directory.
    pub working_dir: Option<String>,
    /// The layers, lowest first.
    pub layers: Vec<LayerRecord>,
    /// What unpacking did.
    pub stats: Stats,
    /// Bytes the unpacked tree's files take (hard links once).
    pub size_bytes: u64,
    /// When it was imported (seconds since the epoch).
    pub imported_at: u64,
    /// Where it came from.
    pub source: String,
}

/// What an import did.
#[derive(Debug)]
pub struct Imported {
    /// The image.
    pub record: Record,
    /// It was in the store already (only the name was added).
    pub existed: bool,
    /// How long it took.
    pub elapsed: std::time::Duration,
}

/// Holds an image in use; while any lease is held it cannot be removed.
#[derive(Debug)]
pub struct Lease {
    _lock: Flock<File>,
    rootfs: PathBuf,
}

impl Lease {
    /// The image's unpacked root.
    pub fn rootfs(&self) -> &Path {
        &self.rootfs
    }
}

/// The image store.
#[derive(Debug, Clone)]
pub struct Store {
    root: PathBuf,
}

/// Checks an image name: `name[:tag]`, where the name is lower-case letters, digits and
/// `._-/` (starting with a letter or digit) and the tag letters, digits and `._-`.
pub fn check_name(name: &str) -> Result<(), ImageError> {
    let bad = || ImageError::Name(name.to_owned());
    let (repo, tag) = name.split_once(':').unwrap_or((name, "latest"));
    let repo_ok = repo.len() <= 128
        && repo.bytes().next().is_some_and(|b| b.is_ascii_lowercase() || b.is_ascii_digit())
        && repo.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"._-/".contains(&b))
        && !repo.contains("..")
        && !repo.ends_with('/');
    let tag_ok =
        !tag.is_empty() && tag.len() <= 128 && tag.bytes().all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b));
    if repo_ok && tag_ok { Ok(()) } else { Err(bad()) }
}

/// `name` with `:latest` when it has no tag.
pub fn full_name(name: &str) -> String {
    if name.contains(':') { name.to_owned() } else { format!("{name}:latest") }
}

fn hex_of(digest: &str) -> Result<&str, ImageError> {
    let (alg, hex) = layout::parse_digest(digest)?;
    if alg != "sha256" {
        return Err(ImageError::Layout(format!("{digest}: manifests are named by sha256 here")));
    }
    Ok(hex)
}

impl Store {
    /// The store at `root`, made (mode 0700) if missing.
    pub fn open(root: &Path) -> Result<Self, ImageError> {
        for d in [root.to_owned(), root.join("images"), root.join("tmp")] {
            std::fs::DirBuilder::new().recursive(true).mode(0o700).create(&d).map_err(|e| ImageError::io(&d, e))?;
        }
        Ok(Self { root: root.to_owned() })
    }

    /// Where the store is.
    pub fn root(&self) -> &Path {
        &self.root
    }

    fn lock(&self) -> Result<Flock<File>, ImageError> {
        let path = self.root.join("lock");
        let f = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .mode(0o600)
            .custom_flags(libc::O_CLOEXEC)
            .open(&path)
            .map_err(|e| ImageError::io(&path, e))?;
        Flock::lock(f, FlockArg::LockExclusive).map_err(|(_, e)| ImageError::io(&path, e.into()))
    }

    /// Removes what interrupted imports and removals left in `tmp/` (with the lock held).
    fn clean_tmp(&self) {
        if let Ok(entries) = std::fs::read_dir(self.root.join("tmp")) {
            for e in entries.flatten() {
                // remove_dir_all does not follow symlinks (it works with openat and
                // unlinkat beneath the directory)
                let _ = std::fs::remove_dir_all(e.path()).or_else(|_| std::fs::remove_file(e.path()));
            }
        }
    }

    fn names(&self) -> Result<BTreeMap<String, String>, ImageError> {
        let path = self.root.join("names.json");
        match std::fs::read(&path) {
            Ok(bytes) => {
                serde_json::from_slice(&bytes).map_err(|e| ImageError::Layout(format!("{}: {e}", path.display())))
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(BTreeMap::new()),
            Err(e) => Err(ImageError::io(&path, e)),
        }
    }

    fn write_names(&self, names: &BTreeMap<String, String>) -> Result<(), ImageError> {
        let path = self.root.join("names.json");
        let tmp = self.root.join("names.json.tmp");
        let mut f = OpenOptions::new()
            .create(true)
            .truncate(true)
            .write(true)
            .mode(0o600)
            .custom_flags(libc::O_NOFOLLOW)
            .open(&tmp)
            .map_err(|e| ImageError::io(&tmp, e))?;
        let text = serde_json::to_vec_pretty(names).map_err(|e| ImageError::Layout(e.to_string()))?;
        f.write_all(&text).and_then(|()| f.sync_all()).map_err(|e| ImageError::io(&tmp, e))?;
        std::fs::rename(&tmp, &path).map_err(|e| ImageError::io(&path, e))
    }

    fn image_dir(&self, digest: &str) -> Result<PathBuf, ImageError> {
        Ok(self.root.join("images").join(hex_of(digest)?))
    }

    fn read_record(&self, digest: &str) -> Result<Record, ImageError> {
        let path = self.image_dir(digest)?.join("image.json");
        let bytes = std::fs::read(&path).map_err(|e| match e.kind() {
            io::ErrorKind::NotFound => ImageError::NotFound(digest.to_owned()),
            _ => ImageError::io(&path, e),
        })?;
        serde_json::from_slice(&bytes).map_err(|e| ImageError::Layout(format!("{}: {e}", path.display())))
    }

    /// Imports the image of an OCI layout directory or archive at `source` under `name`
    /// (or the index's ref name); `reference` picks a manifest among several.
    pub fn import(
        &self,
        source: &Path,
        name: Option<&str>,
        reference: Option<&str>,
        progress: &mut dyn FnMut(&str),
    ) -> Result<Imported, ImageError> {
        let started = Instant::now();
        if let Some(n) = name {
            check_name(n)?;
        }
        let _lock = self.lock()?;
        self.clean_tmp();
        let work = self.root.join("tmp").join(uuid::Uuid::new_v4().simple().to_string());
        std::fs::DirBuilder::new().mode(0o700).create(&work).map_err(|e| ImageError::io(&work, e))?;
        let result = self.import_into(source, name, reference, &work, progress);
        let _ = std::fs::remove_dir_all(&work);
        let (record, existed) = result?;
        Ok(Imported { record, existed, elapsed: started.elapsed() })
    }

    fn import_into(
        &self,
        source: &Path,
        name: Option<&str>,
        reference: Option<&str>,
        work: &Path,
        progress: &mut dyn FnMut(&str),
    ) -> Result<(Record, bool), ImageError> {
        let meta = std::fs::metadata(source).map_err(|e| ImageError::io(source, e))?;
        let layout = if meta.is_dir() {
            Layout::dir(source)?
        } else {
            progress(&format!("reading the archive {}", source.display()));
            Layout::archive(source, &work.join("archive"))?
        };
        let resolved = layout.resolve(reference)?;
        let name = match name.map(str::to_owned).or_else(|| resolved.ref_name.clone()) {
            Some(n) => full_name(&n),
            None => return Err(ImageError::Layout("the index names no image: give one with --name NAME:TAG".into())),
        };
        check_name(&name)?;
        let digest = resolved.manifest_digest.clone();
        let dir = self.image_dir(&digest)?;
        let existed = dir.join("image.json").is_file();
        if !existed {
            let staged = work.join("image");
            let rootfs = staged.join("rootfs");
            std::fs::DirBuilder::new()
                .recursive(true)
                .mode(0o755)
                .create(&rootfs)
                .map_err(|e| ImageError::io(&rootfs, e))?;
            let mut unpacker = Unpacker::new(&rootfs, MAX_UNPACKED).map_err(|e| ImageError::io(&rootfs, e))?;
            let n = resolved.layers.len();
            for (i, layer) in resolved.layers.iter().enumerate() {
                let d = &layer.descriptor;
                progress(&format!(
                    "layer {}/{n}: {} ({} MiB, {:?})",
                    i + 1,
                    d.digest(),
                    d.size() >> 20,
                    layer.compression
                ));
                // the compressed blob is checked whole before any of it is unpacked
                layout.blob(d)?.verify()?;
                let blob = io::BufReader::new(layout.blob(d)?);
                let tar: Box<dyn Read> = match layer.compression {
                    Compression::None => Box::new(blob),
                    Compression::Gzip => Box::new(flate2::read::MultiGzDecoder::new(blob)),
                    Compression::Zstd => {
                        Box::new(zstd::stream::read::Decoder::with_buffer(blob).map_err(|e| ImageError::io(source, e))?)
                    }
                };
                let mut tar = Verified::new(tar, &layer.diff_id, None)?;
                unpacker
                    .apply(&mut tar)
                    .map_err(|e| ImageError::Unpack { layer: d.digest().to_string(), source: e })?;
                tar.verify().map_err(|e| match e {
                    ImageError::Digest { why, .. } => {
                        ImageError::Digest { what: format!("{} (uncompressed)", d.digest()), why }
                    }
                    e => e,
                })?;
            }
            let stats = unpacker.stats();
            let config = resolved.config.config().as_ref();
            let record = Record {
                digest: digest.clone(),
                names: Vec::new(),
                config_digest: resolved.config_digest.clone(),
                platform: format!("{}/{}", resolved.config.os(), resolved.config.architecture()),
                env: config.and_then(|c| c.env().clone()).unwrap_or_default(),
                working_dir: config.and_then(|c| c.working_dir().clone()),
                layers: resolved
                    .layers
                    .iter()
                    .map(|l| LayerRecord {
                        digest: l.descriptor.digest().to_string(),
                        size: l.descriptor.size(),
                        compression: l.compression,
                    })
                    .collect(),
                stats,
                size_bytes: stats.bytes,
                imported_at: std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .map_or(0, |d| d.as_secs()),
                source: source.display().to_string(),
            };
            let json = serde_json::to_vec_pretty(&record).map_err(|e| ImageError::Layout(e.to_string()))?;
            std::fs::write(staged.join("image.json"), json).map_err(|e| ImageError::io(&staged, e))?;
            File::create(staged.join("lease")).map_err(|e| ImageError::io(&staged, e))?;
            // durable before it is visible
            let fd = File::open(&staged).map_err(|e| ImageError::io(&staged, e))?;
            nix::unistd::syncfs(&fd).map_err(|e| ImageError::io(&staged, e.into()))?;
            std::fs::rename(&staged, &dir).map_err(|e| ImageError::io(&dir, e))?;
        }
        let mut names = self.names()?;
        names.insert(name.clone(), digest.clone());
        self.write_names(&names)?;
        let mut record = self.read_record(&digest)?;
        record.names = names.iter().filter(|(_, d)| **d == digest).map(|(n, _)| n.clone()).collect();
        Ok((record, existed))
    }

    /// Every image, with its names.
    pub fn list(&self) -> Result<Vec<Record>, ImageError> {
        let names = self.names()?;
        let mut out = Vec::new();
        let dir = self.root.join("images");
        for e in std::fs::read_dir(&dir).map_err(|e| ImageError::io(&dir, e))?.flatten() {
            let Some(hex) = e.file_name().to_str().map(str::to_owned) else { continue };
            let digest = format!("sha256:{hex}");
            let Ok(mut r) = self.read_record(&digest) else { continue };
            r.names = names.iter().filter(|(_, d)| **d == digest).map(|(n, _)| n.clone()).collect();
            out.push(r);
        }
        out.sort_by(|a, b| a.names.first().cmp(&b.names.first()).then(a.digest.cmp(&b.digest)));
        Ok(out)
    }

    /// The digest a name (`name[:tag]`), a full digest or a unique digest prefix of at
    /// least 12 hex digits stands for.
    pub fn resolve(&self, what: &str) -> Result<String, ImageError> {
        let names = self.names()?;
        if let Some(d) = names.get(&full_name(what)) {
            return Ok(d.clone());
        }
        let hex = what.strip_prefix("sha256:").unwrap_or(what);
        if hex.len() >= 12 && hex.bytes().all(|b| b.is_ascii_hexdigit()) {
            let found: Vec<Record> =
                self.list()?.into_iter().filter(|r| r.digest["sha256:".len()..].starts_with(hex)).collect();
            if let [one] = found.as_slice() {
                return Ok(one.digest.clone());
            }
        }
        Err(ImageError::NotFound(what.to_owned()))
    }

    /// The image's record and a lease on it: it stays in the store while the lease lives.
    pub fn lease(&self, what: &str) -> Result<(Record, Lease), ImageError> {
        let digest = self.resolve(what)?;
        let dir = self.image_dir(&digest)?;
        let path = dir.join("lease");
        let f = OpenOptions::new().read(true).custom_flags(libc::O_CLOEXEC | libc::O_NOFOLLOW).open(&path).map_err(
            |e| match e.kind() {
                io::ErrorKind::NotFound => ImageError::NotFound(what.to_owned()),
                _ => ImageError::io(&path, e),
            },
        )?;
        let lock = Flock::lock(f, FlockArg::LockSharedNonblock).map_err(|(_, e)| match e {
            nix::errno::Errno::EWOULDBLOCK => ImageError::InUse(digest.clone()),
            e => ImageError::io(&path, e.into()),
        })?;
        // a removal may have moved the image away between the open and the lock: the
        // lease counts only if the file locked is still the image's
        use std::os::unix::fs::MetadataExt as _;
        let locked = lock.metadata().map_err(|e| ImageError::io(&path, e))?;
        match std::fs::symlink_metadata(&path) {
            Ok(now) if now.ino() == locked.ino() && now.dev() == locked.dev() => {}
            _ => return Err(ImageError::NotFound(what.to_owned())),
        }
        let record = self.read_record(&digest)?;
        Ok((record, Lease { _lock: lock, rootfs: dir.join("rootfs") }))
    }

    /// Removes a name; the image goes when no name is left (or, given by digest, with all
    /// its names). Refused while the image is leased. Returns whether the image went.
    pub fn remove(&self, what: &str) -> Result<bool, ImageError> {
        let _lock = self.lock()?;
        self.clean_tmp();
        let digest = self.resolve(what)?;
        let mut names = self.names()?;
        let by_name = names.contains_key(&full_name(what));
        if by_name {
            names.remove(&full_name(what));
        } else {
            names.retain(|_, d| *d != digest);
        }
        if names.values().any(|d| *d == digest) {
            self.write_names(&names)?;
            return Ok(false);
        }
        let dir = self.image_dir(&digest)?;
        let path = dir.join("lease");
        let f = File::open(&path).map_err(|e| ImageError::io(&path, e))?;
        // held until the directory has been moved away: no lease can start in between
        let _exclusive = Flock::lock(f, FlockArg::LockExclusiveNonblock).map_err(|(_, e)| match e {
            nix::errno::Errno::EWOULDBLOCK => ImageError::InUse(digest.clone()),
            e => ImageError::io(&path, e.into()),
        })?;
        self.write_names(&names)?;
        let graveyard = self.root.join("tmp").join(format!("rm-{}", uuid::Uuid::new_v4().simple()));
        std::fs::rename(&dir, &graveyard).map_err(|e| ImageError::io(&dir, e))?;
        let _ = std::fs::remove_dir_all(&graveyard);
        Ok(true)
    }
}

#[cfg(test)]
mod tests;
