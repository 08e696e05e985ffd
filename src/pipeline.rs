//! One request for a language, through its stages: the files go into `/sandbox`, then the
//! syntax check, the compiler and the program each run in a sandbox of their own, with their
//! own limits; what the compiler leaves in `/sandbox` is carried into the program's. The
//! outcome keeps every stage apart, with diagnostics and the uncaught error parsed, and says
//! `syntax_error` or `compile_error` when the program never ran.
//!
//! When a syntax check runs is the language's choice (`lang::When`): before the program
//! for a language that runs a file as it reads it, or only after a failed run for one that
//! parses the whole entry file first, where a failed check means nothing ran; that spares
//! every good program a second interpreter start. A compiler's own messages tell its syntax
//! errors from its other errors (`diagnostics`).

mod compile;
mod java;

pub use compile::{CacheRef, CacheUse};
use compile::{Compiled, compile};
use java::{java_main_class, java_public_class};

use crate::diagnostics::{self, Diagnostic, RuntimeError, Severity};
use crate::lang::{self, Entry, Language, When};
use crate::limit::Limits;
use crate::run::{
    Access, Cancel, Exceeded, FileContent, InputFile, Live, Plug, RunError, RunOutcome, RunRequest, Runner, Status,
};

/// What runs sandboxed programs: the real [`Runner`], or a fake in tests.
pub trait Executor: Send + Sync + 'static {
    /// Runs one program to the end (blocking).
    fn execute(&self, req: &RunRequest) -> Result<RunOutcome, RunError>;
}

impl Executor for Runner {
    fn execute(&self, req: &RunRequest) -> Result<RunOutcome, RunError> {
        self.run(req)
    }
}

/// The program of a request.
#[derive(Debug, Clone)]
pub enum Source {
    /// One file of source text, written to the language's main file (Java: to the file its
    /// public class needs).
    Code(String),
    /// Several files; the language's main file is the entry when present, else the first.
    Files(Vec<InputFile>),
}

/// One request for a language.
#[derive(Debug, Clone)]
pub struct Program {
    /// The source.
    pub source: Source,
    /// The program's stdin (the checks and the compiler get none).
    pub stdin: Vec<u8>,
    /// Its arguments.
    pub args: Vec<String>,
    /// The program's limits (the caller has applied request, language and configuration).
    pub limits: Limits,
    /// Kills whichever stage is running.
    pub cancel: Option<Cancel>,
    /// Return what the program's `/sandbox` holds at the end.
    pub collect_files: bool,
    /// The compile cache to use, if any.
    pub cache: Option<CacheRef>,
    /// What the program (not its checks or compiler) may reach: network, host mounts.
    pub access: Access,
    /// A live run: the compiler's and the program's output as it comes, stage events, and
    /// for an interactive run stdin and signals (the syntax check stays silent).
    pub live: Option<Live>,
}

/// How a request ended, across its stages.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// The syntax check (or the compiler's parser) refused the program; it never ran.
    SyntaxError,
    /// The compiler refused it, or went over its limits; it never ran.
    CompileError,
    /// The program ran (or could not be started): its status.
    Run(Status),
}

impl Verdict {
    /// The wire name.
    pub fn as_str(self) -> &'static str {
        match self {
            Verdict::SyntaxError => "syntax_error",
            Verdict::CompileError => "compile_error",
            Verdict::Run(s) => s.as_str(),
        }
    }

    /// The verdict with this wire name.
    pub fn parse(name: &str) -> Option<Verdict> {
        match name {
            "syntax_error" => Some(Verdict::SyntaxError),
            "compile_error" => Some(Verdict::CompileError),
            other => Status::parse(other).map(Verdict::Run),
        }
    }
}

/// A request's outcome: each stage that ran, the verdict, and what was parsed.
#[derive(Debug, Clone)]
pub struct Outcome {
    /// The verdict.
    pub verdict: Verdict,
    /// A sentence for people, for every verdict but `ok`.
    pub message: Option<String>,
    /// The syntax check, when it ran.
    pub syntax: Option<RunOutcome>,
    /// The compiler, when it ran.
    pub compile: Option<RunOutcome>,
    /// The program, when it ran.
    pub run: Option<RunOutcome>,
    /// The check's or compiler's messages (errors, warnings), paths relative to /sandbox.
    pub diagnostics: Vec<Diagnostic>,
    /// The program's uncaught error, when it died of one.
    pub error: Option<RuntimeError>,
    /// Whether the compile came from the cache (None: no compile, or no cache).
    pub compile_cache: Option<CacheUse>,
}

