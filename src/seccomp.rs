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

// Classic BPF opcodes and the seccomp return values used by the x32 guard.
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

/// The BPF programs of profile `name`, ready to install in any order.
pub fn programs(name: &str) -> Result<Vec<BpfProgram>, SeccompError> {
    let profile = PROFILES
        .iter()
        .find(|p| p.name == name)
        .ok_or_else(|| SeccompError::UnknownProfile { name: name.to_owned(), known: profile_names().join(", ") })?;
    let mut out: Vec<BpfProgram> = profile.filters.iter().map(|f| f.program.to_vec()).collect();
    #[cfg(target_arch = "x86_64")]
    out.push(x32_guard());
    Ok(out)
}

/// The names of the filters of profile `name`, for diagnostics.
pub fn filter_names(name: &str) -> Vec<&'static str> {
    PROFILES.iter().filter(|p| p.name == name).flat_map(|p| p.filters.iter().map(|f| f.name)).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_profile_has_one_filter_per_action() {
        assert_eq!(filter_names("default"), ["enosys", "eperm", "kill"]);
        let progs = programs("default").unwrap();
        assert_eq!(progs.len(), if cfg!(target_arch = "x86_64") { 4 } else { 3 });
        for p in &progs {
            assert!(!p.is_empty());
            // every program must end in a return; a truncated program would be rejected
            assert_eq!(p.last().unwrap().code, 0x06);
        }
    }

    #[test]
    fn compiled_filters_check_the_architecture_first() {
        for f in PROFILES.iter().flat_map(|p| p.filters) {
            // seccompiler: load arch; jeq native; else kill_process
            assert_eq!(f.program[0].code, 0x20, "{}", f.name);
            assert_eq!(f.program[0].k, 4, "{}: loads seccomp_data.arch", f.name);
            assert_eq!(f.program[2].k, libc::SECCOMP_RET_KILL_PROCESS, "{}", f.name);
        }
    }

    #[test]
    fn unknown_profile_names_the_known_ones() {
        let err = programs("nope").unwrap_err().to_string();
        assert!(err.contains("\"nope\"") && err.contains("default"), "{err}");
    }
}
