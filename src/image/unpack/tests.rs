use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::Path;

use super::*;

/// Appends an entry with its path and link name written raw into the header, so that
/// paths the tar crate's builder would refuse (`..`, absolute) can be crafted.
fn entry(b: &mut tar::Builder<Vec<u8>>, path: &str, kind: tar::EntryType, mode: u32, link: &str, data: &[u8]) {
    let mut h = tar::Header::new_gnu();
    let old = h.as_old_mut();
    old.name.fill(0);
    old.name[..path.len()].copy_from_slice(path.as_bytes());
    old.linkname.fill(0);
    old.linkname[..link.len()].copy_from_slice(link.as_bytes());
    h.set_entry_type(kind);
    h.set_mode(mode);
    h.set_size(data.len() as u64);
    h.set_mtime(1_600_000_000);
    h.set_cksum();
    b.append(&h, data).unwrap();
}

fn file(b: &mut tar::Builder<Vec<u8>>, path: &str, data: &str) {
    entry(b, path, tar::EntryType::Regular, 0o644, "", data.as_bytes());
}

fn dir(b: &mut tar::Builder<Vec<u8>>, path: &str) {
    entry(b, path, tar::EntryType::Directory, 0o755, "", b"");
}

fn layer(f: impl FnOnce(&mut tar::Builder<Vec<u8>>)) -> Vec<u8> {
    let mut b = tar::Builder::new(Vec::new());
    f(&mut b);
    b.into_inner().unwrap()
}

fn apply(root: &Path, layers: &[Vec<u8>]) -> Result<Stats, UnpackError> {
    let mut u = Unpacker::new(root, 1 << 30).unwrap();
    for l in layers {
        u.apply(&l[..])?;
    }
    Ok(u.stats())
}

fn read(root: &Path, p: &str) -> String {
    std::fs::read_to_string(root.join(p)).unwrap()
}

fn exists(root: &Path, p: &str) -> bool {
    std::fs::symlink_metadata(root.join(p)).is_ok()
}

#[test]
fn files_dirs_links_keep_their_mode_and_mtime() {
    let t = tempfile::tempdir().unwrap();
    let l = layer(|b| {
        dir(b, "./usr/");
        dir(b, "./usr/bin/");
        entry(b, "./usr/bin/tool", tar::EntryType::Regular, 0o755, "", b"#!/bin/sh\n");
        file(b, "etc/conf", "x=1\n");
        entry(b, "usr/bin/alias", tar::EntryType::Symlink, 0o777, "tool", b"");
        entry(b, "usr/bin/hard", tar::EntryType::Link, 0o755, "usr/bin/tool", b"");
        file(b, "/abs/file", "made relative");
    });
    let s = apply(t.path(), &[l]).unwrap();
    let root = t.path();
    assert_eq!(read(root, "usr/bin/tool"), "#!/bin/sh\n");
    let m = std::fs::metadata(root.join("usr/bin/tool")).unwrap();
    assert_eq!(m.permissions().mode() & 0o7777, 0o755);
    assert_eq!(m.mtime(), 1_600_000_000, "Python's .pyc files are checked against their source's mtime");
    assert_eq!(std::fs::read_link(root.join("usr/bin/alias")).unwrap(), Path::new("tool"));
    assert_eq!(std::fs::metadata(root.join("usr/bin/hard")).unwrap().ino(), m.ino());
    assert_eq!(read(root, "abs/file"), "made relative", "an absolute path lands inside the root");
    assert_eq!((s.files, s.symlinks, s.hardlinks, s.dirs), (3, 1, 1, 2));
}

#[test]
fn whiteouts_remove_what_lower_layers_made() {
    let t = tempfile::tempdir().unwrap();
    let lower = layer(|b| {
        file(b, "a/x", "x");
        file(b, "a/y", "y");
        file(b, "a/sub/z", "z");
    });
    let upper = layer(|b| {
        entry(b, "a/.wh.x", tar::EntryType::Regular, 0o644, "", b"");
        entry(b, "a/.wh.sub", tar::EntryType::Regular, 0o644, "", b"");
        entry(b, "a/.wh.absent", tar::EntryType::Regular, 0o644, "", b"");
    });
    let s = apply(t.path(), &[lower, upper]).unwrap();
    assert!(!exists(t.path(), "a/x") && !exists(t.path(), "a/sub"));
    assert_eq!(read(t.path(), "a/y"), "y");
    assert!(!exists(t.path(), "a/.wh.x"), "a whiteout is not itself a file");
    assert_eq!(s.whiteouts, 3);
}

