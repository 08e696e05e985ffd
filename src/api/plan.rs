//! A request checked against the languages and the policy, and turned into the work it
//! asks for: one run, or a judge run over tests. Everything a client can get wrong is
//! found here (422), before any run slot is taken.

use std::sync::Arc;

use serde_json::Value;

use super::Api;
use super::error::ApiError;
use super::routes::Caller;
use super::types::{CheckerIn, ExecuteRequest, FileFilter, LimitsIn, ReturnFilesIn, TestIn};
use crate::config::LimitTable;
use crate::judge::{self, Checker, Expected, Test};
use crate::lang::{Availability, Language};
use crate::pipeline::{CacheRef, Program, Source};
use crate::run::InputFile;

/// The most tests one request may have.
pub(super) const MAX_TESTS: usize = 1000;
/// The most `return_files` patterns.
const MAX_GLOBS: usize = 100;

/// What a request asks for.
#[derive(Debug)]
pub(super) enum Work {
    /// One run through the stages.
    Single(Program),
    /// Compile once, run every test.
    Judge(judge::Request),
}

/// A checked request.
#[derive(Debug)]
pub(super) struct Planned {
    pub(super) lang: Language,
    pub(super) version: String,
    pub(super) work: Work,
    /// Which files go back (None: none).
    pub(super) files: Option<FileFilter>,
}

/// Checks `dto` (from `caller`) and turns it into work.
pub(super) fn plan(api: &Api, dto: ExecuteRequest, caller: Caller) -> Result<Planned, ApiError> {
    let invalid = |m: String| ApiError::Invalid(m);
    let (lang, availability) = api.languages.find(&dto.language).map_err(|e| invalid(e.to_string()))?;
    let version = match availability {
        Availability::Available { version } => version.clone(),
        Availability::Unavailable { reason } => {
            return Err(invalid(format!("language {} is not available here: {reason}", lang.id)));
        }
    };
    let source = source(lang, dto.code, dto.files, dto.function_name.as_deref())?;
    let args = dto.args.unwrap_or_default();
    check_args(&args)?;
    let defaults = language_defaults(lang, &api.policy.default_limits, &api.policy.max_limits);
    let stack = dto.limits.as_ref().and_then(|l| l.stack_mb);
    let given = dto.limits.as_ref().map_or([false; 3], |l| {
        [l.cpu_time_ms.is_some() || l.wall_time_ms.is_some(), l.memory_mb.is_some(), l.output_kb.is_some()]
    });
    let table = limit_table(&defaults, &api.policy.max_limits, dto.limits.unwrap_or_default(), "limits")?;
    let limits = with_stack(to_limits(&table)?, stack, "limits")?;
    let files = dto.return_files.map(file_filter).transpose()?.flatten();
    let access = super::access::access(&api.policy, dto.network, dto.mounts, caller)?;
    let cache = api.compile_cache.as_ref().map(|c| CacheRef {
        cache: Arc::clone(c),
        toolchain: toolchain(lang, &version, &api.policy.compile_cache_epoch),
    });
    let judge_only = [
        ("checker", dto.checker.is_some()),
        ("stop_on_first_failure", dto.stop_on_first_failure.is_some()),
        ("function_name", dto.function_name.is_some()),
        ("batches", dto.batches.is_some()),
        ("number_of_runs", dto.number_of_runs.is_some()),
        ("cpu_extra_time_ms", dto.cpu_extra_time_ms.is_some()),
        ("time_limit_by", dto.time_limit_by.is_some()),
        ("interactor", dto.interactor.is_some()),
    ];
    if let Some(archive) = dto.package {
        let from_package = [
            ("tests", dto.tests.is_some()),
            ("checker", dto.checker.is_some()),
            ("batches", dto.batches.is_some()),
            ("function_name", dto.function_name.is_some()),
            ("stdin", dto.stdin.is_some()),
            ("args", !args.is_empty()),
            ("interactor", dto.interactor.is_some()),
        ];
        let p = super::package::PackageIn {
            archive,
            table,
            given,
            stack_mb: stack,
            from_package,
            rules: (dto.number_of_runs, dto.cpu_extra_time_ms, dto.time_limit_by),
            stop_on_failure: dto.stop_on_first_failure.unwrap_or(false),
            keep: keep(files.as_ref()),
            access,
            cache,
        };
        return Ok(Planned {
            lang: lang.clone(),
            version,
            work: Work::Judge(super::package::request(api, source, p)?),
            files,
        });
    }
    let work = match dto.tests {
        None => {
            if let Some((name, _)) = judge_only.iter().find(|(_, given)| *given) {
                return Err(invalid(format!("{name} needs tests")));
            }
            Work::Single(Program {
                source,
                stdin: dto.stdin.unwrap_or_default().into_bytes(),
                args,
                limits,
                cancel: None,
                collect_files: files.is_some(),
                cache,
                access,
                live: None,
            })
        }
        Some(tests) => {
            if dto.stdin.is_some() || !args.is_empty() {
                return Err(invalid("with tests, stdin and args go in each test".into()));
            }
            if tests.is_empty() || tests.len() > MAX_TESTS {
                return Err(invalid(format!("tests: 1 to {MAX_TESTS}, got {}", tests.len())));
            }
            let function = dto.function_name.is_some();
            let mut out = Vec::with_capacity(tests.len());
            for (i, t) in tests.into_iter().enumerate() {
                out.push(test(i, t, function, &table, &api.policy.max_limits, stack)?);
            }
            if dto.checker.is_some() && dto.interactor.is_some() {
                return Err(invalid("with an interactor, the interactor decides: no checker".into()));
            }
            let (builtin, program) = super::contest::split_checker(dto.checker);
            let (checker, ignore_case) = checker(builtin)?;
            let rules_in = super::contest::RulesIn {
                program,
                ignore_case,
                batches: dto.batches,
                number_of_runs: dto.number_of_runs,
                cpu_extra_time_ms: dto.cpu_extra_time_ms,
                time_limit_by: dto.time_limit_by,
                interactor: dto.interactor,
            };
            let rules = super::contest::rules(api, rules_in, function, out.len())?;
            Work::Judge(judge::Request {
                source,
                tests: out,
                checker,
                stop_on_failure: dto.stop_on_first_failure.unwrap_or(false),
                function: function.then_some(crate::harness::split_output as judge::SplitOutput),
                cancel: None,
                cache,
                keep: keep(files.as_ref()),
                access,
                rules,
            })
        }
    };
    Ok(Planned { lang: lang.clone(), version, work, files })
}

