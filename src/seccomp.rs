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
    /// No `seccomp/<name>.json` was compiled into this binary.
    #[error("no seccomp profile named {name:?} (compiled in: {known})")]
    UnknownProfile {
        /// The name asked for.
        name: String,
        /// The profiles that exist.
        known: String,
    },
}

// Classic BPF opcodes (linux/bpf_common.h) used by the x32 guard and the chaining.
#[cfg(target_arch = "x86_64")]
const BPF_LD_W_ABS: u16 = 0x20;
#[cfg(target_arch = "x86_64")]
const BPF_JMP_JGE_K: u16 = 0x35;
const BPF_JMP_JA: u16 = 0x05;
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

/// The programs of profile `name`, strictest action first: the x32 guard, then the
/// compiled filters in file order (`kill` sorts before `eperm` only by name; they match
/// disjoint syscalls, so order changes no verdict).
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

/// Profile `name` as one BPF program, ready to install.
///
/// Installing a filter costs a BPF JIT compilation, so the filters are chained into one
/// program: every `return ALLOW` of a filter but the last becomes a jump to the start of
/// the next filter. A syscall is thus allowed only if every filter allows it, and the
/// first filter that does not allow it decides, which for filters that match disjoint
/// syscalls is exactly the kernel's rule for stacked filters (the strictest action wins).
/// Jump offsets are relative and no instruction is added, so every jump stays valid.
pub fn program(name: &str) -> Result<BpfProgram, SeccompError> {
    let parts = parts(name)?;
    let last = parts.len() - 1;
    let mut out = Vec::with_capacity(parts.iter().map(Vec::len).sum());
    for (i, part) in parts.into_iter().enumerate() {
        let len = part.len();
        out.extend(part.into_iter().enumerate().map(|(at, ins)| {
            let allow = ins.code == BPF_RET_K && ins.k == libc::SECCOMP_RET_ALLOW;
            if allow && i < last {
                let to_next = u32::try_from(len - at - 1).expect("a BPF program has at most 4096 instructions");
                sock_filter { code: BPF_JMP_JA, jt: 0, jf: 0, k: to_next }
            } else {
                ins
            }
        }));
    }
    Ok(out)
}

/// The names of the filters of profile `name`, for diagnostics.
pub fn filter_names(name: &str) -> Vec<&'static str> {
    PROFILES.iter().filter(|p| p.name == name).flat_map(|p| p.filters.iter().map(|f| f.name)).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The seccomp_data a filter sees: nr, arch, instruction pointer, six arguments.
    struct Data {
        nr: u32,
        arch: u32,
        args: [u64; 6],
    }

    const AUDIT_ARCH_X86_64: u32 = 0xc000_003e;
    const AUDIT_ARCH_I386: u32 = 0x4000_0003;

    impl Data {
        fn word(&self, off: u32) -> u32 {
            match off {
                0 => self.nr,
                4 => self.arch,
                8 | 12 => 0,
                o => {
                    let (i, hi) = (((o - 16) / 8) as usize, (o - 16) % 8 == 4);
                    (if hi { self.args[i] >> 32 } else { self.args[i] & 0xffff_ffff }) as u32
                }
            }
        }
    }

    /// A classic BPF interpreter for the instructions seccompiler and we emit.
    fn eval(prog: &[sock_filter], d: &Data) -> u32 {
        let (mut pc, mut a) = (0usize, 0u32);
        loop {
            let ins = &prog[pc];
            let jump = |cond: bool| pc + 1 + usize::from(if cond { ins.jt } else { ins.jf });
            pc = match ins.code {
                0x20 => {
                    a = d.word(ins.k);
                    pc + 1
                }
                0x54 => {
                    a &= ins.k;
                    pc + 1
                }
                0x05 => pc + 1 + ins.k as usize,
                0x15 => jump(a == ins.k),
                0x25 => jump(a > ins.k),
                0x35 => jump(a >= ins.k),
                0x45 => jump(a & ins.k != 0),
                0x06 => return ins.k,
                c => panic!("unexpected BPF opcode {c:#x}"),
            };
        }
    }

    /// The kernel's rule for stacked filters: the lowest action value (as i32) wins.
    fn strictest(parts: &[BpfProgram], d: &Data) -> u32 {
        parts.iter().map(|p| eval(p, d)).min_by_key(|r| *r as i32).unwrap()
    }

    fn data(nr: u32, arch: u32, arg0: u64) -> Data {
        Data { nr, arch, args: [arg0, 0, 0, 0, 0, 0] }
    }

    #[test]
    fn chained_program_decides_like_stacked_filters() {
        let parts = parts("default").unwrap();
        let merged = program("default").unwrap();
        assert_eq!(merged.len(), parts.iter().map(Vec::len).sum::<usize>());
        let args = [0, 0x1000_0000, 0x2000_0000 | 0x11, 0x0040_0000, 0xffff_ffff, u64::MAX];
        for arch in [AUDIT_ARCH_X86_64, AUDIT_ARCH_I386] {
            for nr in (0..500).chain([0x4000_0000, 0x4000_0000 | 165]) {
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
        assert_eq!(filter_names("default"), ["enosys", "eperm", "kill"]);
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
