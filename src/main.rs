//! `codeexec`: parse the command line, act, map the result to an exit code.
//!
//! Nothing here may start a thread before `Runner::start` has forked the zygote.

use std::io::{Read, Write};
use std::path::Path;
use std::process::ExitCode;

use anyhow::{Context, bail};
use clap::Parser;
use codeexec::cgroup::Mode;
use codeexec::cli::{BenchArgs, Cli, Command, CommonArgs, RunArgs};
use codeexec::report::{self, EXIT_INTERNAL, EXIT_USAGE};
use codeexec::run::{InputFile, RunError, RunRequest, Runner, RunnerConfig};
use codeexec::{bench, leak, sandbox};

fn main() -> ExitCode {
    let cli = Cli::parse();
    init_logging(cli.verbose);
    match cli.command {
        Command::Run(args) => run(&args),
        Command::Info(common) => info(&common),
        Command::Bench(args) => run_bench(&args),
        Command::Leaks(common) => leaks(&common),
    }
}

fn init_logging(verbose: u8) {
    let default = match verbose {
        0 => "warn",
        1 => "info",
        _ => "debug",
    };
    let filter = tracing_subscriber::EnvFilter::try_from_env("CODEEXEC_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default));
    tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr).with_target(false).init();
}

fn config(common: &CommonArgs, rootfs: Option<&Path>) -> RunnerConfig {
    RunnerConfig {
        state_dir: common.state_dir.clone(),
        cgroup_parent: common.cgroup_parent.clone(),
        rootfs: rootfs.map(Path::to_path_buf),
        ..RunnerConfig::default()
    }
}

fn run(args: &RunArgs) -> ExitCode {
    let req = match request(args) {
        Ok(r) => r,
        Err(e) => return fail(EXIT_USAGE, &e),
    };
    if let Err(e) = sandbox::catch_interrupts() {
        return fail(EXIT_INTERNAL, &anyhow::anyhow!("installing signal handlers: {e}"));
    }
    let runner = match Runner::start(config(&args.common, args.rootfs.as_deref())) {
        Ok(r) => r,
        Err(e @ RunError::Rootfs { .. }) => return fail(EXIT_USAGE, &e.into()),
        Err(e) => return fail(EXIT_INTERNAL, &e.into()),
    };
    let outcome = match runner.run(&req) {
        Ok(o) => o,
        Err(e @ (RunError::Invalid(_) | RunError::Limit(_))) => return fail(EXIT_USAGE, &e.into()),
        Err(e) => return fail(EXIT_INTERNAL, &e.into()),
    };
    let layout = runner.cgroups().describe();
    let mode = match runner.cgroups().mode() {
        Mode::V1 => "v1",
        Mode::V2 => "v2",
    };
    // the sandbox is torn down on the runner's cleaner thread meanwhile; dropping the
    // runner (below) waits for it, so nothing outlives the command
    if args.json {
        println!("{}", report::to_json(&outcome, mode, &layout));
    } else {
        let _ = std::io::stdout().write_all(&outcome.stdout).and_then(|()| std::io::stdout().flush());
        let _ = std::io::stderr().write_all(&outcome.stderr);
        eprintln!("{}", report::summary(&outcome));
    }
    drop(runner);
    ExitCode::from(report::exit_code(&outcome))
}

/// Turns the flags into a request; every error here is the user's (exit 2).
fn request(args: &RunArgs) -> anyhow::Result<RunRequest> {
    let limits = args.limits();
    limits.validate()?;
    if let Some(dir) = &args.rootfs {
        let meta = std::fs::metadata(dir).with_context(|| format!("--rootfs {}", dir.display()))?;
        if !meta.is_dir() {
            bail!("--rootfs {}: not a directory", dir.display());
        }
    }
    let stdin = match args.stdin.as_deref() {
        None => Vec::new(),
        Some(p) if p == Path::new("-") => {
            let mut v = Vec::new();
            std::io::stdin().read_to_end(&mut v).context("reading stdin")?;
            v
        }
        Some(p) => std::fs::read(p).with_context(|| format!("--stdin {}", p.display()))?,
    };
    let mut files = Vec::new();
    for spec in &args.files {
        let (name, path) = match spec.split_once('=') {
            Some((n, p)) => (n.to_owned(), Path::new(p)),
            None => {
                let p = Path::new(spec);
                let n = p.file_name().with_context(|| format!("--file {spec}: no file name"))?;
                (n.to_string_lossy().into_owned(), p)
            }
        };
        let contents = std::fs::read(path).with_context(|| format!("--file {}", path.display()))?;
        let executable = std::os::unix::fs::PermissionsExt::mode(&std::fs::metadata(path)?.permissions()) & 0o111 != 0;
        files.push(InputFile { path: name, contents, executable });
    }
    let mut env = Vec::new();
    for kv in &args.env {
        let (k, v) = kv.split_once('=').with_context(|| format!("--env {kv}: expected NAME=VALUE"))?;
        env.push((k.to_owned(), v.to_owned()));
    }
    Ok(RunRequest { argv: args.command.clone(), env, stdin, files, limits, cancel: None })
}

