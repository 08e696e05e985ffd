//! `codeexec`: parse the command line, act, map the result to an exit code.
//!
//! Nothing here may start a thread before `Runner::start` has forked the zygote.

use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::{Context, bail};
use clap::Parser;
use codeexec::api::{self, Api, Description, Policy};
use codeexec::cgroup::Mode;
use codeexec::cli::{
    BenchApiArgs, BenchArgs, BenchJobsArgs, Cli, Command, CommonArgs, ImageCommand, RunArgs, ServeArgs,
};
use codeexec::client::{self, Connection, Endpoint};
use codeexec::config::Config;
use codeexec::lang::{self, Registry};
use codeexec::pipeline::{self, Program, Source};
use codeexec::report::{self, EXIT_INTERNAL, EXIT_USAGE};
use codeexec::run::{InputFile, RunError, RunRequest, Runner, RunnerConfig};
use codeexec::{bench, leak, sandbox};
use hyper::StatusCode;

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::Serve(args) => serve(&args, cli.verbose),
        command => {
            init_logging(cli.verbose, "warn", false);
            match command {
                Command::Run(args) if args.remote.is_some() => run_remote(&args),
                Command::Run(args) => run(&args),
                Command::Info(common) => info(&common),
                Command::Bench(args) => run_bench(&args),
                Command::BenchApi(args) => run_bench_api(&args),
                Command::BenchJobs(args) => run_bench_jobs(&args),
                Command::Leaks(common) => leaks(&common),
                Command::Mcp(args) => mcp_bridge(&args),
                Command::Image(cmd) => image_command(&cmd),
                Command::Judge(args) => ExitCode::from(codeexec::problem::command::run(&args)),
                Command::Serve(_) => unreachable!("handled above"),
            }
        }
    }
}

/// Logs go to stderr; `CODEEXEC_LOG` (e.g. `debug`, `codeexec=info`) overrides `-v`.
fn init_logging(verbose: u8, quiet: &str, json: bool) {
    let default = match verbose {
        0 => quiet,
        1 => "info",
        _ => "debug",
    };
    let filter = tracing_subscriber::EnvFilter::try_from_env("CODEEXEC_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default));
    let fmt = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_target(false)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()));
    if json {
        fmt.json().flatten_event(true).init();
    } else {
        fmt.init();
    }
}

