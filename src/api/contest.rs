//! Contest rules of a judge request, checked and turned into [`judge::Rules`]: a checker
//! program (its language available, its limits within the maxima), batches (names and
//! dependencies resolved, no cycle), repeated runs, extra time and the time that counts.

use std::sync::Arc;
use std::time::Duration;

use super::Api;
use super::error::ApiError;
use super::plan::{language_defaults, limit_table, source, to_limits, toolchain};
use super::types::CheckerIn;
use super::types::contest::{BatchIn, BatchRef, InteractorIn, ProtocolIn, TimeByIn};
use super::types::judge::CheckerSpec;
use crate::judge::{self, Batch, ProgramChecker, Protocol, TimeBy};
use crate::lang::Availability;
use crate::pipeline::CacheRef;

/// The most runs of each test.
pub(super) const MAX_RUNS: u32 = 10;
/// The longest extra time.
pub(super) const MAX_EXTRA_TIME_MS: u64 = 10_000;
/// The most bytes of one test's transcript.
pub(super) const MAX_TRANSCRIPT_BYTES: usize = 64 << 10;
/// The most bytes of transcripts a response carries (all its tests together).
pub(super) const MAX_TRANSCRIPTS_BYTES: usize = 16 << 20;

/// The contest parts of a request.
#[derive(Debug)]
pub(super) struct RulesIn {
    pub(super) program: Option<CheckerSpec>,
    pub(super) ignore_case: bool,
    pub(super) batches: Option<Vec<BatchIn>>,
    pub(super) number_of_runs: Option<u32>,
    pub(super) cpu_extra_time_ms: Option<u64>,
    pub(super) time_limit_by: Option<TimeByIn>,
    pub(super) interactor: Option<InteractorIn>,
}

/// A request's `checker`: a built-in one, or a program's spec.
pub(super) fn split_checker(c: Option<CheckerIn>) -> (Option<CheckerIn>, Option<CheckerSpec>) {
    match c {
        Some(CheckerIn::Spec(s)) if s.kind == "program" => (None, Some(*s)),
        other => (other, None),
    }
}

/// Checks the rules of a request of `tests` tests.
pub(super) fn rules(api: &Api, r: RulesIn, function: bool, tests: usize) -> Result<judge::Rules, ApiError> {
    let invalid = |m: String| ApiError::Invalid(m);
    let program = match r.program {
        Some(_) if function => {
            return Err(invalid("a checker program compares outputs; function_name returns values".into()));
        }
        Some(spec) => Some(Box::new(program(api, spec)?)),
        None => None,
    };
    let (interactor, transcript_bytes) = match r.interactor {
        Some(_) if function => {
            return Err(invalid("an interactor talks to a program; function_name returns values".into()));
        }
        Some(_) if program.is_some() => {
            return Err(invalid("with an interactor, the interactor decides: no checker".into()));
        }
        Some(i) => {
            let bytes = i.transcript_bytes.unwrap_or(0);
            if bytes > MAX_TRANSCRIPT_BYTES || bytes.saturating_mul(tests) > MAX_TRANSCRIPTS_BYTES {
                return Err(invalid(format!(
                    "interactor.transcript_bytes = {bytes}: at most {MAX_TRANSCRIPT_BYTES} per test, and {MAX_TRANSCRIPTS_BYTES} for all {tests} tests together"
                )));
            }
            let parts = Parts {
                language: Some(i.language),
                code: i.code,
                files: i.files,
                limits: i.limits,
                protocol: i.protocol,
            };
            (Some(Box::new(program_of(api, "interactor", parts)?)), bytes)
        }
        None => (None, 0),
    };
    let runs = r.number_of_runs.unwrap_or(1);
    if !(1..=MAX_RUNS).contains(&runs) {
        return Err(invalid(format!("number_of_runs = {runs}: must be 1 to {MAX_RUNS}")));
    }
    let extra = r.cpu_extra_time_ms.unwrap_or(0);
    if extra > MAX_EXTRA_TIME_MS {
        return Err(invalid(format!("cpu_extra_time_ms = {extra}: must be 0 to {MAX_EXTRA_TIME_MS}")));
    }
    let batches = batches(r.batches.unwrap_or_default(), tests)?;
    Ok(judge::Rules {
        program,
        interactor,
        transcript_bytes,
        input_validators: Vec::new(),
        ignore_case: r.ignore_case,
        batches,
        runs,
        extra_time: Duration::from_millis(extra),
        time_by: match r.time_limit_by {
            None | Some(TimeByIn::Cpu) => TimeBy::Cpu,
            Some(TimeByIn::Wall) => TimeBy::Wall,
        },
    })
}

