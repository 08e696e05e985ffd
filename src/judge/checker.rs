//! Checkers: whether a test's output is the expected one, and if not, where they part.

use serde_json::Value;

/// How a program's output is compared with the expected output.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Checker {
    /// Byte for byte.
    Exact,
    /// Line by line, ignoring whitespace at the end of each line and empty lines at the end
    /// (so a missing or extra final newline, or `\r\n`, does not matter). The default.
    Trim,
    /// The same whitespace-separated tokens.
    Tokens,
    /// The same tokens, where two numbers match when they differ by at most `absolute` or
    /// by at most `relative` times the expected one.
    Float {
        /// Absolute tolerance.
        absolute: f64,
        /// Relative tolerance.
        relative: f64,
    },
}

/// The tolerance `float` gets by default: 1e-6, absolute or relative (as most judges).
pub const DEFAULT_TOLERANCE: f64 = 1e-6;

/// How much of a token or line a message quotes.
const QUOTE: usize = 80;

impl Checker {
    /// The wire name.
    pub fn as_str(self) -> &'static str {
        match self {
            Checker::Exact => "exact",
            Checker::Trim => "trim",
            Checker::Tokens => "tokens",
            Checker::Float { .. } => "float",
        }
    }

    /// `Ok` when `actual` matches `expected`; else where and how they differ, in a sentence.
    pub fn check(self, expected: &[u8], actual: &[u8]) -> Result<(), String> {
        self.check_case(expected, actual, false)
    }

    /// As [`Checker::check`]; with `ignore_case`, ASCII letters match in either case (for
    /// every checker but `exact`).
    pub fn check_case(self, expected: &[u8], actual: &[u8], ignore_case: bool) -> Result<(), String> {
        match self {
            Checker::Exact => exact(expected, actual),
            Checker::Trim => trim(expected, actual, ignore_case),
            Checker::Tokens => tokens(expected, actual, None, ignore_case),
            Checker::Float { absolute, relative } => tokens(expected, actual, Some((absolute, relative)), ignore_case),
        }
    }

    /// Compares two JSON values (a function's result): structurally, object keys in any
    /// order; numbers by value (`1` is `1.0`), within the tolerance for `float`.
    pub fn check_json(self, expected: &Value, actual: &Value) -> Result<(), String> {
        let tolerance = match self {
            Checker::Float { absolute, relative } => Some((absolute, relative)),
            _ => None,
        };
        json_eq(expected, actual, tolerance, &mut String::from("$"))
            .map_err(|(path, why)| if path == "$" { why } else { format!("at {path}: {why}") })
    }
}