/// The daemon. The runner (and its zygote) starts while this process is single-threaded;
/// the tokio runtime only after.
fn serve(args: &ServeArgs, verbose: u8) -> ExitCode {
    let settings = match environment().and_then(|env| Ok(Config::load(args.config.as_deref(), env)?.validate()?)) {
        Ok(s) => s,
        Err(e) => return fail(EXIT_USAGE, &e),
    };
    if !args.check_config {
        init_logging(verbose, "info", settings.log_json);
    }
    for w in &settings.warnings {
        tracing::warn!("{w}");
    }
    raise_open_file_limit(&settings);
    let mut definitions = match lang::load(settings.languages_dir.as_deref()) {
        Ok(d) => d,
        Err(e) => return fail(EXIT_USAGE, &e.into()),
    };
    if args.check_config {
        for w in &settings.warnings {
            eprintln!("warning: {w}");
        }
        println!("configuration is valid: {} language definitions", definitions.len());
        return ExitCode::SUCCESS;
    }
    // the images the languages name, held for the daemon's life
    let store = if definitions.iter().any(|l| l.rootfs != "host") {
        match codeexec::image::Store::open(&settings.images_dir) {
            Ok(s) => Some(s),
            Err(e) => {
                tracing::warn!(error = %e, "the image store cannot be opened");
                None
            }
        }
    } else {
        None
    };
    let (extra_roots, _leases) = lang::place(&mut definitions, store.as_ref(), settings.images_host_fallback);
    let cgroup_parent = match nested_cgroup_parent(&settings) {
        Ok(p) => p,
        Err(e) => return fail(EXIT_INTERNAL, &e),
    };
    let runner = match Runner::start(RunnerConfig {
        state_dir: settings.state_dir.clone(),
        cgroup_parent,
        uid_base: settings.uid_base,
        rootfs: settings.rootfs.clone(),
        extra_roots,
        warm: settings.warm,
        network: settings.network.as_ref().map(|n| (n.egress.clone(), n.max_concurrent)),
        mounts: settings.mounts.iter().map(|m| m.mount.clone()).collect(),
        ..RunnerConfig::default()
    }) {
        Ok(r) => r,
        Err(e @ RunError::Rootfs { .. }) => return fail(EXIT_USAGE, &e.into()),
        Err(e) => return fail(EXIT_INTERNAL, &e.into()),
    };
    let languages = Registry::probe(&runner, definitions);
    let description = Description::of(&runner);
    let compile_cache = match &settings.compile_cache {
        Some((dir, max)) => match codeexec::cache::CompileCache::open(dir, *max) {
            Ok(c) => Some(Arc::new(c)),
            Err(e) => {
                return fail(EXIT_USAGE, &anyhow::anyhow!("compile_cache.dir {}: {e}", dir.display()));
            }
        },
        None => None,
    };
    // every run holds a blocking thread: there must be one for each run slot
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .max_blocking_threads(settings.concurrency + 16)
        .build()
    {
        Ok(r) => r,
        Err(e) => return fail(EXIT_INTERNAL, &anyhow::Error::new(e).context("starting the async runtime")),
    };
    let policy = Policy::from(&settings);
    let served = runtime.block_on(async {
        // the listeners first: a second daemon on the same socket is refused before it
        // opens (and locks) a journal
        let listeners = api::bind(&settings).await?;
        let jobs = api::open_store(&settings).await.context("opening the job store")?;
        tracing::info!(store = %jobs.describe(), "jobs");
        let api = Api::new(Arc::new(runner), description, languages, policy, compile_cache, jobs);
        api::serve(Arc::clone(&api), listeners, shutdown_signal(), settings.shutdown_grace).await;
        Ok::<_, anyhow::Error>(api)
    });
    // every request is answered or abandoned and every run cancelled; their blocking
    // threads end within moments. Then dropping the API (and with it the runner) reaps
    // the sandboxes and the zygote.
    runtime.shutdown_timeout(std::time::Duration::from_secs(10));
    match served {
        Ok(api) => {
            drop(api);
            ExitCode::SUCCESS
        }
        Err(e) => fail(EXIT_INTERNAL, &e),
    }
}

/// `runs.cgroup_parent`, under the daemon's own cgroup when it runs in a container
/// (`runs.cgroup_nest`); the daemon is moved into a leaf first. Single-threaded still.
fn nested_cgroup_parent(settings: &codeexec::config::Settings) -> anyhow::Result<String> {
    use codeexec::cgroup::{Layout, Nest, nest};
    if settings.cgroup_nest == Nest::Never {
        return Ok(settings.cgroup_parent.clone());
    }
    let layout = Layout::detect(&std::fs::read_to_string("/proc/self/mountinfo")?)?;
    let own = std::fs::read_to_string("/proc/self/cgroup")?;
    Ok(nest(settings.cgroup_nest, &layout, &own, &settings.cgroup_parent)?)
}

/// The `CODEEXEC_*` variables (the others may be anything, even not UTF-8).
fn environment() -> anyhow::Result<Vec<(String, String)>> {
    let mut out = Vec::new();
    for (k, v) in std::env::vars_os() {
        let Some(k) = k.to_str().filter(|k| k.starts_with("CODEEXEC_")) else { continue };
        let v = v.into_string().map_err(|_| anyhow::anyhow!("environment variable {k} is not UTF-8"))?;
        out.push((k.to_owned(), v));
    }
    Ok(out)
}

