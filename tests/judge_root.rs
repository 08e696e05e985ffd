//! Judge requests through the real daemon (`codeexec serve`) with the real toolchains: one
//! problem (two integers in, their sum out) in C++, Python and Java with every verdict
//! (accepted, wrong answer, time and memory limits, runtime error, compile or syntax
//! error), verdicts that differ from test to test and `stop_on_first_failure`; every checker;
//! the function harness in its five languages; files out (`return_files`, symlinks never
//! followed, the caps); the compile cache; async jobs (`POST /v1/jobs`, cancel, callback URLs
//! refused). Root only (see `require_privileged!`); the toolchains come from `.ci/run`.

// An integration test crate is all tests: the lints for tests inside `src/` do not fit it.
#![allow(clippy::tests_outside_test_module, clippy::unwrap_used)]

mod common;

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use codeexec::client::{Endpoint, Reply};
use hyper::StatusCode;
use serde_json::{Value, json};

use common::daemon::{Daemon, delete, get, post, post_to, runtime, wait_job};
use common::processes_with_arg;

/// The problem: two integers in, their sum out (the third test has a negative one).
const SUM: [(&str, &str); 3] = [("1 2\n", "3\n"), ("20 22\n", "42\n"), ("-5 5\n", "0\n")];

/// Limits where speed is not the point: a loaded two-core machine still fits in them.
fn generous() -> Value {
    json!({"cpu_time_ms": 20_000, "wall_time_ms": 60_000})
}

/// The problem's tests, each with these limits when given.
fn sum_tests(limits: Option<&Value>) -> Value {
    let tests = SUM.iter().map(|(stdin, out)| {
        let mut t = json!({"stdin": stdin, "expected_output": out});
        if let Some(l) = limits {
            t["limits"] = l.clone();
        }
        t
    });
    Value::Array(tests.collect())
}

/// A judge request with generous limits.
fn judged(lang: &str, code: &str, tests: Value) -> Value {
    json!({"language": lang, "code": code, "tests": tests, "limits": generous()})
}

/// A 200 with a judge response (it has `tests`); the whole response on failure.
async fn judge(endpoint: &Endpoint, body: &Value) -> Value {
    let r = post(endpoint, None, body).await;
    let v = r.json();
    assert_eq!(r.status, StatusCode::OK, "{v}");
    assert!(v["tests"].is_array() && v["summary"].is_object(), "not a judge response: {v:#}");
    v
}

/// A 200 with a single run's response.
async fn execute(endpoint: &Endpoint, body: &Value) -> Value {
    let r = post(endpoint, None, body).await;
    let v = r.json();
    assert_eq!(r.status, StatusCode::OK, "{v}");
    assert!(v.get("tests").is_none() && v["stage"].is_string(), "not a single run: {v:#}");
    v
}

fn expect_error(r: &Reply, status: StatusCode, needle: &str) {
    let v = r.json();
    assert_eq!(r.status, status, "{v}");
    assert!(v["error"]["message"].as_str().unwrap_or("").contains(needle), "{v} should mention {needle:?}");
    assert_eq!(v["error"]["request_id"].as_str().unwrap(), r.headers["x-request-id"].to_str().unwrap());
}

/// The tests' statuses in order, each test's `index` checked against its place.
fn statuses(v: &Value) -> Vec<&str> {
    let tests = v["tests"].as_array().unwrap();
    tests
        .iter()
        .enumerate()
        .map(|(i, t)| {
            assert_eq!(t["index"].as_u64(), Some(u64::try_from(i).unwrap()), "{v:#}");
            t["status"].as_str().unwrap()
        })
        .collect()
}

fn expect_summary(v: &Value, passed: u64, total: u64) {
    let s = &v["summary"];
    assert_eq!(
        (s["passed"].as_u64(), s["total"].as_u64(), s["all_passed"].as_bool()),
        (Some(passed), Some(total), Some(passed == total)),
        "{v:#}"
    );
}

fn cpu_ms(t: &Value) -> f64 {
    t["time"]["cpu_ms"].as_f64().unwrap()
}

