//! The program's Landlock ruleset: a second layer under the mount namespace and seccomp,
//! enforced by a different part of the kernel (an LSM), so that a hole in one does not
//! open the other. It allows reading and executing anything the program can see, writing
//! only under the sandbox's writable tmpfs mounts, to its device nodes and under the
//! writable host mounts it was given, and, without a network link, no TCP bind or connect
//! at all. <https://docs.kernel.org/userspace-api/landlock.html>
//!
//! It is applied by the program's process itself (single-threaded, after `no_new_privs`,
//! which an unprivileged `landlock_restrict_self` needs, and before seccomp), never by the
//! daemon. The crate's best-effort mode leaves out rights the running kernel's ABI lacks;
//! a kernel without Landlock gets no spec from the runner at all.

use std::path::Path;

use landlock::{
    ABI, Access, AccessFs, AccessNet, PathBeneath, PathFd, Ruleset, RulesetAttr, RulesetCreatedAttr, RulesetStatus,
};
use nix::errno::Errno;

use super::mounts::{DEVICES, TMPFS_DIRS};
use super::spec::Landlock;

/// The ABI whose rights we ask for: V5 (Linux 6.10) adds `IOCTL_DEV` to V4's TCP rules
/// and V3's `TRUNCATE`. A fixed version, as the crate asks: a newer kernel's rights are
/// only asked for once tested here.
const TARGET: ABI = ABI::V5;

/// Builds the ruleset and restricts the calling process (and everything it execs) to it.
/// Paths are the sandbox's, after `pivot_root`.
pub(super) fn apply(spec: &Landlock) -> Result<(), Errno> {
    let all = AccessFs::from_all(TARGET);
    let mut ruleset = Ruleset::default().handle_access(all).map_err(errno)?;
    if !spec.tcp {
        ruleset = ruleset.handle_access(AccessNet::from_all(TARGET)).map_err(errno)?;
    }
    let mut rules = ruleset.create().map_err(errno)?;
    rules = rules.add_rule(beneath("/", AccessFs::from_read(TARGET))?).map_err(errno)?;
    for dir in TMPFS_DIRS {
        rules = rules.add_rule(beneath(Path::new("/").join(dir), all)?).map_err(errno)?;
    }
    for dev in DEVICES {
        rules = rules.add_rule(beneath(Path::new("/dev").join(dev), AccessFs::from_file(TARGET))?).map_err(errno)?;
    }
    for name in &spec.writable_mounts {
        super::check_relative_path(name).map_err(|_| Errno::EINVAL)?;
        rules = rules.add_rule(beneath(Path::new("/mnt").join(name), all)?).map_err(errno)?;
    }
    match rules.restrict_self().map_err(errno)?.ruleset {
        RulesetStatus::FullyEnforced | RulesetStatus::PartiallyEnforced => Ok(()),
        // the runner sends a spec only where the kernel has Landlock: this is no silent "off"
        RulesetStatus::NotEnforced => Err(Errno::EOPNOTSUPP),
    }
}

fn beneath(path: impl AsRef<Path>, access: landlock::BitFlags<AccessFs>) -> Result<PathBeneath<PathFd>, Errno> {
    Ok(PathBeneath::new(PathFd::new(path).map_err(errno)?, access))
}

/// The errno behind a landlock error (a syscall's or an `open`'s), else `EINVAL` (a rule
/// the crate itself refused).
fn errno(e: impl std::error::Error + 'static) -> Errno {
    let mut cause: Option<&(dyn std::error::Error + 'static)> = Some(&e);
    while let Some(c) = cause {
        if let Some(code) = c.downcast_ref::<std::io::Error>().and_then(std::io::Error::raw_os_error) {
            return Errno::from_raw(code);
        }
        cause = c.source();
    }
    Errno::EINVAL
}