/// Raises the soft open-file limit to the hard one (no privilege needed) and warns when
/// the connections and runs configured may not fit: a run holds about a dozen descriptors.
fn raise_open_file_limit(settings: &codeexec::config::Settings) {
    use nix::sys::resource::{Resource, getrlimit, setrlimit};
    let Ok((soft, hard)) = getrlimit(Resource::RLIMIT_NOFILE) else { return };
    let limit = if soft < hard && setrlimit(Resource::RLIMIT_NOFILE, hard, hard).is_ok() { hard } else { soft };
    let needed = (settings.max_connections + 16 * (settings.concurrency + settings.warm) + 64) as u64;
    if limit < needed {
        tracing::warn!(
            open_files = limit,
            needed,
            "the open-file limit is low for server.max_connections and runs.concurrency; accepts and runs may fail"
        );
    }
}

/// Completes on the first SIGTERM or SIGINT.
async fn shutdown_signal() {
    use tokio::signal::unix::{SignalKind, signal};
    let (Ok(mut term), Ok(mut int)) = (signal(SignalKind::terminate()), signal(SignalKind::interrupt())) else {
        tracing::error!("cannot install signal handlers; stop the daemon with SIGKILL");
        return std::future::pending().await;
    };
    let which = tokio::select! {
        _ = term.recv() => "SIGTERM",
        _ = int.recv() => "SIGINT",
    };
    tracing::info!(signal = which, "shutdown requested");
}

/// `codeexec run --remote`: the same request, sent to a daemon; printed and mapped to an
/// exit code as a local run.
fn mcp_bridge(args: &codeexec::cli::McpArgs) -> ExitCode {
    let endpoint: client::Endpoint = match args.remote.parse() {
        Ok(e) => e,
        Err(e) => return fail(EXIT_USAGE, &anyhow::Error::new(e)),
    };
    let runtime = match tokio::runtime::Builder::new_current_thread().enable_all().build() {
        Ok(r) => r,
        Err(e) => return fail(EXIT_INTERNAL, &anyhow::Error::new(e).context("starting the async runtime")),
    };
    let stdin = std::io::stdin().lock();
    match client::mcp::bridge(&runtime, &endpoint, args.api_key.as_deref(), stdin, std::io::stdout().lock()) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => fail(EXIT_INTERNAL, &e.into()),
    }
}

fn run_remote(args: &RunArgs) -> ExitCode {
    let local_only = args.local_only();
    if !local_only.is_empty() {
        return fail(EXIT_USAGE, &anyhow::anyhow!("{} cannot be used with --remote", local_only.join(", ")));
    }
    let (endpoint, body) = match remote_request(args) {
        Ok(r) => r,
        Err(e) => return fail(EXIT_USAGE, &e),
    };
    let runtime = match tokio::runtime::Builder::new_current_thread().enable_all().build() {
        Ok(r) => r,
        Err(e) => return fail(EXIT_INTERNAL, &anyhow::Error::new(e).context("starting the async runtime")),
    };
    let reply = runtime.block_on(async {
        let mut conn = Connection::open(&endpoint, args.api_key.as_deref()).await?;
        conn.post_json("/v1/execute", &body).await
    });
    let reply = match reply {
        Ok(r) => r,
        Err(e) => return fail(EXIT_INTERNAL, &e.into()),
    };
    let value = reply.json();
    if !reply.status.is_success() {
        let message = value["error"]["message"]
            .as_str()
            .map_or_else(|| String::from_utf8_lossy(&reply.body).into_owned(), str::to_owned);
        // the request's own fault is a usage error; a busy, slow or failing daemon is not
        let retryable = [StatusCode::REQUEST_TIMEOUT, StatusCode::TOO_MANY_REQUESTS];
        let code = if reply.status.is_client_error() && !retryable.contains(&reply.status) {
            EXIT_USAGE
        } else {
            EXIT_INTERNAL
        };
        return fail(code, &anyhow::anyhow!("the daemon answered {}: {message}", reply.status));
    }
    let remote = match client::outcome(&value) {
        Ok(o) => o,
        Err(e) => return fail(EXIT_INTERNAL, &anyhow::anyhow!("unexpected response: {e}")),
    };
    let last = &remote.last;
    if args.json {
        println!("{value}");
    } else {
        let _ = std::io::stdout().write_all(&last.stdout).and_then(|()| std::io::stdout().flush());
        let _ = std::io::stderr().write_all(&last.stderr);
        eprintln!("{}", report::verdict_summary(remote.verdict, last.message.as_deref(), &remote.stage, last));
    }
    ExitCode::from(report::verdict_exit_code(remote.verdict, last.signal))
}

