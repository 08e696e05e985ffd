//! Reading an OCI image layout (a directory, or a tar archive of one as `skopeo copy
//! ... oci-archive:` and `docker save` (Docker 25 and later) write): the index, the
//! manifest for this host's platform, its config, and its layers, with every blob's size
//! and digest checked as it is read. oci-spec parses the JSON documents; the blobs are
//! read from `blobs/<algorithm>/<hex>` only after the digest's text has been checked, so
//! a descriptor cannot name a path outside the layout.

use std::fs::File;
use std::io::{self, Read};
use std::os::unix::fs::OpenOptionsExt as _;
use std::path::{Path, PathBuf};

use oci_spec::image::{Descriptor, ImageConfiguration, ImageIndex, ImageManifest, MediaType};
use sha2::{Digest as _, Sha256, Sha512};

use super::ImageError;

/// The largest index, manifest or config read (they are small JSON documents).
const MAX_DOCUMENT: u64 = 4 << 20;
/// How deep indexes may nest (an index pointing at an index…).
const MAX_NESTING: usize = 4;
const REF_NAME: &str = "org.opencontainers.image.ref.name";
/// The whole name (`docker.io/library/python:3.12-slim`) that `docker save` and containerd
/// put beside a ref name that is only the tag.
const FULL_NAME: &str = "io.containerd.image.name";

/// How a layer blob is compressed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Compression {
    /// A plain tar.
    None,
    /// tar+gzip.
    Gzip,
    /// tar+zstd.
    Zstd,
}

impl Compression {
    /// The compression of a layer media type; `None` for a type that is not a layer we know.
    pub fn of(media_type: &MediaType) -> Option<Self> {
        match media_type {
            MediaType::ImageLayer | MediaType::ImageLayerNonDistributable => Some(Self::None),
            MediaType::ImageLayerGzip | MediaType::ImageLayerNonDistributableGzip => Some(Self::Gzip),
            MediaType::ImageLayerZstd | MediaType::ImageLayerNonDistributableZstd => Some(Self::Zstd),
            MediaType::Other(t) => match t.as_str() {
                // Docker's own names, as `docker save` of older images and some registries use
                "application/vnd.docker.image.rootfs.diff.tar.gzip" => Some(Self::Gzip),
                "application/vnd.docker.image.rootfs.diff.tar" => Some(Self::None),
                "application/vnd.docker.image.rootfs.diff.tar.zstd" => Some(Self::Zstd),
                _ => None,
            },
            _ => None,
        }
    }
}

/// One layer of the chosen manifest.
#[derive(Debug, Clone)]
pub struct Layer {
    /// Its descriptor (digest, size, media type).
    pub descriptor: Descriptor,
    /// How it is compressed.
    pub compression: Compression,
    /// The digest of its uncompressed tar, from the config's `rootfs.diff_ids`.
    pub diff_id: String,
}

/// The image a layout holds for this host.
#[derive(Debug)]
pub struct Resolved {
    /// The manifest's digest (`sha256:…`): the image's identity.
    pub manifest_digest: String,
    /// The name the index gave it (`org.opencontainers.image.ref.name`), if any.
    pub ref_name: Option<String>,
    /// The config's digest.
    pub config_digest: String,
    /// The parsed config.
    pub config: ImageConfiguration,
    /// The layers, lowest first.
    pub layers: Vec<Layer>,
}

/// An OCI layout directory (for an archive, unpacked into a scratch directory first).
#[derive(Debug)]
pub struct Layout {
    dir: PathBuf,
}

/// The platform names of this host, as OCI spells them.
pub fn host_platform() -> (&'static str, &'static str) {
    let arch = match std::env::consts::ARCH {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        "x86" => "386",
        other => other,
    };
    ("linux", arch)
}

impl Layout {
    /// A layout directory as it is.
    pub fn dir(dir: &Path) -> Result<Self, ImageError> {
        if !dir.join("index.json").is_file() {
            return Err(ImageError::Layout(format!("{}: no index.json: not an OCI image layout", dir.display())));
        }
        if let Ok(text) = std::fs::read_to_string(dir.join("oci-layout")) {
            let v: serde_json::Value = serde_json::from_str(&text)
                .map_err(|e| ImageError::Layout(format!("{}/oci-layout: {e}", dir.display())))?;
            if v["imageLayoutVersion"] != "1.0.0" {
                return Err(ImageError::Layout(format!("unsupported imageLayoutVersion {}", v["imageLayoutVersion"])));
            }
        }
        Ok(Self { dir: dir.to_owned() })
    }

