use super::*;

fn artifact(tag: &str, size: usize) -> Artifact {
    Artifact {
        files: vec![
            InputFile { path: "main.c".into(), contents: tag.as_bytes().to_vec(), executable: false },
            InputFile { path: "bin/main".into(), contents: vec![7; size], executable: true },
        ],
        stdout: b"out".to_vec(),
        stderr: format!("warning from {tag}").into_bytes(),
    }
}

#[test]
fn an_entry_comes_back_whole_after_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let key = Key::new(&[b"c", b"gcc 12", b"int main(){}"]);
    let a = artifact("one", 1000);
    {
        let c = CompileCache::open(dir.path(), 1 << 20).unwrap();
        assert_eq!(c.get(&key), None);
        c.put(&key, &a).unwrap();
        assert_eq!(c.get(&key), Some(a.clone()));
        assert_eq!(c.stats().entries, 1);
    }
    let c = CompileCache::open(dir.path(), 1 << 20).unwrap();
    assert_eq!(c.get(&key), Some(a));
    let mode = fs::metadata(dir.path()).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o700, "only the daemon reads the cache");
    assert_eq!(fs::read_dir(dir.path().join("tmp")).unwrap().count(), 0, "no temporary file is left");
}

#[test]
fn keys_separate_their_parts() {
    assert_ne!(Key::new(&[b"ab", b"c"]), Key::new(&[b"a", b"bc"]));
    assert_ne!(Key::new(&[b"ab"]), Key::new(&[b"ab", b""]));
    assert_eq!(Key::new(&[b"x"]), Key::new(&[b"x"]));
    assert!(is_hex_digest(Key::new(&[b"x"]).as_str()));
}

#[test]
fn the_least_recently_used_entries_go_first() {
    let dir = tempfile::tempdir().unwrap();
    let c = CompileCache::open(dir.path(), 50_000).unwrap();
    let keys: Vec<Key> = (0..3).map(|i| Key::new(&[format!("k{i}").as_bytes()])).collect();
    for k in &keys {
        c.put(k, &artifact(k.as_str(), 9000)).unwrap();
    }
    // use the first: the second is now the oldest
    assert!(c.get(&keys[0]).is_some());
    let fourth = Key::new(&[b"k3"]);
    c.put(&fourth, &artifact("4", 9000)).unwrap();
    assert!(c.stats().bytes <= 50_000, "{:?}", c.stats());
    assert!(c.get(&keys[1]).is_none(), "the least recently used went");
    assert!(c.get(&keys[0]).is_some() && c.get(&fourth).is_some());
    let on_disk = fs::read_dir(dir.path().join("entries")).unwrap().count();
    assert_eq!(on_disk, c.stats().entries, "evicted entries leave the disk");

    // the bound holds at open too, oldest first; under a bound whose share an entry is
    // over, that entry goes
    drop(c);
    let c = CompileCache::open(dir.path(), 1 << 20).unwrap();
    let more: Vec<Key> = (4..7).map(|i| Key::new(&[format!("k{i}").as_bytes()])).collect();
    for k in &more {
        c.put(k, &artifact(k.as_str(), 9000)).unwrap();
    }
    assert_eq!(c.stats().entries, 6);
    drop(c);
    let c = CompileCache::open(dir.path(), 60_000).unwrap();
    assert!(c.stats().bytes <= 60_000 && c.stats().entries >= 3, "{:?}", c.stats());
    assert!(c.get(&more[2]).is_some(), "the newest stays");
    assert!(c.get(&keys[2]).is_none(), "the oldest went");
    drop(c);
    let c = CompileCache::open(dir.path(), 40_000).unwrap();
    assert_eq!(c.stats().entries, 0, "every entry is over a quarter of 40 000 bytes");
}

#[test]
fn an_artifact_too_large_for_its_share_is_not_kept() {
    let dir = tempfile::tempdir().unwrap();
    let c = CompileCache::open(dir.path(), 100_000).unwrap();
    let k = Key::new(&[b"big"]);
    c.put(&k, &artifact("big", 30_000)).unwrap();
    assert!(c.get(&k).is_none());
    assert_eq!(c.stats().entries, 0);
}

#[test]
fn a_damaged_or_foreign_entry_is_dropped() {
    let dir = tempfile::tempdir().unwrap();
    let c = CompileCache::open(dir.path(), 1 << 20).unwrap();
    let k = Key::new(&[b"x"]);
    c.put(&k, &artifact("x", 10)).unwrap();
    fs::write(dir.path().join("entries").join(k.as_str()), b"not a tar at all, not even close").unwrap();
    assert!(c.get(&k).is_none());
    assert_eq!(c.stats().entries, 0);
    assert!(!dir.path().join("entries").join(k.as_str()).exists());

    // members this cache never writes are refused: one escaping files/, one unknown
    for name in [&b"files/../../etc/x"[..], b"other"] {
        let k = Key::new(&[name]);
        let mut tar = tar::Builder::new(Vec::new());
        let mut h = tar::Header::new_gnu();
        h.as_gnu_mut().unwrap().name[..name.len()].copy_from_slice(name);
        h.set_size(1);
        h.set_mode(0o600);
        h.set_cksum();
        tar.append(&h, &[1u8][..]).unwrap();
        c.put(&k, &artifact("y", 1)).unwrap();
        fs::write(dir.path().join("entries").join(k.as_str()), tar.into_inner().unwrap()).unwrap();
        assert!(c.get(&k).is_none(), "{}", String::from_utf8_lossy(name));
    }
}

#[test]
fn stray_files_are_ignored_and_a_symlinked_directory_refused() {
    let dir = tempfile::tempdir().unwrap();
    fs::create_dir_all(dir.path().join("c/entries")).unwrap();
    fs::write(dir.path().join("c/entries/README"), b"x").unwrap();
    let c = CompileCache::open(&dir.path().join("c"), 1 << 20).unwrap();
    assert_eq!(c.stats().entries, 0);
    std::os::unix::fs::symlink(dir.path().join("c"), dir.path().join("link")).unwrap();
    assert!(CompileCache::open(&dir.path().join("link"), 1 << 20).is_err());
}