/// Cold, then warm: a runner's threads must be gone before the next one forks its zygote,
/// so each runner is measured and dropped in turn.
fn run_bench(args: &BenchArgs) -> ExitCode {
    match bench_report(args) {
        Ok(text) => {
            print!("{text}");
            ExitCode::SUCCESS
        }
        Err(e) => fail(EXIT_INTERNAL, &e),
    }
}

fn bench_report(args: &BenchArgs) -> anyhow::Result<String> {
    let mut rows = bench::bare_rows(args.runs).map_err(anyhow::Error::msg)?;
    let mut rates = Vec::new();
    let mut layout = String::new();
    for (mode, warm) in [("sandboxed, cold", 0), ("sandboxed, warm", args.workers.max(1))] {
        let runner = Runner::start(RunnerConfig { warm, ..config(&args.common, None) })?;
        layout = runner.cgroups().describe();
        rows.extend(bench::sandboxed_rows(&runner, mode, args.runs).map_err(anyhow::Error::msg)?);
        rates.push((mode, bench::throughput(&runner, args.workers, args.seconds).map_err(anyhow::Error::msg)?));
    }
    let mut out = format!("cgroups: {layout}\n\n{}\n", bench::table(&rows));
    for (mode, rate) in rates {
        out.push_str(&format!(
            "throughput, {mode}: {rate:.0} runs of /bin/true per second with {} workers\n",
            args.workers
        ));
    }
    Ok(out)
}

/// What `Runner::start` would find, without starting anything.
fn info(common: &CommonArgs) -> ExitCode {
    let config = config(common, None);
    let mut usable = true;
    println!("codeexec {}", env!("CARGO_PKG_VERSION"));
    println!(
        "kernel: {}",
        nix::sys::utsname::uname().map(|u| u.release().to_string_lossy().into_owned()).unwrap_or_default()
    );
    match codeexec::run::check_privileges() {
        Ok(()) => println!("privileges: ok"),
        Err(e) => {
            usable = false;
            println!("privileges: {e}");
        }
    }
    match codeexec::cgroup::Hierarchy::detect(&config.mountinfo, &config.cgroup_parent) {
        Ok(h) => println!("cgroups: {}", h.describe()),
        Err(e) => {
            usable = false;
            println!("cgroups: {e}");
        }
    }
    match codeexec::seccomp::program(&config.seccomp_profile) {
        Ok(p) => println!(
            "seccomp: profile {} ({}, one program of {} instructions)",
            config.seccomp_profile,
            codeexec::seccomp::filter_names(&config.seccomp_profile).join(", "),
            p.len()
        ),
        Err(e) => {
            usable = false;
            println!("seccomp: {e}");
        }
    }
    println!(
        "state: {} ({} slots, host ids {} to {})",
        config.state_dir.display(),
        config.slots,
        config.uid_base,
        u64::from(config.uid_base) + 2 * u64::from(config.slots) - 1
    );
    if usable { ExitCode::SUCCESS } else { ExitCode::from(EXIT_INTERNAL) }
}

fn leaks(common: &CommonArgs) -> ExitCode {
    let found = leak::find(&config(common, None));
    for f in &found {
        println!("{f}");
    }
    if found.is_empty() { ExitCode::SUCCESS } else { ExitCode::FAILURE }
}

fn fail(code: u8, e: &anyhow::Error) -> ExitCode {
    eprintln!("codeexec: {e:#}");
    ExitCode::from(code)
}
