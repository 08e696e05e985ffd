//! Contest judging through the real daemon with the real toolchains, on problems written
//! for these tests: a float checker in C++ with testlib, a Python checker giving partial
//! points in batches with dependencies, checkers that crash or hang (`judge_error`),
//! repeated runs, binary stdin and expected output. Root only (see `require_privileged!`).

// An integration test crate is all tests: the lints for tests inside `src/` do not fit it.
#![allow(clippy::tests_outside_test_module, clippy::unwrap_used)]

mod common;

use base64::Engine as _;
use codeexec::client::Endpoint;
use hyper::StatusCode;
use serde_json::{Value, json};

use common::daemon::{Daemon, post, runtime};

/// Limits where speed is not the point: a loaded two-core machine still fits in them.
fn generous() -> Value {
    json!({"cpu_time_ms": 20_000, "wall_time_ms": 60_000})
}

async fn judge(endpoint: &Endpoint, body: &Value) -> Value {
    let r = post(endpoint, None, body).await;
    let v = r.json();
    assert_eq!(r.status, StatusCode::OK, "{v}");
    assert!(v["tests"].is_array(), "not a judge response: {v:#}");
    v
}

fn statuses(v: &Value) -> Vec<&str> {
    v["tests"].as_array().unwrap().iter().map(|t| t["status"].as_str().unwrap()).collect()
}

/// The square root of n, to within 1e-6; testlib reads the numbers.
const SQRT_CHECKER: &str = r#"#include "testlib.h"
#include <cmath>
int main(int argc, char* argv[]) {
    registerTestlibCmd(argc, argv);
    int n = inf.readInt();
    double want = ans.readDouble();
    double got = ouf.readDouble();
    if (!doubleCompare(want, got, 1e-6)) quitf(_wa, "sqrt(%d): expected %.9f, found %.9f", n, want, got);
    if (!ouf.seekEof()) quitf(_pe, "more output after the answer");
    quitf(_ok, "sqrt(%d) = %.9f", n, got);
}
"#;

/// Tests of the square root problem: n and sqrt(n) to ten places.
fn sqrt_tests() -> Value {
    let tests = [2u32, 10, 12345]
        .map(|n| json!({"stdin": format!("{n}\n"), "expected_output": format!("{:.10}\n", f64::from(n).sqrt())}));
    Value::Array(tests.to_vec())
}

fn sqrt_request(code: &str) -> Value {
    json!({"language": "python", "code": code, "tests": sqrt_tests(), "limits": generous(),
           "checker": {"type": "program", "language": "cpp", "code": SQRT_CHECKER}})
}

#[test]
fn a_float_checker_in_cpp_with_testlib() {
    require_privileged!();
    let d = Daemon::start(&[]);
    runtime().block_on(async {
        let unix = d.unix();
        // seven places is within the tolerance, whatever the answer file's ten say
        let v = judge(&unix, &sqrt_request("import math\nprint(f'{math.sqrt(int(input())):.7f}')\n")).await;
        assert_eq!(statuses(&v), ["accepted"; 3], "{v:#}");
        assert_eq!(v["status"], "accepted");
        assert_eq!(v["checker"]["status"], "ok", "{v:#}");
        assert_eq!(v["checker"]["compile_cache"], "miss");
        assert_eq!(v["tests"][0]["checker"]["exit_code"], 0);
        assert!(v["tests"][1]["message"].as_str().unwrap().starts_with("ok sqrt(10) = 3.162277"), "{v:#}");
        // two places is not; the checker compiled once is taken from the cache
        let v = judge(&unix, &sqrt_request("import math\nprint(round(math.sqrt(int(input())), 2))\n")).await;
        assert_eq!(statuses(&v), ["wrong_answer"; 3], "{v:#}");
        assert_eq!(v["checker"]["compile_cache"], "hit");
        let m = v["tests"][0]["message"].as_str().unwrap();
        assert!(m.contains("sqrt(2): expected 1.414213562, found 1.410000000"), "{m}");
        // words where a number should be, and more output than the answer: presentation
        let v = judge(&unix, &sqrt_request("print('root', 1)\n")).await;
        assert_eq!(statuses(&v), ["presentation_error"; 3], "{v:#}");
        let v = judge(&unix, &sqrt_request("import math\nprint(math.sqrt(int(input())), 'more')\n")).await;
        assert_eq!(statuses(&v), ["presentation_error"; 3], "{v:#}");
        assert!(v["tests"][0]["message"].as_str().unwrap().contains("more output after the answer"));
        // a checker that does not compile is the problem's fault, before any test runs
        let mut broken = sqrt_request("print(1)\n");
        broken["checker"]["code"] = json!("#include \"testlib.h\"\nint main( {");
        let v = judge(&unix, &broken).await;
        assert_eq!(statuses(&v), ["judge_error"; 3], "{v:#}");
        assert_eq!(v["status"], "judge_error");
        assert_eq!(v["checker"]["status"], "syntax_error", "{v:#}");
        assert!(v["tests"][0]["message"].as_str().unwrap().starts_with("the checker did not compile"));
    });
}

