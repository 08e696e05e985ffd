//! The compile stage, or its result taken from the compile cache: what decides a compile
//! is hashed (without copying the sources) into the cache's key.

use super::{Executor, Language};
use crate::cache::{Artifact, CompileCache, Key};
use crate::run::{FileContent, InputFile, RunError, RunOutcome, RunRequest, Status};

/// The compile cache a request may use, and what tells its toolchain apart (version and
/// image), part of every key.
#[derive(Debug, Clone)]
pub struct CacheRef {
    /// The cache.
    pub cache: std::sync::Arc<CompileCache>,
    /// The toolchain's version and the root it runs on.
    pub toolchain: String,
}

/// Whether the compile was found in the cache.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CacheUse {
    /// It was: the compiler did not run.
    Hit,
    /// It was not: the compiler ran (and its output was kept if it succeeded).
    Miss,
}

impl CacheUse {
    /// The wire name.
    pub fn as_str(self) -> &'static str {
        match self {
            CacheUse::Hit => "hit",
            CacheUse::Miss => "miss",
        }
    }
}

/// A compile's outcome, the files it left (symlinks dropped: a program needs none), whether
/// they were cut short, and the cache's use.
pub(super) struct Compiled {
    pub(super) outcome: RunOutcome,
    pub(super) outputs: Vec<InputFile>,
    pub(super) truncated: bool,
    pub(super) used: Option<CacheUse>,
}

/// Runs `request` (the compiler), or takes its result from the cache; a successful compile
/// is kept there.
pub(super) fn compile(
    exec: &dyn Executor,
    lang: &Language,
    request: &RunRequest,
    cache: Option<&CacheRef>,
) -> Result<Compiled, RunError> {
    let Some(cr) = cache else {
        let (outcome, outputs, truncated) = run_compiler(exec, request)?;
        return Ok(Compiled { outcome, outputs, truncated, used: None });
    };
    let key = cache_key(lang, cr, request);
    if let Some(a) = cr.cache.get(&key) {
        return Ok(Compiled {
            outcome: cached_outcome(&a),
            outputs: a.files,
            truncated: false,
            used: Some(CacheUse::Hit),
        });
    }
    let (outcome, outputs, truncated) = run_compiler(exec, request)?;
    if outcome.status == Status::Ok && !truncated {
        let a = Artifact { files: outputs, stdout: outcome.stdout.clone(), stderr: outcome.stderr.clone() };
        if let Err(e) = cr.cache.put(&key, &a) {
            tracing::warn!(error = %e, "could not keep a compile in the cache");
        }
        return Ok(Compiled { outcome, outputs: a.files, truncated, used: Some(CacheUse::Miss) });
    }
    Ok(Compiled { outcome, outputs, truncated, used: Some(CacheUse::Miss) })
}

fn run_compiler(exec: &dyn Executor, request: &RunRequest) -> Result<(RunOutcome, Vec<InputFile>, bool), RunError> {
    let mut o = exec.execute(request)?;
    let outputs = std::mem::take(&mut o.files)
        .into_iter()
        .filter_map(|f| match f.content {
            FileContent::File { bytes, executable } => Some(InputFile { path: f.path, contents: bytes, executable }),
            FileContent::Symlink(_) => None,
        })
        .collect();
    let truncated = o.files_truncated;
    Ok((o, outputs, truncated))
}

/// The key of a compile: the language, its toolchain, and everything the compiler gets
/// (the sources hashed in place, not copied).
fn cache_key(lang: &Language, cr: &CacheRef, req: &RunRequest) -> Key {
    let env: Vec<String> = req.env.iter().map(|(k, v)| format!("{k}={v}")).collect();
    let head = [
        lang.id.clone(),
        cr.toolchain.clone(),
        req.argv.join("\0"),
        env.join("\0"),
        format!("{}:{}", req.limits.memory_bytes, req.limits.disk_bytes),
    ];
    let mut files: Vec<&InputFile> = req.files.iter().collect();
    files.sort_by(|a, b| a.path.cmp(&b.path));
    let mut parts: Vec<&[u8]> = head.iter().map(String::as_bytes).collect();
    for f in files {
        parts.push(f.path.as_bytes());
        parts.push(if f.executable { b"x" } else { b"-" });
        parts.push(&f.contents);
    }
    Key::new(&parts)
}

/// A compile taken from the cache, as if it had just run, in no time.
fn cached_outcome(a: &Artifact) -> RunOutcome {
    RunOutcome {
        status: Status::Ok,
        exceeded: None,
        exit_code: Some(0),
        signal: None,
        message: None,
        stdout: a.stdout.clone(),
        stderr: a.stderr.clone(),
        stdout_truncated: false,
        stderr_truncated: false,
        cpu_time: std::time::Duration::ZERO,
        wall_time: std::time::Duration::ZERO,
        memory_peak_bytes: 0,
        files: Vec::new(),
        files_truncated: false,
    }
}
