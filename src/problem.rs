//! Problem packages in the Kattis/ICPC format, turned into judge requests: `problem.yaml`,
//! `data/sample` and `data/secret` (`*.in` with `*.ans`, groups in subdirectories),
//! `output_validators` (a checker program, Kattis' convention) or the default validator
//! and its flags, `input_validators` (each test's input checked before the program runs).
//! Scoring problems (`type: scoring`) get one batch per group of `data/secret`, worth its
//! `testdata.yaml`'s `accept_score` (default 1), all or nothing. Interactive problems
//! (`validation: custom interactive`) have their output validator run as the interactor,
//! at once with the program and cross-connected with it.
//!
//! This module reads and checks packages only; judging them is the judge's work.

mod archive;
pub mod command;
mod meta;

use std::time::Duration;

pub use archive::{Bounds, Files, read_dir, unpack};

use crate::judge::{self, Batch, Checker, Expected, ProgramChecker, Protocol, Rules, Test};
use crate::lang::Language;
use crate::limit::Limits;
use crate::pipeline::{CacheRef, Source};
use crate::run::InputFile;

/// A package that cannot be judged.
#[derive(Debug, thiserror::Error)]
pub enum ProblemError {
    /// A file could not be read.
    #[error("reading {0}")]
    Read(String, #[source] std::io::Error),
    /// The archive is damaged or holds a name outside it.
    #[error("the package archive: {0}")]
    Archive(String),
    /// Over the bounds.
    #[error("the package is too big: {0}")]
    TooBig(String),
    /// A YAML file does not parse.
    #[error("{0}: {1}")]
    Yaml(String, String),
    /// Something the package says (or lacks) makes no problem codeexec can judge.
    #[error("{0}")]
    Invalid(String),
}

/// One test of a package.
#[derive(Debug, Clone)]
pub struct ProblemTest {
    /// Its path under `data/`, without the extension (`sample/1`, `secret/group1/03`).
    pub name: String,
    /// Its input.
    pub input: Vec<u8>,
    /// Its answer.
    pub answer: Vec<u8>,
}

/// A program of the package (a validator): its name and files.
#[derive(Debug, Clone)]
pub struct PackageProgram {
    /// Its directory's (or file's) name.
    pub name: String,
    /// Its files, relative to its directory.
    pub files: Vec<InputFile>,
}

/// A package, read and checked.
#[derive(Debug, Clone)]
pub struct Problem {
    /// Its name (`problem.yaml`'s, else the package's).
    pub name: String,
    /// Its tests: the samples, then the secret ones, each in name order.
    pub tests: Vec<ProblemTest>,
    /// The time limit it gives, if any.
    pub time_limit: Option<Duration>,
    /// Memory and output limits it gives, in MiB.
    pub memory_mb: Option<u64>,
    /// Output limit, MiB.
    pub output_mb: Option<u64>,
    /// Its output validator (None: the default one).
    pub output_validator: Option<PackageProgram>,
    /// The output validator is the interactor (`validation: custom interactive`).
    pub interactive: bool,
    /// `validator_flags`.
    pub validator_flags: Vec<String>,
    /// Its input validators and their flags.
    pub input_validators: Vec<PackageProgram>,
    /// `input_validator_flags` of `data/testdata.yaml` (or `data/secret/testdata.yaml`).
    pub input_flags: Vec<String>,
    /// Scoring problems: the groups of `data/secret` (name, points, tests).
    pub groups: Vec<(String, f64, Vec<usize>)>,
}

/// Reads a package's files.
pub fn load(files: &Files, fallback_name: &str) -> Result<Problem, ProblemError> {
    let y = meta::problem_yaml(files.get("problem.yaml").map_or(&[][..], Vec::as_slice))?;
    let validation = y.validation.clone().unwrap_or_else(|| "default".into());
    let words: Vec<&str> = validation.split_whitespace().collect();
    let interactive = words.contains(&"interactive");
    if interactive && words.first() != Some(&"custom") {
        return Err(ProblemError::Invalid(format!(
            "validation: {validation}: an interactive problem's validation is custom (custom interactive)"
        )));
    }
    let tests = tests(files)?;
    let output_validator = programs(files, "output_validators").into_iter().next();
    if words.first() == Some(&"custom") && output_validator.is_none() {
        return Err(ProblemError::Invalid("validation is custom, and output_validators/ holds no program".into()));
    }
    let time_limit = y.limits.time_limit.and_then(|s| meta::seconds(s.to_string().as_bytes(), None)).or_else(|| {
        let timelimit = files.get(".timelimit").and_then(|t| meta::seconds(t, None));
        timelimit.or_else(|| files.get("domjudge-problem.ini").and_then(|t| meta::seconds(t, Some("timelimit"))))
    });
    let input_flags = ["data/testdata.yaml", "data/secret/testdata.yaml"]
        .iter()
        .filter_map(|p| files.get(*p).map(|t| meta::testdata_yaml(p, t)))
        .next()
        .transpose()?
        .and_then(|t| t.input_validator_flags);
    let scoring = y.kind.as_deref() == Some("scoring");
    Ok(Problem {
        name: meta::name(&y).unwrap_or_else(|| fallback_name.to_owned()),
        groups: if scoring { groups(files, &tests)? } else { Vec::new() },
        tests,
        time_limit,
        memory_mb: y.limits.memory,
        output_mb: y.limits.output,
        output_validator: if words.first() == Some(&"custom") { output_validator } else { None },
        interactive,
        validator_flags: meta::words(y.validator_flags.as_deref()),
        input_validators: programs(files, "input_validators"),
        input_flags: meta::words(input_flags.as_deref()),
    })
}

/// The tests: every `data/{sample,secret}/**/NAME.in` with its `NAME.ans`.
fn tests(files: &Files) -> Result<Vec<ProblemTest>, ProblemError> {
    let mut out = Vec::new();
    for part in ["data/sample/", "data/secret/"] {
        for (path, input) in files.range(part.to_owned()..).take_while(|(p, _)| p.starts_with(part)) {
            let Some(stem) = path.strip_suffix(".in") else { continue };
            let answer = files
                .get(&format!("{stem}.ans"))
                .ok_or_else(|| ProblemError::Invalid(format!("{path} has no {stem}.ans")))?;
            out.push(ProblemTest {
                name: stem["data/".len()..].to_owned(),
                input: input.clone(),
                answer: answer.clone(),
            });
        }
    }
    if out.iter().all(|t| t.name.starts_with("sample/")) {
        return Err(ProblemError::Invalid("data/secret holds no test (NAME.in with NAME.ans)".into()));
    }
    Ok(out)
}

/// The programs under `dir/`: each subdirectory, or each file directly in it.
fn programs(files: &Files, dir: &str) -> Vec<PackageProgram> {
    let prefix = format!("{dir}/");
    let mut out: Vec<PackageProgram> = Vec::new();
    for (path, bytes) in files.range(prefix.clone()..).take_while(|(p, _)| p.starts_with(&prefix)) {
        let rest = &path[prefix.len()..];
        let (name, file) = rest.split_once('/').unwrap_or((rest, rest));
        let f = InputFile { path: file.to_owned(), contents: bytes.clone(), executable: false };
        match out.last_mut().filter(|p| p.name == name) {
            Some(p) => p.files.push(f),
            None => out.push(PackageProgram { name: name.to_owned(), files: vec![f] }),
        }
    }
    out
}

/// The groups of `data/secret` (its subdirectories) as batches.
fn groups(files: &Files, tests: &[ProblemTest]) -> Result<Vec<(String, f64, Vec<usize>)>, ProblemError> {
    let mut out: Vec<(String, f64, Vec<usize>)> = Vec::new();
    for (i, t) in tests.iter().enumerate() {
        let Some((group, _)) = t.name.strip_prefix("secret/").and_then(|r| r.split_once('/')) else { continue };
        match out.last_mut().filter(|g| g.0 == group) {
            Some(g) => g.2.push(i),
            None => {
                let path = format!("data/secret/{group}/testdata.yaml");
                let points = match files.get(&path) {
                    Some(text) => meta::testdata_yaml(&path, text)?.accept_score.unwrap_or(1.0),
                    None => 1.0,
                };
                out.push((group.to_owned(), points, vec![i]));
            }
        }
    }
    if out.is_empty() {
        return Err(ProblemError::Invalid("a scoring problem needs groups: subdirectories of data/secret".into()));
    }
    Ok(out)
}

/// The language of a program whose files end with an extension (`.py`), and the compile
/// cache for it.
pub type LanguageOf<'a> = &'a dyn Fn(&str) -> Option<(Language, Option<CacheRef>)>;

/// What judging a package takes besides it: the languages and limits.
pub struct Judging<'a> {
    /// The language of a program whose files end with this extension (`.py`), and the
    /// compile cache for it.
    pub language_of: LanguageOf<'a>,
    /// Each test's limits.
    pub limits: Limits,
    /// The validators' limits.
    pub validator_limits: Limits,
}