impl Outcome {
    /// The stage that ran last (the one that decided): `run`, `compile` or `syntax`.
    pub fn last(&self) -> (&'static str, &RunOutcome) {
        let syntax_decided = self.verdict == Verdict::SyntaxError;
        match (&self.syntax, &self.compile, &self.run) {
            (Some(s), _, _) if syntax_decided => ("syntax", s),
            (_, _, Some(r)) => ("run", r),
            (_, Some(c), None) => ("compile", c),
            (Some(s), None, None) => ("syntax", s),
            (None, None, None) => unreachable!("an outcome has at least one stage"),
        }
    }
}

/// The files and names a request resolves to.
#[derive(Debug, Clone)]
struct Resolved {
    files: Vec<InputFile>,
    entry: String,
    sources: Vec<String>,
    main_class: Option<String>,
}

/// A program ready to run as often as asked: its syntax check (when it comes first) and
/// its compile are done.
#[derive(Debug, Clone)]
pub struct Prepared {
    resolved: Resolved,
    /// What the program's `/sandbox` starts with.
    run_files: Vec<InputFile>,
    /// The least disk the program's `/sandbox` needs for those.
    disk_floor: u64,
    /// The stages so far (syntax, compile, their diagnostics, the cache's use); its
    /// verdict is `ok`.
    pub outcome: Outcome,
}

/// Where preparing a program ended.
#[derive(Debug, Clone)]
pub enum Prepare {
    /// It can run.
    Ready(Prepared),
    /// The syntax check or the compiler refused it (or failed): the outcome says how.
    Refused(Outcome),
}

/// One run of a prepared program.
#[derive(Debug, Clone, Default)]
pub struct Invocation {
    /// Its stdin.
    pub stdin: Vec<u8>,
    /// Its arguments.
    pub args: Vec<String>,
    /// Its limits.
    pub limits: Limits,
    /// Kills it.
    pub cancel: Option<Cancel>,
    /// Return what `/sandbox` holds at the end.
    pub collect_files: bool,
    /// What it may reach: network, host mounts.
    pub access: Access,
    /// More files for its `/sandbox`, beside the program's (a checker's input, output
    /// and answer).
    pub files: Vec<InputFile>,
    /// A live run (see [`Program::live`]).
    pub live: Option<Live>,
    /// Cross-connected with another run: its stdin and stdout go to the relay.
    pub plug: Option<Plug>,
}

/// One run's outcome, with its uncaught error parsed and an out-of-memory error taken for
/// the memory limit it is.
#[derive(Debug, Clone)]
pub struct Ran {
    /// The run.
    pub run: RunOutcome,
    /// Its uncaught error.
    pub error: Option<RuntimeError>,
}

/// Runs `program` in `lang` through its stages. `Err` only when nothing could be attempted
/// (a request the runner refuses); a stage that fails is part of the outcome.
pub fn execute(exec: &dyn Executor, lang: &Language, program: Program) -> Result<Outcome, RunError> {
    let cancel = program.cancel;
    let live = program.live.as_ref();
    let prepared = match prepare_stages(exec, lang, program.source, cancel.clone(), program.cache.as_ref(), None, live)?
    {
        Prepare::Ready(p) => p,
        Prepare::Refused(out) => return Ok(out),
    };
    let invocation = Invocation {
        stdin: program.stdin,
        args: program.args,
        limits: program.limits,
        cancel: cancel.clone(),
        collect_files: program.collect_files,
        access: program.access,
        files: Vec::new(),
        live: program.live,
        plug: None,
    };
    let ran = run(exec, lang, &prepared, invocation)?;
    let mut out = prepared.outcome.clone();
    out.verdict = Verdict::Run(ran.run.status);
    out.message.clone_from(&ran.run.message);
    out.error = ran.error;
    out.run = Some(ran.run);
    if out.verdict == Verdict::Run(Status::RuntimeError)
        && let Some(c) = syntax_after_failure(exec, lang, &prepared, cancel)?
    {
        if c.refused {
            return Ok(refused_after_failure(out, c));
        }
        out.syntax = Some(c.check);
    }
    Ok(out)
}

/// Resolves the files, then runs the syntax check (when it comes first) and the compiler,
/// or takes the compile from the cache.
pub fn prepare(
    exec: &dyn Executor,
    lang: &Language,
    source: Source,
    cancel: Option<Cancel>,
    cache: Option<&CacheRef>,
) -> Result<Prepare, RunError> {
    prepare_with(exec, lang, source, cancel, cache, None)
}