/// A function's result as text: a string as itself, anything else as compact JSON (`5`,
/// `[1,2]`, `true`, `null`), as callers that compare printed results write it.
pub fn canonical_text(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

fn exact(expected: &[u8], actual: &[u8]) -> Result<(), String> {
    if expected == actual {
        return Ok(());
    }
    let at = expected.iter().zip(actual).position(|(a, b)| a != b).unwrap_or(expected.len().min(actual.len()));
    let line = expected[..at].iter().filter(|&&b| b == b'\n').count() + 1;
    Err(format!(
        "byte {at} (line {line}) differs: expected {}, got {}",
        quote_bytes(&expected[at..]),
        quote_bytes(&actual[at..])
    ))
}

/// Lines and tokens are compared as they are split, never collected: a 16 MiB output costs
/// no more memory than itself.
fn trim(expected: &[u8], actual: &[u8], ignore_case: bool) -> Result<(), String> {
    let mut e = expected.split(|&b| b == b'\n').map(<[u8]>::trim_ascii_end);
    let mut a = actual.split(|&b| b == b'\n').map(<[u8]>::trim_ascii_end);
    let mut n = 0usize;
    loop {
        n += 1;
        match (e.next(), a.next()) {
            (Some(x), Some(y)) if same(x, y, ignore_case) => {}
            (None, None) => return Ok(()),
            (x, y) => {
                let x = x.unwrap_or_default();
                let y = y.unwrap_or_default();
                // a side with only empty lines left has ended there
                let e_done = x.is_empty() && e.clone().all(<[u8]>::is_empty);
                let a_done = y.is_empty() && a.clone().all(<[u8]>::is_empty);
                match (e_done, a_done) {
                    (true, true) => return Ok(()),
                    (false, true) => {
                        return Err(format!(
                            "the output ends after {} lines; expected more (next: {})",
                            n - 1,
                            quote_bytes(x)
                        ));
                    }
                    (true, false) => {
                        return Err(format!("{} lines expected, got more (extra: {})", n - 1, quote_bytes(y)));
                    }
                    (false, false) => {}
                }
                return Err(format!("line {n} differs: expected {}, got {}", quote_bytes(x), quote_bytes(y)));
            }
        }
    }
}

fn tokens(expected: &[u8], actual: &[u8], tolerance: Option<(f64, f64)>, ignore_case: bool) -> Result<(), String> {
    let mut e = expected.split(u8::is_ascii_whitespace).filter(|t| !t.is_empty());
    let mut a = actual.split(u8::is_ascii_whitespace).filter(|t| !t.is_empty());
    let mut n = 0usize;
    loop {
        n += 1;
        let (x, y) = match (e.next(), a.next()) {
            (None, None) => return Ok(()),
            (Some(x), None) => {
                let total = n + e.count();
                return Err(format!(
                    "the output ends after {} tokens; expected {total} (next: {})",
                    n - 1,
                    quote_bytes(x)
                ));
            }
            (None, Some(y)) => {
                let total = n + a.count();
                return Err(format!("{} tokens expected, got {total} (extra: {})", n - 1, quote_bytes(y)));
            }
            (Some(x), Some(y)) => (x, y),
        };
        if same(x, y, ignore_case) {
            continue;
        }
        match tolerance.and_then(|t| Some((number(x)?, number(y)?, t))) {
            Some((x, y, (abs, rel))) => {
                if !close(x, y, abs, rel) {
                    return Err(format!(
                        "token {n}: expected {x}, got {y} (difference {:e} is over both the absolute tolerance {abs:e} and the relative {rel:e})",
                        (x - y).abs()
                    ));
                }
            }
            None => return Err(format!("token {n} differs: expected {}, got {}", quote_bytes(x), quote_bytes(y))),
        }
    }
}

fn same(x: &[u8], y: &[u8], ignore_case: bool) -> bool {
    if ignore_case { x.eq_ignore_ascii_case(y) } else { x == y }
}

/// A token as a finite number (`inf` and `nan` are compared as text).
fn number(token: &[u8]) -> Option<f64> {
    let s = std::str::from_utf8(token).ok()?;
    if !s.bytes().all(|b| b.is_ascii_digit() || matches!(b, b'+' | b'-' | b'.' | b'e' | b'E')) {
        return None;
    }
    s.parse::<f64>().ok().filter(|v| v.is_finite())
}

fn close(expected: f64, actual: f64, absolute: f64, relative: f64) -> bool {
    let d = (expected - actual).abs();
    d <= absolute || d <= relative * expected.abs()
}

type Mismatch = (String, String);

fn json_eq(e: &Value, a: &Value, tolerance: Option<(f64, f64)>, path: &mut String) -> Result<(), Mismatch> {
    let differ = |path: &str| Err((path.to_owned(), format!("expected {}, got {}", quote_json(e), quote_json(a))));
    match (e, a) {
        (Value::Number(x), Value::Number(y)) => {
            // integers exactly (no f64 rounding), else as floats; with a tolerance, either
            let exact = match (x.as_i64(), y.as_i64(), x.as_u64(), y.as_u64()) {
                (Some(i), Some(j), _, _) => Some(i == j),
                (_, _, Some(i), Some(j)) => Some(i == j),
                _ => None,
            };
            let (fx, fy) = (x.as_f64().unwrap_or(f64::NAN), y.as_f64().unwrap_or(f64::NAN));
            let same = match (exact, tolerance) {
                (Some(true), _) => true,
                (_, Some((abs, rel))) => close(fx, fy, abs, rel),
                (Some(false), None) => false,
                #[allow(clippy::float_cmp)]
                (None, None) => fx == fy,
            };
            if same { Ok(()) } else { differ(path) }
        }
        (Value::Array(x), Value::Array(y)) => {
            if x.len() != y.len() {
                return Err((
                    path.clone(),
                    format!("expected {} elements, got {}: {}", x.len(), y.len(), quote_json(a)),
                ));
            }
            for (i, (xe, ye)) in x.iter().zip(y).enumerate() {
                let len = path.len();
                path.push_str(&format!("[{i}]"));
                json_eq(xe, ye, tolerance, path)?;
                path.truncate(len);
            }
            Ok(())
        }
        (Value::Object(x), Value::Object(y)) => {
            if let Some(k) = x.keys().find(|k| !y.contains_key(*k)).or_else(|| y.keys().find(|k| !x.contains_key(*k))) {
                return Err((
                    path.clone(),
                    format!("key {k:?} is in only one of expected {} and got {}", quote_json(e), quote_json(a)),
                ));
            }
            for (k, xe) in x {
                let len = path.len();
                path.push_str(&format!(".{k}"));
                json_eq(xe, &y[k], tolerance, path)?;
                path.truncate(len);
            }
            Ok(())
        }
        _ if e == a => Ok(()),
        _ => differ(path),
    }
}

fn quote_bytes(b: &[u8]) -> String {
    let cut = b.len().min(QUOTE);
    let line_end = b[..cut].iter().position(|&c| c == b'\n').map_or(cut, |p| p + 1);
    let mut s = format!("{:?}", String::from_utf8_lossy(&b[..line_end]));
    if b.is_empty() {
        s = "nothing".into();
    } else if line_end < b.len() {
        s.push('…');
    }
    s
}

fn quote_json(v: &Value) -> String {
    let s = v.to_string();
    if s.len() <= QUOTE {
        return s;
    }
    let cut = (0..=QUOTE).rev().find(|&i| s.is_char_boundary(i)).unwrap_or(0);
    format!("{}…", &s[..cut])
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    const FLOAT: Checker = Checker::Float { absolute: 1e-6, relative: 1e-6 };

    #[test]
    fn exact_is_byte_for_byte() {
        assert!(Checker::Exact.check(b"1 2\n", b"1 2\n").is_ok());
        let e = Checker::Exact.check(b"1 2\n", b"1 2").unwrap_err();
        assert!(e.starts_with("byte 3 (line 1) differs"), "{e}");
        assert!(Checker::Exact.check(b"a\nb\n", b"a\nc\n").unwrap_err().contains("line 2"));
    }

    #[test]
    fn trim_ignores_trailing_whitespace_and_final_newlines() {
        for actual in [&b"1 2\n3"[..], b"1 2  \n3\n\n\n", b"1 2\r\n3\r\n", b"1 2\t\n3 "] {
            assert!(Checker::Trim.check(b"1 2\n3\n", actual).is_ok(), "{actual:?}");
        }
        let e = Checker::Trim.check(b"1 2\n3\n", b" 1 2\n3\n").unwrap_err();
        assert!(e.starts_with("line 1 differs"), "leading space counts: {e}");
        assert!(Checker::Trim.check(b"1\n2\n", b"1\n").unwrap_err().contains("ends after 1 lines"));
        assert!(Checker::Trim.check(b"1\n", b"1\n\n2").unwrap_err().contains("extra"));
        assert!(Checker::Trim.check(b"1\n\n2\n", b"1\n2\n").is_err(), "an empty line inside counts");
        assert!(Checker::Trim.check(b"", b"\n\n").is_ok());
    }

    #[test]
    fn tokens_ignore_all_whitespace() {
        assert!(Checker::Tokens.check(b"1 2\n3\n", b"  1\n\n2 3").is_ok());
        let e = Checker::Tokens.check(b"1 2 3", b"1 2 4").unwrap_err();
        assert_eq!(e, "token 3 differs: expected \"3\", got \"4\"");
        assert!(Checker::Tokens.check(b"1 2", b"1 2 3").unwrap_err().contains("extra"));
        assert!(Checker::Tokens.check(b"1.0", b"1").is_err(), "tokens are text");
    }

    #[test]
    fn float_takes_numbers_within_either_tolerance() {
        assert!(FLOAT.check(b"0.333333 x\n", b"0.3333335 x").is_ok());
        assert!(FLOAT.check(b"1e9", b"1000000000.5").is_ok(), "relative");
        assert!(FLOAT.check(b"1", b"1.0000000").is_ok());
        let e = FLOAT.check(b"0.5 1", b"0.5 1.01").unwrap_err();
        assert!(e.starts_with("token 2: expected 1, got 1.01"), "{e}");
        assert!(FLOAT.check(b"x", b"y").is_err(), "words are compared as text");
        assert!(FLOAT.check(b"nan", b"nan").is_ok() && FLOAT.check(b"nan", b"0").is_err());
        assert!(FLOAT.check(b"inf", b"1e308").is_err());
        let loose = Checker::Float { absolute: 0.1, relative: 0.0 };
        assert!(loose.check(b"1", b"1.09").is_ok() && loose.check(b"1", b"1.2").is_err());
    }

    #[test]
    fn case_can_be_ignored() {
        assert!(Checker::Tokens.check(b"YES\n", b"yes").is_err());
        assert!(Checker::Tokens.check_case(b"YES\n", b"yes", true).is_ok());
        assert!(Checker::Trim.check_case(b"Hello World\n", b"hello world", true).is_ok());
        assert!(Checker::Trim.check_case(b"Hello World\n", b"hello  world", true).is_err());
        assert!(FLOAT.check_case(b"Inf 1.5", b"INF 1.5000001", true).is_ok());
        assert!(Checker::Exact.check_case(b"A", b"a", true).is_err(), "exact is byte for byte");
    }

    #[test]
    fn json_values_compare_by_structure_and_number() {
        let c = Checker::Trim;
        assert!(c.check_json(&json!([0, 1]), &json!([0, 1])).is_ok());
        assert!(c.check_json(&json!(1), &json!(1.0)).is_ok());
        assert!(c.check_json(&json!({"a": 1, "b": [true]}), &json!({"b": [true], "a": 1})).is_ok());
        let e = c.check_json(&json!([[1, 2], [3, 4]]), &json!([[1, 2], [3, 5]])).unwrap_err();
        assert_eq!(e, "at $[1][1]: expected 4, got 5");
        assert!(c.check_json(&json!([1]), &json!([1, 2])).unwrap_err().contains("expected 1 elements, got 2"));
        assert!(c.check_json(&json!("1"), &json!(1)).is_err());
        assert_eq!(canonical_text(&json!(5)), "5");
        assert_eq!(canonical_text(&json!("abc")), "abc");
        assert_eq!(canonical_text(&json!([1, [2, "x"]])), "[1,[2,\"x\"]]");
        assert_eq!(canonical_text(&json!(null)), "null");
        assert!(c.check_json(&json!(null), &json!(0)).is_err());
        assert!(c.check_json(&json!(0.1), &json!(0.1000001)).is_err());
        assert!(FLOAT.check_json(&json!([0.1]), &json!([0.1000001])).is_ok());
        assert!(c.check_json(&json!({"a": 1}), &json!({"b": 1})).unwrap_err().contains("key \"a\""));
        assert!(c.check_json(&json!(u64::MAX), &json!(u64::MAX)).is_ok());
        assert!(c.check_json(&json!(u64::MAX), &json!(u64::MAX - 1)).is_err());
        // with a tolerance, integers are numbers like any other
        assert!(FLOAT.check_json(&json!(1_000_000), &json!(1_000_001)).is_ok(), "relative 1e-6");
        assert!(FLOAT.check_json(&json!(1000), &json!(1001)).is_err());
    }
}
