use std::io::Write as _;

use serde_json::json;
use sha2::{Digest as _, Sha256};

use super::*;

fn sha(bytes: &[u8]) -> String {
    format!("sha256:{}", hex::encode(Sha256::digest(bytes)))
}

fn tar_of(files: &[(&str, &str)]) -> Vec<u8> {
    let mut b = tar::Builder::new(Vec::new());
    for (path, data) in files {
        let mut h = tar::Header::new_gnu();
        h.set_path(path).unwrap();
        h.set_size(data.len() as u64);
        h.set_mode(0o644);
        h.set_cksum();
        b.append(&h, data.as_bytes()).unwrap();
    }
    b.into_inner().unwrap()
}

/// An OCI layout under construction.
struct Built {
    dir: tempfile::TempDir,
}

impl Built {
    fn blob(&self, bytes: &[u8]) -> (String, u64) {
        let d = sha(bytes);
        let p = self.dir.path().join("blobs/sha256");
        std::fs::create_dir_all(&p).unwrap();
        std::fs::write(p.join(&d[7..]), bytes).unwrap();
        (d, bytes.len() as u64)
    }

    fn path(&self, digest: &str) -> PathBuf {
        self.dir.path().join("blobs/sha256").join(&digest[7..])
    }
}

struct Spec<'a> {
    layers: Vec<(&'a str, Vec<u8>)>, // (compression, uncompressed tar)
    arch: &'a str,
    media_type: Option<&'a str>,
    ref_name: Option<&'a str>,
}

impl Default for Spec<'_> {
    fn default() -> Self {
        Self {
            layers: vec![
                ("gzip", tar_of(&[("etc/os-release", "NAME=test\n"), ("usr/bin/hello", "v1")])),
                ("zstd", tar_of(&[("usr/bin/hello", "v2"), ("usr/share/doc", "d")])),
                ("none", tar_of(&[("opt/plain", "p")])),
            ],
            arch: "amd64",
            media_type: None,
            ref_name: Some("test:1"),
        }
    }
}

/// Writes an OCI layout: blobs, manifest, config and index.
fn build(spec: Spec<'_>) -> (Built, String) {
    let b = Built { dir: tempfile::tempdir().unwrap() };
    std::fs::write(b.dir.path().join("oci-layout"), r#"{"imageLayoutVersion":"1.0.0"}"#).unwrap();
    let mut layers = Vec::new();
    let mut diff_ids = Vec::new();
    for (compression, tar) in &spec.layers {
        diff_ids.push(sha(tar));
        let (bytes, media) = match *compression {
            "gzip" => {
                let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
                e.write_all(tar).unwrap();
                (e.finish().unwrap(), "application/vnd.oci.image.layer.v1.tar+gzip")
            }
            "zstd" => (zstd::encode_all(&tar[..], 3).unwrap(), "application/vnd.oci.image.layer.v1.tar+zstd"),
            _ => (tar.clone(), "application/vnd.oci.image.layer.v1.tar"),
        };
        let (d, size) = b.blob(&bytes);
        layers.push(json!({"mediaType": spec.media_type.unwrap_or(media), "digest": d, "size": size}));
    }
    let config = json!({
        "architecture": spec.arch, "os": "linux",
        "config": {"Env": ["PATH=/usr/bin:/bin", "LANG=C.UTF-8"], "WorkingDir": "/work"},
        "rootfs": {"type": "layers", "diff_ids": diff_ids},
    });
    let (cd, cs) = b.blob(config.to_string().as_bytes());
    let manifest = json!({
        "schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": cd, "size": cs},
        "layers": layers,
    });
    let (md, ms) = b.blob(manifest.to_string().as_bytes());
    let mut desc = json!({"mediaType": "application/vnd.oci.image.manifest.v1+json", "digest": md, "size": ms});
    if let Some(r) = spec.ref_name {
        desc["annotations"] = json!({"org.opencontainers.image.ref.name": r});
    }
    let index =
        json!({"schemaVersion": 2, "mediaType": "application/vnd.oci.image.index.v1+json", "manifests": [desc]});
    std::fs::write(b.dir.path().join("index.json"), index.to_string()).unwrap();
    (b, md)
}

fn store() -> (tempfile::TempDir, Store) {
    let t = tempfile::tempdir().unwrap();
    let s = Store::open(&t.path().join("store")).unwrap();
    (t, s)
}

fn import(s: &Store, path: &Path, name: Option<&str>) -> Result<Imported, ImageError> {
    s.import(path, name, None, &mut |_| {})
}

