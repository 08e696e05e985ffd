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
    /// Run one program in a fresh sandbox: locally (needs root; no daemon), or through a
    /// daemon with `--remote`.
    Run(Box<RunArgs>),
    /// Start the daemon: the HTTP API on a Unix socket and/or TCP (needs root).
    Serve(ServeArgs),
    /// A Model Context Protocol server on stdin/stdout for clients that spawn theirs:
    /// bridged to a daemon's `/mcp`.
    Mcp(McpArgs),
    /// Say what this host offers: privileges, cgroup layout, seccomp policy.
    Info(CommonArgs),
    /// Measure per-run latency and throughput (used by scripts/bench).
    #[command(hide = true)]
    Bench(BenchArgs),
    /// Measure `POST /v1/execute` latency and throughput against a running daemon (used by
    /// scripts/bench).
    #[command(hide = true)]
    BenchApi(BenchApiArgs),
    /// Async jobs through a fleet's Redis: latency over a sync run, jobs per second
    /// (used by scripts/bench).
    #[command(hide = true)]
    BenchJobs(BenchJobsArgs),
    /// Judge a solution against a Kattis/ICPC problem package (needs root); exits 0 only
    /// when it is accepted.
    Judge(Box<JudgeArgs>),
    /// Root filesystem images: import OCI layouts, list and remove them.
    #[command(subcommand)]
    Image(ImageCommand),
    /// List cgroups, processes, mounts and state files a codeexec run left behind;
    /// exit 1 if there are any (used by the test suite).
    #[command(hide = true)]
    Leaks(CommonArgs),
}

/// `codeexec mcp`.
#[derive(Debug, Args)]
pub struct McpArgs {
    /// The daemon: `unix:/path/to.sock`, a socket path, or `http://host:port`.
    #[arg(long, value_name = "ENDPOINT")]
    pub remote: String,
    /// The API key for a daemon's TCP listener (or set CODEEXEC_API_KEY).
    #[arg(long, value_name = "KEY", env = "CODEEXEC_API_KEY", hide_env_values = true)]
    pub api_key: Option<String>,
}

/// `codeexec image …`.
#[derive(Debug, Subcommand)]
pub enum ImageCommand {
    /// Import an OCI image layout (a directory, or an archive as `skopeo copy …
    /// oci-archive:FILE` or `docker save` writes) into the store: every blob's digest is
    /// checked and the layers are unpacked once, safely.
    Import(ImageImportArgs),
    /// List the images in the store.
    Ls(ImageLsArgs),
    /// Remove images (by name, or by digest with all their names); an image a run or a
    /// daemon is using is not removed.
    Rm(ImageRmArgs),
}

/// The image store's location.
#[derive(Debug, Clone, Args)]
pub struct StoreArgs {
    /// The image store.
    #[arg(long, value_name = "DIR", env = "CODEEXEC_IMAGES_DIR", default_value = crate::image::DEFAULT_STORE)]
    pub store: PathBuf,
}

/// `codeexec image import`.
#[derive(Debug, Args)]
pub struct ImageImportArgs {
    /// The OCI layout directory or archive.
    pub path: PathBuf,
    /// The name to give it (`name[:tag]`, `:latest` when no tag); default: the index's
    /// `org.opencontainers.image.ref.name`.
    #[arg(long)]
    pub name: Option<String>,
    /// Which of several images in the index (by its ref name).
    #[arg(long = "ref", value_name = "REF")]
    pub reference: Option<String>,
    /// Print the result as JSON.
    #[arg(long)]
    pub json: bool,
    /// Where the store is.
    #[command(flatten)]
    pub store: StoreArgs,
}

/// `codeexec image ls`.
#[derive(Debug, Args)]
pub struct ImageLsArgs {
    /// Print JSON (one array of records).
    #[arg(long)]
    pub json: bool,
    /// Where the store is.
    #[command(flatten)]
    pub store: StoreArgs,
}

