//! `codeexec judge PACKAGE SOLUTION`: a package judged locally (root, no daemon), one line
//! per test, a summary, and an exit code that is 0 only when the solution is accepted.

use std::io::Write;
use std::path::Path;
use std::time::Duration;

use serde_json::json;

use super::{Bounds, Judging, Problem, by_extension, load, read_dir};
use crate::cli::JudgeArgs;
use crate::judge::{self, Judged};
use crate::lang::{self, Language};
use crate::limit::Limits;
use crate::pipeline::Source;
use crate::report::{EXIT_INTERNAL, EXIT_USAGE};
use crate::run::{Runner, RunnerConfig};

/// Exit code of a solution that is not accepted.
pub const EXIT_REJECTED: u8 = 1;
/// The time limit of a package that gives none.
pub const DEFAULT_TIME: Duration = Duration::from_secs(1);
/// Kattis' default memory limit, MiB.
pub const DEFAULT_MEMORY_MB: u64 = 2048;
/// Kattis' default output limit, MiB.
pub const DEFAULT_OUTPUT_MB: u64 = 8;
/// What a package read from disk may hold.
const BOUNDS: Bounds = Bounds { files: 20_000, bytes: 1 << 30 };

/// Runs the command; the exit code: 0 accepted, 1 not, 2 bad usage or package, 3 the
/// problem's validators or codeexec failed.
pub fn run(args: &JudgeArgs) -> u8 {
    let (problem, lang, source) = match read(args) {
        Ok(r) => r,
        Err(e) => return fail(EXIT_USAGE, &e),
    };
    let languages = lang::load(None).unwrap_or_default();
    let language_of = |ext: &str| by_extension(&languages, ext).map(|l| (l.clone(), None));
    let judging = Judging {
        language_of: &language_of,
        limits: limits(args, &problem, &lang),
        validator_limits: validator_limits(),
    };
    let request = match problem.request(source, &judging) {
        Ok(r) => r,
        Err(e) => return fail(EXIT_USAGE, &e.to_string()),
    };
    if let Err(e) = crate::sandbox::catch_interrupts() {
        return fail(EXIT_INTERNAL, &format!("installing signal handlers: {e}"));
    }
    let runner = match Runner::start(RunnerConfig {
        state_dir: args.common.state_dir.clone(),
        cgroup_parent: args.common.cgroup_parent.clone(),
        ..RunnerConfig::default()
    }) {
        Ok(r) => r,
        Err(e) => return fail(EXIT_INTERNAL, &crate::error_chain(&e)),
    };
    let workers = std::thread::available_parallelism().map_or(1, std::num::NonZeroUsize::get);
    let judged = judge::judge(&runner, &lang, request, &mut |n| n.min(workers));
    drop(runner);
    match judged {
        Ok(j) => report(args, &problem, &j),
        Err(e) => fail(EXIT_INTERNAL, &crate::error_chain(&e)),
    }
}

/// The package, the solution's language and its source.
fn read(args: &JudgeArgs) -> Result<(Problem, Language, Source), String> {
    let dir = &args.package;
    let fallback = dir.canonicalize().ok().and_then(|p| p.file_name().map(|n| n.to_string_lossy().into_owned()));
    let files = read_dir(dir, BOUNDS).map_err(|e| format!("{}: {}", dir.display(), crate::error_chain(&e)))?;
    let problem =
        load(&files, fallback.as_deref().unwrap_or("problem")).map_err(|e| format!("{}: {e}", dir.display()))?;
    let lang = match &args.language {
        Some(name) => lang::builtin(name).map_err(|e| e.to_string())?,
        None => {
            let ext = extension(&args.solution).ok_or("the solution has no extension: give --language")?;
            let all = lang::load(None).map_err(|e| e.to_string())?;
            by_extension(&all, &ext)
                .cloned()
                .ok_or_else(|| format!("no language takes {ext} files: give --language"))?
        }
    };
    let code = std::fs::read(&args.solution).map_err(|e| format!("{}: {e}", args.solution.display()))?;
    let code =
        String::from_utf8(code).map_err(|_| format!("{}: source files must be UTF-8", args.solution.display()))?;
    Ok((problem, lang, Source::Code(code)))
}

