//! What a package says of itself: `problem.yaml` (the legacy Kattis format and the
//! 2023-07 `limits.time_limit`), a group's `testdata.yaml`, DOMjudge's `.timelimit` and
//! `domjudge-problem.ini`, and the default output validator's flags.

use std::time::Duration;

use serde::Deserialize;

use super::ProblemError;
use crate::judge::Checker;

/// `problem.yaml`, the parts codeexec uses (the rest is ignored).
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub(super) struct ProblemYaml {
    pub(super) name: Option<yaml_serde::Value>,
    #[serde(rename = "type")]
    pub(super) kind: Option<String>,
    pub(super) validation: Option<String>,
    pub(super) validator_flags: Option<String>,
    pub(super) limits: YamlLimits,
}

/// `limits:` of `problem.yaml`.
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub(super) struct YamlLimits {
    /// Seconds (2023-07 format).
    pub(super) time_limit: Option<f64>,
    /// MiB.
    pub(super) memory: Option<u64>,
    /// MiB.
    pub(super) output: Option<u64>,
}

/// A group's `testdata.yaml`, the parts codeexec uses.
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub(super) struct TestdataYaml {
    pub(super) accept_score: Option<f64>,
    pub(super) input_validator_flags: Option<String>,
}

pub(super) fn problem_yaml(text: &[u8]) -> Result<ProblemYaml, ProblemError> {
    if text.iter().all(u8::is_ascii_whitespace) {
        return Ok(ProblemYaml::default());
    }
    yaml_serde::from_slice(text).map_err(|e| ProblemError::Yaml("problem.yaml".into(), e.to_string()))
}

pub(super) fn testdata_yaml(path: &str, text: &[u8]) -> Result<TestdataYaml, ProblemError> {
    if text.iter().all(u8::is_ascii_whitespace) {
        return Ok(TestdataYaml::default());
    }
    yaml_serde::from_slice(text).map_err(|e| ProblemError::Yaml(path.into(), e.to_string()))
}

/// The problem's name: `name`, or its English one when `name` is a map of languages.
pub(super) fn name(y: &ProblemYaml) -> Option<String> {
    match y.name.as_ref()? {
        yaml_serde::Value::String(s) => Some(s.clone()),
        yaml_serde::Value::Mapping(m) => m.get("en").and_then(|v| v.as_str()).map(str::to_owned),
        _ => None,
    }
}

/// A time limit in seconds, from a `.timelimit` file or DOMjudge's `timelimit = '2'`.
pub(super) fn seconds(text: &[u8], key: Option<&str>) -> Option<Duration> {
    let text = String::from_utf8_lossy(text);
    let value = match key {
        None => text.trim().to_owned(),
        Some(key) => text.lines().find_map(|l| {
            let (k, v) = l.split_once('=')?;
            (k.trim() == key).then(|| v.trim().trim_matches(['\'', '"']).to_owned())
        })?,
    };
    let s: f64 = value.parse().ok()?;
    (s.is_finite() && s > 0.0 && s <= 3600.0).then(|| Duration::from_secs_f64(s))
}

/// The default output validator as a built-in checker: tokens, case-insensitive unless
/// `case_sensitive`, whitespace within lines kept with `space_change_sensitive`, numbers
/// within `float_tolerance` (or its absolute and relative halves). Returns the checker
/// and whether it ignores case.
pub(super) fn default_validator(flags: &[String]) -> Result<(Checker, bool), ProblemError> {
    let (mut case, mut space) = (false, false);
    let (mut absolute, mut relative) = (None, None);
    let mut it = flags.iter();
    while let Some(flag) = it.next() {
        let mut number = || {
            it.next()
                .and_then(|v| v.parse::<f64>().ok())
                .filter(|v| v.is_finite() && *v >= 0.0)
                .ok_or_else(|| ProblemError::Invalid(format!("validator flag {flag} needs a number")))
        };
        match flag.as_str() {
            "case_sensitive" => case = true,
            "space_change_sensitive" => space = true,
            "float_tolerance" => {
                let v = number()?;
                (absolute, relative) = (Some(v), Some(v));
            }
            "float_absolute_tolerance" => absolute = Some(number()?),
            "float_relative_tolerance" => relative = Some(number()?),
            other => return Err(ProblemError::Invalid(format!("unknown default validator flag {other:?}"))),
        }
    }
    let checker = match (absolute, relative) {
        (None, None) if space => Checker::Trim,
        (None, None) => Checker::Tokens,
        (a, r) => Checker::Float { absolute: a.unwrap_or(0.0), relative: r.unwrap_or(0.0) },
    };
    Ok((checker, !case))
}

/// Flags as the shell would split them (no quoting: Kattis' flags are words and numbers).
pub(super) fn words(flags: Option<&str>) -> Vec<String> {
    flags.unwrap_or("").split_whitespace().map(str::to_owned).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn problem_yaml_parses_in_both_formats() {
        let y = problem_yaml(
            b"name: Sum\nvalidation: custom\nvalidator_flags: float_tolerance 1e-6\nlimits:\n  memory: 512\n",
        )
        .unwrap();
        assert_eq!(name(&y).as_deref(), Some("Sum"));
        assert_eq!((y.validation.as_deref(), y.limits.memory), (Some("custom"), Some(512)));
        let y = problem_yaml(b"name:\n  en: Sum\n  sv: Summa\nlimits: {time_limit: 1.5}\nkeywords: [x]\n").unwrap();
        assert_eq!((name(&y).as_deref(), y.limits.time_limit), (Some("Sum"), Some(1.5)));
        assert!(problem_yaml(b"").unwrap().name.is_none());
        assert!(problem_yaml(b"limits: [").is_err());
    }

    #[test]
    fn time_limits_come_from_domjudge_files_too() {
        assert_eq!(seconds(b"2\n", None), Some(Duration::from_secs(2)));
        assert_eq!(seconds(b"name='x'\ntimelimit = '1.5'\n", Some("timelimit")), Some(Duration::from_millis(1500)));
        assert_eq!(seconds(b"-1", None), None);
    }

    #[test]
    fn default_validator_flags_pick_a_checker() {
        let f = |s: &str| default_validator(&words(Some(s)));
        assert_eq!(f("").unwrap(), (Checker::Tokens, true));
        assert_eq!(f("case_sensitive").unwrap(), (Checker::Tokens, false));
        assert_eq!(f("space_change_sensitive case_sensitive").unwrap(), (Checker::Trim, false));
        assert_eq!(f("float_tolerance 1e-6").unwrap(), (Checker::Float { absolute: 1e-6, relative: 1e-6 }, true));
        assert_eq!(f("float_relative_tolerance 0.01").unwrap().0, Checker::Float { absolute: 0.0, relative: 0.01 });
        assert!(f("float_tolerance").is_err());
        assert!(f("loose").is_err());
    }
}