    /// A tar archive of a layout, unpacked into `scratch` (an empty directory): only
    /// `oci-layout`, `index.json` and `blobs/<algorithm>/<hex>` regular files are taken.
    pub fn archive(archive: &Path, scratch: &Path) -> Result<Self, ImageError> {
        let f = File::open(archive).map_err(|e| ImageError::io(archive, e))?;
        let mut tar = tar::Archive::new(io::BufReader::new(f));
        std::fs::create_dir_all(scratch.join("blobs")).map_err(|e| ImageError::io(scratch, e))?;
        let entries = tar.entries().map_err(|e| ImageError::io(archive, e))?;
        for entry in entries {
            let mut entry = entry.map_err(|e| ImageError::io(archive, e))?;
            if !entry.header().entry_type().is_file() {
                continue;
            }
            let path = String::from_utf8_lossy(&entry.path_bytes()).into_owned();
            let path = path.trim_start_matches("./");
            let dest = match path.split('/').collect::<Vec<_>>().as_slice() {
                ["oci-layout"] | ["index.json"] => scratch.join(path),
                ["blobs", alg, hex] if valid_blob_name(alg, hex) => {
                    let d = scratch.join("blobs").join(alg);
                    std::fs::create_dir_all(&d).map_err(|e| ImageError::io(&d, e))?;
                    d.join(hex)
                }
                _ => continue,
            };
            // create_new: a name twice in the archive is refused, never overwritten
            let mut out = std::fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .open(&dest)
                .map_err(|e| ImageError::Layout(format!("{}: {path}: {e}", archive.display())))?;
            io::copy(&mut entry, &mut out).map_err(|e| ImageError::io(archive, e))?;
        }
        Self::dir(scratch)
            .map_err(|_| ImageError::Layout(format!("{}: no index.json: not an OCI archive", archive.display())))
    }

    /// Chooses the manifest for this host (and `reference`, matched against the index's
    /// ref names, when given) and reads its config.
    pub fn resolve(&self, reference: Option<&str>) -> Result<Resolved, ImageError> {
        let index_bytes = read_capped(&self.dir.join("index.json"))?;
        let index =
            ImageIndex::from_reader(&index_bytes[..]).map_err(|e| ImageError::Layout(format!("index.json: {e}")))?;
        let (desc, ref_name) = self.choose(&index, reference, 0)?;
        let manifest_bytes = self.document(&desc)?;
        let manifest = ImageManifest::from_reader(&manifest_bytes[..])
            .map_err(|e| ImageError::Layout(format!("manifest {}: {e}", desc.digest())))?;
        let config_desc = manifest.config();
        match config_desc.media_type() {
            MediaType::ImageConfig => {}
            MediaType::Other(t) if t == "application/vnd.docker.container.image.v1+json" => {}
            other => return Err(ImageError::MediaType(format!("{other} as the config: not an image"))),
        }
        let config_bytes = self.document(config_desc)?;
        let config = ImageConfiguration::from_reader(&config_bytes[..])
            .map_err(|e| ImageError::Layout(format!("config {}: {e}", config_desc.digest())))?;
        let (os, arch) = host_platform();
        if config.os().to_string() != os || config.architecture().to_string() != arch {
            return Err(ImageError::Platform(format!(
                "the image is for {}/{}, this host is {os}/{arch}",
                config.os(),
                config.architecture()
            )));
        }
        let diff_ids = config.rootfs().diff_ids();
        if diff_ids.len() != manifest.layers().len() {
            return Err(ImageError::Layout(format!(
                "the manifest has {} layers and the config {} diff_ids",
                manifest.layers().len(),
                diff_ids.len()
            )));
        }
        let mut layers = Vec::new();
        for (d, diff_id) in manifest.layers().iter().zip(diff_ids) {
            let compression = Compression::of(d.media_type()).ok_or_else(|| {
                ImageError::MediaType(format!(
                    "{} for layer {}: not a layer type codeexec knows",
                    d.media_type(),
                    d.digest()
                ))
            })?;
            parse_digest(diff_id)?;
            layers.push(Layer { descriptor: d.clone(), compression, diff_id: diff_id.clone() });
        }
        Ok(Resolved {
            manifest_digest: desc.digest().to_string(),
            ref_name,
            config_digest: config_desc.digest().to_string(),
            config,
            layers,
        })
    }

