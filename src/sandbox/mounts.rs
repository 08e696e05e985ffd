//! The sandbox's file system.
//!
//! Prepared once, in the zygote's private mount namespace (as real root): each root is a
//! small tmpfs holding the read-only binds (`/usr`, ... or a directory's top-level
//! entries), a generated `/etc` for the host root, a `/dev` of five bound device nodes, and
//! empty mount points; then it is made read-only. Every clone copies this tree with its
//! mount namespace, and because the copy lands in a less privileged user namespace, the
//! kernel locks every mount and its read-only, nosuid and nodev flags: the sandbox cannot
//! undo them even before it drops its capabilities.
//!
//! Per run, PID 1 binds the prepared root onto itself (pivot_root refuses a locked mount),
//! mounts fresh tmpfs on `/tmp`, `/sandbox` and `/dev/shm` and a fresh proc for its pid
//! namespace, writes the input files, and pivots. Six mounts; nothing is bound per run,
//! but for a run that asks: the operator's host directories (bound once by the zygote,
//! cloned and idmapped per sandbox) at `/mnt/<name>`, and for a network run the
//! resolver's `resolv.conf` bound over the root's.

use std::fs::{self, File, OpenOptions};
use std::io::Write;
use std::os::fd::OwnedFd;
use std::os::unix::fs::{DirBuilderExt, FileExt, OpenOptionsExt, PermissionsExt, symlink};
use std::path::Path;

use nix::errno::Errno;
use nix::mount::{MntFlags, MsFlags, mount, umount2};
use nix::unistd::{Gid, Uid, chdir, fchown, pivot_root};

use super::StepError;
use super::spec::{FileEntry, RootSpec, SpawnRequest, TmpfsSizes, check_relative_path};

type Result<T> = std::result::Result<T, StepError>;

/// Top-level entries of a root directory we replace with our own mounts or leave out
/// (`/mnt`, when the operator declares host directories, holds their mount points).
const OWN_DIRS: [&str; 6] = ["dev", "proc", "sys", "tmp", "sandbox", "mnt"];
/// The directory beside the roots holding the `resolv.conf` of network sandboxes.
pub(super) const NET_ETC: &str = "net-etc";
/// The device nodes of the sandbox's `/dev`.
pub(super) const DEVICES: [&str; 5] = ["null", "zero", "full", "random", "urandom"];
/// The directory beside the roots holding the empty file and directory that hide
/// host-identifying `/proc` entries.
pub(super) const MASKS: &str = "masks";
/// `/proc` files that tell about the host rather than the run, hidden under an empty file
/// as container runtimes hide them (runc's default `maskedPaths`, plus what names the host
/// itself): its boot arguments and boot id, kernel build, symbols and modules, disks and
/// swap, interrupt sources, keyrings, and timer and scheduler dumps that list the host's
/// processes. Entries this kernel lacks are skipped.
const MASKED_PROC_FILES: [&str; 16] = [
    "cmdline",
    "sys/kernel/random/boot_id",
    "config.gz",
    "kallsyms",
    "kcore",
    "modules",
    "keys",
    "key-users",
    "timer_list",
    "sched_debug",
    "latency_stats",
    "partitions",
    "diskstats",
    "swaps",
    "mdstat",
    "interrupts",
];
/// `/proc` directories hidden under an empty directory: firmware tables, buses and their
/// devices, drivers, the host's file systems (by disk), IRQs, sound and SCSI devices.
const MASKED_PROC_DIRS: [&str; 7] = ["acpi", "asound", "bus", "driver", "fs", "irq", "scsi"];
/// The writable tmpfs mounts, relative to the root.
pub(super) const TMPFS_DIRS: [&str; 3] = ["tmp", "sandbox", "dev/shm"];

const RO_BIND: MsFlags = MsFlags::MS_BIND
    .union(MsFlags::MS_REMOUNT)
    .union(MsFlags::MS_RDONLY)
    .union(MsFlags::MS_NOSUID)
    .union(MsFlags::MS_NODEV);