/// What each test keeps once checked: what the response can show.
fn keep(files: Option<&FileFilter>) -> judge::Keep {
    use crate::api::types::judge::{MAX_RETURN_BYTES, MAX_RETURN_FILES, TEST_OUTPUT_SHOWN};
    judge::Keep {
        output: TEST_OUTPUT_SHOWN,
        files: files.cloned().map(|f| judge::FileKeep {
            wanted: Arc::new(move |p: &str| f.wants(p)),
            count: MAX_RETURN_FILES,
            bytes: MAX_RETURN_BYTES,
        }),
    }
}

/// What tells a toolchain apart in the compile cache: its version, the root it runs on,
/// the operator's epoch, and this codeexec's version.
pub(super) fn toolchain(lang: &Language, version: &str, epoch: &str) -> String {
    let root = lang.placement.image.as_ref().map_or("host", |i| i.digest.as_str());
    format!("{version}\0{root}\0{epoch}\0{}", env!("CARGO_PKG_VERSION"))
}

pub(super) fn source(
    lang: &Language,
    code: Option<String>,
    files: Option<Vec<super::types::FileIn>>,
    function: Option<&str>,
) -> Result<Source, ApiError> {
    let invalid = |m: String| ApiError::Invalid(m);
    let source = match (code, files) {
        (Some(_), Some(_)) => return Err(invalid("give either code or files, not both".into())),
        (Some(code), None) if !code.is_empty() => Source::Code(code),
        (None, Some(files)) if !files.is_empty() => {
            let mut out = Vec::with_capacity(files.len());
            for f in &files {
                crate::sandbox::check_relative_path(&f.name).map_err(|e| invalid(format!("file name: {e}")))?;
                out.push(InputFile { path: f.name.clone(), contents: f.bytes().map_err(invalid)?, executable: false });
            }
            crate::run::check_files(&out).map_err(|e| match e {
                crate::run::RunError::Invalid(m) => invalid(format!("files: {m}")),
                other => invalid(other.to_string()),
            })?;
            Source::Files(out)
        }
        _ => return Err(invalid("no code: give code (a non-empty string) or files".into())),
    };
    let Some(name) = function else { return Ok(source) };
    let Source::Code(code) = source else {
        return Err(invalid("function_name needs code (one file), not files".into()));
    };
    let files = crate::harness::wrap(&lang.id, name, &code).map_err(|e| invalid(e.to_string()))?;
    Ok(Source::Files(files))
}