    fn choose(
        &self,
        index: &ImageIndex,
        reference: Option<&str>,
        depth: usize,
    ) -> Result<(Descriptor, Option<String>), ImageError> {
        if depth > MAX_NESTING {
            return Err(ImageError::Layout("indexes nested too deep".into()));
        }
        let (os, arch) = host_platform();
        let ref_of = |d: &Descriptor| d.annotations().as_ref().and_then(|a| a.get(REF_NAME)).cloned();
        let name_of = |d: &Descriptor| {
            d.annotations().as_ref().and_then(|a| a.get(FULL_NAME).or_else(|| a.get(REF_NAME))).cloned()
        };
        let fits = |d: &Descriptor| {
            d.platform().as_ref().is_none_or(|p| p.os().to_string() == os && p.architecture().to_string() == arch)
        };
        let named: Vec<&Descriptor> = match reference {
            Some(r) => index.manifests().iter().filter(|d| ref_of(d).as_deref() == Some(r)).collect(),
            None => index.manifests().iter().collect(),
        };
        if named.is_empty() {
            let refs: Vec<String> = index.manifests().iter().filter_map(ref_of).collect();
            return Err(ImageError::Layout(format!(
                "no manifest named {:?} in the index (it names: {})",
                reference.unwrap_or(""),
                if refs.is_empty() { "none".into() } else { refs.join(", ") }
            )));
        }
        let candidates: Vec<&Descriptor> = named.iter().copied().filter(|d| fits(d)).collect();
        let chosen = match candidates.as_slice() {
            [one] => *one,
            [] => {
                return Err(ImageError::Platform(format!("no manifest in the index is for {os}/{arch}")));
            }
            _ => {
                let refs: Vec<String> = candidates.iter().filter_map(|d| ref_of(d)).collect();
                return Err(ImageError::Layout(format!(
                    "the index holds {} images for this platform; name one with --ref ({})",
                    candidates.len(),
                    refs.join(", ")
                )));
            }
        };
        let is_index = matches!(chosen.media_type(), MediaType::ImageIndex)
            || matches!(chosen.media_type(), MediaType::Other(t) if t == "application/vnd.docker.distribution.manifest.list.v2+json");
        if is_index {
            let bytes = self.document(chosen)?;
            let nested = ImageIndex::from_reader(&bytes[..])
                .map_err(|e| ImageError::Layout(format!("index {}: {e}", chosen.digest())))?;
            let (d, inner_ref) = self.choose(&nested, None, depth + 1)?;
            return Ok((d, name_of(chosen).or(inner_ref)));
        }
        let is_manifest = matches!(chosen.media_type(), MediaType::ImageManifest)
            || matches!(chosen.media_type(), MediaType::Other(t) if t == "application/vnd.docker.distribution.manifest.v2+json");
        if !is_manifest {
            return Err(ImageError::MediaType(format!("{} in the index: not an image manifest", chosen.media_type())));
        }
        Ok((chosen.clone(), name_of(chosen)))
    }

    /// A small blob, read whole and checked.
    fn document(&self, d: &Descriptor) -> Result<Vec<u8>, ImageError> {
        if d.size() > MAX_DOCUMENT {
            return Err(ImageError::Layout(format!(
                "{}: {} bytes is too large for a JSON document",
                d.digest(),
                d.size()
            )));
        }
        let mut r = self.blob(d)?;
        let mut bytes = Vec::new();
        r.read_to_end(&mut bytes).map_err(|e| ImageError::io(&self.blob_path(d), e))?;
        r.verify()?;
        Ok(bytes)
    }

