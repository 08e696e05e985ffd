//! A package's files, read into memory within bounds: from a directory (the command
//! line), or from a tar archive, gzip-compressed or not (an upload). Only regular files
//! are kept; names are clean relative paths.

use std::collections::BTreeMap;
use std::io::Read;
use std::path::Path;

use super::ProblemError;

/// How much a package may hold.
#[derive(Debug, Clone, Copy)]
pub struct Bounds {
    /// Files.
    pub files: usize,
    /// Bytes of all files together.
    pub bytes: u64,
}

/// A package's files by path (relative, `/`-separated).
pub type Files = BTreeMap<String, Vec<u8>>;

/// Reads every regular file under `dir` (symlinks followed: the package is the caller's
/// own), within `bounds`.
pub fn read_dir(dir: &Path, bounds: Bounds) -> Result<Files, ProblemError> {
    let mut files = Files::new();
    let mut total = 0u64;
    let mut stack = vec![(dir.to_path_buf(), String::new())];
    while let Some((path, prefix)) = stack.pop() {
        let entries = std::fs::read_dir(&path).map_err(|e| ProblemError::Read(path.display().to_string(), e))?;
        for entry in entries {
            let entry = entry.map_err(|e| ProblemError::Read(path.display().to_string(), e))?;
            let name = entry.file_name().to_string_lossy().into_owned();
            let rel = if prefix.is_empty() { name } else { format!("{prefix}/{name}") };
            let meta = std::fs::metadata(entry.path()).map_err(|e| ProblemError::Read(rel.clone(), e))?;
            if meta.is_dir() {
                if rel.matches('/').count() < 16 {
                    stack.push((entry.path(), rel));
                }
                continue;
            }
            if !meta.is_file() {
                continue;
            }
            total += meta.len();
            if files.len() >= bounds.files || total > bounds.bytes {
                return Err(too_big(bounds));
            }
            let bytes = std::fs::read(entry.path()).map_err(|e| ProblemError::Read(rel.clone(), e))?;
            files.insert(rel, bytes);
        }
    }
    Ok(files)
}

/// Unpacks a tar archive (gzip-compressed or not) in memory, within `bounds`. A single
/// top directory holding everything (as `tar czf p.tgz problem/` makes) is taken away.
pub fn unpack(archive: &[u8], bounds: Bounds) -> Result<Files, ProblemError> {
    let reader: Box<dyn Read + '_> = if archive.starts_with(&[0x1f, 0x8b]) {
        Box::new(flate2::read::GzDecoder::new(archive))
    } else {
        Box::new(archive)
    };
    let bad = |e: std::io::Error| ProblemError::Archive(e.to_string());
    let mut tar = tar::Archive::new(reader);
    let mut files = Files::new();
    let mut total = 0u64;
    for entry in tar.entries().map_err(bad)? {
        let mut entry = entry.map_err(bad)?;
        if !entry.header().entry_type().is_file() {
            continue;
        }
        let path = entry.path().map_err(bad)?.to_string_lossy().into_owned();
        let name = path.trim_start_matches("./").to_owned();
        crate::sandbox::check_relative_path(&name).map_err(ProblemError::Archive)?;
        let size = entry.header().size().map_err(bad)?;
        total = total.saturating_add(size);
        if files.len() >= bounds.files || total > bounds.bytes {
            return Err(too_big(bounds));
        }
        let mut bytes = Vec::with_capacity(usize::try_from(size).unwrap_or(0));
        entry.by_ref().take(size).read_to_end(&mut bytes).map_err(bad)?;
        files.insert(name, bytes);
    }
    Ok(strip_top(files))
}

/// Without the one directory everything is in, when there is one and no `problem.yaml`
/// at the top.
fn strip_top(files: Files) -> Files {
    if files.contains_key("problem.yaml") {
        return files;
    }
    let Some(top) = files.keys().next().and_then(|k| k.split_once('/')).map(|(t, _)| format!("{t}/")) else {
        return files;
    };
    if !files.keys().all(|k| k.starts_with(&top)) {
        return files;
    }
    files.into_iter().map(|(k, v)| (k[top.len()..].to_owned(), v)).collect()
}

fn too_big(b: Bounds) -> ProblemError {
    ProblemError::TooBig(format!("at most {} files and {} MiB", b.files, b.bytes >> 20))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tar(entries: &[(&str, &[u8])], gzip: bool) -> Vec<u8> {
        let mut b = tar::Builder::new(Vec::new());
        for (name, data) in entries {
            let mut h = tar::Header::new_gnu();
            h.set_size(data.len() as u64);
            h.set_mode(0o644);
            h.set_cksum();
            b.append_data(&mut h, name, *data).unwrap();
        }
        let raw = b.into_inner().unwrap();
        if !gzip {
            return raw;
        }
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        std::io::Write::write_all(&mut gz, &raw).unwrap();
        gz.finish().unwrap()
    }

    const BOUNDS: Bounds = Bounds { files: 10, bytes: 1000 };

    #[test]
    fn archives_unpack_in_memory_without_their_top_directory() {
        for gzip in [false, true] {
            let a = tar(&[("p/problem.yaml", b"name: x"), ("p/data/sample/1.in", b"1")], gzip);
            let files = unpack(&a, BOUNDS).unwrap();
            assert_eq!(files.keys().collect::<Vec<_>>(), ["data/sample/1.in", "problem.yaml"]);
        }
        let a = tar(&[("problem.yaml", b""), ("x/y", b"")], false);
        assert!(unpack(&a, BOUNDS).unwrap().contains_key("x/y"), "no single top directory: kept");
    }

    #[test]
    fn archives_are_bounded_and_names_checked() {
        let many: Vec<(String, &[u8])> = (0..11).map(|i| (format!("f{i}"), &b""[..])).collect();
        let refs: Vec<(&str, &[u8])> = many.iter().map(|(n, d)| (n.as_str(), *d)).collect();
        assert!(matches!(unpack(&tar(&refs, false), BOUNDS), Err(ProblemError::TooBig(_))));
        let big = vec![0u8; 1001];
        assert!(matches!(unpack(&tar(&[("big", &big)], true), BOUNDS), Err(ProblemError::TooBig(_))));
        let mut evil = tar(&[("aaaaaaaaaaaaaaa", b"x")], false);
        evil[..15].copy_from_slice(b"../../etc/pwned");
        // the header's checksum covers the name: recompute it as an attacker would
        let sum: u32 =
            evil[..512].iter().enumerate().map(|(i, &b)| if (148..156).contains(&i) { 32 } else { u32::from(b) }).sum();
        evil[148..156].copy_from_slice(format!("{sum:06o}\0 ").as_bytes());
        let e = unpack(&evil, BOUNDS).unwrap_err();
        assert!(matches!(&e, ProblemError::Archive(m) if m.contains("..")), "{e:?}");
    }
}