/// `codeexec image rm`.
#[derive(Debug, Args)]
pub struct ImageRmArgs {
    /// Names (`name[:tag]`) or digests.
    #[arg(required = true)]
    pub images: Vec<String>,
    /// Where the store is.
    #[command(flatten)]
    pub store: StoreArgs,
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

/// `codeexec serve`.
#[derive(Debug, Args)]
pub struct ServeArgs {
    /// The configuration file (TOML; see codeexec.example.toml). Without one, the defaults
    /// and `CODEEXEC_*` environment overrides apply.
    #[arg(long, value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// Check the configuration and the language definitions, say so, and exit (0: fine,
    /// 2: not) without starting anything.
    #[arg(long)]
    pub check_config: bool,
}

/// `codeexec run`. Limits left out take the defaults shown (a daemon's own defaults with
/// `--remote`).
#[derive(Debug, Args)]
pub struct RunArgs {
    /// Memory limit of the whole process tree (swap disabled) [default: 256M].
    #[arg(long, value_name = "SIZE", value_parser = |s: &str| limit::parse_size("--memory", s))]
    pub memory: Option<u64>,
    /// CPU time limit of the whole process tree [default: 5s].
    #[arg(long, value_name = "DURATION", value_parser = |s: &str| limit::parse_duration("--cpu-time", s))]
    pub cpu_time: Option<Duration>,
    /// Wall-clock limit, from the program's start [default: 10s].
    #[arg(long, value_name = "DURATION", value_parser = |s: &str| limit::parse_duration("--wall-time", s))]
    pub wall_time: Option<Duration>,
    /// Most processes and threads at once [default: 64].
    #[arg(long, value_name = "N")]
    pub processes: Option<u32>,
    /// Bytes kept of stdout and of stderr each; more ends the run (output_limit) [default: 64K].
    #[arg(long, value_name = "SIZE", value_parser = |s: &str| limit::parse_size("--output", s))]
    pub output: Option<u64>,
    /// Largest file the program may write [default: 16M].
    #[arg(long, value_name = "SIZE", value_parser = |s: &str| limit::parse_size("--file-size", s))]
    pub file_size: Option<u64>,
    /// CPU bandwidth in cores (0.5 = half a core) [default: 1; local only].
    #[arg(long, value_name = "CORES", value_parser = |s: &str| limit::parse_cpus(s))]
    pub cpus: Option<u32>,
    /// Size of each writable tmpfs (/sandbox and /tmp) [default: 64M; local only].
    #[arg(long, value_name = "SIZE", value_parser = |s: &str| limit::parse_size("--disk", s))]
    pub disk: Option<u64>,
    /// Feed this file to the program's stdin (default: empty stdin; `-` reads ours).
    #[arg(long, value_name = "FILE")]
    pub stdin: Option<PathBuf>,
    /// Use this directory tree as the root filesystem instead of the host's (local only).
    #[arg(long, value_name = "DIR")]
    pub rootfs: Option<PathBuf>,
    /// Use this image of the store as the root filesystem (local only); it cannot be
    /// removed while the run lasts.
    #[arg(long, value_name = "NAME", conflicts_with = "rootfs")]
    pub image: Option<String>,
    /// The image store, for --image.
    #[arg(long, value_name = "DIR", env = "CODEEXEC_IMAGES_DIR", default_value = crate::image::DEFAULT_STORE)]
    pub store: PathBuf,
    /// Copy a host file into /sandbox, as NAME or under its own file name.
    #[arg(long = "file", value_name = "[NAME=]PATH")]
    pub files: Vec<String>,
    /// Set an environment variable (on top of PATH, HOME=/sandbox, LANG=C.UTF-8; local only).
    #[arg(long = "env", value_name = "NAME=VALUE")]
    pub env: Vec<String>,
    /// Run source code in this language (python, bash, javascript and their aliases): the
    /// first argument is then the source file, the rest its arguments.
    #[arg(short, long, value_name = "LANG")]
    pub language: Option<String>,
    /// Send the run to a daemon: `unix:/path/to.sock`, a socket path, or `http://host:port`.
    /// Needs `--language`.
    #[arg(long, value_name = "ENDPOINT", requires = "language")]
    pub remote: Option<String>,
    /// The API key for a daemon's TCP listener (or set CODEEXEC_API_KEY).
    #[arg(long, value_name = "KEY", env = "CODEEXEC_API_KEY", hide_env_values = true, requires = "remote")]
    pub api_key: Option<String>,
    /// Print the whole result as one JSON object instead of the program's output.
    #[arg(long)]
    pub json: bool,
    /// With --json: add the files /sandbox holds when the program is over (local only).
    #[arg(long, requires = "json")]
    pub files_out: bool,
    /// Shared options.
    #[command(flatten)]
    pub common: CommonArgs,
    /// The program and its arguments (with `--language`: the source file and its arguments).
    #[arg(required = true, trailing_var_arg = true, value_name = "CMD")]
    pub command: Vec<String>,
}

impl RunArgs {
    /// The limits these flags ask for, the rest from the defaults (not yet range-checked).
    pub fn limits(&self) -> Limits {
        let d = Limits::default();
        Limits {
            cpu_time: self.cpu_time.unwrap_or(d.cpu_time),
            wall_time: self.wall_time.unwrap_or(d.wall_time),
            memory_bytes: self.memory.unwrap_or(d.memory_bytes),
            processes: self.processes.unwrap_or(d.processes),
            output_bytes: self.output.unwrap_or(d.output_bytes),
            file_size_bytes: self.file_size.unwrap_or(d.file_size_bytes),
            cpu_millicores: self.cpus.unwrap_or(d.cpu_millicores),
            disk_bytes: self.disk.unwrap_or(d.disk_bytes),
            ..d
        }
    }