fn check_args(args: &[String]) -> Result<(), ApiError> {
    if args.iter().any(|a| a.contains('\0')) {
        return Err(ApiError::Invalid("args must not contain NUL bytes".into()));
    }
    Ok(())
}

/// One test: its stdin (or the function's arguments), expectation, arguments and limits
/// (the stack: its own, else the request's).
fn test(
    i: usize,
    t: TestIn,
    function: bool,
    base: &LimitTable,
    max: &LimitTable,
    stack: Option<u64>,
) -> Result<Test, ApiError> {
    let invalid = |m: String| ApiError::Invalid(format!("tests[{i}]: {m}"));
    let base64 = super::types::Encoding::Base64;
    if function && (t.stdin_encoding == base64 || t.expected_output_encoding == base64) {
        return Err(invalid("with function_name, input and expected_output are JSON, not base64".into()));
    }
    let args = t.args.unwrap_or_default();
    check_args(&args).map_err(|_| invalid("args must not contain NUL bytes".into()))?;
    let (stdin, expected) = if function {
        if t.stdin.is_some() {
            return Err(invalid("with function_name a test gives input (the arguments), not stdin".into()));
        }
        let input = match t.input {
            Some(Value::Array(a)) => a,
            Some(_) => return Err(invalid("input must be a JSON array of the function's arguments".into())),
            None => return Err(invalid("input is missing (a JSON array of the function's arguments)".into())),
        };
        let expected = t.expected_output.map_or(Expected::Nothing, Expected::Value);
        (crate::harness::input(&input), expected)
    } else {
        if t.input.is_some() {
            return Err(invalid("input is for function_name; a program's test gives stdin".into()));
        }
        let expected = match t.expected_output {
            None => Expected::Nothing,
            Some(Value::String(s)) => Expected::Output(
                decode(s, t.expected_output_encoding).map_err(|e| invalid(format!("expected_output: {e}")))?,
            ),
            Some(_) => return Err(invalid("expected_output must be a string".into())),
        };
        let stdin =
            decode(t.stdin.unwrap_or_default(), t.stdin_encoding).map_err(|e| invalid(format!("stdin: {e}")))?;
        (stdin, expected)
    };
    let stack = t.limits.as_ref().and_then(|l| l.stack_mb).or(stack);
    let what = format!("tests[{i}].limits");
    let table = limit_table(base, max, t.limits.unwrap_or_default(), &what)?;
    Ok(Test { stdin, args, limits: with_stack(to_limits(&table)?, stack, &what)?, expected, name: None })
}

/// A string's bytes in its encoding.
fn decode(s: String, encoding: super::types::Encoding) -> Result<Vec<u8>, String> {
    use base64::Engine as _;
    match encoding {
        super::types::Encoding::Utf8 => Ok(s.into_bytes()),
        super::types::Encoding::Base64 => {
            base64::engine::general_purpose::STANDARD.decode(s.as_bytes()).map_err(|e| format!("not valid base64: {e}"))
        }
    }
}

/// `limits` with the stack asked for (1 MiB to the memory limit; absent: the default).
pub(super) fn with_stack(
    mut limits: crate::limit::Limits,
    stack_mb: Option<u64>,
    what: &str,
) -> Result<crate::limit::Limits, ApiError> {
    let Some(mb) = stack_mb else { return Ok(limits) };
    let max = limits.memory_bytes >> 20;
    if !(1..=max).contains(&mb) {
        return Err(ApiError::Invalid(format!("{what}.stack_mb = {mb}: must be 1 to the memory limit, {max}")));
    }
    limits.stack_bytes = mb << 20;
    Ok(limits)
}