#[test]
fn an_opaque_directory_hides_all_lower_content_but_keeps_its_own_layers() {
    let t = tempfile::tempdir().unwrap();
    let lower = layer(|b| {
        file(b, "d/old", "old");
        file(b, "d/sub/old2", "old2");
        file(b, "keep", "keep");
    });
    let upper = layer(|b| {
        dir(b, "d");
        file(b, "d/new", "new");
        dir(b, "d/sub");
        file(b, "d/sub/new2", "new2");
        entry(b, "d/.wh..wh..opq", tar::EntryType::Regular, 0o644, "", b"");
    });
    apply(t.path(), &[lower, upper]).unwrap();
    let root = t.path();
    assert!(!exists(root, "d/old") && !exists(root, "d/sub/old2"));
    assert_eq!(
        (read(root, "d/new"), read(root, "d/sub/new2"), read(root, "keep")),
        ("new".into(), "new2".into(), "keep".into())
    );
    assert!(!exists(root, "d/.wh..wh..opq"));
}

#[test]
fn a_layer_can_replace_a_file_with_a_directory_and_back() {
    let t = tempfile::tempdir().unwrap();
    let lower = layer(|b| {
        file(b, "p", "file");
        file(b, "q/inner", "inner");
    });
    let upper = layer(|b| {
        file(b, "p/now-a-dir", "yes");
        file(b, "q", "now a file");
    });
    // "p/now-a-dir" needs p to be a directory: a file in the way is refused, not followed
    assert!(apply(t.path(), &[lower.clone(), upper]).is_err());
    let t = tempfile::tempdir().unwrap();
    let upper = layer(|b| {
        dir(b, "p");
        file(b, "p/now-a-dir", "yes");
        file(b, "q", "now a file");
    });
    apply(t.path(), &[lower, upper]).unwrap();
    assert_eq!((read(t.path(), "p/now-a-dir"), read(t.path(), "q")), ("yes".into(), "now a file".into()));
}

#[test]
fn dot_dot_paths_are_refused() {
    for path in ["../evil", "a/../../evil", "a/b/../c"] {
        let t = tempfile::tempdir().unwrap();
        let l = layer(|b| file(b, path, "x"));
        let e = apply(t.path(), &[l]).unwrap_err();
        assert!(e.to_string().contains(".."), "{path}: {e}");
    }
}

#[test]
fn nothing_is_written_through_a_symlink() {
    let outside = tempfile::tempdir().unwrap();
    for (link, write) in [
        (outside.path().to_str().unwrap().to_owned(), "link/pwned"),
        ("../../../../../..".to_owned(), "link/pwned"),
        (outside.path().to_str().unwrap().to_owned(), "link/deeper/pwned"),
    ] {
        let t = tempfile::tempdir().unwrap();
        let lower = layer(|b| entry(b, "link", tar::EntryType::Symlink, 0o777, &link, b""));
        let upper = layer(|b| file(b, write, "pwned"));
        let e = apply(t.path(), &[lower, upper]).unwrap_err();
        assert!(e.to_string().contains("not a directory"), "{e}");
        assert_eq!(std::fs::read_dir(outside.path()).unwrap().count(), 0, "nothing appeared outside");
    }
    // the same within one layer, and a whiteout through a symlink
    let t = tempfile::tempdir().unwrap();
    std::fs::write(outside.path().join("victim"), "safe").unwrap();
    let l = layer(|b| {
        entry(b, "link", tar::EntryType::Symlink, 0o777, outside.path().to_str().unwrap(), b"");
        entry(b, "link/.wh.victim", tar::EntryType::Regular, 0o644, "", b"");
    });
    assert!(apply(t.path(), &[l]).is_err());
    assert_eq!(std::fs::read_to_string(outside.path().join("victim")).unwrap(), "safe");
    // a symlink that is replaced by a file is removed, and its target untouched
    let t = tempfile::tempdir().unwrap();
    let lower =
        layer(|b| entry(b, "f", tar::EntryType::Symlink, 0o777, outside.path().join("victim").to_str().unwrap(), b""));
    let upper = layer(|b| file(b, "f", "mine"));
    apply(t.path(), &[lower, upper]).unwrap();
    assert_eq!(read(t.path(), "f"), "mine");
    assert_eq!(std::fs::read_to_string(outside.path().join("victim")).unwrap(), "safe");
}

