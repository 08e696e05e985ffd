//! Classic BPF for seccomp: an interpreter (to classify syscalls and to test policies),
//! the chaining of per-action filters into one program, and a dispatch prologue.
//!
//! Why a prologue: when a filter is installed, the kernel precomputes which syscalls it
//! always allows by emulating it once per syscall number, and that emulation walks
//! seccompiler's linear chain of comparisons: about 190 instructions per number for our
//! policy, some 0.4 ms per run on this machine kind. The prologue sends every syscall the
//! policy never mentions straight to `ALLOW` after a binary search of ~10 instructions,
//! and everything else (other architectures, numbers past the table, the mentioned
//! syscalls) on to the unchanged program, so the verdicts stay exactly the same.

use seccompiler::sock_filter;

const BPF_LD_W_ABS: u16 = 0x20;
const BPF_ALU_AND_K: u16 = 0x54;
pub(super) const BPF_JMP_JA: u16 = 0x05;
const BPF_JMP_JEQ_K: u16 = 0x15;
const BPF_JMP_JGT_K: u16 = 0x25;
const BPF_JMP_JGE_K: u16 = 0x35;
const BPF_JMP_JSET_K: u16 = 0x45;
pub(super) const BPF_RET_K: u16 = 0x06;

/// Offsets in `struct seccomp_data`.
const NR: u32 = 0;
const ARCH: u32 = 4;
/// Syscall numbers the prologue knows about; anything at or above goes to the program.
const TABLE: u32 = 1024;
/// Leaves of the binary search hold at most this many numbers.
const LEAF: usize = 4;

/// The `seccomp_data` a filter sees: number, architecture, six arguments.
#[derive(Debug, Clone, Copy)]
pub(super) struct Data {
    pub(super) nr: u32,
    pub(super) arch: u32,
    pub(super) args: [u64; 6],
}

impl Data {
    /// The 32-bit word at `off`, or `None` for the instruction pointer and arguments.
    fn known_word(&self, off: u32) -> Option<u32> {
        match off {
            NR => Some(self.nr),
            ARCH => Some(self.arch),
            _ => None,
        }
    }

    fn word(&self, off: u32) -> u32 {
        self.known_word(off).unwrap_or_else(|| match off {
            8 | 12 => 0,
            o => {
                let (i, hi) = (((o - 16) / 8) as usize, (o - 16) % 8 == 4);
                let arg = self.args.get(i).copied().unwrap_or(0);
                let half = if hi { arg >> 32 } else { arg & 0xffff_ffff };
                u32::try_from(half).unwrap_or(0)
            }
        })
    }
}

/// Runs `prog` on `d`: its verdict and how many instructions it executed. With
/// `only_known`, stops with `None` at the first load of the instruction pointer or an
/// argument: the verdict would depend on them.
fn run(prog: &[sock_filter], d: &Data, only_known: bool) -> Option<(u32, usize)> {
    let (mut pc, mut a) = (0usize, 0u32);
    for steps in 1.. {
        let ins = prog.get(pc)?;
        let jump = |cond: bool| pc + 1 + usize::from(if cond { ins.jt } else { ins.jf });
        pc = match ins.code {
            BPF_LD_W_ABS => {
                a = if only_known { d.known_word(ins.k)? } else { d.word(ins.k) };
                pc + 1
            }
            BPF_ALU_AND_K => {
                a &= ins.k;
                pc + 1
            }
            BPF_JMP_JA => pc + 1 + ins.k as usize,
            BPF_JMP_JEQ_K => jump(a == ins.k),
            BPF_JMP_JGT_K => jump(a > ins.k),
            BPF_JMP_JGE_K => jump(a >= ins.k),
            BPF_JMP_JSET_K => jump(a & ins.k != 0),
            BPF_RET_K => return Some((ins.k, steps)),
            _ => return None,
        };
    }
    None
}

/// The verdict of `prog` for `d`.
#[cfg(test)]
pub(super) fn eval(prog: &[sock_filter], d: &Data) -> u32 {
    run(prog, d, false).map_or(libc::SECCOMP_RET_KILL_PROCESS, |(verdict, _)| verdict)
}