/// Print 1..n. The checker gives the share of the leading numbers that are right.
const PARTIAL_CHECKER: &str = r#"import sys
_, out, ans = (open(p).read().split() for p in sys.argv[1:4])
right = 0
for want, got in zip(ans, out):
    if want != got:
        break
    right += 1
if right == len(ans) == len(out):
    sys.exit(0)
if right == 0:
    print("no number right")
    sys.exit(1)
print(right / len(ans), f"{right} of {len(ans)} right")
sys.exit(7)
"#;

/// Right up to 4, half right above.
const HALF_ABOVE_FOUR: &str = "n = int(input())\nprint(*range(1, (n if n <= 4 else n // 2) + 1))\n";

fn count_tests() -> Value {
    let tests = [2, 4, 10, 8, 20, 3].map(|n: u32| {
        let want: Vec<String> = (1..=n).map(|i| i.to_string()).collect();
        json!({"stdin": format!("{n}\n"), "expected_output": want.join(" ")})
    });
    Value::Array(tests.to_vec())
}

fn count_request(code: &str, checker: &str) -> Value {
    json!({"language": "python", "code": code, "tests": count_tests(), "limits": generous(),
    "checker": {"type": "program", "language": "python", "code": checker, "limits": {"cpu_time_ms": 2000}},
    "batches": [
        {"name": "small", "points": 40, "tests": [0, 1]},
        {"name": "large", "points": 60, "tests": [2, 3, 4], "depends_on": ["small"]},
        {"name": "all", "points": 10, "tests": [5], "depends_on": ["large"]}
    ]})
}

#[test]
fn a_python_checker_gives_partial_points_in_batches_with_dependencies() {
    require_privileged!();
    let d = Daemon::start(&[]);
    runtime().block_on(async {
        let unix = d.unix();
        let v = judge(&unix, &count_request(HALF_ABOVE_FOUR, PARTIAL_CHECKER)).await;
        assert_eq!(statuses(&v), ["accepted", "accepted", "partial", "partial", "partial", "skipped"], "{v:#}");
        assert_eq!(v["tests"][2]["points"], 0.5);
        assert_eq!(v["tests"][2]["message"], "0.5 5 of 10 right");
        assert!(v["tests"][5]["message"].as_str().unwrap().contains("depends on batch \"large\""), "{v:#}");
        let scores: Vec<f64> = v["batches"].as_array().unwrap().iter().map(|b| b["score"].as_f64().unwrap()).collect();
        assert_eq!(scores, [40.0, 30.0, 0.0], "{v:#}");
        assert_eq!((v["score"].as_f64(), v["max_score"].as_f64()), (Some(70.0), Some(110.0)));
        assert_eq!(v["status"], "partial");
        // the whole answer scores everything; a wrong first batch zeroes the rest
        let v = judge(&unix, &count_request("print(*range(1, int(input()) + 1))\n", PARTIAL_CHECKER)).await;
        assert_eq!((v["score"].as_f64(), v["status"].as_str()), (Some(110.0), Some("accepted")), "{v:#}");
        let v = judge(&unix, &count_request("print(0)\n", PARTIAL_CHECKER)).await;
        // the batch stops at its first failure (a test already started in parallel finishes)
        let got = statuses(&v);
        assert!(got[0] == "wrong_answer" && ["wrong_answer", "skipped"].contains(&got[1]), "{v:#}");
        assert_eq!(got[2..], ["skipped"; 4], "{v:#}");
        assert_eq!(v["score"].as_f64(), Some(0.0));
    });
}