/// The endpoint and the JSON body of a remote run; only the limits given are sent, the
/// rest are the daemon's defaults.
fn remote_request(args: &RunArgs) -> anyhow::Result<(Endpoint, serde_json::Value)> {
    use base64::Engine as _;
    use serde_json::json;
    let endpoint: Endpoint = args.remote.as_deref().unwrap_or_default().parse()?;
    let language = args.language.clone().unwrap_or_default();
    let (source, rest) = args.command.split_first().context("no source file")?;
    let code = std::fs::read_to_string(source).with_context(|| format!("{source} (source files must be UTF-8)"))?;
    let mut files = Vec::new();
    for (name, contents, _) in input_files(args)? {
        files.push(json!({"name": name, "content": base64::engine::general_purpose::STANDARD.encode(contents), "encoding": "base64"}));
    }
    let mut body = json!({ "language": language, "args": rest, "stdin": String::from_utf8(read_stdin(args)?).context("--stdin must be UTF-8 with --remote")? });
    if files.is_empty() {
        body["code"] = json!(code);
    } else {
        // with extra files the source goes in under its own name, first
        let own = Path::new(source).file_name().context("the source has no file name")?.to_string_lossy().into_owned();
        files.insert(0, json!({"name": own, "content": code}));
        body["files"] = json!(files);
    }
    let mut limits = serde_json::Map::new();
    let mut put = |k: &str, v: Option<u64>| {
        if let Some(v) = v {
            limits.insert(k.into(), json!(v));
        }
    };
    let ms = |d: Option<std::time::Duration>| d.map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX));
    put("cpu_time_ms", ms(args.cpu_time));
    put("wall_time_ms", ms(args.wall_time));
    put("memory_mb", args.memory.map(|b| b.div_ceil(1 << 20)));
    put("processes", args.processes.map(u64::from));
    put("output_kb", args.output.map(|b| b.div_ceil(1024)));
    put("file_size_kb", args.file_size.map(|b| b.div_ceil(1024)));
    if !limits.is_empty() {
        body["limits"] = serde_json::Value::Object(limits);
    }
    Ok((endpoint, body))
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
    if let Some(name) = &args.language {
        return run_language(args, name);
    }
    let req = match request(args) {
        Ok(r) => r,
        Err(e) => return fail(EXIT_USAGE, &e),
    };
    let (runner, _lease) = match local_runner(args) {
        Ok(r) => r,
        Err(code) => return code,
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

/// `codeexec run -l LANG SOURCE [ARGS]`: the language's stages, locally.
fn run_language(args: &RunArgs, name: &str) -> ExitCode {
    let (lang, program) = match language_program(args, name) {
        Ok(p) => p,
        Err(e) => return fail(EXIT_USAGE, &e),
    };
    let (runner, _lease) = match local_runner(args) {
        Ok(r) => r,
        Err(code) => return code,
    };
    let outcome = match pipeline::execute(&runner, &lang, program) {
        Ok(o) => o,
        Err(e @ (RunError::Invalid(_) | RunError::Limit(_))) => return fail(EXIT_USAGE, &e.into()),
        Err(e) => return fail(EXIT_INTERNAL, &e.into()),
    };
    let (stage, last) = outcome.last();
    if args.json {
        println!("{}", api::response_json(&outcome, &lang.id, ""));
    } else {
        let _ = std::io::stdout().write_all(&last.stdout).and_then(|()| std::io::stdout().flush());
        let _ = std::io::stderr().write_all(&last.stderr);
        eprintln!("{}", report::verdict_summary(outcome.verdict, outcome.message.as_deref(), stage, last));
    }
    let code = report::verdict_exit_code(outcome.verdict, last.signal);
    drop(runner);
    ExitCode::from(code)
}

/// The language and program of `run -l`: the source file (as `code`, so the language names
/// its file; with `--file`s, under its own name beside them), stdin, arguments, limits.
fn language_program(args: &RunArgs, name: &str) -> anyhow::Result<(lang::Language, Program)> {
    let lang = lang::builtin(name)?;
    let limits = args.limits();
    limits.validate()?;
    let (source, rest) = args.command.split_first().context("no source file")?;
    let code = std::fs::read(source).with_context(|| source.clone())?;
    let extra = input_files(args)?;
    let source = if extra.is_empty() {
        Source::Code(String::from_utf8(code).with_context(|| format!("{source}: source files must be UTF-8"))?)
    } else {
        let own = Path::new(source).file_name().context("the source has no file name")?.to_string_lossy().into_owned();
        let mut files = vec![InputFile { path: own, contents: code, executable: false }];
        files.extend(extra.into_iter().map(|(path, contents, executable)| InputFile { path, contents, executable }));
        Source::Files(files)
    };
    let program = Program {
        source,
        stdin: read_stdin(args)?,
        args: rest.to_vec(),
        limits,
        cancel: None,
        collect_files: false,
        cache: None,
        access: codeexec::run::Access::default(),
    };
    Ok((lang, program))
}

/// The runner of a local run, with interrupts caught and the lease of its `--image`.
fn local_runner(args: &RunArgs) -> Result<(Runner, Option<codeexec::image::Lease>), ExitCode> {
    if let Err(e) = sandbox::catch_interrupts() {
        return Err(fail(EXIT_INTERNAL, &anyhow::anyhow!("installing signal handlers: {e}")));
    }
    let (rootfs, lease) = root_of(args).map_err(|e| fail(EXIT_USAGE, &e))?;
    let mut cfg = config(&args.common, rootfs.as_deref());
    cfg.rootfs_is_image = lease.is_some();
    match Runner::start(cfg) {
        Ok(r) => Ok((r, lease)),
        Err(e @ RunError::Rootfs { .. }) => Err(fail(EXIT_USAGE, &e.into())),
        Err(e) => Err(fail(EXIT_INTERNAL, &e.into())),
    }
}

/// The root filesystem of a local run: `--rootfs`, or `--image` from the store with a
/// lease that keeps it there until the run is over.
fn root_of(args: &RunArgs) -> anyhow::Result<(Option<PathBuf>, Option<codeexec::image::Lease>)> {
    let Some(name) = &args.image else { return Ok((args.rootfs.clone(), None)) };
    let store = codeexec::image::Store::open(&args.store)?;
    let (_, lease) = store.lease(name).with_context(|| format!("--image {name}"))?;
    Ok((Some(lease.rootfs().to_owned()), Some(lease)))
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
    let stdin = read_stdin(args)?;
    let files: Vec<InputFile> = input_files(args)?
        .into_iter()
        .map(|(path, contents, executable)| InputFile { path, contents, executable })
        .collect();
    let mut env = Vec::new();
    for kv in &args.env {
        let (k, v) = kv.split_once('=').with_context(|| format!("--env {kv}: expected NAME=VALUE"))?;
        env.push((k.to_owned(), v.to_owned()));
    }
    let argv = args.command.clone();
    Ok(RunRequest {
        argv,
        env,
        stdin,
        files,
        limits,
        cancel: None,
        collect_files: args.files_out,
        root: 0,
        access: codeexec::run::Access::default(),
        plug: None,
    })
}

fn read_stdin(args: &RunArgs) -> anyhow::Result<Vec<u8>> {
    Ok(match args.stdin.as_deref() {
        None => Vec::new(),
        Some(p) if p == Path::new("-") => {
            let mut v = Vec::new();
            std::io::stdin().read_to_end(&mut v).context("reading stdin")?;
            v
        }
        Some(p) => std::fs::read(p).with_context(|| format!("--stdin {}", p.display()))?,
    })
}

/// The `--file` flags as (name in /sandbox, contents, executable).
fn input_files(args: &RunArgs) -> anyhow::Result<Vec<(String, Vec<u8>, bool)>> {
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
        files.push((name, contents, executable));
    }
    Ok(files)
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
    if let Some(resolver) = args.network_resolver {
        let network =
            codeexec::config::NetworkConfig { enabled: true, resolver: resolver.to_string(), ..Default::default() };
        let settings = codeexec::config::Config { network, ..Default::default() }.validate()?;
        let net = settings.network.context("network settings")?;
        let runner =
            Runner::start(RunnerConfig { network: Some((net.egress, 1)), warm: 0, ..config(&args.common, None) })?;
        let rows = bench::network_rows(&runner, args.runs).map_err(anyhow::Error::msg)?;
        let median = |mode: &str| rows.iter().find(|r| r.mode == mode).map_or(0.0, |r| r.series.median / 1e3);
        let (plain, net, narrowed) =
            (median("cold, no network"), median("cold, network"), median("cold, network + allow-list"));
        return Ok(format!(
            "{}
a network run costs {:.2} ms more than a plain one (median), {:.2} ms more with an allow-list
",
            bench::table(&rows),
            net - plain,
            narrowed - plain
        ));
    }
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

/// The API's latency and throughput beside bare runs of the same programs.
fn run_bench_api(args: &BenchApiArgs) -> ExitCode {
    let report = || -> anyhow::Result<String> {
        let endpoint: Endpoint = args.endpoint.parse()?;
        let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build()?;
        runtime.block_on(async {
            let rows = bench::api_rows(&endpoint, args.runs).await.map_err(anyhow::Error::msg)?;
            let mut out = format!("{}\n", bench::table(&rows));
            for (which, clients) in [(0, 2), (0, 8), (1, 2)] {
                let (name, _, _, argv) = bench::API_WORKLOADS[which];
                let api =
                    bench::api_throughput(&endpoint, which, clients, args.seconds).await.map_err(anyhow::Error::msg)?;
                let bare = bench::bare_throughput(argv, clients, args.seconds).map_err(anyhow::Error::msg)?;
                out.push_str(&format!(
                    "throughput, {name}, {clients} clients: {api:.0} runs/s through the API, {bare:.0} bare ({:.2}x)\n",
                    api / bare
                ));
            }
            let (rows, speedup) = bench::compile_cache_rows(&endpoint, args.runs.clamp(3, 10), args.runs.max(5))
                .await
                .map_err(anyhow::Error::msg)?;
            out.push_str(&format!(
                "\n{}compile cache: a hit answers {speedup:.1}x faster than a miss (medians)\n",
                bench::table(&rows)
            ));
            let rows = bench::sessions::rows(&endpoint, args.runs).await.map_err(anyhow::Error::msg)?;
            let ratio = rows[2].series.median / rows[1].series.median.max(1.0);
            out.push_str(&format!(
                "\n{}a cell in a warm session answers {ratio:.1}x faster than a fresh run (medians)\n",
                bench::table(&rows)
            ));
            Ok(out)
        })
    };
    match report() {
        Ok(text) => {
            print!("{text}");
            ExitCode::SUCCESS
        }
        Err(e) => fail(EXIT_INTERNAL, &e),
    }
}

/// Jobs through a fleet: latency over a sync run, throughput, Redis's own ceiling.
fn run_bench_jobs(args: &BenchJobsArgs) -> ExitCode {
    let report = || -> anyhow::Result<String> {
        let endpoints = args.endpoint.iter().map(|e| e.parse()).collect::<Result<Vec<Endpoint>, _>>()?;
        let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build()?;
        runtime.block_on(async {
            use codeexec::bench::jobs;
            let mut out = String::new();
            if args.runs > 0 {
                let (rows, added) = jobs::job_rows(&endpoints[0], args.runs).await.map_err(anyhow::Error::msg)?;
                out.push_str(&format!("{}\na job adds {added:.2} ms over a sync run (medians)\n", bench::table(&rows)));
            }
            let rate = jobs::job_throughput(&endpoints, args.jobs, args.clients).await.map_err(anyhow::Error::msg)?;
            out.push_str(&format!(
                "throughput: {rate:.0} jobs of bash `:` per second through {} daemon(s), {} jobs, {} clients\n",
                endpoints.len(),
                args.jobs,
                args.clients
            ));
            if let Some(url) = &args.redis {
                let store = jobs::store_throughput(url, args.jobs * 5, 8).await.map_err(anyhow::Error::msg)?;
                out.push_str(&format!(
                    "Redis alone (submit, take, start, finish; no run; 8 workers): {store:.0} jobs per second\n\
                     a fleet of N hosts like this one runs about N x {rate:.0} jobs/s of this size, until Redis's \
                     {store:.0}: about {:.0} hosts\n",
                    store / rate.max(1.0)
                ));
            }
            Ok(out)
        })
    };
    match report() {
        Ok(text) => {
            print!("{text}");
            ExitCode::SUCCESS
        }
        Err(e) => fail(EXIT_INTERNAL, &e),
    }
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

/// `codeexec image import|ls|rm`: bad input exits 2, a store that cannot be used 3.
fn image_command(cmd: &ImageCommand) -> ExitCode {
    use codeexec::image::{ImageError, Store};
    use serde_json::json;
    let code_of = |e: &ImageError| match e {
        ImageError::Io { .. } => EXIT_INTERNAL,
        _ => EXIT_USAGE,
    };
    let store_dir = match cmd {
        ImageCommand::Import(a) => &a.store.store,
        ImageCommand::Ls(a) => &a.store.store,
        ImageCommand::Rm(a) => &a.store.store,
    };
    let store = match Store::open(store_dir) {
        Ok(s) => s,
        Err(e) => return fail(EXIT_INTERNAL, &e.into()),
    };
    match cmd {
        ImageCommand::Import(a) => {
            let mut progress = |m: &str| {
                if !a.json {
                    eprintln!("codeexec: {m}");
                }
            };
            match store.import(&a.path, a.name.as_deref(), a.reference.as_deref(), &mut progress) {
                Ok(i) => {
                    if a.json {
                        println!(
                            "{}",
                            json!({"image": i.record, "existed": i.existed, "seconds": i.elapsed.as_secs_f64()})
                        );
                    } else {
                        let r = &i.record;
                        println!(
                            "{} {} {} MiB, {} files, {} layers{} in {:.1} s",
                            r.names.join(","),
                            r.digest,
                            r.size_bytes >> 20,
                            r.stats.files,
                            r.layers.len(),
                            if i.existed { ", already in the store" } else { "" },
                            i.elapsed.as_secs_f64()
                        );
                    }
                    ExitCode::SUCCESS
                }
                Err(e) => fail(code_of(&e), &anyhow::anyhow!("import {}: {e}", a.path.display())),
            }
        }
        ImageCommand::Ls(a) => match store.list() {
            Ok(list) if a.json => {
                println!("{}", json!(list));
                ExitCode::SUCCESS
            }
            Ok(list) => {
                let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_secs());
                let ago = |t: u64| match now.saturating_sub(t) {
                    s if s < 120 => format!("{s} s ago"),
                    s if s < 7200 => format!("{} min ago", s / 60),
                    s if s < 172_800 => format!("{} h ago", s / 3600),
                    s => format!("{} days ago", s / 86_400),
                };
                println!("{:<32} {:<19} {:>9} {:>7}  IMPORTED", "NAME", "DIGEST", "SIZE", "FILES");
                for r in list {
                    let names = if r.names.is_empty() { "<none>".to_owned() } else { r.names.join(",") };
                    println!(
                        "{:<32} {:<19} {:>5} MiB {:>7}  {}",
                        names,
                        &r.digest[..19.min(r.digest.len())],
                        r.size_bytes >> 20,
                        r.stats.files,
                        ago(r.imported_at)
                    );
                }
                ExitCode::SUCCESS
            }
            Err(e) => fail(code_of(&e), &e.into()),
        },
        ImageCommand::Rm(a) => {
            let mut code = ExitCode::SUCCESS;
            for what in &a.images {
                match store.remove(what) {
                    Ok(true) => println!("removed {what}"),
                    Ok(false) => println!("untagged {what} (the image has other names)"),
                    Err(e) => code = fail(code_of(&e), &anyhow::anyhow!("rm {what}: {e}")),
                }
            }
            code
        }
    }
}
