//! codeexec: run untrusted programs in a sandbox the process builds itself from Linux
//! namespaces, cgroups, seccomp and a read-only root filesystem.
//!
//! # Layout
//!
//! Dependencies point one way: `api -> run -> {sandbox, cgroup, seccomp}`; `limit`,
//! `config` and `lang` are shared.
//!
//! - [`api`]: the HTTP daemon (`codeexec serve`): listeners, routes, wire types, errors,
//!   backpressure, shutdown. It only translates; runs happen on blocking threads.
//! - [`cli`]: clap structures of the `codeexec` command line, nothing else.
//! - [`client`]: a small HTTP client for the API (`run --remote`, the API benchmark, tests).
//! - [`config`]: the daemon's TOML configuration and environment overrides, validated into
//!   typed settings.
//! - [`report`]: how an outcome is printed (summary line, JSON) and the exit codes.
//! - [`callback`]: webhook callbacks of async jobs: callback URL checks against
//!   server-side request forgery, signed delivery with retries.
//! - [`bench`]: the latency and throughput measurement behind `scripts/bench`.
//! - [`cache`]: the compile cache: compiler outputs kept by the SHA-256 of their inputs,
//!   written atomically, bounded, least recently used out first.
//! - [`leak`]: finds cgroups, processes, mounts and state a run left behind.
//! - [`diagnostics`]: compiler diagnostics and runtime errors parsed from each toolchain's
//!   output.
//! - [`image`]: root filesystem images: OCI layouts imported into a content-addressed
//!   store, unpacked safely once.
//! - [`job`]: async jobs' state behind one `JobStore` trait: in memory, in an SQLite
//!   journal (the default: a restart finds them), or in Redis shared by a fleet of daemons.
//! - [`judge`]: judge mode: compile once, run many tests (in parallel within the run slots
//!   given), compare each output with a checker, per-test verdicts.
//! - [`lang`]: the languages the daemon runs (a built-in table for now) and their versions.
//! - [`pipeline`]: one request for a language through its stages (syntax check, compile,
//!   run), each in its own sandbox, with diagnostics and the uncaught error parsed.
//! - [`harness`]: the function harness of a judge: a driver program per language that
//!   decodes JSON arguments, calls one function of the user's code and prints its result as
//!   JSON; the output taken apart again. A leaf: files in, files out.
//! - [`limit`]: the resource limits of one run, with their units, parsing and valid ranges.
//! - [`run`]: orchestration of one run: slot (host ids and cgroup name), cgroup, spawn
//!   through the zygote, supervision (pipes, timers, limits), and the verdict.
//! - [`sandbox`]: the processes: the zygote forked before any thread starts, the PID-1
//!   init inside the namespaces, the program's last steps before `execve` (its Landlock
//!   ruleset among them), mounts, and `sys`, the only module with `unsafe`. It never calls `cgroup` or `seccomp`: it is
//!   handed BPF programs and a pid to report.
//! - [`cgroup`]: cgroup v1/hybrid and v2 behind one small interface, with layout
//!   detection from a `mountinfo` file it is given.
//! - [`seccomp`]: the BPF programs compiled from `seccomp/*.json` at build time.

pub mod api;
pub mod bench;
pub mod cache;
pub mod callback;
pub mod cgroup;
pub mod cli;
pub mod client;
pub mod config;
pub mod diagnostics;
pub mod harness;
pub mod image;
pub mod job;
pub mod judge;
pub mod lang;
pub mod leak;
pub mod limit;
pub mod network;
pub mod pipeline;
pub mod problem;
pub mod report;
pub mod run;
pub mod sandbox;
pub mod seccomp;

pub use limit::Limits;

/// An error and its causes, `a: b: c`, for messages that cross a process boundary or end
/// up in an outcome.
pub(crate) fn error_chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut cur = e.source();
    while let Some(c) = cur {
        s.push_str(": ");
        s.push_str(&c.to_string());
        cur = c.source();
    }
    s
}
pub use run::{RunOutcome, RunRequest, Runner, RunnerConfig, Status};