fn sys(step: &'static str, detail: &Path) -> impl FnOnce(Errno) -> StepError {
    let detail = detail.display().to_string();
    move |e| StepError::new(step, Some(e), detail)
}

fn io(step: &'static str, detail: &Path) -> impl FnOnce(std::io::Error) -> StepError {
    let detail = detail.display().to_string();
    move |e| StepError::new(step, e.raw_os_error().map(Errno::from_raw), format!("{detail}: {e}"))
}

/// The top-level directories of an image root that each sandbox gets idmapped (by name);
/// none for other roots.
pub(super) fn idmapped_dirs(spec: &RootSpec) -> Result<Vec<String>> {
    let RootSpec::Image(src) = spec else { return Ok(Vec::new()) };
    let mut out = Vec::new();
    for e in fs::read_dir(src).map_err(io("read rootfs", src))? {
        let e = e.map_err(io("read rootfs", src))?;
        let Ok(name) = e.file_name().into_string() else { continue };
        // not following a symlink: only real directories, as prepare_root bound them
        let is_dir = fs::symlink_metadata(e.path()).map_err(io("stat", &e.path()))?.is_dir();
        if is_dir && !OWN_DIRS.contains(&name.as_str()) {
            out.push(name);
        }
    }
    out.sort();
    Ok(out)
}

/// Builds the read-only root `dir` from `spec` (zygote, private mount namespace, real root),
/// with an empty `/mnt/<name>` for each host mount (and no `/mnt` without any).
pub(super) fn prepare_root(dir: &Path, spec: &RootSpec, mount_names: &[String]) -> Result<()> {
    fs::DirBuilder::new().mode(0o755).create(dir).map_err(io("mkdir root", dir))?;
    let opts = "mode=0755,size=1m,nr_inodes=4096";
    mount(Some("codeexec-root"), dir, Some("tmpfs"), MsFlags::MS_NOSUID | MsFlags::MS_NODEV, Some(opts))
        .map_err(sys("mount root tmpfs", dir))?;
    match spec {
        RootSpec::Host { dirs, etc_files, etc_binds } => {
            for name in dirs {
                check_relative_path(name).map_err(|why| StepError::new("host root", None, why))?;
                place_entry(&Path::new("/").join(name), &dir.join(name))?;
            }
            prepare_etc(&dir.join("etc"), etc_files, etc_binds)?;
        }
        RootSpec::Dir(src) | RootSpec::Image(src) => {
            let entries = fs::read_dir(src).map_err(io("read rootfs", src))?;
            for e in entries {
                let e = e.map_err(io("read rootfs", src))?;
                let name = e.file_name();
                if OWN_DIRS.iter().any(|d| name == *d) {
                    continue;
                }
                place_entry(&e.path(), &dir.join(&name))?;
            }
        }
    }
    for d in ["proc", "tmp", "sandbox", "sys"] {
        mkdir(&dir.join(d), 0o755)?;
    }
    if !mount_names.is_empty() {
        mkdir(&dir.join("mnt"), 0o755)?;
    }
    for name in mount_names {
        check_relative_path(name).map_err(|why| StepError::new("host mount", None, why))?;
        mkdir(&dir.join("mnt").join(name), 0o755)?;
    }
    prepare_dev(&dir.join("dev"))?;
    mount(None::<&str>, dir, None::<&str>, RO_BIND, None::<&str>).map_err(sys("make root read-only", dir))
}