/// Nothing half-made: no image directory, no name, nothing in tmp.
fn assert_empty(s: &Store) {
    assert!(s.list().unwrap().is_empty());
    assert!(s.names().unwrap().is_empty());
    assert_eq!(std::fs::read_dir(s.root().join("tmp")).unwrap().count(), 0);
    assert_eq!(std::fs::read_dir(s.root().join("images")).unwrap().count(), 0);
}

#[test]
fn a_layout_is_imported_listed_leased_and_removed() {
    let (b, digest) = build(Spec::default());
    let (_t, s) = store();
    let i = import(&s, b.dir.path(), None).unwrap();
    assert!(!i.existed);
    assert_eq!(i.record.digest, digest);
    assert_eq!(i.record.names, ["test:1"], "named by the index's ref name");
    assert_eq!(i.record.env, ["PATH=/usr/bin:/bin", "LANG=C.UTF-8"]);
    assert_eq!(i.record.working_dir.as_deref(), Some("/work"));
    assert_eq!(i.record.platform, "linux/amd64");
    let comp: Vec<Compression> = i.record.layers.iter().map(|l| l.compression).collect();
    assert_eq!(comp, [Compression::Gzip, Compression::Zstd, Compression::None]);
    let (rec, lease) = s.lease("test:1").unwrap();
    assert_eq!(rec.digest, digest);
    let root = lease.rootfs();
    assert_eq!(std::fs::read_to_string(root.join("usr/bin/hello")).unwrap(), "v2", "upper layers win");
    assert_eq!(std::fs::read_to_string(root.join("opt/plain")).unwrap(), "p");
    // a second import of the same image only adds a name
    let again = import(&s, b.dir.path(), Some("other")).unwrap();
    assert!(again.existed);
    assert_eq!(again.record.names, ["other:latest", "test:1"]);
    assert_eq!(s.list().unwrap().len(), 1);
    // by digest prefix too
    assert_eq!(s.resolve(&digest[7..19]).unwrap(), digest);
    // in use: removing the last name is refused while the lease lives
    assert!(!s.remove("other").unwrap(), "one name of two: the image stays");
    assert!(matches!(s.remove("test:1"), Err(ImageError::InUse(_))));
    assert_eq!(s.list().unwrap()[0].names, ["test:1"], "a refused removal keeps the name");
    drop(lease);
    assert!(s.remove("test:1").unwrap());
    assert_empty(&s);
    assert!(matches!(s.lease("test:1"), Err(ImageError::NotFound(_))));
}

#[test]
fn an_oci_archive_imports_like_its_directory() {
    let (b, digest) = build(Spec::default());
    let t = tempfile::tempdir().unwrap();
    let archive = t.path().join("image.tar");
    let mut tb = tar::Builder::new(std::fs::File::create(&archive).unwrap());
    tb.append_dir_all(".", b.dir.path()).unwrap();
    tb.finish().unwrap();
    let (_t, s) = store();
    let i = import(&s, &archive, Some("arch:v1")).unwrap();
    assert_eq!(i.record.digest, digest);
    assert_eq!(std::fs::read_dir(s.root().join("tmp")).unwrap().count(), 0, "the scratch copy is gone");
}

#[test]
fn a_blob_whose_digest_does_not_match_is_refused_and_nothing_is_left() {
    let (b, _) = build(Spec::default());
    // flip a byte in the second layer's blob (the zstd one), keeping its size
    let idx: serde_json::Value =
        serde_json::from_slice(&std::fs::read(b.dir.path().join("index.json")).unwrap()).unwrap();
    let m: serde_json::Value =
        serde_json::from_slice(&std::fs::read(b.path(idx["manifests"][0]["digest"].as_str().unwrap())).unwrap())
            .unwrap();
    let layer = b.path(m["layers"][1]["digest"].as_str().unwrap());
    let mut bytes = std::fs::read(&layer).unwrap();
    let last = bytes.len() - 1;
    bytes[last] ^= 0xff;
    std::fs::write(&layer, &bytes).unwrap();
    let (_t, s) = store();
    let e = import(&s, b.dir.path(), None).unwrap_err();
    assert!(matches!(e, ImageError::Digest { .. }), "{e}");
    assert_empty(&s);
    // truncated
    std::fs::write(&layer, &bytes[..last]).unwrap();
    let e = import(&s, b.dir.path(), None).unwrap_err();
    assert!(e.to_string().contains("bytes where the descriptor says"), "{e}");
    assert_empty(&s);
}