/// A built-in checker, and whether it ignores case.
fn checker(c: Option<CheckerIn>) -> Result<(Checker, bool), ApiError> {
    let invalid = |m: String| ApiError::Invalid(m);
    let (kind, absolute, relative, ignore_case) = match c {
        None => return Ok((Checker::Trim, false)),
        Some(CheckerIn::Name(n)) => (n, None, None, None),
        Some(CheckerIn::Spec(s)) => {
            if s.language.is_some()
                || s.code.is_some()
                || s.files.is_some()
                || s.limits.is_some()
                || s.protocol.is_some()
            {
                return Err(invalid(format!(
                    "checker {:?} takes no language, code, files, limits or protocol; a program checker does",
                    s.kind
                )));
            }
            (s.kind, s.absolute, s.relative, s.ignore_case)
        }
    };
    if kind != "float" && (absolute.is_some() || relative.is_some()) {
        return Err(invalid(format!("checker {kind:?} takes no tolerance; only float does")));
    }
    if kind == "exact" && ignore_case == Some(true) {
        return Err(invalid("checker \"exact\" compares bytes; it cannot ignore case".into()));
    }
    let tolerance = |name: &str, v: Option<f64>| match v {
        None => Ok(judge::checker::DEFAULT_TOLERANCE),
        Some(v) if v.is_finite() && v >= 0.0 => Ok(v),
        Some(v) => Err(invalid(format!("checker.{name} = {v}: a tolerance is a finite number, 0 or more"))),
    };
    let checker = match kind.as_str() {
        "exact" => Checker::Exact,
        "trim" => Checker::Trim,
        "tokens" => Checker::Tokens,
        "float" => {
            Checker::Float { absolute: tolerance("absolute", absolute)?, relative: tolerance("relative", relative)? }
        }
        other => return Err(invalid(format!("checker {other:?}: one of exact, trim, tokens, float, program"))),
    };
    Ok((checker, ignore_case.unwrap_or(false)))
}

/// `return_files` as a filter (None for `false`).
fn file_filter(r: ReturnFilesIn) -> Result<Option<FileFilter>, ApiError> {
    match r {
        ReturnFilesIn::All(false) => Ok(None),
        ReturnFilesIn::All(true) => Ok(Some(FileFilter { globs: None })),
        ReturnFilesIn::Globs(g) if g.is_empty() || g.len() > MAX_GLOBS => {
            Err(ApiError::Invalid(format!("return_files: true, false, or 1 to {MAX_GLOBS} glob patterns")))
        }
        ReturnFilesIn::Globs(g) => {
            let mut globs = Vec::with_capacity(g.len());
            for p in g {
                let pattern = glob::Pattern::new(&p)
                    .map_err(|e| ApiError::Invalid(format!("return_files pattern {p:?}: {e}")))?;
                globs.push(pattern);
            }
            Ok(Some(FileFilter { globs: Some(globs) }))
        }
    }
}

/// A language's run limits over the configured defaults, none above the maxima.
pub(super) fn language_defaults(lang: &Language, default: &LimitTable, max: &LimitTable) -> LimitTable {
    let t = lang.run.limits.over_table(default);
    LimitTable {
        cpu_time_ms: t.cpu_time_ms.min(max.cpu_time_ms),
        wall_time_ms: t.wall_time_ms.min(max.wall_time_ms),
        memory_mb: t.memory_mb.min(max.memory_mb),
        processes: t.processes.min(max.processes),
        output_kb: t.output_kb.min(max.output_kb),
        file_size_kb: t.file_size_kb.min(max.file_size_kb),
    }
}

/// The limits asked over `default`, each checked against its maximum (`what` names them in
/// errors).
pub(super) fn limit_table(
    default: &LimitTable,
    max: &LimitTable,
    asked: LimitsIn,
    what: &str,
) -> Result<LimitTable, ApiError> {
    let pick = |name: &str, asked: Option<u64>, default: u64, max: u64| match asked {
        None => Ok(default),
        Some(v) if (1..=max).contains(&v) => Ok(v),
        Some(v) => Err(ApiError::Invalid(format!("{what}.{name} = {v}: must be 1 to {max}"))),
    };
    Ok(LimitTable {
        cpu_time_ms: pick("cpu_time_ms", asked.cpu_time_ms, default.cpu_time_ms, max.cpu_time_ms)?,
        wall_time_ms: pick("wall_time_ms", asked.wall_time_ms, default.wall_time_ms, max.wall_time_ms)?,
        memory_mb: pick("memory_mb", asked.memory_mb, default.memory_mb, max.memory_mb)?,
        processes: pick("processes", asked.processes, default.processes, max.processes)?,
        output_kb: pick("output_kb", asked.output_kb, default.output_kb, max.output_kb)?,
        file_size_kb: pick("file_size_kb", asked.file_size_kb, default.file_size_kb, max.file_size_kb)?,
    })
}

pub(super) fn to_limits(table: &LimitTable) -> Result<crate::limit::Limits, ApiError> {
    let limits = table.to_limits();
    limits.validate().map_err(|e| ApiError::Invalid(e.to_string()))?;
    Ok(limits)
}