/// Recreates `src` at `dst`: a symlink as the same symlink, a directory or file as a
/// read-only bind. Missing sources are skipped (not every host has `lib32`).
fn place_entry(src: &Path, dst: &Path) -> Result<()> {
    let meta = match fs::symlink_metadata(src) {
        Ok(m) => m,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(io("stat", src)(e)),
    };
    if meta.file_type().is_symlink() {
        let target = fs::read_link(src).map_err(io("readlink", src))?;
        return symlink(&target, dst).map_err(io("symlink", dst));
    }
    if meta.is_dir() {
        mkdir(dst, 0o755)?;
    } else if meta.is_file() {
        File::create(dst).map_err(io("create mount point", dst))?;
    } else {
        return Ok(()); // sockets, fifos, device nodes: never bound into a root
    }
    bind_read_only(src, dst)
}

/// Binds the host directory `src` (checked again here: a directory, no symlink on the
/// way) at `dst` for the zygote to clone per sandbox. Opened with `openat2` refusing any
/// symlink and bound through the descriptor, so what was checked is what is bound.
pub(super) fn bind_host_dir(src: &Path, dst: &Path) -> Result<()> {
    use nix::fcntl::{OFlag, OpenHow, ResolveFlag, openat2};
    // no symlink anywhere on the path, not just the last component, in one resolution
    let how = OpenHow::new()
        .flags(OFlag::O_PATH | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC)
        .resolve(ResolveFlag::RESOLVE_NO_SYMLINKS | ResolveFlag::RESOLVE_NO_MAGICLINKS);
    let fd = openat2(nix::fcntl::AT_FDCWD, src, how).map_err(sys("open host mount (no symlinks on the way)", src))?;
    mkdir(dst, 0o755)?;
    let via = format!("/proc/self/fd/{}", std::os::fd::AsRawFd::as_raw_fd(&fd));
    // the bind keeps the source's own flags (a read-only or noexec host mount stays so);
    // each sandbox's copy is made nosuid and nodev (and read-only unless writable) when it
    // is idmapped. Not recursive: mounts below the directory are not part of it.
    mount(Some(via.as_str()), dst, None::<&str>, MsFlags::MS_BIND, None::<&str>).map_err(sys("bind host mount", src))
}

/// The empty file and directory that hide `/proc` entries (see [`MASKED_PROC_FILES`]) on a
/// read-only bind of their own, which each bind of them copies (one mount per entry per
/// sandbox, no remount); real root's and read-only by mode besides.
pub(super) fn prepare_masks(dir: &Path) -> Result<()> {
    mkdir(dir, 0o755)?;
    let empty = dir.join("empty");
    File::create(&empty).map_err(io("create the mask file", &empty))?;
    fs::set_permissions(&empty, fs::Permissions::from_mode(0o444)).map_err(io("chmod the mask file", &empty))?;
    mkdir(&dir.join("empty.d"), 0o555)?;
    bind_read_only(dir, dir)
}

/// The `resolv.conf` of sandboxes with a network link, naming the operator's resolver.
pub(super) fn prepare_net_etc(dir: &Path, resolv_conf: &str) -> Result<()> {
    mkdir(dir, 0o755)?;
    let path = dir.join("resolv.conf");
    fs::write(&path, resolv_conf).map_err(io("write resolv.conf", &path))?;
    fs::set_permissions(&path, fs::Permissions::from_mode(0o644)).map_err(io("chmod resolv.conf", &path))
}

/// PID 1, before the pivot: attaches the host mounts it was given at `/mnt/<name>` and,
/// with a network link, binds the zygote's `resolv.conf` over the root's (an overlay of
/// `/etc` would hide the binds inside it). A root whose `/etc/resolv.conf` is not a
/// regular file keeps what it has (the runner warns about such roots at start).
pub(super) fn attach_extras(root: &Path, mounts: &[(String, OwnedFd)], network: bool) -> Result<()> {
    for (name, tree) in mounts {
        check_relative_path(name).map_err(|why| StepError::new("host mount", None, why))?;
        let target = root.join("mnt").join(name);
        super::sys::move_mount_onto(std::os::fd::AsFd::as_fd(tree), &target)
            .map_err(sys("attach a host mount", &target))?;
    }
    let target = root.join("etc/resolv.conf");
    // the prepared root is ours (read-only, nothing untrusted has run in it): lstat is safe
    if network && fs::symlink_metadata(&target).is_ok_and(|m| m.is_file()) {
        let src = Path::new("/").join(NET_ETC).join("resolv.conf");
        bind_read_only(&src, &target)?;
    }
    Ok(())
}