    fn blob_path(&self, d: &Descriptor) -> PathBuf {
        self.dir.join("blobs").join(d.digest().algorithm().as_ref()).join(d.digest().digest())
    }

    /// A blob as a reader that checks its size and digest: read it to the end, then call
    /// [`Verified::verify`].
    pub fn blob(&self, d: &Descriptor) -> Result<Verified<File>, ImageError> {
        let digest = d.digest().to_string();
        parse_digest(&digest)?;
        let path = self.blob_path(d);
        let f = std::fs::OpenOptions::new()
            .read(true)
            .custom_flags(libc::O_NOFOLLOW)
            .open(&path)
            .map_err(|e| ImageError::Layout(format!("blob {digest}: {e}")))?;
        Verified::new(f, &digest, Some(d.size()))
    }
}

fn read_capped(path: &Path) -> Result<Vec<u8>, ImageError> {
    let f = File::open(path).map_err(|e| ImageError::io(path, e))?;
    let mut bytes = Vec::new();
    f.take(MAX_DOCUMENT + 1).read_to_end(&mut bytes).map_err(|e| ImageError::io(path, e))?;
    if bytes.len() as u64 > MAX_DOCUMENT {
        return Err(ImageError::Layout(format!("{}: too large", path.display())));
    }
    Ok(bytes)
}

fn valid_blob_name(alg: &str, hex: &str) -> bool {
    let len = match alg {
        "sha256" => 64,
        "sha512" => 128,
        _ => return false,
    };
    hex.len() == len && hex.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

/// Checks `algorithm:hex` text (sha256 or sha512, lowercase hex of the right length).
pub fn parse_digest(digest: &str) -> Result<(&str, &str), ImageError> {
    match digest.split_once(':') {
        Some((alg, hex)) if valid_blob_name(alg, hex) => Ok((alg, hex)),
        _ => Err(ImageError::Layout(format!("{digest:?} is not a sha256 or sha512 digest"))),
    }
}

enum Hasher {
    Sha256(Sha256),
    Sha512(Sha512),
}

/// A reader that hashes and counts what passes through it.
pub struct Verified<R> {
    inner: R,
    hasher: Hasher,
    expected: String,
    size: Option<u64>,
    read: u64,
}

impl<R> std::fmt::Debug for Verified<R> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Verified").field("expected", &self.expected).field("read", &self.read).finish()
    }
}

impl<R: Read> Verified<R> {
    /// Expects `digest` (`sha256:…` or `sha512:…`) and, when given, exactly `size` bytes.
    pub fn new(inner: R, digest: &str, size: Option<u64>) -> Result<Self, ImageError> {
        let (alg, _) = parse_digest(digest)?;
        let hasher = if alg == "sha512" { Hasher::Sha512(Sha512::new()) } else { Hasher::Sha256(Sha256::new()) };
        Ok(Self { inner, hasher, expected: digest.to_owned(), size, read: 0 })
    }

    /// Reads what is left, then compares size and digest.
    pub fn verify(mut self) -> Result<(), ImageError> {
        io::copy(&mut self, &mut io::sink()).map_err(|e| ImageError::Layout(format!("{}: {e}", self.expected)))?;
        if let Some(size) = self.size
            && size != self.read
        {
            return Err(ImageError::Digest {
                what: self.expected.clone(),
                why: format!("{} bytes where the descriptor says {size}", self.read),
            });
        }
        let actual = match self.hasher {
            Hasher::Sha256(h) => format!("sha256:{}", hex::encode(h.finalize())),
            Hasher::Sha512(h) => format!("sha512:{}", hex::encode(h.finalize())),
        };
        if actual != self.expected {
            return Err(ImageError::Digest { what: self.expected, why: format!("the content's digest is {actual}") });
        }
        Ok(())
    }
}

impl<R: Read> Read for Verified<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.read += n as u64;
        if let Some(size) = self.size {
            // a blob longer than its descriptor says is cut off at once, not read to its end
            if self.read > size {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidData,
                    format!("longer than the descriptor's {size} bytes"),
                ));
            }
        }
        match &mut self.hasher {
            Hasher::Sha256(h) => h.update(&buf[..n]),
            Hasher::Sha512(h) => h.update(&buf[..n]),
        }
        Ok(n)
    }
}
