//! Images end to end: a root filesystem built by `scripts/build-rootfs python` (which
//! `scripts/test` runs first and names in `CODEEXEC_TEST_IMAGE`) is imported into a store,
//! from its layout directory and from an archive of it, and programs run in it, showing
//! from inside that the root is the image's and not the host's; an image in use is not
//! removed. Root only (see `require_privileged!`).

#![allow(clippy::tests_outside_test_module, clippy::unwrap_used)]

mod common;

use std::os::unix::fs::MetadataExt;
use std::path::PathBuf;
use std::process::{Command, Stdio};

use serde_json::Value;

/// The layout `scripts/build-rootfs python` wrote; without it a privileged run fails.
fn layout() -> PathBuf {
    let p = std::env::var_os("CODEEXEC_TEST_IMAGE")
        .map(PathBuf::from)
        .expect("CODEEXEC_TEST_IMAGE must name the layout of `scripts/build-rootfs python` (scripts/test sets it)");
    assert!(p.join("index.json").is_file(), "{}: not an OCI layout", p.display());
    p
}

fn import(store: &str, path: &str, name: Option<&str>) -> Value {
    let mut args = vec!["image", "import", path, "--store", store, "--json"];
    if let Some(n) = name {
        args.extend(["--name", n]);
    }
    let out = common::codeexec(&args, b"");
    assert!(out.status.success(), "import failed: {}", String::from_utf8_lossy(&out.stderr));
    serde_json::from_slice(&out.stdout).unwrap()
}

#[test]
fn an_image_built_by_the_script_is_imported_and_runs_programs() {
    require_privileged!();
    let layout = layout();
    let store = tempfile::tempdir().unwrap();
    let s = store.path().to_str().unwrap();
    let first = import(s, layout.to_str().unwrap(), None);
    let digest = first["image"]["digest"].as_str().unwrap().to_owned();
    assert_eq!(first["image"]["names"][0], "codeexec/python:bookworm");
    assert!(first["image"]["stats"]["files"].as_u64().unwrap() > 1000);
    // the same image from an archive of the layout: recognised, only named
    let archive = store.path().join("python.oci.tar");
    let st = Command::new("tar").arg("-C").arg(&layout).arg("-cf").arg(&archive).arg(".").status().unwrap();
    assert!(st.success());
    let second = import(s, archive.to_str().unwrap(), Some("py:archive"));
    assert_eq!((second["existed"].as_bool(), second["image"]["digest"].as_str()), (Some(true), Some(digest.as_str())));

    // inside, the root is the image: Debian's python3, and none of the host's gcc
    assert!(std::path::Path::new("/usr/bin/gcc").exists(), "the host has gcc (the proof below needs it)");
    let probe = "import os, sys; print(sys.version_info[0], os.path.exists('/usr/bin/gcc'), os.getcwd(), \
                 open('/etc/os-release').read().count('bookworm') > 0, os.stat('/usr/bin/python3').st_uid, \
                 os.stat('/etc').st_gid, os.getuid())";
    let out = common::codeexec(
        &["run", "--json", "--image", "py:archive", "--store", s, "--", "/usr/bin/python3", "-c", probe],
        b"",
    );
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["status"], "ok", "{v:#}");
    // the image's files are root's inside (idmapped), the program is not root
    assert_eq!(v["stdout"], "3 False /sandbox True 0 0 1000\n", "{v:#}");
    // and still read-only
    let out = common::codeexec(
        &["run", "--json", "--image", "py:archive", "--store", s, "--", "/bin/sh", "-c", "touch /usr/x; touch /etc/x"],
        b"",
    );
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["status"], "runtime_error", "{v:#}");
    assert_eq!(v["stderr"].as_str().unwrap().matches("Read-only file system").count(), 2, "{v:#}");

    let ls = common::codeexec(&["image", "ls", "--json", "--store", s], b"");
    let list: Value = serde_json::from_slice(&ls.stdout).unwrap();
    assert_eq!(list.as_array().unwrap().len(), 1);
    assert_eq!(list[0]["names"], serde_json::json!(["codeexec/python:bookworm", "py:archive"]));
}

