//! Seccomp policies, compiled from `seccomp/*.json` by `build.rs` and embedded in the
//! binary. This module only looks programs up; installing them is the sandbox's job, on
//! the program's side of the fork, right before `execve`.
//!
//! A profile is a set of filters, one per action (seccompiler gives each filter a single
//! match action): `eperm`, `enosys`, `kill`. The kernel runs every installed filter and
//! keeps the strictest verdict, so their order does not matter. seccompiler's programs
//! start by killing any syscall made with a non-native architecture (e.g. i386 through
//! `int 0x80`); on x86_64 one more filter kills x32-ABI syscalls, which carry the native
//! architecture value and would otherwise slip past a deny-list keyed on native numbers.

mod bpf;

use seccompiler::{BpfProgram, sock_filter};

/// One named seccomp profile: the filters to install together.
#[derive(Debug)]
pub(crate) struct Profile {
    name: &'static str,
    filters: &'static [Filter],
}

/// One BPF program of a profile.
#[derive(Debug)]
pub(crate) struct Filter {
    name: &'static str,
    program: &'static [sock_filter],
}

include!(concat!(env!("OUT_DIR"), "/seccomp_programs.rs"));

/// Errors looking up a profile.
#[derive(Debug, thiserror::Error)]
pub enum SeccompError {
    /// The chained program is longer than the kernel accepts.
    #[error("seccomp profile {name:?} compiles to {len} BPF instructions; the kernel accepts {max}")]
    TooLong {
        /// The profile.
        name: String,
        /// Its length.
        len: usize,
        /// BPF_MAXINSNS.
        max: usize,
    },
    /// No `seccomp/<name>.json` was compiled into this binary.
    #[error("no seccomp profile named {name:?} (compiled in: {known})")]
    UnknownProfile {
        /// The name asked for.
        name: String,
        /// The profiles that exist.
        known: String,
    },
}

// Classic BPF opcodes (linux/bpf_common.h) used by the x32 guard.
#[cfg(target_arch = "x86_64")]
const BPF_LD_W_ABS: u16 = 0x20;
#[cfg(target_arch = "x86_64")]
const BPF_JMP_JGE_K: u16 = 0x35;
#[cfg(target_arch = "x86_64")]
const BPF_RET_K: u16 = 0x06;
/// `__X32_SYSCALL_BIT`: x32 syscall numbers are native ones with bit 30 set.
#[cfg(target_arch = "x86_64")]
const X32_SYSCALL_BIT: u32 = 0x4000_0000;

/// Kills any syscall whose number has the x32 bit set (see the module docs).
#[cfg(target_arch = "x86_64")]
fn x32_guard() -> BpfProgram {
    vec![
        // A = seccomp_data.nr (offset 0)
        sock_filter { code: BPF_LD_W_ABS, jt: 0, jf: 0, k: 0 },
        // if A >= X32_SYSCALL_BIT fall through to kill, else skip to allow
        sock_filter { code: BPF_JMP_JGE_K, jt: 0, jf: 1, k: X32_SYSCALL_BIT },
        sock_filter { code: BPF_RET_K, jt: 0, jf: 0, k: libc::SECCOMP_RET_KILL_PROCESS },
        sock_filter { code: BPF_RET_K, jt: 0, jf: 0, k: libc::SECCOMP_RET_ALLOW },
    ]
}

/// The names of the compiled-in profiles.
pub fn profile_names() -> Vec<&'static str> {
    PROFILES.iter().map(|p| p.name).collect()
}

/// The programs of profile `name`: the x32 guard, then the compiled filters, strictest
/// action first (`build.rs` orders them and checks they match disjoint syscalls, so the
/// order changes no verdict).
fn parts(name: &str) -> Result<Vec<BpfProgram>, SeccompError> {
    let profile = PROFILES
        .iter()
        .find(|p| p.name == name)
        .ok_or_else(|| SeccompError::UnknownProfile { name: name.to_owned(), known: profile_names().join(", ") })?;
    let mut out = Vec::with_capacity(profile.filters.len() + 1);
    #[cfg(target_arch = "x86_64")]
    out.push(x32_guard());
    out.extend(profile.filters.iter().map(|f| f.program.to_vec()));
    Ok(out)
}

/// Profile `name` as one BPF program, ready to install: the filters chained into one (a
/// filter costs a JIT compilation and a pass of the kernel's cache precomputation when
/// installed) behind a dispatch prologue (see `bpf`).
pub fn program(name: &str) -> Result<BpfProgram, SeccompError> {
    let program = bpf::with_dispatch(bpf::chain(parts(name)?), native_arch());
    if program.len() > BPF_MAXINSNS {
        return Err(SeccompError::TooLong { name: name.to_owned(), len: program.len(), max: BPF_MAXINSNS });
    }
    Ok(program)
}

/// The longest classic BPF program the kernel loads (linux/bpf_common.h).
const BPF_MAXINSNS: usize = 4096;

/// The audit architecture value of this build's target.
fn native_arch() -> u32 {
    if cfg!(target_arch = "x86_64") {
        0xc000_003e
    } else if cfg!(target_arch = "aarch64") {
        0xc000_00b7
    } else {
        0xc000_00f3 // riscv64
    }
}