    /// The flags a daemon cannot honour (`--remote` refuses them rather than ignore them).
    pub fn local_only(&self) -> Vec<&'static str> {
        let mut out = Vec::new();
        for (given, flag) in [
            (self.cpus.is_some(), "--cpus"),
            (self.disk.is_some(), "--disk"),
            (self.rootfs.is_some(), "--rootfs"),
            (self.image.is_some(), "--image"),
            (!self.env.is_empty(), "--env"),
            (self.files_out, "--files-out"),
        ] {
            if given {
                out.push(flag);
            }
        }
        out
    }
}

/// `codeexec judge`.
#[derive(Debug, Args)]
pub struct JudgeArgs {
    /// The package directory (problem.yaml, data/sample, data/secret, output_validators,
    /// input_validators).
    pub package: PathBuf,
    /// The solution's source file.
    pub solution: PathBuf,
    /// The solution's language [default: from its file's extension].
    #[arg(short, long, value_name = "LANG")]
    pub language: Option<String>,
    /// The time limit [default: the package's, else 1s].
    #[arg(long, value_name = "DURATION", value_parser = |s: &str| limit::parse_duration("--time-limit", s))]
    pub time_limit: Option<Duration>,
    /// Print one JSON object instead of a line per test.
    #[arg(long)]
    pub json: bool,
    /// Shared options.
    #[command(flatten)]
    pub common: CommonArgs,
}

/// `codeexec bench-api`.
#[derive(Debug, Args)]
pub struct BenchApiArgs {
    /// The daemon: `unix:/path/to.sock` or `http://host:port`.
    #[arg(long, value_name = "ENDPOINT")]
    pub endpoint: String,
    /// Sequential requests per workload.
    #[arg(long, default_value_t = 200)]
    pub runs: usize,
    /// Seconds of each throughput phase.
    #[arg(long, default_value_t = 5)]
    pub seconds: u64,
}

/// `codeexec bench-jobs`.
#[derive(Debug, Args)]
pub struct BenchJobsArgs {
    /// A daemon of the fleet (`unix:/path/to.sock` or `http://host:port`); repeat for more.
    /// The first must allow callbacks to 127.0.0.1 when `--runs` is not 0.
    #[arg(long, value_name = "ENDPOINT", required = true)]
    pub endpoint: Vec<String>,
    /// Jobs (and sync runs) timed one at a time, on the first daemon; 0: none.
    #[arg(long, default_value_t = 200)]
    pub runs: usize,
    /// Jobs submitted for the throughput.
    #[arg(long, default_value_t = 1000)]
    pub jobs: usize,
    /// Connections submitting them.
    #[arg(long, default_value_t = 4)]
    pub clients: usize,
    /// The fleet's Redis, to measure what it carries alone (no runs).
    #[arg(long, value_name = "URL")]
    pub redis: Option<String>,
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
    /// Measure network runs instead, with this resolver (IPv4; run it in a network
    /// namespace of its own: it loads an nftables table and turns forwarding on for the
    /// uplink there, as `scripts/bench` does).
    #[arg(long, value_name = "IPV4")]
    pub network_resolver: Option<std::net::Ipv4Addr>,
    /// Shared options.
    #[command(flatten)]
    pub common: CommonArgs,
}