fn bind_read_only(src: &Path, dst: &Path) -> Result<()> {
    mount(Some(src), dst, None::<&str>, MsFlags::MS_BIND, None::<&str>).map_err(sys("bind", src))?;
    mount(None::<&str>, dst, None::<&str>, RO_BIND, None::<&str>).map_err(sys("make bind read-only", dst))
}

fn mkdir(path: &Path, mode: u32) -> Result<()> {
    fs::DirBuilder::new().mode(mode).create(path).map_err(io("mkdir", path))
}

/// The host root's `/etc`: generated files plus read-only binds of a few host entries.
fn prepare_etc(etc: &Path, files: &[(String, String)], binds: &[String]) -> Result<()> {
    mkdir(etc, 0o755)?;
    for (name, contents) in files {
        check_relative_path(name).map_err(|why| StepError::new("host root", None, why))?;
        let path = etc.join(name);
        let mut f = File::create(&path).map_err(io("write /etc file", &path))?;
        f.write_all(contents.as_bytes()).map_err(io("write /etc file", &path))?;
        f.set_permissions(fs::Permissions::from_mode(0o644)).map_err(io("chmod /etc file", &path))?;
    }
    for name in binds {
        check_relative_path(name).map_err(|why| StepError::new("host root", None, why))?;
        place_entry(&Path::new("/etc").join(name), &etc.join(name))?;
    }
    Ok(())
}

/// A read-only tmpfs `/dev` with the five harmless device nodes bound from the host, the
/// usual `/proc/self/fd` links, and an empty `shm` for the per-run tmpfs.
fn prepare_dev(dev: &Path) -> Result<()> {
    mkdir(dev, 0o755)?;
    // nodev on the tmpfs itself: the five nodes are binds, mounts of their own
    let flags = MsFlags::MS_NOSUID | MsFlags::MS_NOEXEC;
    mount(Some("codeexec-dev"), dev, Some("tmpfs"), flags | MsFlags::MS_NODEV, Some("mode=0755,size=64k,nr_inodes=64"))
        .map_err(sys("mount /dev tmpfs", dev))?;
    for name in DEVICES {
        let (src, dst) = (Path::new("/dev").join(name), dev.join(name));
        File::create(&dst).map_err(io("create device mount point", &dst))?;
        mount(Some(&src), &dst, None::<&str>, MsFlags::MS_BIND, None::<&str>).map_err(sys("bind device", &src))?;
        // read-only still allows writing to a device node; nodev would make it unusable
        let ro = MsFlags::MS_BIND | MsFlags::MS_REMOUNT | MsFlags::MS_RDONLY | flags;
        mount(None::<&str>, &dst, None::<&str>, ro, None::<&str>).map_err(sys("make device read-only", &dst))?;
    }
    for (name, target) in [
        ("fd", "/proc/self/fd"),
        ("stdin", "/proc/self/fd/0"),
        ("stdout", "/proc/self/fd/1"),
        ("stderr", "/proc/self/fd/2"),
    ] {
        symlink(target, dev.join(name)).map_err(io("symlink", &dev.join(name)))?;
    }
    mkdir(&dev.join("shm"), 0o755)?;
    let ro = MsFlags::MS_REMOUNT | MsFlags::MS_BIND | MsFlags::MS_RDONLY | MsFlags::MS_NODEV | flags;
    mount(None::<&str>, dev, None::<&str>, ro, None::<&str>).map_err(sys("make /dev read-only", dev))
}