/// Chains filters into one program: every `return ALLOW` of a filter but the last
/// becomes a jump to the start of the next. A syscall is allowed only if every filter
/// allows it, and the first that does not decides, which for filters matching disjoint
/// syscalls is the kernel's rule for stacked filters. No instruction is added, so every
/// relative jump stays valid.
pub(super) fn chain(parts: Vec<Vec<sock_filter>>) -> Vec<sock_filter> {
    let last = parts.len().saturating_sub(1);
    let mut out = Vec::with_capacity(parts.iter().map(Vec::len).sum());
    for (i, part) in parts.into_iter().enumerate() {
        let len = part.len();
        out.extend(part.into_iter().enumerate().map(|(at, ins)| {
            let allow = ins.code == BPF_RET_K && ins.k == libc::SECCOMP_RET_ALLOW;
            if allow && i < last {
                sock_filter { code: BPF_JMP_JA, jt: 0, jf: 0, k: offset(len - at - 1) }
            } else {
                ins
            }
        }));
    }
    out
}

fn offset(n: usize) -> u32 {
    u32::try_from(n).expect("a BPF program has at most 4096 instructions")
}

/// Puts a dispatch prologue in front of `body` (see the module docs). `native` is the
/// audit architecture value `body` accepts.
pub(super) fn with_dispatch(body: Vec<sock_filter>, native: u32) -> Vec<sock_filter> {
    let allow = libc::SECCOMP_RET_ALLOW;
    let special: Vec<u32> = (0..TABLE)
        .filter(|&nr| run(&body, &Data { nr, arch: native, args: [0; 6] }, true).map(|(v, _)| v) != Some(allow))
        .collect();
    // Jumps to the body are `JA` with a placeholder, fixed once the prologue's length is known.
    let mut pro = vec![
        stmt(BPF_LD_W_ABS, ARCH),
        jump(BPF_JMP_JEQ_K, native, 1, 0),
        to_body(),
        stmt(BPF_LD_W_ABS, NR),
        jump(BPF_JMP_JGE_K, TABLE, 0, 1),
        to_body(),
    ];
    search(&special, &mut pro);
    let end = pro.len();
    for (at, ins) in pro.iter_mut().enumerate() {
        if ins.code == BPF_JMP_JA && ins.k == u32::MAX {
            ins.k = offset(end - at - 1);
        }
    }
    pro.extend(body);
    pro
}

/// Emits a binary search over the sorted `nrs` (the accumulator holds the number): a hit
/// jumps to the body, a miss returns ALLOW.
fn search(nrs: &[u32], out: &mut Vec<sock_filter>) {
    if nrs.len() <= LEAF {
        for (i, nr) in nrs.iter().enumerate() {
            // a hit skips the rest of the comparisons and the RET to reach the JA
            let skip = u8::try_from(nrs.len() - i).expect("leaves are small");
            out.push(jump(BPF_JMP_JEQ_K, *nr, skip, 0));
        }
        out.push(stmt(BPF_RET_K, libc::SECCOMP_RET_ALLOW));
        out.push(to_body());
        return;
    }
    let (lo, hi) = nrs.split_at(nrs.len() / 2);
    // if A >= hi[0] take the JA over the low half, else fall into it
    out.push(jump(BPF_JMP_JGE_K, hi[0], 0, 1));
    let ja = out.len();
    out.push(stmt(BPF_JMP_JA, 0));
    search(lo, out);
    out[ja].k = offset(out.len() - ja - 1);
    search(hi, out);
}

fn stmt(code: u16, k: u32) -> sock_filter {
    sock_filter { code, jt: 0, jf: 0, k }
}

fn jump(code: u16, k: u32, jt: u8, jf: u8) -> sock_filter {
    sock_filter { code, jt, jf, k }
}

fn to_body() -> sock_filter {
    stmt(BPF_JMP_JA, u32::MAX)
}

/// How many instructions `prog` executes for `d` (for tests of the prologue's cost).
#[cfg(test)]
pub(super) fn steps(prog: &[sock_filter], d: &Data) -> usize {
    run(prog, d, false).map_or(usize::MAX, |(_, n)| n)
}