/// As [`prepare`], with the compiler's CPU and wall time raised to at least `compile_time`
/// (a judge's checker including a large header compiles slowly).
pub fn prepare_with(
    exec: &dyn Executor,
    lang: &Language,
    source: Source,
    cancel: Option<Cancel>,
    cache: Option<&CacheRef>,
    compile_time: Option<(std::time::Duration, std::time::Duration)>,
) -> Result<Prepare, RunError> {
    prepare_stages(exec, lang, source, cancel, cache, compile_time, None)
}

fn prepare_stages(
    exec: &dyn Executor,
    lang: &Language,
    source: Source,
    cancel: Option<Cancel>,
    cache: Option<&CacheRef>,
    compile_time: Option<(std::time::Duration, std::time::Duration)>,
    live: Option<&Live>,
) -> Result<Prepare, RunError> {
    let r = resolve(lang, source)?;
    let mut out = Outcome {
        verdict: Verdict::Run(Status::Ok),
        message: None,
        syntax: None,
        compile: None,
        run: None,
        diagnostics: Vec::new(),
        error: None,
        compile_cache: None,
    };
    if let Some(s) = lang.syntax.as_ref().filter(|s| s.when == When::Always) {
        let limits = s.limits.over(&lang::syntax_defaults());
        let o = exec.execute(&stage_request(
            lang,
            &s.command,
            &s.env,
            &r,
            &r.files,
            limits,
            &[],
            &[],
            cancel.clone(),
            false,
        ))?;
        let failed = o.status != Status::Ok;
        out.diagnostics = parse(s.diagnostics, &o, &r.files);
        let internal = o.status == Status::InternalError;
        out.syntax = Some(o);
        if internal {
            return Ok(Prepare::Refused(internal_outcome(out, "syntax")));
        }
        if failed {
            return Ok(Prepare::Refused(syntax_error(out)));
        }
    }
    let Some(c) = &lang.compile else {
        let disk_floor = 0;
        return Ok(Prepare::Ready(Prepared { run_files: r.files.clone(), resolved: r, disk_floor, outcome: out }));
    };
    let mut limits = c.limits.over(&lang::compile_defaults());
    if let Some((cpu, wall)) = compile_time {
        limits.cpu_time = limits.cpu_time.max(cpu);
        limits.wall_time = limits.wall_time.max(wall);
    }
    let mut request = stage_request(lang, &c.command, &c.env, &r, &r.files, limits, &[], &[], cancel, true);
    request.live = live.map(|l| l.stage("compile"));
    let Compiled { outcome: mut o, outputs, truncated, used } = compile(exec, lang, &request, cache)?;
    out.diagnostics.extend(parse(c.diagnostics, &o, &r.files));
    if let Some(text) = diagnostics::human_output(c.diagnostics, &String::from_utf8_lossy(&o.stderr)) {
        o.stderr = text.into_bytes();
    }
    let status = o.status;
    out.compile = Some(o);
    out.compile_cache = used;
    match status {
        Status::Ok => {}
        Status::InternalError => return Ok(Prepare::Refused(internal_outcome(out, "compile"))),
        _ => {
            let syntax = out.diagnostics.iter().any(|d| d.syntax && d.severity == Severity::Error);
            out.verdict = if syntax { Verdict::SyntaxError } else { Verdict::CompileError };
            out.message = Some(failure_message(&out, "the compiler", status));
            return Ok(Prepare::Refused(out));
        }
    }
    if truncated {
        // a partial tree would fail later in a way nobody could explain
        out.verdict = Verdict::CompileError;
        out.message = Some(format!(
            "the compiler left more in /sandbox than can be carried to the run (at most {} files, {} MiB)",
            crate::run::MAX_OUTPUT_FILES,
            crate::run::MAX_OUTPUT_BYTES >> 20
        ));
        return Ok(Prepare::Refused(out));
    }
    // the program's /sandbox must hold what the compiler left
    let total: u64 = outputs.iter().map(|f| f.contents.len() as u64).sum();
    let disk_floor = total.saturating_add(total / 4).saturating_add(8 << 20);
    Ok(Prepare::Ready(Prepared { resolved: r, run_files: outputs, disk_floor, outcome: out }))
}