impl std::fmt::Debug for Judging<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Judging").field("limits", &self.limits).finish_non_exhaustive()
    }
}

impl Problem {
    /// The judge request for `source` against this problem.
    pub fn request(&self, source: Source, j: &Judging<'_>) -> Result<judge::Request, ProblemError> {
        let tests = self
            .tests
            .iter()
            .map(|t| Test {
                stdin: t.input.clone(),
                args: Vec::new(),
                limits: j.limits.clone(),
                expected: Expected::Output(t.answer.clone()),
                name: Some(t.name.clone()),
            })
            .collect();
        let program = self
            .output_validator
            .as_ref()
            .map(|p| validator(p, Protocol::Kattis, self.validator_flags.clone(), j))
            .transpose()?
            .map(Box::new);
        let (program, interactor) = if self.interactive { (None, program) } else { (program, None) };
        // the flags are the custom validator's arguments, or the default one's settings
        let (checker, ignore_case) = match program.as_ref().or(interactor.as_ref()) {
            Some(_) => (Checker::Trim, false),
            None => meta::default_validator(&self.validator_flags)?,
        };
        let input_validators = self
            .input_validators
            .iter()
            .map(|p| validator(p, Protocol::KattisInput, self.input_flags.clone(), j))
            .collect::<Result<_, _>>()?;
        let batches = self
            .groups
            .iter()
            .map(|(name, points, tests)| Batch {
                name: name.clone(),
                points: *points,
                tests: tests.clone(),
                depends_on: Vec::new(),
            })
            .collect();
        Ok(judge::Request {
            source,
            tests,
            checker,
            stop_on_failure: false,
            function: None,
            cancel: None,
            cache: None,
            keep: judge::Keep::default(),
            access: Default::default(),
            rules: Rules { program, interactor, ignore_case, batches, input_validators, ..Rules::default() },
        })
    }
}

/// A validator of the package as a checker program.
fn validator(
    p: &PackageProgram,
    protocol: Protocol,
    args: Vec<String>,
    j: &Judging<'_>,
) -> Result<ProgramChecker, ProblemError> {
    let (lang, cache) = p
        .files
        .iter()
        .find_map(|f| f.path.rsplit_once('.').and_then(|(_, ext)| (j.language_of)(&format!(".{ext}"))))
        .ok_or_else(|| ProblemError::Invalid(format!("validator {}: no language knows its files", p.name)))?;
    let mut files = p.files.clone();
    // the entry first: a file named as the language's main file, else as its directory
    files.sort_by_key(|f| (f.path != lang.main_file, !f.path.starts_with(&p.name), f.path.clone()));
    Ok(ProgramChecker { lang, source: Source::Files(files), protocol, limits: j.validator_limits.clone(), args, cache })
}

/// The language whose sources end with `ext`, among `languages`.
pub fn by_extension<'a>(languages: impl IntoIterator<Item = &'a Language>, ext: &str) -> Option<&'a Language> {
    languages.into_iter().find(|l| l.sources.iter().any(|s| s == ext))
}

#[cfg(test)]
mod tests;