/// Makes `state` (holding the prepared roots) the zygote's root, with a proc mount of
/// its own, and drops every host mount from its namespace. Each clone copies the
/// zygote's mount namespace and its PID 1 detaches the copy again, so every host mount
/// left here would cost two copies per run. The proc mount must stay: the kernel lets a
/// user namespace mount proc only where a fully visible proc is already mounted.
pub(super) fn shrink_to(state: &Path) -> Result<()> {
    let proc_dir = state.join("proc");
    mkdir(&proc_dir, 0o555)?;
    let flags = MsFlags::MS_NOSUID | MsFlags::MS_NODEV | MsFlags::MS_NOEXEC;
    mount(Some("proc"), &proc_dir, Some("proc"), flags, None::<&str>).map_err(sys("mount proc", &proc_dir))?;
    chdir(state).map_err(sys("chdir", state))?;
    pivot_root(".", ".").map_err(sys("pivot_root", state))?;
    umount2(".", MntFlags::MNT_DETACH).map_err(sys("detach the host's mounts", state))?;
    chdir("/").map_err(sys("chdir", Path::new("/")))
}

/// PID 1's per-run mounts, then `pivot_root` into `root`; leaves the cwd at `/sandbox`.
/// Ordering: proc must be mounted while the host's /proc is still visible (the kernel only
/// lets a user namespace mount proc when a fully visible one exists), so before the pivot.
pub(super) fn enter_root(root: &Path, req: &SpawnRequest) -> Result<()> {
    // A fresh, unlocked mount of the prepared tree (recursive: its locked binds come along).
    mount(Some(root), root, None::<&str>, MsFlags::MS_BIND | MsFlags::MS_REC, None::<&str>)
        .map_err(sys("bind root", root))?;
    let id = req.program_id.to_string();
    for (dir, size, extra) in tmpfs_mounts(&req.sizes) {
        let target = root.join(dir);
        let opts = format!("size={size},nr_inodes={},{}", req.sizes.inodes, extra.replace("{id}", &id));
        mount(Some("tmpfs"), &target, Some("tmpfs"), tmpfs_flags(dir), Some(opts.as_str()))
            .map_err(sys("mount tmpfs", &target))?;
    }
    let proc_dir = root.join("proc");
    let flags = MsFlags::MS_NOSUID | MsFlags::MS_NODEV | MsFlags::MS_NOEXEC;
    // hidepid=invisible: the program sees only processes of its own uid, not PID 1, whose
    // command line is the runner's (it may carry --env values or a daemon's arguments)
    mount(Some("proc"), &proc_dir, Some("proc"), flags, Some("hidepid=invisible"))
        .map_err(sys("mount proc", &proc_dir))?;
    mask_proc(&proc_dir)?;
    chdir(root).map_err(sys("chdir", root))?;
    // pivot_root(".", "."): the old root ends up on top of the new one and is detached
    // at once (https://man7.org/linux/man-pages/man2/pivot_root.2.html, NOTES).
    pivot_root(".", ".").map_err(sys("pivot_root", root))?;
    umount2(".", MntFlags::MNT_DETACH).map_err(sys("detach old root", root))?;
    chdir("/sandbox").map_err(sys("chdir", Path::new("/sandbox")))
}

/// Binds the empty file over each host-identifying `/proc` file, the empty directory over
/// each such directory (one mount each; the sources are read-only by owner and mode). The
/// program cannot unmount them: it has no capability, and in any user namespace it could
/// make, the kernel locks mounts it copies. Ordering: after proc is mounted, before the
/// pivot detaches the zygote's tree that holds the sources.
fn mask_proc(proc_dir: &Path) -> Result<()> {
    let masks = Path::new("/").join(MASKS);
    let (file, dir) = (masks.join("empty"), masks.join("empty.d"));
    let entries = MASKED_PROC_FILES.iter().map(|n| (n, &file)).chain(MASKED_PROC_DIRS.iter().map(|n| (n, &dir)));
    for (name, src) in entries {
        let target = proc_dir.join(name);
        // a fresh proc nothing untrusted has run in: following its links is safe
        if !target.exists() {
            continue;
        }
        mount(Some(src.as_path()), &target, None::<&str>, MsFlags::MS_BIND, None::<&str>)
            .map_err(sys("hide a /proc entry", &target))?;
    }
    Ok(())
}

