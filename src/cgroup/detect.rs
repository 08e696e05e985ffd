//! Which cgroup hierarchies exist and where, read from `mountinfo` text.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use super::{CgroupError, Result};

/// Where our cgroups can be made.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Layout {
    /// Pure cgroup v2: one hierarchy with the memory, pids and cpu controllers.
    V2 {
        /// The cgroup2 mount point.
        root: PathBuf,
    },
    /// cgroup v1 controllers (each possibly its own mount), maybe beside a cgroup2 mount.
    V1 {
        /// The v1 memory hierarchy.
        memory: PathBuf,
        /// The v1 pids hierarchy.
        pids: PathBuf,
        /// The v1 cpu hierarchy (CFS bandwidth).
        cpu: PathBuf,
        /// Where CPU time is read from.
        usage: Usage,
    },
}

/// The source of CPU-time accounting on a v1 host.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Usage {
    /// A cgroup2 mount (hybrid host): `cpu.stat` exists in every v2 cgroup, controllers or
    /// not, and the same cgroup gives us `cgroup.kill` for free.
    Unified(PathBuf),
    /// The v1 cpuacct hierarchy (`cpuacct.usage`); may be the cpu mount (`cpu,cpuacct`).
    CpuAcct(PathBuf),
}

impl Usage {
    /// The mount point the accounting cgroup lives in.
    pub fn mount_point(&self) -> &Path {
        match self {
            Usage::Unified(p) | Usage::CpuAcct(p) => p,
        }
    }
}

struct Mount {
    point: PathBuf,
    fstype: String,
    super_opts: String,
}

impl Layout {
    /// Reads the layout from the text of a `mountinfo` file.
    pub fn detect(mountinfo: &str) -> Result<Self> {
        let mounts: Vec<Mount> = mountinfo.lines().filter_map(parse_line).collect();
        let mut v1: HashMap<&str, &Path> = HashMap::new();
        let mut v2: Vec<&Path> = Vec::new();
        for m in &mounts {
            match m.fstype.as_str() {
                "cgroup" => {
                    for opt in m.super_opts.split(',') {
                        v1.entry(opt).or_insert(&m.point);
                    }
                }
                "cgroup2" => v2.push(&m.point),
                _ => {}
            }
        }
        // Prefer the conventional mount points when there are several cgroup2 mounts.
        v2.sort_by_key(|p| match p.to_str() {
            Some("/sys/fs/cgroup") => 0,
            Some("/sys/fs/cgroup/unified") => 1,
            _ => 2,
        });
        if let Some(memory) = v1.get("memory") {
            let need = |c: &'static str| {
                v1.get(c).map(|p| p.to_path_buf()).ok_or_else(|| CgroupError::MissingController {
                    controller: c,
                    hint: format!("this host mounts cgroup v1 controllers, but not {c}; mount it (mount -t cgroup -o {c} cgroup /sys/fs/cgroup/{c}) or boot with cgroup v2 only"),
                })
            };
            let usage = match v2.first() {
                Some(p) => Usage::Unified(p.to_path_buf()),
                None => Usage::CpuAcct(need("cpuacct")?),
            };
            return Ok(Layout::V1 { memory: memory.to_path_buf(), pids: need("pids")?, cpu: need("cpu")?, usage });
        }
        match v2.first() {
            Some(root) => Ok(Layout::V2 { root: root.to_path_buf() }),
            None => Err(CgroupError::NoHierarchy(
                "neither a cgroup2 mount nor a cgroup v1 memory controller is mounted; mount cgroup2 at /sys/fs/cgroup (mount -t cgroup2 none /sys/fs/cgroup)".into(),
            )),
        }
    }

    /// Each distinct mount point our cgroups are made in.
    pub fn mount_points(&self) -> Vec<PathBuf> {
        match self {
            Layout::V2 { root } => vec![root.clone()],
            Layout::V1 { memory, pids, cpu, usage } => {
                let mut out: Vec<PathBuf> = Vec::new();
                for p in [memory, pids, cpu, &usage.mount_point().to_path_buf()] {
                    if !out.contains(p) {
                        out.push(p.clone());
                    }
                }
                out
            }
        }
    }

    /// One line for humans.
    pub fn describe(&self) -> String {
        match self {
            Layout::V2 { root } => format!("cgroup v2 at {}", root.display()),
            Layout::V1 { memory, pids, cpu, usage } => {
                let acct = match usage {
                    Usage::Unified(p) => format!("cpu time and kill from cgroup2 at {}", p.display()),
                    Usage::CpuAcct(p) => format!("cpu time from cpuacct at {}", p.display()),
                };
                let kind = if matches!(usage, Usage::Unified(_)) { "hybrid" } else { "legacy" };
                format!(
                    "cgroup v1 ({kind}): memory at {}, pids at {}, cpu at {}, {acct}",
                    memory.display(),
                    pids.display(),
                    cpu.display()
                )
            }
        }
    }
}

/// `36 35 98:0 /mnt1 /mnt/a rw,noatime master:1 - ext3 /dev/root rw,errors=continue`
fn parse_line(line: &str) -> Option<Mount> {
    let (left, right) = line.split_once(" - ")?;
    let point = left.split(' ').nth(4)?;
    let mut right = right.split(' ');
    let fstype = right.next()?.to_owned();
    let _source = right.next()?;
    let super_opts = right.next().unwrap_or("").to_owned();
    Some(Mount { point: PathBuf::from(unescape(point)), fstype, super_opts })
}