/// A checker program: its language available, its source, its limits over the language's
/// defaults and within the maxima.
fn program(api: &Api, s: CheckerSpec) -> Result<ProgramChecker, ApiError> {
    if s.absolute.is_some() || s.relative.is_some() || s.ignore_case.is_some() {
        return Err(ApiError::Invalid(
            "checker: a program takes no tolerance or ignore_case; it decides itself".into(),
        ));
    }
    let parts = Parts { language: s.language, code: s.code, files: s.files, limits: s.limits, protocol: s.protocol };
    program_of(api, "checker", parts)
}

/// What a checker program's or an interactor's spec gives.
struct Parts {
    language: Option<String>,
    code: Option<String>,
    files: Option<Vec<super::types::FileIn>>,
    limits: Option<super::types::LimitsIn>,
    protocol: Option<ProtocolIn>,
}

/// The program of a checker or interactor (`what`, which its errors name).
fn program_of(api: &Api, what: &str, s: Parts) -> Result<ProgramChecker, ApiError> {
    let invalid = |m: String| ApiError::Invalid(format!("{what}: {m}"));
    let name = s.language.ok_or_else(|| invalid(format!("a program {what} needs its language")))?;
    let (lang, availability) = api.languages.find(&name).map_err(|e| invalid(e.to_string()))?;
    let version = match availability {
        Availability::Available { version } => version,
        Availability::Unavailable { reason } => {
            return Err(invalid(format!("language {} is not available here: {reason}", lang.id)));
        }
    };
    let source = source(lang, s.code, s.files, None).map_err(|e| match e {
        ApiError::Invalid(m) => invalid(m),
        other => other,
    })?;
    let (default, max) = (&api.policy.default_limits, &api.policy.max_limits);
    let table = limit_table(
        &language_defaults(lang, default, max),
        max,
        s.limits.unwrap_or_default(),
        &format!("{what}.limits"),
    )?;
    Ok(ProgramChecker {
        lang: lang.clone(),
        source,
        protocol: match s.protocol {
            None | Some(ProtocolIn::Testlib) => Protocol::Testlib,
            Some(ProtocolIn::Kattis) => Protocol::Kattis,
        },
        limits: to_limits(&table)?,
        args: Vec::new(),
        cache: api.compile_cache.as_ref().map(|c| CacheRef {
            cache: Arc::clone(c),
            toolchain: toolchain(lang, version, &api.policy.compile_cache_epoch),
        }),
    })
}

/// The batches with their dependencies as indices, checked.
fn batches(given: Vec<BatchIn>, tests: usize) -> Result<Vec<Batch>, ApiError> {
    let names: Vec<String> = given.iter().map(|b| b.name.clone()).collect();
    let mut out = Vec::with_capacity(given.len());
    for (i, b) in given.into_iter().enumerate() {
        let mut depends_on = Vec::with_capacity(b.depends_on.len());
        for d in b.depends_on {
            depends_on.push(match d {
                BatchRef::Index(d) => d,
                BatchRef::Name(n) => names.iter().position(|m| *m == n).ok_or_else(|| {
                    ApiError::Invalid(format!("batches[{i}] ({:?}): depends on {n:?}, which is no batch", b.name))
                })?,
            });
        }
        out.push(Batch { name: b.name, points: b.points, tests: b.tests, depends_on });
    }
    judge::batch::order(&out, tests).map_err(ApiError::Invalid)?;
    Ok(out)
}
