//! A judge request whose tests, checker and batches come from an uploaded Kattis/ICPC
//! problem package (`"package"`: a tar archive, gzip-compressed or not, in base64): the
//! archive unpacked in memory within bounds, the package read, its limits taken under the
//! request's and within the maxima.

use std::sync::Arc;

use base64::Engine as _;

use super::Api;
use super::contest::RulesIn;
use super::error::ApiError;
use super::plan::{to_limits, toolchain, with_stack};
use super::types::contest::TimeByIn;
use crate::config::LimitTable;
use crate::judge;
use crate::lang::{Availability, Language};
use crate::pipeline::{CacheRef, Source};
use crate::problem::{self, Bounds, Judging, command};

/// What an uploaded package may unpack to.
pub(super) const BOUNDS: Bounds = Bounds { files: 2000, bytes: 64 << 20 };

/// The request's parts that a package request uses.
#[derive(Debug)]
pub(super) struct PackageIn {
    /// The archive, base64.
    pub(super) archive: String,
    /// The limits: the language's defaults under the request's own.
    pub(super) table: LimitTable,
    /// Which of time, memory and output the request gave itself (the package's apply to
    /// the others).
    pub(super) given: [bool; 3],
    pub(super) stack_mb: Option<u64>,
    /// Fields the package gives, and whether the request gave them too (refused).
    pub(super) from_package: [(&'static str, bool); 7],
    /// `number_of_runs`, `cpu_extra_time_ms`, `time_limit_by`.
    pub(super) rules: (Option<u32>, Option<u64>, Option<TimeByIn>),
    pub(super) stop_on_failure: bool,
    pub(super) keep: judge::Keep,
    pub(super) access: crate::run::Access,
    pub(super) cache: Option<CacheRef>,
}

/// The judge request for `source` against the uploaded package.
pub(super) fn request(api: &Api, source: Source, p: PackageIn) -> Result<judge::Request, ApiError> {
    let invalid = |m: String| ApiError::Invalid(format!("package: {m}"));
    if let Some((name, _)) = p.from_package.iter().find(|(_, given)| *given) {
        return Err(ApiError::Invalid(format!("with a package, the package gives the tests: no {name}")));
    }
    let archive = base64::engine::general_purpose::STANDARD
        .decode(p.archive.as_bytes())
        .map_err(|e| invalid(format!("not valid base64: {e}")))?;
    let files = problem::unpack(&archive, BOUNDS).map_err(|e| invalid(e.to_string()))?;
    drop(archive);
    let problem = problem::load(&files, "package").map_err(|e| invalid(e.to_string()))?;
    drop(files);
    if problem.tests.len() > super::plan::MAX_TESTS {
        return Err(invalid(format!("{} tests; at most {}", problem.tests.len(), super::plan::MAX_TESTS)));
    }
    let max = &api.policy.max_limits;
    let table = limits(&problem, p.table, p.given, max);
    let limits = with_stack(to_limits(&table)?, p.stack_mb, "limits")?;
    let validators = LimitTable {
        cpu_time_ms: 30_000,
        wall_time_ms: 60_000,
        memory_mb: 1024,
        processes: 64,
        output_kb: 1024,
        file_size_kb: 16 * 1024,
    };
    let language_of = |ext: &str| language(api, ext);
    let judging =
        Judging { language_of: &language_of, limits, validator_limits: to_limits(&capped(&validators, max))? };
    let mut req = problem.request(source, &judging).map_err(|e| invalid(e.to_string()))?;
    let (number_of_runs, cpu_extra_time_ms, time_limit_by) = p.rules;
    let rules = RulesIn {
        program: None,
        ignore_case: false,
        batches: None,
        number_of_runs,
        cpu_extra_time_ms,
        time_limit_by,
        interactor: None,
    };
    let asked = super::contest::rules(api, rules, false, req.tests.len())?;
    req.rules.runs = asked.runs;
    req.rules.extra_time = asked.extra_time;
    req.rules.time_by = asked.time_by;
    req.stop_on_failure = p.stop_on_failure;
    req.keep = p.keep;
    req.access = p.access;
    req.cache = p.cache;
    Ok(req)
}

/// The package's time, memory and output limits where the request gave none, within the
/// maxima; the wall limit follows the time limit unless given.
fn limits(p: &problem::Problem, mut t: LimitTable, given: [bool; 3], max: &LimitTable) -> LimitTable {
    let ms = |d: std::time::Duration| u64::try_from(d.as_millis()).unwrap_or(u64::MAX);
    if !given[0] {
        t.cpu_time_ms = ms(p.time_limit.unwrap_or(command::DEFAULT_TIME));
        t.wall_time_ms = t.cpu_time_ms.saturating_mul(3).saturating_add(2000);
    }
    if !given[1] {
        t.memory_mb = p.memory_mb.unwrap_or(command::DEFAULT_MEMORY_MB);
    }
    if !given[2] {
        t.output_kb = p.output_mb.unwrap_or(command::DEFAULT_OUTPUT_MB).saturating_mul(1024);
    }
    capped(&t, max)
}

fn capped(t: &LimitTable, max: &LimitTable) -> LimitTable {
    LimitTable {
        cpu_time_ms: t.cpu_time_ms.clamp(1, max.cpu_time_ms),
        wall_time_ms: t.wall_time_ms.clamp(1, max.wall_time_ms),
        memory_mb: t.memory_mb.clamp(1, max.memory_mb),
        processes: t.processes.clamp(1, max.processes),
        output_kb: t.output_kb.clamp(1, max.output_kb),
        file_size_kb: t.file_size_kb.clamp(1, max.file_size_kb),
    }
}

/// An available language for files ending with `ext`, with its compile cache.
fn language(api: &Api, ext: &str) -> Option<(Language, Option<CacheRef>)> {
    api.languages.all().iter().find_map(|(l, a)| match a {
        Availability::Available { version } if l.sources.iter().any(|s| s == ext) => Some((
            l.clone(),
            api.compile_cache.as_ref().map(|c| CacheRef {
                cache: Arc::clone(c),
                toolchain: toolchain(l, version, &api.policy.compile_cache_epoch),
            }),
        )),
        _ => None,
    })
}