/// Runs a prepared program once.
pub fn run(exec: &dyn Executor, lang: &Language, p: &Prepared, inv: Invocation) -> Result<Ran, RunError> {
    let mut limits = inv.limits;
    limits.disk_bytes = limits.disk_bytes.max(p.disk_floor);
    let with_extra;
    let files = if inv.files.is_empty() {
        &p.run_files
    } else {
        with_extra = [p.run_files.as_slice(), &inv.files].concat();
        &with_extra
    };
    let mut request = stage_request(
        lang,
        &lang.run.command,
        &lang.run.env,
        &p.resolved,
        files,
        limits,
        &inv.args,
        &inv.stdin,
        inv.cancel,
        inv.collect_files,
    );
    request.access = inv.access;
    if let Some(live) = inv.live {
        for (k, v) in &lang.run.live_env {
            request.env.retain(|(ek, _)| ek != k);
            request.env.push((k.clone(), v.clone()));
        }
        request.live = Some(live.stage("run"));
    }
    request.plug = inv.plug;
    let mut run = exec.execute(&request)?;
    if inv.collect_files {
        // what the program created or changed, not what it was given
        run.files.retain(|f| !given(&p.run_files, f));
    }
    let mut error = None;
    if let Some(format) = lang.run.errors.filter(|_| matches!(run.status, Status::RuntimeError | Status::Signaled)) {
        error = diagnostics::parse_runtime_error(format, &run.stderr);
    }
    if run.status == Status::RuntimeError
        && let Some(e) = error.as_ref().filter(|e| lang.run.out_of_memory.contains(&e.kind))
    {
        run.status = Status::MemoryLimit;
        run.exceeded = Some(Exceeded::Memory);
        run.message = Some(format!("the program ran out of memory ({}: {})", e.kind, e.message));
    }
    Ok(Ran { run, error })
}

/// The syntax check run after a failed run.
#[derive(Debug, Clone)]
pub struct SyntaxCheck {
    /// The check.
    pub check: RunOutcome,
    /// It refused the program: the program never parsed, so nothing of it ran.
    pub refused: bool,
    /// Its diagnostics.
    pub diagnostics: Vec<Diagnostic>,
}

/// Whether `f` is one of the files the program was given, unchanged.
fn given(files: &[InputFile], f: &crate::run::OutputFile) -> bool {
    files.iter().any(|g| {
        g.path == f.path
            && matches!(&f.content, FileContent::File { bytes, executable } if *bytes == g.contents && *executable == g.executable)
    })
}

/// For a language that checks syntax only after a failed run: the check (None for other
/// languages).
pub fn syntax_after_failure(
    exec: &dyn Executor,
    lang: &Language,
    p: &Prepared,
    cancel: Option<Cancel>,
) -> Result<Option<SyntaxCheck>, RunError> {
    let Some(s) = lang.syntax.as_ref().filter(|s| s.when == When::OnFailure) else {
        return Ok(None);
    };
    let r = &p.resolved;
    let limits = s.limits.over(&lang::syntax_defaults());
    let o = exec.execute(&stage_request(lang, &s.command, &s.env, r, &r.files, limits, &[], &[], cancel, false))?;
    let refused = o.status == Status::RuntimeError;
    let diagnostics = if refused { parse(s.diagnostics, &o, &r.files) } else { Vec::new() };
    Ok(Some(SyntaxCheck { check: o, refused, diagnostics }))
}

/// The outcome of a program whose syntax check refused it after a failed run.
pub fn refused_after_failure(mut out: Outcome, c: SyntaxCheck) -> Outcome {
    out.diagnostics = c.diagnostics;
    out.error = None;
    out.syntax = Some(c.check);
    syntax_error(out)
}

/// A stage's diagnostics, with columns the toolchain left out taken from the sources.
fn parse(format: diagnostics::Format, o: &RunOutcome, files: &[InputFile]) -> Vec<Diagnostic> {
    let stderr = String::from_utf8_lossy(&o.stderr);
    let mut found = diagnostics::parse_diagnostics(format, &String::from_utf8_lossy(&o.stdout), &stderr);
    let source =
        |path: &str| files.iter().find(|f| f.path == path).map(|f| String::from_utf8_lossy(&f.contents).into_owned());
    diagnostics::fill_columns(format, &mut found, &stderr, &source);
    found
}

fn syntax_error(mut out: Outcome) -> Outcome {
    out.verdict = Verdict::SyntaxError;
    let status = out.syntax.as_ref().map_or(Status::RuntimeError, |s| s.status);
    out.message = Some(failure_message(&out, "the syntax check", status));
    out
}

fn internal_outcome(mut out: Outcome, stage: &str) -> Outcome {
    out.verdict = Verdict::Run(Status::InternalError);
    let detail = out.last().1.message.clone().unwrap_or_default();
    out.message = Some(format!("the {stage} stage failed inside codeexec: {detail}"));
    out
}