#[test]
fn a_layer_whose_content_does_not_match_its_diff_id_is_refused() {
    let (b, _) = build(Spec { layers: vec![("none", tar_of(&[("a", "a")]))], ..Spec::default() });
    // rewrite the config with a wrong diff_id (and the manifest and index to match)
    let idx_path = b.dir.path().join("index.json");
    let mut idx: serde_json::Value = serde_json::from_slice(&std::fs::read(&idx_path).unwrap()).unwrap();
    let mut m: serde_json::Value =
        serde_json::from_slice(&std::fs::read(b.path(idx["manifests"][0]["digest"].as_str().unwrap())).unwrap())
            .unwrap();
    let mut c: serde_json::Value =
        serde_json::from_slice(&std::fs::read(b.path(m["config"]["digest"].as_str().unwrap())).unwrap()).unwrap();
    c["rootfs"]["diff_ids"][0] = json!(sha(b"something else"));
    let (cd, cs) = b.blob(c.to_string().as_bytes());
    m["config"]["digest"] = json!(cd);
    m["config"]["size"] = json!(cs);
    let (md, ms) = b.blob(m.to_string().as_bytes());
    idx["manifests"][0]["digest"] = json!(md);
    idx["manifests"][0]["size"] = json!(ms);
    std::fs::write(&idx_path, idx.to_string()).unwrap();
    let (_t, s) = store();
    let e = import(&s, b.dir.path(), None).unwrap_err();
    assert!(e.to_string().contains("uncompressed"), "{e}");
    assert_empty(&s);
}

#[test]
fn unknown_media_types_and_other_platforms_are_refused() {
    let (_t, s) = store();
    let (b, _) = build(Spec { media_type: Some("application/vnd.example.weird"), ..Spec::default() });
    let e = import(&s, b.dir.path(), None).unwrap_err();
    assert!(matches!(e, ImageError::MediaType(_)), "{e}");
    let (b, _) = build(Spec { arch: "arm64", ..Spec::default() });
    let e = import(&s, b.dir.path(), None).unwrap_err();
    assert!(matches!(&e, ImageError::Platform(m) if m.contains("arm64")), "{e}");
    assert_empty(&s);
}

#[test]
fn an_index_entry_for_another_platform_is_skipped_or_refused() {
    let (b, _) = build(Spec::default());
    let idx_path = b.dir.path().join("index.json");
    let mut idx: serde_json::Value = serde_json::from_slice(&std::fs::read(&idx_path).unwrap()).unwrap();
    idx["manifests"][0]["platform"] = json!({"architecture": "arm64", "os": "linux"});
    std::fs::write(&idx_path, idx.to_string()).unwrap();
    let (_t, s) = store();
    let e = import(&s, b.dir.path(), None).unwrap_err();
    assert!(matches!(&e, ImageError::Platform(m) if m.contains("no manifest")), "{e}");
}

#[test]
fn names_are_checked_and_an_unnamed_image_needs_one() {
    let (b, _) = build(Spec { ref_name: None, ..Spec::default() });
    let (_t, s) = store();
    assert!(import(&s, b.dir.path(), None).unwrap_err().to_string().contains("--name"));
    for bad in ["UPPER", "../x", "a:b:c", "-x", "a:", "a b", "x/"] {
        assert!(matches!(import(&s, b.dir.path(), Some(bad)), Err(ImageError::Name(_))), "{bad}");
    }
    assert_empty(&s);
    for good in ["python", "python:3.11", "ghcr.io/org/img:v1.2-slim"] {
        check_name(good).unwrap();
    }
}

#[test]
fn leftovers_of_an_interrupted_import_are_cleaned_and_never_listed() {
    let (b, _) = build(Spec::default());
    let (_t, s) = store();
    let stale = s.root().join("tmp/deadbeef/image/rootfs");
    std::fs::create_dir_all(&stale).unwrap();
    std::fs::write(stale.join("half"), "x").unwrap();
    assert!(s.list().unwrap().is_empty());
    import(&s, b.dir.path(), None).unwrap();
    assert_eq!(std::fs::read_dir(s.root().join("tmp")).unwrap().count(), 0);
    assert_eq!(s.list().unwrap().len(), 1);
}

#[test]
fn a_docker_save_index_gives_the_whole_name() {
    let (b, _) = build(Spec { ref_name: Some("3.12-slim"), ..Spec::default() });
    let idx_path = b.dir.path().join("index.json");
    let mut idx: serde_json::Value = serde_json::from_slice(&std::fs::read(&idx_path).unwrap()).unwrap();
    idx["manifests"][0]["annotations"]["io.containerd.image.name"] = json!("docker.io/library/python:3.12-slim");
    std::fs::write(&idx_path, idx.to_string()).unwrap();
    let (_t, s) = store();
    let i = import(&s, b.dir.path(), None).unwrap();
    assert_eq!(i.record.names, ["docker.io/library/python:3.12-slim"]);
}