#[test]
fn hard_links_must_point_at_a_file_inside_the_image() {
    let outside = tempfile::tempdir().unwrap();
    std::fs::write(outside.path().join("secret"), "s").unwrap();
    let cases: [(&str, Vec<u8>); 4] = [
        ("dotdot", layer(|b| entry(b, "h", tar::EntryType::Link, 0o644, "../../etc/passwd", b""))),
        ("absolute", layer(|b| entry(b, "h", tar::EntryType::Link, 0o644, "/etc/passwd", b""))),
        (
            "through a symlink",
            layer(|b| {
                entry(b, "l", tar::EntryType::Symlink, 0o777, outside.path().to_str().unwrap(), b"");
                entry(b, "h", tar::EntryType::Link, 0o644, "l/secret", b"");
            }),
        ),
        (
            "to a directory",
            layer(|b| {
                dir(b, "d");
                entry(b, "h", tar::EntryType::Link, 0o644, "d", b"");
            }),
        ),
    ];
    for (what, l) in cases {
        let t = tempfile::tempdir().unwrap();
        assert!(apply(t.path(), &[l]).is_err(), "{what}");
        assert!(!exists(t.path(), "h"), "{what}");
    }
    assert_eq!(std::fs::metadata(outside.path().join("secret")).unwrap().nlink(), 1);
}

#[test]
fn device_nodes_and_fifos_are_left_out_and_setid_bits_dropped() {
    let t = tempfile::tempdir().unwrap();
    let l = layer(|b| {
        entry(b, "dev/console", tar::EntryType::Char, 0o600, "", b"");
        entry(b, "dev/sda", tar::EntryType::Block, 0o600, "", b"");
        entry(b, "fifo", tar::EntryType::Fifo, 0o600, "", b"");
        entry(b, "usr/bin/su", tar::EntryType::Regular, 0o4755, "", b"x");
        entry(b, "usr/bin/wall", tar::EntryType::Regular, 0o2755, "", b"x");
        entry(b, "tmp", tar::EntryType::Directory, 0o1777, "", b"");
    });
    let s = apply(t.path(), &[l]).unwrap();
    assert!(!exists(t.path(), "dev/console") && !exists(t.path(), "dev/sda") && !exists(t.path(), "fifo"));
    assert_eq!(s.skipped_devices, 3);
    assert_eq!(s.setid_dropped, 2);
    let mode = |p: &str| std::fs::symlink_metadata(t.path().join(p)).unwrap().permissions().mode() & 0o7777;
    assert_eq!((mode("usr/bin/su"), mode("usr/bin/wall"), mode("tmp")), (0o755, 0o755, 0o1777));
}

#[test]
fn a_layer_that_unpacks_past_the_cap_is_refused() {
    let t = tempfile::tempdir().unwrap();
    let l = layer(|b| {
        file(b, "a", "0123456789");
        file(b, "b", "0123456789");
    });
    let mut u = Unpacker::new(t.path(), 15).unwrap();
    let e = u.apply(&l[..]).unwrap_err();
    assert!(e.to_string().contains("unpacks to more than"), "{e}");
}

#[test]
fn malformed_whiteouts_are_refused() {
    for name in ["a/.wh.", "a/.wh..", "a/.wh...."] {
        let t = tempfile::tempdir().unwrap();
        let l = layer(|b| entry(b, name, tar::EntryType::Regular, 0o644, "", b""));
        let r = apply(t.path(), &[l]);
        assert!(r.is_err() || name == "a/.wh....", "{name}");
    }
}