/// mountinfo escapes space, tab, newline and backslash as three octal digits.
fn unescape(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'\\' && i + 4 <= b.len() && b[i + 1..i + 4].iter().all(|c| (b'0'..=b'7').contains(c)) {
            out.push((b[i + 1] - b'0') * 64 + (b[i + 2] - b'0') * 8 + (b[i + 3] - b'0'));
            i += 4;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// This machine's layout: v1 controllers on separate mounts, cpu and cpuacct apart,
    /// and a controller-less cgroup2 at /sys/fs/cgroup/unified.
    pub(crate) const HYBRID: &str = "\
31 23 0:28 / /sys/fs/cgroup rw,relatime - tmpfs tmpfs rw,mode=755
32 31 0:29 / /sys/fs/cgroup/cpu rw,relatime - cgroup cgroup rw,cpu
33 31 0:30 / /sys/fs/cgroup/cpuacct rw,relatime - cgroup cgroup rw,cpuacct
35 31 0:32 / /sys/fs/cgroup/memory rw,relatime - cgroup cgroup rw,memory
37 31 0:34 / /sys/fs/cgroup/freezer rw,relatime - cgroup cgroup rw,freezer
39 31 0:36 / /sys/fs/cgroup/pids rw,relatime - cgroup cgroup rw,pids
40 31 0:37 / /sys/fs/cgroup/systemd rw,relatime - cgroup cgroup rw,name=systemd
41 31 0:38 / /sys/fs/cgroup/unified rw,relatime - cgroup2 cgroup2 rw
";

    /// A classic v1 host: cpu and cpuacct co-mounted, no cgroup2.
    const LEGACY: &str = "\
25 18 0:22 / /sys/fs/cgroup ro,nosuid,nodev,noexec shared:9 - tmpfs tmpfs ro,mode=755
29 25 0:26 / /sys/fs/cgroup/cpu,cpuacct rw,nosuid,nodev,noexec,relatime shared:10 - cgroup cgroup rw,cpu,cpuacct
30 25 0:27 / /sys/fs/cgroup/memory rw,nosuid,nodev,noexec,relatime shared:11 - cgroup cgroup rw,memory
31 25 0:28 / /sys/fs/cgroup/pids rw,nosuid,nodev,noexec,relatime shared:12 - cgroup cgroup rw,pids
";

    /// A pure v2 host (systemd, Debian 12 / Ubuntu 22.04+).
    const PURE_V2: &str = "\
22 27 0:21 / /proc rw,relatime - proc proc rw
30 23 0:26 / /sys/fs/cgroup rw,nosuid,nodev,noexec,relatime shared:4 - cgroup2 cgroup2 rw,nsdelegate,memory_recursiveprot
";

    #[test]
    fn hybrid_uses_v1_controllers_and_the_unified_mount() {
        let l = Layout::detect(HYBRID).unwrap();
        assert_eq!(
            l,
            Layout::V1 {
                memory: "/sys/fs/cgroup/memory".into(),
                pids: "/sys/fs/cgroup/pids".into(),
                cpu: "/sys/fs/cgroup/cpu".into(),
                usage: Usage::Unified("/sys/fs/cgroup/unified".into()),
            }
        );
        assert_eq!(l.mount_points().len(), 4);
        assert!(l.describe().contains("hybrid"));
    }

    #[test]
    fn legacy_reads_cpu_time_from_a_comounted_cpuacct() {
        let l = Layout::detect(LEGACY).unwrap();
        let Layout::V1 { cpu, usage, .. } = &l else { panic!("{l:?}") };
        assert_eq!(cpu, Path::new("/sys/fs/cgroup/cpu,cpuacct"));
        assert_eq!(usage, &Usage::CpuAcct("/sys/fs/cgroup/cpu,cpuacct".into()));
        // cpu and cpuacct share one directory: three mount points, not four
        assert_eq!(l.mount_points().len(), 3);
    }

    #[test]
    fn pure_v2_is_detected() {
        assert_eq!(Layout::detect(PURE_V2).unwrap(), Layout::V2 { root: "/sys/fs/cgroup".into() });
    }

    #[test]
    fn missing_hierarchies_are_explained() {
        let e = Layout::detect("22 27 0:21 / /proc rw - proc proc rw\n").unwrap_err();
        assert!(e.to_string().contains("mount -t cgroup2"), "{e}");
        let no_pids = HYBRID.lines().filter(|l| !l.contains("pids")).collect::<Vec<_>>().join("\n");
        let e = Layout::detect(&no_pids).unwrap_err();
        assert!(e.to_string().contains("pids"), "{e}");
    }

    #[test]
    fn escaped_mount_points_are_decoded() {
        let t = "41 31 0:38 / /sys/fs/cgroup/my\\040cg rw - cgroup2 cgroup2 rw\n";
        assert_eq!(Layout::detect(t).unwrap(), Layout::V2 { root: "/sys/fs/cgroup/my cg".into() });
    }
}