/// The names of the filters of profile `name`, for diagnostics.
pub fn filter_names(name: &str) -> Vec<&'static str> {
    PROFILES.iter().filter(|p| p.name == name).flat_map(|p| p.filters.iter().map(|f| f.name)).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    use super::bpf::{Data, eval};

    const AUDIT_ARCH_X86_64: u32 = 0xc000_003e;
    const AUDIT_ARCH_I386: u32 = 0x4000_0003;

    /// The kernel's rule for stacked filters: the lowest action value (as i32) wins.
    fn strictest(parts: &[BpfProgram], d: &Data) -> u32 {
        parts.iter().map(|p| eval(p, d)).min_by_key(|r| i32::from_ne_bytes(r.to_ne_bytes())).unwrap()
    }

    fn data(nr: u32, arch: u32, arg0: u64) -> Data {
        Data { nr, arch, args: [arg0, 0, 0, 0, 0, 0] }
    }

    #[test]
    fn installed_programs_decide_like_stacked_filters() {
        for name in profile_names() {
            same_as_stacked(name);
        }
    }

    fn same_as_stacked(name: &str) {
        let parts = parts(name).unwrap();
        let merged = program(name).unwrap();
        assert!(merged.len() <= BPF_MAXINSNS);
        let args = [0, 0x1000_0000, 0x2000_0000 | 0x11, 0x0040_0000, 0xffff_ffff, u64::MAX];
        for arch in [AUDIT_ARCH_X86_64, AUDIT_ARCH_I386] {
            for nr in (0..1100).chain([0x4000_0000, 0x4000_0000 | 165, u32::MAX]) {
                for arg in args {
                    let d = data(nr, arch, arg);
                    assert_eq!(eval(&merged, &d), strictest(&parts, &d), "nr {nr} arch {arch:#x} arg {arg:#x}");
                }
            }
        }
    }

    #[cfg(target_arch = "x86_64")]
    #[test]
    fn default_policy_verdicts() {
        let p = program("default").unwrap();
        let eperm = libc::SECCOMP_RET_ERRNO | 1;
        let kill = libc::SECCOMP_RET_KILL_PROCESS;
        let allow = libc::SECCOMP_RET_ALLOW;
        let x86 = |nr: i64, arg0: u64| eval(&p, &data(u32::try_from(nr).unwrap(), AUDIT_ARCH_X86_64, arg0));
        assert_eq!(x86(libc::SYS_read, 0), allow);
        assert_eq!(x86(libc::SYS_mount, 0), eperm);
        assert_eq!(x86(libc::SYS_unshare, 0), eperm);
        assert_eq!(x86(libc::SYS_io_uring_setup, 0), eperm);
        assert_eq!(x86(libc::SYS_ptrace, 0), kill);
        assert_eq!(x86(libc::SYS_kexec_load, 0), kill);
        assert_eq!(x86(libc::SYS_clone3, 0), libc::SECCOMP_RET_ERRNO | 38);
        // clone: threads and forks pass, any namespace flag is refused
        assert_eq!(x86(libc::SYS_clone, 0x3d0f00), allow);
        assert_eq!(x86(libc::SYS_clone, 0x01200011), allow);
        assert_eq!(x86(libc::SYS_clone, libc::CLONE_NEWUSER as u64 | 0x11), eperm);
        assert_eq!(x86(libc::SYS_clone, libc::CLONE_NEWNET as u64), eperm);
        // personality: the query form passes, READ_IMPLIES_EXEC does not
        assert_eq!(x86(libc::SYS_personality, 0xffff_ffff), allow);
        assert_eq!(x86(libc::SYS_personality, 0x0040_0000), eperm);
        // x32 ABI and foreign architectures are killed
        assert_eq!(x86(0x4000_0000, 0), kill);
        assert_eq!(eval(&p, &data(0, AUDIT_ARCH_I386, 0)), kill);
    }

    #[test]
    fn default_profile_has_one_filter_per_action() {
        // strictest action first (build.rs orders them)
        assert_eq!(filter_names("default"), ["kill", "enosys", "eperm"]);
        for f in PROFILES.iter().flat_map(|p| p.filters) {
            // seccompiler: load arch; jeq native; else kill_process
            assert_eq!(f.program[0].code, 0x20, "{}", f.name);
            assert_eq!(f.program[0].k, 4, "{}: loads seccomp_data.arch", f.name);
            assert_eq!(f.program[2].k, libc::SECCOMP_RET_KILL_PROCESS, "{}", f.name);
            assert!(f.program.iter().all(|i| i.code != 0x16), "{}: no RET A", f.name);
        }
    }

    #[test]
    fn unknown_profile_names_the_known_ones() {
        let err = program("nope").unwrap_err().to_string();
        assert!(err.contains("\"nope\"") && err.contains("default"), "{err}");
    }
}

#[cfg(test)]
mod prologue_tests {
    use super::bpf::{Data, steps};
    use super::*;

    #[test]
    fn allowed_syscalls_take_a_short_path() {
        let p = program("default").unwrap();
        let x86 = |nr: u32| Data { nr, arch: native_arch(), args: [0; 6] };
        // read, write, openat, mmap: never mentioned by the policy
        for nr in [0, 1, 9, 257] {
            let n = steps(&p, &x86(nr));
            assert!(n <= 20, "syscall {nr} walks {n} instructions");
        }
        let chained = bpf::chain(parts("default").unwrap());
        assert!(steps(&chained, &x86(0)) > 100, "the prologue is what makes the path short");
    }
}