fn extension(p: &Path) -> Option<String> {
    p.extension().map(|e| format!(".{}", e.to_string_lossy()))
}

/// Each test's limits: the package's (or `--time-limit`), over the language's.
fn limits(args: &JudgeArgs, p: &Problem, lang: &Language) -> Limits {
    let time = args.time_limit.or(p.time_limit).unwrap_or(DEFAULT_TIME);
    Limits {
        cpu_time: time,
        wall_time: time * 3 + Duration::from_secs(2),
        memory_bytes: p.memory_mb.unwrap_or(DEFAULT_MEMORY_MB) << 20,
        output_bytes: p.output_mb.unwrap_or(DEFAULT_OUTPUT_MB) << 20,
        ..lang.run.limits.over(&Limits::default())
    }
}

/// The validators' limits: generous, they are the problem's own.
pub fn validator_limits() -> Limits {
    Limits {
        cpu_time: Duration::from_secs(30),
        wall_time: Duration::from_secs(60),
        memory_bytes: 1 << 30,
        output_bytes: 1 << 20,
        ..Limits::default()
    }
}

/// Prints one line per test and a summary (or JSON); the exit code.
fn report(args: &JudgeArgs, p: &Problem, j: &Judged) -> u8 {
    let status = j.status();
    let mut out = std::io::stdout().lock();
    if args.json {
        let _ = writeln!(out, "{}", to_json(p, j));
    } else {
        let width = p.tests.iter().map(|t| t.name.len()).max().unwrap_or(0);
        for (t, r) in p.tests.iter().zip(&j.tests) {
            let run = r.run.as_ref();
            let ms = run.map_or(0.0, |o| o.cpu_time.as_secs_f64() * 1000.0);
            let mib = run.map_or(0.0, |o| o.memory_peak_bytes as f64 / f64::from(1 << 20));
            let message =
                r.message.as_deref().map(|m| format!("  {}", m.lines().next().unwrap_or(""))).unwrap_or_default();
            let _ = writeln!(out, "{:width$}  {:18} {ms:8.1} ms {mib:7.1} MiB{message}", t.name, r.verdict.as_str());
        }
        let score = j.score().map(|(s, m)| format!(", score {s} of {m}")).unwrap_or_default();
        let why = if status == "accepted" { String::new() } else { first_failure(p, j) };
        let _ = writeln!(out, "{status}: {} of {} tests passed{score}{why}", j.passed(), j.tests.len());
    }
    match status {
        "accepted" => 0,
        "judge_error" | "internal_error" => EXIT_INTERNAL,
        _ => EXIT_REJECTED,
    }
}

/// Why the solution was not accepted: the program's refusal, or the first failed test's.
fn first_failure(p: &Problem, j: &Judged) -> String {
    if let Some(m) = &j.outcome.message {
        return format!(" ({})", m.lines().next().unwrap_or(""));
    }
    let failed =
        p.tests.iter().zip(&j.tests).find(|(_, r)| !r.verdict.passed() && r.verdict != judge::TestVerdict::Skipped);
    match failed {
        Some((t, r)) => format!(
            " ({}: {})",
            t.name,
            r.message.as_deref().unwrap_or(r.verdict.as_str()).lines().next().unwrap_or("")
        ),
        None => String::new(),
    }
}

fn to_json(p: &Problem, j: &Judged) -> serde_json::Value {
    let tests: Vec<serde_json::Value> = p
        .tests
        .iter()
        .zip(&j.tests)
        .map(|(t, r)| {
            let run = r.run.as_ref();
            json!({"name": t.name, "status": r.verdict.as_str(), "message": r.message, "points": r.points,
                   "cpu_ms": run.map(|o| o.cpu_time.as_secs_f64() * 1000.0),
                   "wall_ms": run.map(|o| o.wall_time.as_secs_f64() * 1000.0),
                   "memory_peak_kb": run.map(|o| o.memory_peak_bytes / 1024)})
        })
        .collect();
    let score = j.score();
    json!({"problem": p.name, "status": j.status(), "message": j.outcome.message, "passed": j.passed(),
           "total": j.tests.len(), "score": score.map(|s| s.0), "max_score": score.map(|s| s.1), "tests": tests})
}

fn fail(code: u8, message: &str) -> u8 {
    eprintln!("codeexec: {message}");
    code
}
