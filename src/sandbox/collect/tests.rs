use std::os::unix::fs::symlink;

use super::*;

const SPEC: CollectSpec = CollectSpec { max_files: 100, max_bytes: 1 << 20 };

/// A sealed memfd holding `data` then the manifest of `entries`, as PID 1 would send it.
fn packed(data: &[u8], entries: Vec<CollectedEntry>, seal: bool) -> (Packed, OwnedFd) {
    let fd = memfd_create("test", MFdFlags::MFD_CLOEXEC | MFdFlags::MFD_ALLOW_SEALING).unwrap();
    let mut f = std::fs::File::from(fd);
    f.write_all(data).unwrap();
    let manifest = serde_json::to_vec(&Manifest { entries, truncated: false }).unwrap();
    f.write_all(&manifest).unwrap();
    let fd = OwnedFd::from(f);
    if seal {
        let seals = SealFlag::F_SEAL_SHRINK | SealFlag::F_SEAL_GROW | SealFlag::F_SEAL_WRITE;
        fcntl(fd.as_fd(), FcntlArg::F_ADD_SEALS(seals)).unwrap();
    }
    (Packed { manifest_offset: data.len() as u64, manifest_len: manifest.len() as u64 }, fd)
}

fn file(path: &str, offset: u64, len: u64) -> CollectedEntry {
    CollectedEntry { path: path.into(), kind: CollectedKind::File { offset, len, executable: false } }
}

fn refused(data: &[u8], entries: Vec<CollectedEntry>) -> String {
    let (p, fd) = packed(data, entries, true);
    read_collected(p, fd, SPEC).unwrap_err()
}

#[test]
fn a_well_formed_report_is_read_back() {
    let link = CollectedEntry { path: "l".into(), kind: CollectedKind::Symlink { target: "/etc/passwd".into() } };
    let (p, fd) = packed(b"helloworld", vec![file("a", 0, 5), file("a-b/c", 5, 5), link], true);
    let got = read_collected(p, fd, SPEC).unwrap();
    assert_eq!(got.entries.len(), 3);
    assert_eq!(got.entries[0], ("a".into(), CollectedFile::File { bytes: b"hello".to_vec(), executable: false }));
    assert_eq!(got.entries[1].1, CollectedFile::File { bytes: b"world".to_vec(), executable: false });
    assert_eq!(got.entries[2].1, CollectedFile::Symlink("/etc/passwd".into()));
}

#[test]
fn a_malformed_report_is_refused() {
    let (p, fd) = packed(b"x", vec![file("a", 0, 1)], false);
    assert!(read_collected(p, fd, SPEC).unwrap_err().contains("not sealed"));
    for bad in ["/etc/passwd", "../x", "a/../b", "a//b", "./a", ""] {
        assert!(refused(b"x", vec![file(bad, 0, 1)]).contains("clean relative path") || bad.is_empty(), "{bad}");
    }
    assert!(refused(b"xy", vec![file("a", 0, 1), file("a", 1, 1)]).contains("twice"));
    assert!(refused(b"xy", vec![file("a", 0, 1), file("a/b", 1, 1)]).contains("inside another"));
    assert!(refused(b"xy", vec![file("a", 0, 1), file("a-b", 1, 1), file("a/b/c", 1, 0)]).contains("inside another"));
    assert!(refused(b"xyz", vec![file("a", 0, 2), file("b", 1, 2)]).contains("overlap"));
    assert!(refused(b"xy", vec![file("a", 0, 3)]).contains("out of bounds"));
    assert!(refused(b"xy", vec![file("a", u64::MAX, 2)]).contains("overflows"));
    let many: Vec<_> = (0..101).map(|i| file(&format!("f{i}"), 0, 0)).collect();
    assert!(refused(b"", many).contains("too many"));
    // the manifest must end the memfd and lie within the caps
    let (mut p, fd) = packed(b"xy", vec![file("a", 0, 1)], true);
    p.manifest_len -= 1;
    assert!(read_collected(p, fd, SPEC).unwrap_err().contains("manifest"));
    let (p, fd) = packed(&[0u8; 64], vec![], true);
    assert!(read_collected(p, fd, CollectSpec { max_files: 1, max_bytes: 8 }).unwrap_err().contains("manifest"));
}

#[test]
fn the_walk_never_follows_symlinks_and_skips_what_is_not_a_file() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    std::fs::create_dir_all(root.join("d/e")).unwrap();
    std::fs::write(root.join("d/e/f.txt"), "deep").unwrap();
    std::fs::write(root.join("d-x"), "sibling").unwrap();
    symlink("/etc/passwd", root.join("passwd")).unwrap();
    symlink("/etc", root.join("etc")).unwrap();
    nix::unistd::mkfifo(&root.join("fifo"), Mode::from_bits_truncate(0o600)).unwrap();
    let (p, fd) = collect(root.to_str().unwrap(), SPEC).unwrap();
    let got = read_collected(p, fd, SPEC).unwrap();
    let names: Vec<&str> = got.entries.iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(names, ["d-x", "d/e/f.txt", "etc", "passwd"]);
    assert_eq!(got.entries[3].1, CollectedFile::Symlink("/etc/passwd".into()));
    assert_eq!(got.entries[2].1, CollectedFile::Symlink("/etc".into()));
    assert!(!got.truncated);
}

#[test]
fn many_long_names_fit_because_the_manifest_travels_in_the_memfd() {
    let dir = tempfile::tempdir().unwrap();
    for i in 0..900 {
        std::fs::write(dir.path().join(format!("{i:03}{}", "n".repeat(240))), "").unwrap();
    }
    let spec = CollectSpec { max_files: 1000, max_bytes: 1 << 20 };
    let (p, fd) = collect(dir.path().to_str().unwrap(), spec).unwrap();
    assert!(p.manifest_len > 200_000, "bigger than a socket's send buffer");
    let got = read_collected(p, fd, spec).unwrap();
    assert_eq!(got.entries.len(), 900);
}

#[test]
fn caps_truncate_and_say_so() {
    let dir = tempfile::tempdir().unwrap();
    for i in 0..5 {
        std::fs::write(dir.path().join(format!("f{i}")), "0123456789").unwrap();
    }
    let spec = CollectSpec { max_files: 3, max_bytes: 1 << 20 };
    let (p, fd) = collect(dir.path().to_str().unwrap(), spec).unwrap();
    let got = read_collected(p, fd, spec).unwrap();
    assert_eq!(got.entries.len(), 3);
    assert!(got.truncated);
    let spec = CollectSpec { max_files: 100, max_bytes: 25 };
    let (p, fd) = collect(dir.path().to_str().unwrap(), spec).unwrap();
    let got = read_collected(p, fd, spec).unwrap();
    assert_eq!(got.entries.len(), 2);
    assert!(got.truncated);
}