/// One problem's submissions in one language, one for each verdict.
struct Submissions {
    lang: &'static str,
    /// Where diagnostics and frames point.
    file: &'static str,
    accepted: &'static str,
    /// Right but for a negative first number (`abs(a) + b`).
    wrong: &'static str,
    /// Reads, then loops forever.
    spin: &'static str,
    /// Allocates and touches memory until it is stopped.
    hog: &'static str,
    hog_mb: u64,
    /// The uncaught error an exhausted memory shows (Java: its `OutOfMemoryError`).
    hog_error: Option<&'static str>,
    /// Fails on every test, with this exit code, uncaught error type and line.
    crash: &'static str,
    crash_exit: i64,
    crash_error: Option<(&'static str, u64)>,
    /// Refused before it runs: by this stage (`compile`, `syntax`), with this error line.
    refused: &'static str,
    refused_by: &'static str,
    refused_line: u64,
}

/// Every verdict for one language's submissions, one request each, the three tests in each.
async fn verdicts(unix: &Endpoint, s: &Submissions) {
    accepted(unix, s).await;
    wrong_answer(unix, s).await;
    time_limit(unix, s).await;
    memory_limit(unix, s).await;
    runtime_error(unix, s).await;
    refused(unix, s).await;
}

async fn accepted(unix: &Endpoint, s: &Submissions) {
    let v = judge(unix, &judged(s.lang, s.accepted, sum_tests(None))).await;
    assert_eq!((v["status"].as_str(), v["message"].as_str()), (Some("accepted"), None), "{v:#}");
    assert_eq!(statuses(&v), ["accepted"; 3]);
    expect_summary(&v, 3, 3);
    assert_eq!(v["language"]["id"], s.lang);
    let tests = v["tests"].as_array().unwrap();
    for (t, (_, out)) in tests.iter().zip(SUM) {
        // the results keep the tests' order: each printed its own sum
        assert_eq!(t["stdout"], out, "{v:#}");
        assert_eq!(
            (t["exit_code"].as_i64(), t["message"].as_str(), t["error"].is_null()),
            (Some(0), None, true),
            "{t}"
        );
        assert!(cpu_ms(t) > 0.0 && t["time"]["wall_ms"].as_f64().unwrap() > 0.0, "{t}");
        assert!(t["memory_peak_kb"].as_u64().unwrap() > 0, "{t}");
    }
    let max_kb = tests.iter().map(|t| t["memory_peak_kb"].as_u64().unwrap()).max();
    assert_eq!(v["summary"]["max_memory_kb"].as_u64(), max_kb, "{v:#}");
    let max_cpu = tests.iter().map(cpu_ms).fold(0.0, f64::max);
    assert_eq!(v["summary"]["max_cpu_ms"].as_f64(), Some(max_cpu), "{v:#}");
    if s.refused_by == "compile" {
        let compile = (v["compile"]["status"].as_str(), v["compile_cache"].as_str());
        assert_eq!(compile, (Some("ok"), Some("miss")), "compiled once, for every test: {v:#}");
    } else {
        assert!(v["compile"].is_null() && v["compile_cache"].is_null(), "{v:#}");
    }
}

async fn wrong_answer(unix: &Endpoint, s: &Submissions) {
    let v = judge(unix, &judged(s.lang, s.wrong, sum_tests(None))).await;
    assert_eq!(statuses(&v), ["accepted", "accepted", "wrong_answer"]);
    assert_eq!(v["status"], "wrong_answer");
    // where: the test, the line, both texts
    assert_eq!(v["message"], r#"test 2: line 1 differs: expected "0", got "10""#, "{v:#}");
    let t = &v["tests"][2];
    let expected = (Some(r#"line 1 differs: expected "0", got "10""#), Some("10\n"), Some(0));
    assert_eq!((t["message"].as_str(), t["stdout"].as_str(), t["exit_code"].as_i64()), expected, "{t}");
    expect_summary(&v, 2, 3);
}

async fn time_limit(unix: &Endpoint, s: &Submissions) {
    // each test's own limits; wall time enough that only the CPU limit ends it, loaded too
    let limits = json!({"cpu_time_ms": 1000, "wall_time_ms": 10_000});
    let v = judge(unix, &judged(s.lang, s.spin, sum_tests(Some(&limits)))).await;
    assert_eq!(statuses(&v), ["time_limit"; 3]);
    assert_eq!(v["status"], "time_limit");
    assert_eq!(v["message"], "test 0: cpu time limit of 1000 ms exceeded", "{v:#}");
    for t in v["tests"].as_array().unwrap() {
        assert_eq!((t["exceeded"].as_str(), t["stdout"].as_str()), (Some("cpu_time"), Some("")), "{t}");
        assert!(cpu_ms(t) >= 1000.0, "it ran up to its limit: {t}");
    }
    expect_summary(&v, 0, 3);
}

async fn memory_limit(unix: &Endpoint, s: &Submissions) {
    let mut body = judged(s.lang, s.hog, sum_tests(None));
    body["limits"]["memory_mb"] = json!(s.hog_mb);
    let v = judge(unix, &body).await;
    assert_eq!(statuses(&v), ["memory_limit"; 3], "{v:#}");
    assert_eq!(v["status"], "memory_limit");
    let limit_kb = s.hog_mb * 1024;
    for t in v["tests"].as_array().unwrap() {
        assert_eq!(t["exceeded"], "memory", "{t}");
        let peak = t["memory_peak_kb"].as_u64().unwrap();
        assert!(peak > limit_kb / 2 && peak <= limit_kb, "it used up to {limit_kb} KiB: {t}");
        let message = t["message"].as_str().unwrap();
        match s.hog_error {
            Some(kind) => {
                assert_eq!(t["error"]["type"], kind, "{t}");
                assert!(message.starts_with("the program ran out of memory"), "{t}");
            }
            None => assert!(message.contains(&format!("memory limit of {}M", s.hog_mb)), "{t}"),
        }
    }
    expect_summary(&v, 0, 3);
}

async fn runtime_error(unix: &Endpoint, s: &Submissions) {
    let v = judge(unix, &judged(s.lang, s.crash, sum_tests(None))).await;
    assert_eq!(statuses(&v), ["runtime_error"; 3], "{v:#}");
    assert_eq!(v["status"], "runtime_error");
    assert_eq!(v["message"], format!("test 0: exited with code {}", s.crash_exit), "{v:#}");
    for t in v["tests"].as_array().unwrap() {
        assert_eq!(t["exit_code"].as_i64(), Some(s.crash_exit), "{t}");
        assert!(!t["stderr"].as_str().unwrap().is_empty(), "raw stderr is kept: {t}");
        match s.crash_error {
            Some((kind, line)) => {
                assert_eq!(t["error"]["type"], kind, "{t}");
                let frame = &t["error"]["frames"][0];
                assert_eq!((frame["file"].as_str(), frame["line"].as_u64()), (Some(s.file), Some(line)), "{t}");
            }
            None => assert!(t["error"].is_null(), "{t}"),
        }
    }
    expect_summary(&v, 0, 3);
}

async fn refused(unix: &Endpoint, s: &Submissions) {
    let status = if s.refused_by == "compile" { "compile_error" } else { "syntax_error" };
    let v = judge(unix, &judged(s.lang, s.refused, sum_tests(None))).await;
    assert_eq!(statuses(&v), [status; 3], "{v:#}");
    assert_eq!(v["status"], status);
    // the diagnostics once, at the top, with the user's line
    let d = v["diagnostics"].as_array().unwrap().iter().find(|d| d["severity"] == "error").unwrap();
    assert_eq!((d["file"].as_str(), d["line"].as_u64()), (Some(s.file), Some(s.refused_line)), "{v:#}");
    let message = v["message"].as_str().unwrap();
    assert!(message.starts_with(&format!("{}:{}:", s.file, s.refused_line)), "{v:#}");
    let stage = &v[s.refused_by];
    assert!(stage.is_object() && stage["status"] != "ok", "the {} stage refused it: {v:#}", s.refused_by);
    for t in v["tests"].as_array().unwrap() {
        assert!(t.get("diagnostics").is_none(), "not repeated per test: {t}");
        assert_eq!((t["message"].as_str(), t["stdout"].as_str()), (Some(message), Some("")), "{t}");
        let ran = (t["exit_code"].as_i64(), cpu_ms(t), t["memory_peak_kb"].as_u64());
        assert_eq!(ran, (None, 0.0, Some(0)), "never ran: {t}");
    }
    expect_summary(&v, 0, 3);
}

const CPP_SUM: &str = r#"#include <iostream>
int main() {
  long a, b;
  std::cin >> a >> b;
  std::cout << a + b << "\n";
}
"#;

const CPP_WRONG: &str = r#"#include <iostream>
int main() {
  long a, b;
  std::cin >> a >> b;
  std::cout << (a < 0 ? -a : a) + b << "\n";
}
"#;

const CPP_SPIN: &str = r#"#include <iostream>
int main() {
  long a, b;
  std::cin >> a >> b;
  for (volatile long i = 0;; i = i + 1) {
  }
}
"#;

const CPP_HOG: &str = r#"#include <vector>
int main() {
  std::vector<std::vector<char>> v;
  for (;;) v.emplace_back(1 << 20, 1);
}
"#;

const CPP_EXIT_3: &str = r#"#include <iostream>
int main() {
  long a, b;
  std::cin >> a >> b;
  std::cerr << "refusing " << a << "\n";
  return 3;
}
"#;

const CPP_UNDECLARED: &str = r#"#include <iostream>
int main() {
  long a, b;
  std::cin >> a >> b;
  std::cout << a + c << "\n";
}
"#;

const CPP_THROWS: &str = r#"#include <iostream>
#include <vector>
int main() {
  long a, b;
  std::cin >> a >> b;
  std::vector<long> v{a, b};
  std::cout << v.at(7) << "\n";
}
"#;

#[test]
fn cpp_gives_every_verdict() {
    require_privileged!();
    let s = Submissions {
        lang: "cpp",
        file: "main.cpp",
        accepted: CPP_SUM,
        wrong: CPP_WRONG,
        spin: CPP_SPIN,
        hog: CPP_HOG,
        hog_mb: 64,
        hog_error: None,
        crash: CPP_EXIT_3,
        crash_exit: 3,
        crash_error: None,
        refused: CPP_UNDECLARED,
        refused_by: "compile",
        refused_line: 5,
    };
    let d = Daemon::start(&[]);
    runtime().block_on(async {
        let unix = d.unix();
        verdicts(&unix, &s).await;
        // an uncaught exception aborts the program: a runtime error (the signal and the
        // exception's type given)
        let v = judge(&unix, &judged("cpp", CPP_THROWS, sum_tests(None))).await;
        assert_eq!(statuses(&v), ["runtime_error"; 3], "{v:#}");
        let t = &v["tests"][0];
        let got = (t["signal_name"].as_str(), t["error"]["type"].as_str());
        assert_eq!(got, (Some("SIGABRT"), Some("std::out_of_range")), "{t}");
    });
}

const PY_SUM: &str = "\
a, b = map(int, input().split())
print(a + b)
";

const PY_WRONG: &str = "\
a, b = map(int, input().split())
print(abs(a) + b)
";

#[test]
fn python_gives_every_verdict() {
    require_privileged!();
    let s = Submissions {
        lang: "python",
        file: "main.py",
        accepted: PY_SUM,
        wrong: PY_WRONG,
        spin: "a, b = map(int, input().split())\nwhile True:\n    pass\n",
        hog: "a, b = map(int, input().split())\nx = b'x' * (200 << 20)\nprint(len(x))\n",
        hog_mb: 64,
        hog_error: None,
        crash: "a, b = map(int, input().split())\nprint(a // (b - b))\n",
        crash_exit: 1,
        crash_error: Some(("ZeroDivisionError", 2)),
        refused: "a, b = map(int, input().split())\nprint((a + b)\n",
        refused_by: "syntax",
        refused_line: 2,
    };
    let d = Daemon::start(&[]);
    runtime().block_on(verdicts(&d.unix(), &s));
}

/// A Java program that has read `a` and `b` by its line 7, where `body` starts.
fn java_main(body: &str) -> &'static str {
    let head = r#"import java.util.*;

public class Main {
  public static void main(String[] args) {
    Scanner in = new Scanner(System.in);
    long a = in.nextLong(), b = in.nextLong();
"#;
    format!("{head}{body}\n  }}\n}}\n").leak()
}

#[test]
fn java_gives_every_verdict() {
    require_privileged!();
    let s = Submissions {
        lang: "java",
        file: "Main.java",
        accepted: java_main("    System.out.println(a + b);"),
        wrong: java_main("    System.out.println(Math.abs(a) + b);"),
        spin: java_main("    while (true) {}"),
        hog: java_main("    List<long[]> l = new ArrayList<>();\n    while (true) l.add(new long[1 << 17]);"),
        hog_mb: 128,
        // the JVM's heap is smaller than the limit: it runs out first, and that is the limit too
        hog_error: Some("java.lang.OutOfMemoryError"),
        crash: java_main("    System.out.println(a / (b - b));"),
        crash_exit: 1,
        crash_error: Some(("java.lang.ArithmeticException", 7)),
        refused: java_main("    System.out.println(a + c);"),
        refused_by: "compile",
        refused_line: 7,
    };
    let d = Daemon::start(&[]);
    runtime().block_on(verdicts(&d.unix(), &s));
}

/// Right for a 1; wrong for a 5; spins for a 7; raises for a 9.
const PY_MIXED: &str = "\
a, b = map(int, input().split())
if a == 7:
    while True:
        pass
if a == 9:
    raise ValueError('nine')
print(a + b + (a == 5))
";

#[test]
fn verdicts_differ_from_test_to_test_and_stop_on_first_failure_skips_the_rest() {
    require_privileged!();
    // one run at a time: which tests start after the first failure is then certain
    let d = Daemon::start(&[("CODEEXEC_RUNS_CONCURRENCY", "1")]);
    runtime().block_on(async {
        let unix = d.unix();
        let tests = json!([
            {"stdin": "1 2\n", "expected_output": "3\n"},
            {"stdin": "5 5\n", "expected_output": "10\n"},
            {"stdin": "7 0\n", "expected_output": "7\n", "limits": {"cpu_time_ms": 1000, "wall_time_ms": 10_000}},
            {"stdin": "9 0\n", "expected_output": "9\n"},
            {"stdin": "3 4\n", "expected_output": "7\n"},
            {"stdin": "0 0\n"}
        ]);
        let v = judge(&unix, &judged("python", PY_MIXED, tests)).await;
        assert_eq!(statuses(&v), ["accepted", "wrong_answer", "time_limit", "runtime_error", "accepted", "ok"]);
        assert_eq!(v["status"], "wrong_answer", "the first failure's");
        assert_eq!(v["message"], r#"test 1: line 1 differs: expected "10", got "11""#, "{v:#}");
        expect_summary(&v, 3, 6);
        let t = &v["tests"];
        assert_eq!((t[1]["stdout"].as_str(), t[2]["exceeded"].as_str()), (Some("11\n"), Some("cpu_time")));
        assert_eq!((t[3]["error"]["type"].as_str(), t[3]["exit_code"].as_i64()), (Some("ValueError"), Some(1)));
        assert_eq!((t[4]["stdout"].as_str(), t[5]["stdout"].as_str()), (Some("7\n"), Some("0\n")));

        // wrong for a negative first number: the tests after it are not run
        let tests = json!([
            {"stdin": "1 2\n", "expected_output": "3\n"},
            {"stdin": "-5 5\n", "expected_output": "0\n"},
            {"stdin": "20 22\n", "expected_output": "42\n"},
            {"stdin": "3 4\n", "expected_output": "7\n"}
        ]);
        let mut body = judged("python", PY_WRONG, tests);
        body["stop_on_first_failure"] = json!(true);
        let v = judge(&unix, &body).await;
        assert_eq!(statuses(&v), ["accepted", "wrong_answer", "skipped", "skipped"], "{v:#}");
        assert_eq!(v["status"], "wrong_answer");
        expect_summary(&v, 1, 4);
        for t in &v["tests"].as_array().unwrap()[2..] {
            assert!(t["message"].as_str().unwrap().contains("stop_on_first_failure"), "{t}");
            let ran = (t["exit_code"].as_i64(), t["stdout"].as_str(), cpu_ms(t));
            assert_eq!(ran, (None, Some(""), 0.0), "never ran: {t}");
        }
        // the same without stopping runs them all
        body["stop_on_first_failure"] = json!(false);
        let v = judge(&unix, &body).await;
        assert_eq!(statuses(&v), ["accepted", "wrong_answer", "accepted", "accepted"], "{v:#}");
        expect_summary(&v, 3, 4);
    });
}

/// `tests` (stdin, expected output) against a program that echoes its stdin.
async fn echo_checked(unix: &Endpoint, checker: Option<Value>, tests: &[(&str, Option<&str>)]) -> Value {
    let tests = tests.iter().map(|(stdin, want)| match want {
        Some(w) => json!({"stdin": stdin, "expected_output": w}),
        None => json!({"stdin": stdin}),
    });
    let echo = "import sys\nsys.stdout.write(sys.stdin.read())\n";
    let mut body = judged("python", echo, Value::Array(tests.collect()));
    if let Some(c) = checker {
        body["checker"] = c;
    }
    judge(unix, &body).await
}

#[test]
fn every_checker_through_the_api() {
    require_privileged!();
    let d = Daemon::start(&[]);
    runtime().block_on(async {
        let unix = d.unix();
        // exact: byte for byte; a missing final newline or a trailing space fails
        let exact = [("3\n", Some("3\n")), ("3", Some("3\n")), ("3 \n", Some("3\n"))];
        let v = echo_checked(&unix, Some(json!("exact")), &exact).await;
        assert_eq!(statuses(&v), ["accepted", "wrong_answer", "wrong_answer"]);
        assert_eq!(v["tests"][1]["message"], r#"byte 1 (line 1) differs: expected "\n", got nothing"#, "{v:#}");

        // trim, the default: trailing spaces, \r\n and final newlines do not count; leading
        // spaces and empty lines inside do; no expected output is `ok`
        let trim = [
            ("1 2  \n3\n\n\n", Some("1 2\n3")),
            ("1\r\n2\r\n", Some("1\n2\n")),
            ("3", Some("3\n")),
            (" 1 2\n", Some("1 2\n")),
            ("1\n\n2\n", Some("1\n2\n")),
            ("anything", None),
        ];
        for checker in [None, Some(json!("trim"))] {
            let v = echo_checked(&unix, checker, &trim).await;
            assert_eq!(statuses(&v), ["accepted", "accepted", "accepted", "wrong_answer", "wrong_answer", "ok"]);
            assert_eq!(v["tests"][3]["message"], r#"line 1 differs: expected "1 2", got " 1 2""#, "{v:#}");
            assert_eq!(v["tests"][5]["stdout"], "anything");
            expect_summary(&v, 4, 6);
        }

        // tokens: whitespace of any kind and amount; tokens compared as text
        let tokens = [("  1\n\n2   3", Some("1 2 3\n")), ("1 2 4", Some("1 2 3")), ("1.0", Some("1"))];
        let v = echo_checked(&unix, Some(json!("tokens")), &tokens).await;
        assert_eq!(statuses(&v), ["accepted", "wrong_answer", "wrong_answer"]);
        assert_eq!(v["tests"][1]["message"], r#"token 3 differs: expected "3", got "4""#, "{v:#}");

        // float with an absolute tolerance; words still compared as text
        let float = [
            ("3.1416\n", Some("3.14159\n")),
            ("x 3.1416", Some("x 3.14159")),
            ("3.15\n", Some("3.14159\n")),
            ("y 3.1416", Some("x 3.14159")),
        ];
        let v = echo_checked(&unix, Some(json!({"type": "float", "absolute": 1e-3})), &float).await;
        assert_eq!(statuses(&v), ["accepted", "accepted", "wrong_answer", "wrong_answer"]);
        let message = v["tests"][2]["message"].as_str().unwrap();
        assert!(message.starts_with("token 1: expected 3.14159, got 3.15"), "{v:#}");
        // a relative tolerance only
        let relative = json!({"type": "float", "relative": 1e-2, "absolute": 0});
        let v = echo_checked(&unix, Some(relative), &[("1005", Some("1000")), ("1011", Some("1000"))]).await;
        assert_eq!(statuses(&v), ["accepted", "wrong_answer"]);
        // the default tolerance, 1e-6
        let close = [("0.3333335", Some("0.333333")), ("0.3334", Some("0.333333"))];
        let v = echo_checked(&unix, Some(json!("float")), &close).await;
        assert_eq!(statuses(&v), ["accepted", "wrong_answer"]);

        // bad checkers are refused before anything runs
        let test = json!([{"stdin": "1", "expected_output": "1"}]);
        for (checker, needle) in [
            (json!("fuzzy"), r#"checker "fuzzy": one of exact, trim, tokens, float"#),
            (
                json!({"type": "float", "absolute": -1}),
                "checker.absolute = -1: a tolerance is a finite number, 0 or more",
            ),
            (json!({"type": "float", "relative": -0.5}), "checker.relative = -0.5"),
            (json!({"type": "exact", "absolute": 1e-3}), r#"checker "exact" takes no tolerance"#),
            (
                json!({"type": "float", "absolute": "1e-3"}),
                r#"a checker name ("exact", "trim", "tokens", "float") or {"type": "float""#,
            ),
            (json!(3), "a checker name"),
        ] {
            let body = json!({"language": "python", "code": "print(1)", "tests": test, "checker": checker});
            expect_error(&post(&unix, None, &body).await, StatusCode::UNPROCESSABLE_ENTITY, needle);
        }
        let body = json!({"language": "python", "code": "print(1)", "checker": "exact"});
        expect_error(&post(&unix, None, &body).await, StatusCode::UNPROCESSABLE_ENTITY, "checker needs tests");
        let body = judged("python", "print(1)", json!([{"stdin": "1", "expected_output": 1}]));
        let needle = "tests[0]: expected_output must be a string";
        expect_error(&post(&unix, None, &body).await, StatusCode::UNPROCESSABLE_ENTITY, needle);
    });
}

/// `divide(a, b)` in one language through the function harness: it prints a debug line,
/// returns `a / b` (whole), and fails when `b` is 0 with `failure`'s status and error type;
/// the last test expects nothing.
async fn harness(unix: &Endpoint, lang: &str, code: &str, failure: (&str, &str)) {
    let tests = json!([
        {"input": [6, 3], "expected_output": 2},
        {"input": [7, 7], "expected_output": 3},
        {"input": [1, 0], "expected_output": 0},
        {"input": [9, 3]}
    ]);
    let mut body = judged(lang, code, tests);
    body["function_name"] = json!("divide");
    let v = judge(unix, &body).await;
    assert_eq!(statuses(&v), ["accepted", "wrong_answer", failure.0, "ok"], "{v:#}");
    assert_eq!(v["status"], "wrong_answer");
    assert_eq!(v["message"], "test 1: expected 3, got 1", "{v:#}");
    expect_summary(&v, 2, 4);
    let t = v["tests"].as_array().unwrap();
    // what the function returned, and what it printed itself (without the harness's line)
    assert_eq!((&t[0]["returned"], t[0]["stdout"].as_str()), (&json!(2), Some("dbg 6 3\n")), "{v:#}");
    assert_eq!((&t[1]["returned"], t[1]["stdout"].as_str()), (&json!(1), Some("dbg 7 7\n")), "{v:#}");
    assert_eq!(t[1]["message"], "expected 3, got 1");
    let failed = (t[2]["stdout"].as_str(), t[2]["error"]["type"].as_str());
    assert_eq!(failed, (Some("dbg 1 0\n"), Some(failure.1)), "{v:#}");
    assert!(t[2].get("returned").is_none(), "nothing returned after an exception: {v:#}");
    assert!(!t[2]["stderr"].as_str().unwrap().is_empty());
    // no expected value: `ok`, and what it returned is still shown
    assert_eq!((&t[3]["returned"], t[3]["stdout"].as_str()), (&json!(3), Some("dbg 9 3\n")), "{v:#}");
}

#[test]
fn function_harness_python_and_what_it_refuses() {
    require_privileged!();
    let d = Daemon::start(&[]);
    runtime().block_on(async {
        let unix = d.unix();
        let code = "def divide(a, b):\n    print('dbg', a, b)\n    return a // b\n";
        harness(&unix, "python", code, ("runtime_error", "ZeroDivisionError")).await;

        let identity = |lang: &str, tests: Value| {
            json!({"language": lang, "code": "def f(x):\n    return x\n", "function_name": "f", "tests": tests})
        };
        let one = json!([{"input": [1], "expected_output": 1}]);
        for (body, needle) in [
            (identity("ruby", one), r#"the function harness does not support language "ruby""#),
            (identity("python", json!([{"expected_output": 1}])), "tests[0]: input is missing"),
            (identity("python", json!([{"input": 1}])), "tests[0]: input must be a JSON array"),
            (identity("python", json!([{"input": [1], "stdin": "1"}])), "with function_name a test gives input"),
            (json!({"language": "python", "code": "print(1)", "function_name": "f"}), "function_name needs tests"),
            (judged("python", "print(1)", json!([{"input": [1]}])), "tests[0]: input is for function_name"),
        ] {
            expect_error(&post(&unix, None, &body).await, StatusCode::UNPROCESSABLE_ENTITY, needle);
        }
    });
}

#[test]
fn function_harness_javascript() {
    require_privileged!();
    let d = Daemon::start(&[]);
    let code = "\
function divide(a, b) {
  console.log('dbg', a, b);
  if (b === 0) throw new RangeError('division by zero');
  return Math.trunc(a / b);
}
";
    runtime().block_on(harness(&d.unix(), "javascript", code, ("runtime_error", "RangeError")));
}

#[test]
fn function_harness_java() {
    require_privileged!();
    let d = Daemon::start(&[]);
    let code = r#"class Solution {
    int divide(int a, int b) {
        System.out.println("dbg " + a + " " + b);
        return a / b;
    }
}
"#;
    runtime().block_on(harness(&d.unix(), "java", code, ("runtime_error", "java.lang.ArithmeticException")));
}

#[test]
fn function_harness_cpp() {
    require_privileged!();
    let d = Daemon::start(&[]);
    let code = r#"int divide(int a, int b) {
    cout << "dbg " << a << " " << b << endl;
    if (b == 0) throw std::domain_error("division by zero");
    return a / b;
}
"#;
    // an uncaught C++ exception aborts the program (SIGABRT): a runtime error, its type parsed
    runtime().block_on(harness(&d.unix(), "cpp", code, ("runtime_error", "std::domain_error")));
}

#[test]
fn function_harness_go() {
    require_privileged!();
    let d = Daemon::start(&[]);
    let code = "import \"fmt\"\n\nfunc divide(a, b int) int {\n\tfmt.Println(\"dbg\", a, b)\n\treturn a / b\n}\n";
    runtime().block_on(harness(&d.unix(), "go", code, ("runtime_error", "panic")));
}

/// The returned files by name (`v` is a response or a test).
fn files_by_name(v: &Value) -> BTreeMap<String, Value> {
    let files = v["files"].as_array().unwrap_or_else(|| panic!("no files: {v:#}"));
    files.iter().map(|f| (f["name"].as_str().unwrap().to_owned(), f.clone())).collect()
}

/// Writes a text file, a binary one in a directory, and symlinks to /etc/passwd and /etc
/// (which the sandbox has: it reads the first through its link).
const PY_WRITES_FILES: &str = "\
import os
open('out.txt', 'w').write('hello\\n')
os.makedirs('sub')
open('sub/data.bin', 'wb').write(bytes([0, 255, 1, 254]))
os.symlink('/etc/passwd', 'link')
os.symlink('/etc', 'etc')
print(open('link').read().startswith('root:x:0:0'))
";

#[test]
fn files_out_never_follow_symlinks() {
    require_privileged!();
    let d = Daemon::start(&[]);
    runtime().block_on(async {
        let unix = d.unix();
        let r = post(&unix, None, &json!({"language": "python", "code": PY_WRITES_FILES, "return_files": true})).await;
        let v = r.json();
        let ran = (r.status, v["status"].as_str(), v["stdout"].as_str());
        assert_eq!(ran, (StatusCode::OK, Some("ok"), Some("True\n")), "a passwd to follow: {v:#}");
        let files = files_by_name(&v);
        let names = ["etc", "link", "out.txt", "sub/data.bin"];
        assert_eq!(files.keys().collect::<Vec<_>>(), names, "not main.py, nothing below etc/: {v:#}");
        let f = &files["out.txt"];
        let got = (f["type"].as_str(), f["content"].as_str(), f["encoding"].as_str(), f["size"].as_u64());
        assert_eq!(got, (Some("file"), Some("hello\n"), Some("utf8"), Some(6)));
        let f = &files["sub/data.bin"];
        let got = (f["type"].as_str(), f["content"].as_str(), f["encoding"].as_str(), f["size"].as_u64());
        assert_eq!(got, (Some("file"), Some("AP8B/g=="), Some("base64"), Some(4)));
        for (name, target) in [("link", "/etc/passwd"), ("etc", "/etc")] {
            let f = &files[name];
            let got = (f["type"].as_str(), f["content"].as_str(), f["size"].as_u64());
            assert_eq!(got, (Some("symlink"), Some(target), Some(target.len() as u64)), "{f}");
        }
        assert_eq!(v["files_truncated"], false);
        let body = String::from_utf8_lossy(&r.body);
        let leaked = body.contains("root:x:0:0") || body.contains("cm9vdDp4OjA6MD");
        assert!(!leaked, "no passwd text, plain or base64: {body}");

        // patterns; `*` does not cross `/`
        let code = "import os\nos.makedirs('sub')\nfor f in ['out.txt', 'sub/in.txt', 'out.csv']:\n    open(f, 'w')\n";
        let v = execute(&unix, &json!({"language": "python", "code": code, "return_files": ["*.txt"]})).await;
        assert_eq!(files_by_name(&v).keys().collect::<Vec<_>>(), ["out.txt"], "{v:#}");
        let v = execute(&unix, &json!({"language": "python", "code": code, "return_files": ["sub/*", "*.csv"]})).await;
        assert_eq!(files_by_name(&v).keys().collect::<Vec<_>>(), ["out.csv", "sub/in.txt"], "{v:#}");

        // a given file that changes is returned; one left alone is not
        let given = json!([
            {"name": "main.py", "content": "open('log.txt', 'a').write('two\\n')\n"},
            {"name": "log.txt", "content": "one\n"},
            {"name": "keep.txt", "content": "same\n"}
        ]);
        let v = execute(&unix, &json!({"language": "python", "files": given, "return_files": true})).await;
        let got = files_by_name(&v);
        assert_eq!(got.keys().collect::<Vec<_>>(), ["log.txt"], "{v:#}");
        assert_eq!(got["log.txt"]["content"], "one\ntwo\n");
    });
}

#[test]
fn files_out_are_capped_and_each_test_has_its_own() {
    require_privileged!();
    let d = Daemon::start(&[]);
    runtime().block_on(async {
        let unix = d.unix();
        // at most 100 files
        let code = "for i in range(150):\n    open(f'f{i:03}.txt', 'w').write(str(i))\n";
        let v = execute(&unix, &json!({"language": "python", "code": code, "return_files": true})).await;
        let names = files_by_name(&v);
        assert_eq!((names.len(), v["files_truncated"].as_bool()), (100, Some(true)), "{v:#}");
        assert!(names.keys().all(|n| n.len() == 8 && n.starts_with('f') && n.ends_with(".txt")), "{names:?}");
        // at most 4 MiB of content: 4 of 5 files of 1 MiB
        let code = "for i in range(5):\n    open(f'big{i}.txt', 'w').write('a' * (1 << 20))\n";
        let v = execute(&unix, &json!({"language": "python", "code": code, "return_files": true})).await;
        let files = v["files"].as_array().unwrap();
        let bytes: u64 = files.iter().map(|f| f["size"].as_u64().unwrap()).sum();
        assert_eq!((files.len(), bytes, v["files_truncated"].as_bool()), (4, 4 << 20, Some(true)));

        // with tests, the caps are for all tests together, spent in the tests' order
        let code = "n = input()\nfor i in range(60):\n    open(f't{n}-{i:02}.txt', 'w').write('x')\n";
        let tests = json!([{"stdin": "0"}, {"stdin": "1"}, {"stdin": "2"}]);
        let mut body = judged("python", code, tests);
        body["return_files"] = json!(true);
        let v = judge(&unix, &body).await;
        assert_eq!(statuses(&v), ["ok"; 3]);
        let tests = v["tests"].as_array().unwrap();
        let kept: Vec<usize> = tests.iter().map(|t| files_by_name(t).len()).collect();
        assert_eq!(kept, [60, 40, 0], "100 of the 180 files, in test order: {v:#}");
        let cut: Vec<bool> = tests.iter().map(|t| t["files_truncated"] == true).collect();
        assert_eq!(cut, [false, true, true], "{v:#}");

        // with tests, each test has its own files
        let code = "n = input()\nopen(f'out{n}.txt', 'w').write(n * 2)\nprint(n)\n";
        let tests = json!([{"stdin": "1\n", "expected_output": "1"}, {"stdin": "2\n", "expected_output": "2"}]);
        let mut body = judged("python", code, tests);
        body["return_files"] = json!(true);
        let v = judge(&unix, &body).await;
        assert_eq!(statuses(&v), ["accepted", "accepted"]);
        assert!(v.get("files").is_none(), "the files are the tests': {v:#}");
        for (i, t) in v["tests"].as_array().unwrap().iter().enumerate() {
            let files = files_by_name(t);
            let name = format!("out{}.txt", i + 1);
            assert_eq!(files.keys().collect::<Vec<_>>(), [&name], "{v:#}");
            assert_eq!(files[&name]["content"], format!("{0}{0}", i + 1));
            assert_eq!(t["files_truncated"], false);
        }
    });
}

/// The sum, with a warning (an unused variable on line 3).
const CPP_SUM_WARNS: &str = r#"#include <iostream>
int main() {
  int unused;
  long a, b;
  std::cin >> a >> b;
  std::cout << a + b << "\n";
}
"#;

#[test]
fn the_compile_cache_hits_on_the_same_source() {
    require_privileged!();
    let d = Daemon::start(&[]);
    runtime().block_on(async {
        let unix = d.unix();
        let body = json!({"language": "cpp", "code": CPP_SUM_WARNS, "stdin": "40 2\n", "limits": generous()});
        let started = Instant::now();
        let miss = execute(&unix, &body).await;
        let miss_time = started.elapsed();
        let started = Instant::now();
        let hit = execute(&unix, &body).await;
        let hit_time = started.elapsed();
        eprintln!(
            "compile cache (C++, client-side time of POST /v1/execute): miss {:.1} ms, hit {:.1} ms, miss/hit {:.1}x",
            miss_time.as_secs_f64() * 1000.0,
            hit_time.as_secs_f64() * 1000.0,
            miss_time.as_secs_f64() / hit_time.as_secs_f64()
        );
        for (v, cache) in [(&miss, "miss"), (&hit, "hit")] {
            let got = (v["status"].as_str(), v["stdout"].as_str(), v["compile_cache"].as_str());
            assert_eq!(got, (Some("ok"), Some("42\n"), Some(cache)), "{v:#}");
            assert_eq!(v["compile"]["status"], "ok");
            let w = &v["diagnostics"][0];
            let got = (w["severity"].as_str(), w["line"].as_u64());
            assert_eq!(got, (Some("warning"), Some(3)), "the warning is kept: {v:#}");
        }
        assert!(miss["compile"]["time"]["wall_ms"].as_f64().unwrap() > 0.0, "{miss:#}");
        assert_eq!(hit["compile"]["time"]["wall_ms"].as_f64(), Some(0.0), "no compiler ran: {hit:#}");

        // another source is another entry
        let changed = CPP_SUM_WARNS.replace("a + b", "b + a");
        let v = execute(&unix, &json!({"language": "cpp", "code": changed, "stdin": "40 2\n"})).await;
        assert_eq!((v["compile_cache"].as_str(), v["stdout"].as_str()), (Some("miss"), Some("42\n")), "{v:#}");

        // a judge request compiles the same way: a hit, then every test runs what it made
        let v = judge(&unix, &judged("cpp", CPP_SUM_WARNS, sum_tests(None))).await;
        assert_eq!((v["status"].as_str(), v["compile_cache"].as_str()), (Some("accepted"), Some("hit")), "{v:#}");
        let v = judge(&unix, &judged("cpp", CPP_SUM, sum_tests(None))).await;
        assert_eq!((v["status"].as_str(), v["compile_cache"].as_str()), (Some("accepted"), Some("miss")), "{v:#}");
        // interpreted: nothing to cache
        let v = execute(&unix, &json!({"language": "python", "code": "print(1)"})).await;
        assert!(v["compile_cache"].is_null(), "{v:#}");

        let h = get(&unix, None, "/health").await.json();
        assert_eq!(h["compile_cache"]["entries"], 3, "{h}");
        assert!(h["compile_cache"]["bytes"].as_u64().unwrap() > 0, "{h}");
    });
}

#[test]
fn a_job_runs_in_the_background_and_bad_callbacks_are_refused() {
    require_privileged!();
    let d = Daemon::start(&[]);
    runtime().block_on(async {
        let unix = d.unix();
        let r = post_to(&unix, "/v1/jobs", &judged("python", PY_SUM, sum_tests(None))).await;
        let job = r.json();
        assert_eq!(r.status, StatusCode::ACCEPTED, "{job}");
        let id = job["id"].as_str().unwrap();
        assert_eq!(job["status_url"], format!("/v1/jobs/{id}"));
        assert_eq!(r.headers["location"].to_str().unwrap(), format!("/v1/jobs/{id}"));
        assert_eq!((job["status"].as_str(), job["result"].is_null()), (Some("queued"), true), "{job}");

        let done = wait_job(&unix, id, Duration::from_secs(120)).await;
        assert_eq!(done["status"], "done", "{done:#}");
        let result = &done["result"];
        let got = (result["status"].as_str(), result["summary"]["passed"].as_u64());
        assert_eq!(got, (Some("accepted"), Some(3)), "{done:#}");
        assert_eq!(result["tests"][1]["stdout"], "42\n");
        let at = |k: &str| done[k].as_u64().unwrap();
        assert!(at("created_at") <= at("started_at") && at("started_at") <= at("finished_at"), "{done}");

        let r = get(&unix, None, "/v1/jobs/0123456789abcdef0123456789abcdef").await;
        expect_error(&r, StatusCode::NOT_FOUND, "no job");
        assert_eq!(r.json()["error"]["code"], "not_found");
        expect_error(&delete(&unix, "/v1/jobs/nope").await, StatusCode::NOT_FOUND, "no job");

        // a callback must not reach the daemon's own network unless allowed
        for (url, needle) in [
            ("http://127.0.0.1:9/hook", "127.0.0.1 is loopback"),
            ("http://localhost/hook", "loopback"),
            ("http://169.254.169.254/latest/meta-data/", "169.254.169.254 is link-local"),
            ("http://[::ffff:169.254.169.254]/", "link-local"),
        ] {
            let body = json!({"language": "python", "code": "print(1)", "callback_url": url});
            expect_error(&post_to(&unix, "/v1/jobs", &body).await, StatusCode::UNPROCESSABLE_ENTITY, needle);
        }
        // a request that could not run is refused at submission too
        let mut body = judged("python", "print(1)", json!([{"stdin": ""}]));
        body["checker"] = json!("fuzzy");
        expect_error(&post_to(&unix, "/v1/jobs", &body).await, StatusCode::UNPROCESSABLE_ENTITY, r#"checker "fuzzy""#);
        assert_eq!(get(&unix, None, "/health").await.json()["jobs"]["pending"], 0, "none of those was queued");
    });
}

/// Polls the job until it is running and its program shows on the host.
async fn wait_running(unix: &Endpoint, path: &str, marker: &str) {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let job = get(unix, None, path).await.json();
        if job["status"] == "running" && !processes_with_arg(marker).is_empty() {
            return;
        }
        assert!(matches!(job["status"].as_str(), Some("queued" | "running")), "{job}");
        assert!(Instant::now() < deadline, "the job never ran: {job}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[test]
fn a_cancelled_job_has_its_sandbox_killed() {
    require_privileged!();
    let d = Daemon::start(&[]);
    let marker = format!("judge-cancel-{}", std::process::id());
    runtime().block_on(async {
        let unix = d.unix();
        // the marker is the program's argument, so it shows in its command line; limits far
        // beyond the test, so only the cancel can end it in time
        let limits = json!({"cpu_time_ms": 60_000, "wall_time_ms": 120_000});
        let body = json!({"language": "python", "code": "while True:\n    pass\n", "args": [marker], "limits": limits});
        let r = post_to(&unix, "/v1/jobs", &body).await;
        assert_eq!(r.status, StatusCode::ACCEPTED, "{}", r.json());
        let path = format!("/v1/jobs/{}", r.json()["id"].as_str().unwrap());
        wait_running(&unix, &path, &marker).await;

        let r = delete(&unix, &path).await;
        let job = r.json();
        assert_eq!((r.status, job["status"].as_str()), (StatusCode::OK, Some("cancelled")), "{job}");
        assert_eq!((job["error"]["code"].as_str(), job["result"].is_null()), (Some("cancelled"), true), "{job}");
        let cancelled = Instant::now();
        while !processes_with_arg(&marker).is_empty() {
            assert!(cancelled.elapsed() < Duration::from_secs(10), "the sandbox outlived its job by 10 s");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let job = get(&unix, None, &path).await.json();
        assert_eq!((job["status"].as_str(), job["result"].is_null()), (Some("cancelled"), true), "it stays so: {job}");
        expect_error(&delete(&unix, &path).await, StatusCode::CONFLICT, "has already ended");

        // the slot it held is free again
        let r = post_to(&unix, "/v1/jobs", &json!({"language": "python", "code": "print('after')"})).await;
        let after = wait_job(&unix, r.json()["id"].as_str().unwrap(), Duration::from_secs(120)).await;
        let got = (after["status"].as_str(), after["result"]["stdout"].as_str());
        assert_eq!(got, (Some("done"), Some("after\n")), "{after:#}");
    });
}