#[test]
fn checkers_that_crash_or_hang_are_judge_errors() {
    require_privileged!();
    let d = Daemon::start(&[]);
    runtime().block_on(async {
        let unix = d.unix();
        // a traceback exits 1, which testlib's convention would read as a wrong answer
        let v = judge(&unix, &count_request(HALF_ABOVE_FOUR, "import sys\nprint(1 / (len(sys.argv) - 4))\n")).await;
        assert_eq!(statuses(&v)[..2], ["judge_error", "judge_error"], "{v:#}");
        let m = v["tests"][0]["message"].as_str().unwrap();
        assert!(m.starts_with("the checker crashed (ZeroDivisionError"), "{m}");
        assert_eq!(v["status"], "judge_error");
        let v = judge(&unix, &count_request(HALF_ABOVE_FOUR, "while True:\n    pass\n")).await;
        assert_eq!(statuses(&v)[0], "judge_error", "{v:#}");
        // the CPU limit, or the wall limit on a machine too busy to give it the CPU
        assert!(v["tests"][0]["message"].as_str().unwrap().contains(" time limit of "), "{v:#}");
        assert_eq!(v["tests"][0]["checker"]["status"], "time_limit");
        // a checker in C that dies of a signal, and one that says testlib's "fail"
        for (code, needle) in [
            ("int main(void) { volatile int *p = 0; return *p; }", "SIGSEGV"),
            ("#include <stdio.h>\nint main(void) { fputs(\"FAIL bad answer file\", stderr); return 3; }", "_fail"),
        ] {
            let body = json!({"language": "python", "code": "print(1)", "tests": [{"stdin": "", "expected_output": "1"}],
                              "limits": generous(), "checker": {"type": "program", "language": "c", "code": code}});
            let v = judge(&unix, &body).await;
            assert_eq!(statuses(&v), ["judge_error"], "{v:#}");
            assert!(v["tests"][0]["message"].as_str().unwrap().contains(needle), "{v:#}");
        }
    });
}

/// Each byte of stdin, inverted.
const INVERT: &str =
    "#include <stdio.h>\nint main(void) { int c; while ((c = getchar()) != EOF) putchar(c ^ 0xff); return 0; }\n";

#[test]
fn binary_tests_and_repeated_runs() {
    require_privileged!();
    let b64 = |b: &[u8]| base64::engine::general_purpose::STANDARD.encode(b);
    let d = Daemon::start(&[]);
    runtime().block_on(async {
        let unix = d.unix();
        let input = [0x00u8, 0xff, 0x80, 0x0a, 0x7f];
        let inverted: Vec<u8> = input.iter().map(|b| b ^ 0xff).collect();
        let body = json!({"language": "c", "code": INVERT, "checker": "exact", "limits": generous(), "number_of_runs": 3,
            "tests": [
                {"stdin": b64(&input), "stdin_encoding": "base64",
                 "expected_output": b64(&inverted), "expected_output_encoding": "base64"},
                {"stdin": b64(&input), "stdin_encoding": "base64",
                 "expected_output": b64(&input), "expected_output_encoding": "base64"}
            ]});
        let v = judge(&unix, &body).await;
        assert_eq!(statuses(&v), ["accepted", "wrong_answer"], "{v:#}");
        let t = &v["tests"][0];
        assert_eq!((t["stdout"].as_str().unwrap(), t["stdout_encoding"].as_str()), (b64(&inverted).as_str(), Some("base64")));
        // three runs, the one of median CPU time reported
        let runs: Vec<f64> = t["runs"].as_array().unwrap().iter().map(|r| r["cpu_ms"].as_f64().unwrap()).collect();
        assert_eq!(runs.len(), 3, "{t:#}");
        let mut sorted = runs.clone();
        sorted.sort_by(f64::total_cmp);
        assert_eq!(t["time"]["cpu_ms"].as_f64().unwrap(), sorted[1], "{t:#}");
        assert_eq!(v["tests"][1]["runs"].as_array().unwrap().len(), 1, "a failed run ends the test");
        assert!(v["tests"][1]["message"].as_str().unwrap().starts_with("run 1 of 3: "), "{v:#}");
    });
}

/// Spins for 0.6 s of CPU time, then prints 1.
const SPIN: &str = "import time\nt = time.process_time()\nwhile time.process_time() - t < 0.6:\n    pass\nprint(1)\n";

#[test]
fn extra_time_shows_the_true_time_of_a_slow_program_and_wall_time_can_count() {
    require_privileged!();
    let d = Daemon::start(&[]);
    runtime().block_on(async {
        let unix = d.unix();
        // spins for about 0.6 s of CPU: over a 300 ms limit, within 300 + 2000 ms extra
        let body = json!({"language": "python", "code": SPIN, "cpu_extra_time_ms": 2000,
                          "limits": {"cpu_time_ms": 300, "wall_time_ms": 60_000},
                          "tests": [{"expected_output": "1"}]});
        let v = judge(&unix, &body).await;
        let t = &v["tests"][0];
        assert_eq!((t["status"].as_str(), t["exceeded"].as_str()), (Some("time_limit"), Some("cpu_time")), "{t:#}");
        assert_eq!(t["message"], "cpu time limit of 300 ms exceeded");
        assert!(t["time"]["cpu_ms"].as_f64().unwrap() >= 600.0, "the program ran to its end: {t:#}");
        assert_eq!(t["stdout"], "1\n");
        // with wall time counting, a program over its CPU limit but within its wall limit
        // passes
        let mut body = json!({"language": "python", "code": SPIN, "time_limit_by": "wall",
                              "limits": {"cpu_time_ms": 300, "wall_time_ms": 60_000},
                              "tests": [{"expected_output": "1"}]});
        let v = judge(&unix, &body).await;
        assert_eq!(statuses(&v), ["accepted"], "{v:#}");
        body["time_limit_by"] = json!("cpu");
        let v = judge(&unix, &body).await;
        assert_eq!(v["tests"][0]["exceeded"], "cpu_time", "{v:#}");
    });
}