/// The writable tmpfs mounts: where, how big, and their other options.
fn tmpfs_mounts(sizes: &TmpfsSizes) -> [(&'static str, u64, &'static str); 3] {
    let [tmp, sandbox, shm] = TMPFS_DIRS;
    [
        (tmp, sizes.tmp_bytes, "mode=1777"),
        (sandbox, sizes.workdir_bytes, "mode=0755,uid={id},gid={id}"),
        (shm, sizes.shm_bytes, "mode=1777"),
    ]
}

fn tmpfs_flags(dir: &str) -> MsFlags {
    let flags = MsFlags::MS_NOSUID | MsFlags::MS_NODEV;
    if dir == "dev/shm" { flags | MsFlags::MS_NOEXEC } else { flags }
}

/// Gives the writable tmpfs mounts (after the pivot) the sizes of this run.
pub(super) fn resize(sizes: &TmpfsSizes) -> Result<()> {
    for (dir, size, _) in tmpfs_mounts(sizes) {
        let target = Path::new("/").join(dir);
        let opts = format!("size={size},nr_inodes={}", sizes.inodes);
        mount(None::<&str>, &target, None::<&str>, tmpfs_flags(dir) | MsFlags::MS_REMOUNT, Some(opts.as_str()))
            .map_err(sys("resize tmpfs", &target))?;
    }
    Ok(())
}

/// Creates the input files under the cwd (`/sandbox`, a fresh tmpfs nothing untrusted
/// has run in yet) from the memfd; `owner`, if given, gets them (else they are ours).
pub(super) fn write_files(memfd: Option<OwnedFd>, entries: &[FileEntry], owner: Option<u32>) -> Result<()> {
    let Some(memfd) = memfd else {
        return if entries.is_empty() { Ok(()) } else { Err(StepError::new("write files", None, "no memfd".into())) };
    };
    let src = File::from(memfd);
    let owner = owner.map(|id| (Some(Uid::from_raw(id)), Some(Gid::from_raw(id))));
    for e in entries {
        check_relative_path(&e.path).map_err(|why| StepError::new("write files", None, why))?;
        let path = Path::new(&e.path);
        if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
            for dir in parent.ancestors().collect::<Vec<_>>().into_iter().rev().skip(1) {
                if !dir.exists() {
                    mkdir(dir, 0o755)?;
                    if let Some((u, g)) = owner {
                        nix::unistd::chown(dir, u, g).map_err(sys("chown", dir))?;
                    }
                }
            }
        }
        let mode = if e.executable { 0o755 } else { 0o644 };
        let mut out = OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(mode)
            .custom_flags(libc::O_NOFOLLOW)
            .open(path)
            .map_err(io("create input file", path))?;
        copy_range(&src, e.offset, e.len, &mut out).map_err(io("write input file", path))?;
        if let Some((u, g)) = owner {
            fchown(&out, u, g).map_err(sys("chown", path))?;
        }
    }
    Ok(())
}

fn copy_range(src: &File, offset: u64, len: u64, out: &mut File) -> std::io::Result<()> {
    let mut buf = vec![0u8; 64 * 1024];
    let mut done = 0u64;
    while done < len {
        let want = usize::try_from((len - done).min(buf.len() as u64)).unwrap_or(buf.len());
        let n = src.read_at(&mut buf[..want], offset + done)?;
        if n == 0 {
            return Err(std::io::Error::from(std::io::ErrorKind::UnexpectedEof));
        }
        out.write_all(&buf[..n])?;
        done += n as u64;
    }
    Ok(())
}