#[test]
fn an_image_in_use_is_not_removed() {
    require_privileged!();
    let layout = layout();
    let store = tempfile::tempdir().unwrap();
    let s = store.path().to_str().unwrap();
    import(s, layout.to_str().unwrap(), Some("busy:1"));
    let mut run = Command::new(common::bin())
        .args(["run", "--wall-time", "60s", "--image", "busy:1", "--store", s, "--"])
        .args(["/usr/bin/python3", "-c", "import time; time.sleep(50)"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    // the run holds its lease (a shared flock on images/<hex>/lease) from before its start
    // to its end: wait until the kernel lists it (the program's output only comes at the end)
    let images = store.path().join("images");
    let dir = std::fs::read_dir(&images).unwrap().next().unwrap().unwrap().path();
    let ino = std::fs::metadata(dir.join("lease")).unwrap().ino();
    let held = || {
        std::fs::read_to_string("/proc/locks").unwrap().lines().any(|l| {
            l.contains("FLOCK")
                && l.contains(" READ ")
                && l.split_whitespace().nth(5).is_some_and(|f| f.ends_with(&format!(":{ino}")))
        })
    };
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    while !held() {
        assert!(std::time::Instant::now() < deadline, "the run never took its lease");
        assert!(run.try_wait().unwrap().is_none(), "the run ended early");
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    let rm = common::codeexec(&["image", "rm", "busy:1", "--store", s], b"");
    assert_eq!(rm.status.code(), Some(2), "{rm:?}");
    assert!(String::from_utf8_lossy(&rm.stderr).contains("in use"), "{}", String::from_utf8_lossy(&rm.stderr));
    // the run ends (SIGINT: codeexec kills its sandbox and exits), and then it can go
    nix::sys::signal::kill(nix::unistd::Pid::from_raw(i32::try_from(run.id()).unwrap()), nix::sys::signal::SIGINT)
        .unwrap();
    run.wait().unwrap();
    let rm = common::codeexec(&["image", "rm", "busy:1", "--store", s], b"");
    assert!(rm.status.success(), "{}", String::from_utf8_lossy(&rm.stderr));
    let ls = common::codeexec(&["image", "ls", "--json", "--store", s], b"");
    assert_eq!(String::from_utf8_lossy(&ls.stdout).trim(), "[]");
}

#[test]
fn layouts_made_by_skopeo_and_umoci_from_a_tarball_import_and_run() {
    require_privileged!();
    let t = tempfile::tempdir().unwrap();
    let tree = t.path().join("tree");
    std::fs::create_dir_all(tree.join("bin")).unwrap();
    std::fs::create_dir_all(tree.join("etc")).unwrap();
    std::fs::copy("/bin/busybox", tree.join("bin/busybox"))
        .expect("a static /bin/busybox (.ci/run installs busybox-static)");
    std::os::unix::fs::symlink("busybox", tree.join("bin/sh")).unwrap();
    std::fs::write(tree.join("etc/motd"), "made by hand\n").unwrap();
    let tar = t.path().join("rootfs.tar");
    let sh = |script: &str| {
        let out = Command::new("sh").arg("-ec").arg(script).current_dir(t.path()).output().unwrap();
        assert!(out.status.success(), "{script}: {}", String::from_utf8_lossy(&out.stderr));
    };
    sh(&format!("tar -C tree -cf {} .", tar.display()));
    sh("skopeo copy -q tarball:rootfs.tar oci:sk:small && skopeo copy -q oci:sk:small oci-archive:sk.tar:small");
    sh("umoci init --layout um && umoci new --image um:t && umoci raw add-layer --image um:t rootfs.tar \
        && umoci config --image um:t --os=linux --architecture=amd64 --config.workingdir=/sandbox && umoci gc --layout um");
    let store = t.path().join("store");
    let s = store.to_str().unwrap();
    for (path, name) in [("sk", "skopeo:dir"), ("sk.tar", "skopeo:archive"), ("um", "umoci:1")] {
        import(s, t.path().join(path).to_str().unwrap(), Some(name));
        let out = common::codeexec(
            &["run", "--image", name, "--store", s, "--", "/bin/sh", "-c", "cat /etc/motd; ls /bin"],
            b"",
        );
        assert_eq!(String::from_utf8_lossy(&out.stdout), "made by hand\nbusybox\nsh\n", "{name}");
    }
}

#[test]
fn the_daemon_runs_a_language_on_its_image_and_holds_it() {
    require_privileged!();
    use common::daemon::{Daemon, get, post, runtime};
    let layout = layout();
    let t = tempfile::tempdir().unwrap();
    let store = t.path().join("store");
    let s = store.to_str().unwrap();
    import(s, layout.to_str().unwrap(), None);
    // python on the image; bash on the host; ruby on an image nobody imported
    let defs = t.path().join("languages");
    std::fs::create_dir(&defs).unwrap();
    let with_root = |lang: &str, root: &str| {
        let text = std::fs::read_to_string(format!("rootfs/languages/{lang}.toml")).unwrap();
        std::fs::write(defs.join(format!("{lang}.toml")), format!("rootfs = \"{root}\"\n{text}")).unwrap();
    };
    with_root("python", "codeexec/python:bookworm");
    with_root("bash", "host");
    with_root("ruby", "missing/ruby:1");
    let d = Daemon::start(&[
        ("CODEEXEC_RUNS_LANGUAGES_DIR", defs.to_str().unwrap()),
        ("CODEEXEC_IMAGES_DIR", s),
        ("CODEEXEC_RUNS_WARM", "1"),
    ]);
    let rt = runtime();
    let langs = rt.block_on(get(&d.unix(), None, "/v1/languages")).json();
    let by = |id: &str| langs["languages"].as_array().unwrap().iter().find(|l| l["id"] == id).unwrap().clone();
    let py = by("python");
    assert_eq!(
        (py["available"].as_bool(), py["rootfs"].as_str()),
        (Some(true), Some("codeexec/python:bookworm")),
        "{py:#}"
    );
    assert_eq!(py["image"]["name"], "codeexec/python:bookworm");
    assert!(py["image"]["digest"].as_str().unwrap().starts_with("sha256:"));
    assert_eq!(py["version"], "3.11.2", "the toolchain's version, asked inside the image");
    assert_eq!((by("bash")["rootfs"].as_str(), by("bash")["image"].is_null()), (Some("host"), true));
    let rb = by("ruby");
    assert_eq!(rb["available"], false);
    assert!(rb["reason"].as_str().unwrap().contains("missing/ruby:1"), "{rb:#}");

    // from inside: the image's root, not the host's (the host has gcc)
    let probe = "import os; print(os.path.exists('/usr/bin/gcc'), open('/etc/os-release').read().count('bookworm') > 0, \
                 os.stat('/usr/lib').st_uid)";
    let r = rt.block_on(post(&d.unix(), None, &serde_json::json!({"language": "python", "code": probe}))).json();
    assert_eq!((r["status"].as_str(), r["stdout"].as_str()), (Some("ok"), Some("False True 0\n")), "{r:#}");
    let r = rt
        .block_on(post(
            &d.unix(),
            None,
            &serde_json::json!({"language": "bash", "code": "test -e /usr/bin/gcc && echo host"}),
        ))
        .json();
    assert_eq!(r["stdout"], "host\n", "bash stays on the host's root: {r:#}");
    // many runs at once share the one unpacked image
    let many: Vec<Value> = rt.block_on(async {
        let tasks: Vec<_> = (0..8)
            .map(|i| {
                let ep = d.unix();
                tokio::spawn(async move {
                    post(&ep, None, &serde_json::json!({"language": "python", "code": format!("print({i} * 2)")})).await
                })
            })
            .collect();
        let mut out = Vec::new();
        for t in tasks {
            out.push(t.await.unwrap().json());
        }
        out
    });
    for (i, r) in many.iter().enumerate() {
        assert_eq!(r["stdout"], format!("{}\n", i * 2), "{r:#}");
    }
    // the daemon holds its images: removing this one is refused while it runs
    let rm = common::codeexec(&["image", "rm", "codeexec/python:bookworm", "--store", s], b"");
    assert_eq!(rm.status.code(), Some(2), "{rm:?}");
    drop(d);
    let rm = common::codeexec(&["image", "rm", "codeexec/python:bookworm", "--store", s], b"");
    assert!(rm.status.success(), "{rm:?}");
}