/// The request's limits over the defaults, each checked against its maximum.
#[cfg(test)]
pub(super) fn limits(
    default: &LimitTable,
    max: &LimitTable,
    asked: LimitsIn,
) -> Result<crate::limit::Limits, ApiError> {
    to_limits(&limit_table(default, max, asked, "limits")?)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Config;

    #[test]
    fn limits_take_defaults_and_check_maxima() {
        let c = Config::default();
        let (d, m) = (&c.limits.default, &c.limits.max);
        let l = limits(d, m, LimitsIn { memory_mb: Some(512), ..LimitsIn::default() }).unwrap();
        assert_eq!(l.memory_bytes, 512 << 20);
        assert_eq!(l.cpu_time, std::time::Duration::from_millis(d.cpu_time_ms));
        for bad in [
            LimitsIn { memory_mb: Some(0), ..LimitsIn::default() },
            LimitsIn { memory_mb: Some(m.memory_mb + 1), ..LimitsIn::default() },
            LimitsIn { cpu_time_ms: Some(u64::MAX), ..LimitsIn::default() },
        ] {
            let e = limits(d, m, bad).unwrap_err();
            assert!(matches!(&e, ApiError::Invalid(msg) if msg.contains("must be 1 to")), "{e:?}");
        }
    }

    #[test]
    fn an_expected_null_is_expected() {
        let t: TestIn = serde_json::from_str(r#"{"input": [], "expected_output": null}"#).unwrap();
        let limits = Config::default().limits;
        let t = test(0, t, true, &limits.default, &limits.max, None).unwrap();
        assert_eq!(t.expected, Expected::Value(Value::Null));
        let t: TestIn = serde_json::from_str(r#"{"input": []}"#).unwrap();
        assert_eq!(test(0, t, true, &limits.default, &limits.max, None).unwrap().expected, Expected::Nothing);
    }

    #[test]
    fn checkers_and_file_patterns_are_checked() {
        assert_eq!(checker(None).unwrap(), (Checker::Trim, false));
        assert_eq!(checker(Some(CheckerIn::Name("tokens".into()))).unwrap(), (Checker::Tokens, false));
        let spec = |kind: &str, absolute, relative| {
            Some(CheckerIn::Spec(Box::new(crate::api::types::judge::CheckerSpec {
                kind: kind.into(),
                absolute,
                relative,
                ignore_case: None,
                language: None,
                code: None,
                files: None,
                limits: None,
                protocol: None,
            })))
        };
        let float = Checker::Float { absolute: 0.5, relative: 1e-6 };
        assert_eq!(checker(spec("float", Some(0.5), None)).unwrap(), (float, false));
        for bad in
            [spec("float", Some(-1.0), None), spec("float", None, Some(f64::NAN)), spec("exact", Some(1.0), None)]
        {
            assert!(matches!(checker(bad), Err(ApiError::Invalid(_))));
        }
        let e = checker(Some(CheckerIn::Name("fuzzy".into()))).unwrap_err();
        assert!(matches!(&e, ApiError::Invalid(m) if m.contains("exact, trim, tokens, float, program")), "{e:?}");
        assert!(file_filter(ReturnFilesIn::All(false)).unwrap().is_none());
        assert!(file_filter(ReturnFilesIn::Globs(vec!["[".into()])).is_err());
        assert!(file_filter(ReturnFilesIn::Globs(vec![])).is_err());
        let f = file_filter(ReturnFilesIn::Globs(vec!["*.txt".into(), "out/**/*.csv".into()])).unwrap().unwrap();
        let files =
            [("a.txt", true), ("dir/a.txt", false), ("out/x/y.csv", true), ("out/y.csv", true), ("b.bin", false)];
        let output: Vec<crate::run::OutputFile> = files
            .iter()
            .map(|(p, _)| crate::run::OutputFile {
                path: (*p).into(),
                content: crate::run::FileContent::File { bytes: b"x".to_vec(), executable: false },
            })
            .collect();
        let (got, truncated) = f.apply(&output, false, &mut crate::api::types::judge::Budget::default());
        let names: Vec<&str> = got.iter().map(|f| f.name.as_str()).collect();
        let want: Vec<&str> = files.iter().filter(|(_, w)| *w).map(|(p, _)| *p).collect();
        assert_eq!(names, want);
        assert!(!truncated);
    }
}