/// The first error's place and text, or what the stage hit.
fn failure_message(out: &Outcome, what: &str, status: Status) -> String {
    if status != Status::RuntimeError {
        let hit = out.last().1.message.clone().unwrap_or_else(|| status.as_str().to_owned());
        return format!("{what} did not finish: {hit}");
    }
    match out.diagnostics.iter().find(|d| d.severity == Severity::Error) {
        Some(d) => {
            let place = match (d.line, d.column) {
                (Some(l), Some(c)) => format!("{}:{l}:{c}", d.file),
                (Some(l), None) => format!("{}:{l}", d.file),
                _ => d.file.clone(),
            };
            let more = out.diagnostics.iter().filter(|d| d.severity == Severity::Error).count() - 1;
            let more = if more > 0 { format!(" (and {more} more)") } else { String::new() };
            format!("{place}: {}{more}", d.message)
        }
        None => format!("{what} failed (see its output)"),
    }
}

#[allow(clippy::too_many_arguments)]
fn stage_request(
    lang: &Language,
    command: &[String],
    stage_env: &std::collections::BTreeMap<String, String>,
    r: &Resolved,
    files: &[InputFile],
    limits: Limits,
    args: &[String],
    stdin: &[u8],
    cancel: Option<Cancel>,
    collect_files: bool,
) -> RunRequest {
    let vars = Vars { r, limits: &limits };
    let mut argv = Vec::with_capacity(command.len() + args.len());
    for arg in command {
        if arg == "{sources}" {
            argv.extend(r.sources.iter().cloned());
        } else {
            argv.push(vars.expand(arg));
        }
    }
    argv.extend(args.iter().cloned());
    let mut env: Vec<(String, String)> = lang.env.iter().map(|(k, v)| (k.clone(), vars.expand(v))).collect();
    for (k, v) in stage_env {
        env.retain(|(ek, _)| ek != k);
        env.push((k.clone(), vars.expand(v)));
    }
    RunRequest {
        argv,
        env,
        stdin: stdin.to_vec(),
        files: files.to_vec(),
        limits,
        cancel,
        collect_files,
        root: lang.placement.root,
        access: Access::default(),
        live: None,
        plug: None,
    }
}

struct Vars<'a> {
    r: &'a Resolved,
    limits: &'a Limits,
}

impl Vars<'_> {
    fn expand(&self, text: &str) -> String {
        if !text.contains('{') {
            return text.to_owned();
        }
        let memory_mb = self.limits.memory_bytes >> 20;
        let cpus = self.limits.cpu_millicores.div_ceil(1000).max(1);
        let stem = self.r.entry.rsplit_once('.').map_or(self.r.entry.as_str(), |(s, _)| s);
        text.replace("{main_stem}", stem)
            .replace("{main_class}", self.r.main_class.as_deref().unwrap_or("Main"))
            .replace("{main}", &self.r.entry)
            .replace("{heap_mb}", &(memory_mb * 3 / 4).max(16).to_string())
            .replace("{memory_mb}", &memory_mb.to_string())
            .replace("{cpus}", &cpus.to_string())
    }
}

/// The files of a request, its entry, its sources in order, and Java's main class.
fn resolve(lang: &Language, source: Source) -> Result<Resolved, RunError> {
    let invalid = |m: String| RunError::Invalid(m);
    let (files, entry) = match source {
        Source::Code(code) => {
            let name = match lang.entry {
                Entry::JavaClass => {
                    java_public_class(&code).map_or_else(|| lang.main_file.clone(), |c| format!("{c}.java"))
                }
                Entry::File => lang.main_file.clone(),
            };
            (vec![InputFile { path: name.clone(), contents: code.into_bytes(), executable: false }], name)
        }
        Source::Files(files) => {
            let first = files.first().ok_or_else(|| invalid("no files".into()))?;
            let entry = files.iter().find(|f| f.path == lang.main_file).unwrap_or(first).path.clone();
            (files, entry)
        }
    };
    let is_source = |p: &str| lang.sources.iter().any(|ext| p.ends_with(ext.as_str()));
    let mut sources: Vec<String> =
        files.iter().map(|f| f.path.clone()).filter(|p| *p != entry && is_source(p)).collect();
    sources.sort();
    sources.insert(0, entry.clone());
    let main_class = match lang.entry {
        Entry::JavaClass => Some(
            java_main_class(&files)
                .ok_or_else(|| invalid("no class declares `public static void main(String[] args)`".into()))?,
        ),
        Entry::File => None,
    };
    Ok(Resolved { files, entry, sources, main_class })
}

#[cfg(test)]
mod tests;