/// The Kattis package written for these tests.
const HYPOTENUSE: &str = "tests/fixtures/kattis/hypotenuse";

#[test]
fn a_kattis_package_is_judged_from_the_command_line() {
    require_privileged!();
    let sub = |s: &str| format!("{HYPOTENUSE}/submissions/{s}");
    let out = common::codeexec(&["judge", HYPOTENUSE, &sub("accepted/hyp.py")], b"");
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "{text}{}", String::from_utf8_lossy(&out.stderr));
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), 5, "{text}");
    assert!(lines[0].starts_with("sample/1   accepted"), "{text}");
    assert_eq!(lines[4], "accepted: 4 of 4 tests passed");
    // the C++ solution rounds: right on the sample, wrong (says the package's validator) on 1 1
    let out = common::codeexec(&["judge", HYPOTENUSE, &sub("wrong_answer/hyp.cpp"), "--json"], b"");
    assert_eq!(out.status.code(), Some(1), "{}", String::from_utf8_lossy(&out.stderr));
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!((v["problem"].as_str(), v["status"].as_str()), (Some("Hypotenuse"), Some("wrong_answer")), "{v:#}");
    let statuses: Vec<&str> = v["tests"].as_array().unwrap().iter().map(|t| t["status"].as_str().unwrap()).collect();
    assert_eq!(statuses, ["accepted", "wrong_answer", "accepted", "wrong_answer"], "{v:#}");
    assert_eq!(v["tests"][1]["message"], "expected 1.4142135623730951, got 1.0");
    // an input the package's input validator rejects is the problem's fault (exit 3)
    let broken = tempfile::tempdir().unwrap();
    copy_dir(std::path::Path::new(HYPOTENUSE), broken.path());
    std::fs::write(broken.path().join("data/secret/02.in"), "5 12000\n").unwrap();
    let dir = broken.path().to_str().unwrap();
    let out = common::codeexec(&["judge", dir, &sub("accepted/hyp.py")], b"");
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(3), "{text}");
    assert!(text.contains("secret/02  judge_error"), "{text}");
    assert!(text.contains("the input validator rejected the test's input"), "{text}");
}

fn copy_dir(from: &std::path::Path, to: &std::path::Path) {
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let target = to.join(entry.file_name());
        if entry.file_type().unwrap().is_dir() {
            std::fs::create_dir_all(&target).unwrap();
            copy_dir(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), &target).unwrap();
        }
    }
}

#[test]
fn a_kattis_package_is_judged_through_the_api_by_upload() {
    require_privileged!();
    let mut tar = tar::Builder::new(flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast()));
    tar.append_dir_all("hypotenuse", HYPOTENUSE).unwrap();
    let archive = tar.into_inner().unwrap().finish().unwrap();
    let package = base64::engine::general_purpose::STANDARD.encode(archive);
    let source = |s: &str| std::fs::read_to_string(format!("{HYPOTENUSE}/submissions/{s}")).unwrap();
    let d = Daemon::start(&[]);
    runtime().block_on(async {
        let unix = d.unix();
        let body = json!({"language": "python", "code": source("accepted/hyp.py"), "package": package});
        let v = judge(&unix, &body).await;
        assert_eq!(v["status"], "accepted", "{v:#}");
        let names: Vec<&str> = v["tests"].as_array().unwrap().iter().map(|t| t["name"].as_str().unwrap()).collect();
        assert_eq!(names, ["sample/1", "secret/01", "secret/02", "secret/03"]);
        let body = json!({"language": "cpp", "code": source("wrong_answer/hyp.cpp"), "package": package});
        let v = judge(&unix, &body).await;
        assert_eq!(statuses(&v), ["accepted", "wrong_answer", "accepted", "wrong_answer"], "{v:#}");
        assert_eq!(v["tests"][1]["message"], "expected 1.4142135623730951, got 1.0");
        assert_eq!(v["checker"]["status"], "ok", "the package's validator: {v:#}");
    });
}
