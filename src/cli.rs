//! The `codeexec` command line (clap structures only; `main.rs` acts on them).

use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, Parser, Subcommand};

use crate::limit::{self, Limits};

/// Run untrusted code in a Linux sandbox built from namespaces, cgroups and seccomp.
#[derive(Debug, Parser)]
#[command(name = "codeexec", version, about, propagate_version = true)]
pub struct Cli {
    /// More log output on stderr (-v: info, -vv: debug).
    #[arg(short, long, action = clap::ArgAction::Count, global = true)]
    pub verbose: u8,
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// The subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run one program in a fresh sandbox, locally (needs root; no daemon).
    Run(RunArgs),
    /// Say what this host offers: privileges, cgroup layout, seccomp policy.
    Info(CommonArgs),
    /// Measure per-run latency and throughput (used by scripts/bench).
    #[command(hide = true)]
    Bench(BenchArgs),
    /// List cgroups, processes, mounts and state files a codeexec run left behind;
    /// exit 1 if there are any (used by the test suite).
    #[command(hide = true)]
    Leaks(CommonArgs),
}

/// Options every command that makes sandboxes shares.
#[derive(Debug, Clone, Args)]
pub struct CommonArgs {
    /// Slot locks and the zygote's mounts live here.
    #[arg(long, value_name = "DIR", default_value = "/run/codeexec", hide = true)]
    pub state_dir: PathBuf,
    /// Name of codeexec's parent cgroup in each hierarchy.
    #[arg(long, value_name = "NAME", default_value = "codeexec", hide = true)]
    pub cgroup_parent: String,
}

/// `codeexec run`.
#[derive(Debug, Args)]
pub struct RunArgs {
    /// Memory limit of the whole process tree (swap disabled).
    #[arg(long, value_name = "SIZE", default_value = "256M", value_parser = |s: &str| limit::parse_size("--memory", s))]
    pub memory: u64,
    /// CPU time limit of the whole process tree.
    #[arg(long, value_name = "DURATION", default_value = "5s", value_parser = |s: &str| limit::parse_duration("--cpu-time", s))]
    pub cpu_time: Duration,
    /// Wall-clock limit, from the program's start.
    #[arg(long, value_name = "DURATION", default_value = "10s", value_parser = |s: &str| limit::parse_duration("--wall-time", s))]
    pub wall_time: Duration,
    /// Most processes and threads at once.
    #[arg(long, value_name = "N", default_value_t = 64)]
    pub processes: u32,
    /// Bytes kept of stdout and of stderr each; more ends the run (output_limit).
    #[arg(long, value_name = "SIZE", default_value = "64K", value_parser = |s: &str| limit::parse_size("--output", s))]
    pub output: u64,
    /// Largest file the program may write.
    #[arg(long, value_name = "SIZE", default_value = "16M", value_parser = |s: &str| limit::parse_size("--file-size", s))]
    pub file_size: u64,
    /// CPU bandwidth in cores (0.5 = half a core).
    #[arg(long, value_name = "CORES", default_value = "1", value_parser = |s: &str| limit::parse_cpus(s))]
    pub cpus: u32,
    /// Size of each writable tmpfs (/sandbox and /tmp).
    #[arg(long, value_name = "SIZE", default_value = "64M", value_parser = |s: &str| limit::parse_size("--disk", s))]
    pub disk: u64,
    /// Feed this file to the program's stdin (default: empty stdin; `-` reads ours).
    #[arg(long, value_name = "FILE")]
    pub stdin: Option<PathBuf>,
    /// Use this directory tree as the root filesystem instead of the host's.
    #[arg(long, value_name = "DIR")]
    pub rootfs: Option<PathBuf>,
    /// Copy a host file into /sandbox, as NAME or under its own file name.
    #[arg(long = "file", value_name = "[NAME=]PATH")]
    pub files: Vec<String>,
    /// Set an environment variable (on top of PATH, HOME=/sandbox, LANG=C.UTF-8).
    #[arg(long = "env", value_name = "NAME=VALUE")]
    pub env: Vec<String>,
    /// Print the whole result as one JSON object instead of the program's output.
    #[arg(long)]
    pub json: bool,
    /// Shared options.
    #[command(flatten)]
    pub common: CommonArgs,
    /// The program and its arguments.
    #[arg(required = true, trailing_var_arg = true, value_name = "CMD")]
    pub command: Vec<String>,
}

impl RunArgs {
    /// The limits these flags ask for (not yet range-checked).
    pub fn limits(&self) -> Limits {
        Limits {
            cpu_time: self.cpu_time,
            wall_time: self.wall_time,
            memory_bytes: self.memory,
            processes: self.processes,
            output_bytes: self.output,
            file_size_bytes: self.file_size,
            cpu_millicores: self.cpus,
            disk_bytes: self.disk,
            ..Limits::default()
        }
    }
}

/// `codeexec bench`.
#[derive(Debug, Args)]
pub struct BenchArgs {
    /// Sequential runs per workload.
    #[arg(long, default_value_t = 200)]
    pub runs: usize,
    /// Parallel workers for the throughput phase.
    #[arg(long, default_value_t = 2)]
    pub workers: usize,
    /// Seconds of the throughput phase.
    #[arg(long, default_value_t = 5)]
    pub seconds: u64,
    /// Shared options.
    #[command(flatten)]
    pub common: CommonArgs,
}
