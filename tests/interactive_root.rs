//! Interactive judging through the real daemon with the real toolchains, on a guessing
//! game written for these tests: a number from 1 to n in at most 20 questions, the
//! interactor in C++ with testlib and in Python, right and wrong programs, programs that
//! never answer, read ahead or look for the secret, interactors that crash or never finish
//! (`judge_error`), the transcript and its bound, and a Kattis package in interactive
//! mode judged from the command line. Root only (see `require_privileged!`).

// An integration test crate is all tests: the lints for tests inside `src/` do not fit it.
#![allow(clippy::tests_outside_test_module, clippy::unwrap_used)]

mod common;

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

/// The game in testlib: the input is "n secret"; it says n, answers "? x" with <, > or =
/// and judges "! x"; more than 20 questions is a wrong answer.
const TESTLIB_INTERACTOR: &str = r#"#include "testlib.h"
#include <iostream>
using namespace std;
int main(int argc, char* argv[]) {
    registerInteraction(argc, argv);
    int n = inf.readInt(), secret = inf.readInt();
    cout << n << endl;
    for (int asked = 1;; asked++) {
        string op = ouf.readToken("[?!]", "op");
        int x = ouf.readInt(1, n, "x");
        if (op == "!") {
            if (x != secret) quitf(_wa, "answered %d, the number was %d", x, secret);
            tout << asked << endl;
            quitf(_ok, "found %d after %d questions", secret, asked - 1);
        }
        if (asked > 20) quitf(_wa, "more than 20 questions");
        cout << (secret < x ? "<" : secret > x ? ">" : "=") << endl;
    }
}
"#;

/// The same game in Python, testlib's exit codes: 0 accepted, 1 wrong, 2 presentation.
const PYTHON_INTERACTOR: &str = r#"import sys
n, secret = map(int, open(sys.argv[1]).read().split())
def verdict(code, message):
    print(message, file=sys.stderr)
    sys.exit(code)
print(n, flush=True)
for asked in range(1, 100):
    line = sys.stdin.readline()
    if not line:
        verdict(2, "the program ended before its answer")
    words = line.split()
    if len(words) != 2 or words[0] not in ("?", "!") or not words[1].isdigit():
        verdict(2, f"not a question or an answer: {line.strip()[:40]!r}")
    x = int(words[1])
    if words[0] == "!":
        if x != secret:
            verdict(1, f"answered {x}, the number was {secret}")
        verdict(0, f"found {secret} after {asked - 1} questions")
    if asked > 20:
        verdict(1, "more than 20 questions")
    print("<" if secret < x else ">" if secret > x else "=", flush=True)
"#;

/// A binary search: right in at most 20 questions.
const BINARY: &str = r#"n = int(input())
lo, hi = 1, n
while lo < hi:
    mid = (lo + hi) // 2
    print("?", mid, flush=True)
    said = input()
    if said == "=":
        lo = hi = mid
    elif said == "<":
        hi = mid - 1
    else:
        lo = mid + 1
print("!", lo, flush=True)
"#;

/// Answers 1 without asking: right only when the secret is 1.
const GUESS_ONE: &str = "input()\nprint('! 1', flush=True)\n";

/// Asks from 1 upwards: too many questions for a large secret.
const LINEAR: &str = "n = int(input())\nx = 1\nwhile True:\n    print('?', x, flush=True)\n    if input() == '=':\n        break\n    x += 1\nprint('!', x, flush=True)\n";

fn game_tests() -> Value {
    json!([{"stdin": "1000000 777777\n"}, {"stdin": "10 1\n"}, {"stdin": "1 1\n"}])
}

fn game(code: &str, interactor: Value) -> Value {
    json!({"language": "python", "code": code, "tests": game_tests(), "limits": generous(), "interactor": interactor})
}

fn testlib() -> Value {
    json!({"language": "cpp", "code": TESTLIB_INTERACTOR, "transcript_bytes": 4096})
}

fn python(code: &str) -> Value {
    json!({"language": "python", "code": code})
}

/// The messages of a test's transcript as (from, data).
fn transcript(t: &Value) -> Vec<(String, String)> {
    let messages = t["transcript"]["messages"].as_array().unwrap_or_else(|| panic!("no transcript: {t:#}"));
    messages.iter().map(|m| (m["from"].as_str().unwrap().to_owned(), m["data"].as_str().unwrap().to_owned())).collect()
}

#[test]
fn a_guessing_game_with_a_testlib_interactor_in_cpp() {
    require_privileged!();
    let d = Daemon::start(&[]);
    runtime().block_on(async {
        let unix = d.unix();
        let v = judge(&unix, &game(BINARY, testlib())).await;
        assert_eq!(statuses(&v), ["accepted"; 3], "{v:#}");
        assert_eq!(v["status"], "accepted");
        assert_eq!(v["interactor"]["status"], "ok", "{v:#}");
        assert!(v.get("checker").is_none(), "{v:#}");
        assert_eq!(v["tests"][0]["interactor"]["exit_code"], 0, "{v:#}");
        assert!(v["tests"][1]["message"].as_str().unwrap().starts_with("ok found 1 after "), "{v:#}");
        // the whole conversation of "10 1": 10; ? 5 <; ? 2 <; ! 1
        let want = [("interactor", "10\n"), ("program", "? 5\n"), ("interactor", "<\n"), ("program", "? 2\n")];
        let want: Vec<(String, String)> = want.iter().map(|(a, b)| ((*a).to_owned(), (*b).to_owned())).collect();
        let got = transcript(&v["tests"][1]);
        assert_eq!(got[..4], want[..], "{v:#}");
        assert_eq!(got.last().unwrap().1, "! 1\n");
        assert_eq!(v["tests"][1]["transcript"]["truncated"], false);
        // the program's stdout went to the interactor, not to the response
        assert_eq!(v["tests"][1]["stdout"], "");
        // a wrong answer, says the interactor; it was compiled once
        let v = judge(&unix, &game(GUESS_ONE, testlib())).await;
        assert_eq!(statuses(&v), ["wrong_answer", "accepted", "accepted"], "{v:#}");
        assert_eq!(v["interactor"]["compile_cache"], "hit");
        let m = v["tests"][0]["message"].as_str().unwrap();
        assert!(m.contains("answered 1, the number was 777777"), "{m}");
        // the transcript is cut at its bound
        let mut short = game(BINARY, testlib());
        short["interactor"]["transcript_bytes"] = json!(8);
        let v = judge(&unix, &short).await;
        assert_eq!(statuses(&v), ["accepted"; 3], "{v:#}");
        let t = &v["tests"][0]["transcript"];
        assert_eq!(t["truncated"], true, "{v:#}");
        assert_eq!(transcript(&v["tests"][0]), [("interactor".to_owned(), "1000000\n".to_owned())]);
        let bytes: usize = transcript(&v["tests"][0]).iter().map(|(_, m)| m.len()).sum();
        assert!(bytes <= 8);
        // none asked for: none shown
        let v = judge(&unix, &game(BINARY, json!({"language": "cpp", "code": TESTLIB_INTERACTOR}))).await;
        assert!(v["tests"][0].get("transcript").is_none(), "{v:#}");
    });
}

#[test]
fn a_guessing_game_with_a_python_interactor() {
    require_privileged!();
    let d = Daemon::start(&[]);
    runtime().block_on(async {
        let unix = d.unix();
        let v = judge(&unix, &game(BINARY, python(PYTHON_INTERACTOR))).await;
        assert_eq!(statuses(&v), ["accepted"; 3], "{v:#}");
        assert_eq!(v["tests"][2]["message"], "found 1 after 0 questions");
        let v = judge(&unix, &game(LINEAR, python(PYTHON_INTERACTOR))).await;
        assert_eq!(statuses(&v), ["wrong_answer", "accepted", "accepted"], "{v:#}");
        assert_eq!(v["tests"][0]["message"], "more than 20 questions");
        // garbage and an early end are the interactor's call
        let v = judge(&unix, &game("input()\nprint('hello there', flush=True)\n", python(PYTHON_INTERACTOR))).await;
        assert_eq!(statuses(&v), ["presentation_error"; 3], "{v:#}");
        assert!(v["tests"][0]["message"].as_str().unwrap().starts_with("not a question or an answer"), "{v:#}");
        let v = judge(&unix, &game("pass\n", python(PYTHON_INTERACTOR))).await;
        assert_eq!(statuses(&v), ["presentation_error"; 3], "{v:#}");
        assert_eq!(v["tests"][0]["message"], "the program ended before its answer");
        // a program that crashes before the interactor has its say is a runtime error
        let v = judge(&unix, &game("input()\nraise SystemExit(4)\n", python(PYTHON_INTERACTOR))).await;
        assert_eq!(statuses(&v), ["runtime_error"; 3], "{v:#}");
    });
}

#[test]
fn a_program_that_never_answers_or_reads_ahead_is_a_wall_time_limit() {
    require_privileged!();
    let d = Daemon::start(&[]);
    runtime().block_on(async {
        let unix = d.unix();
        let tight = json!({"cpu_time_ms": 2000, "wall_time_ms": 3000});
        // waits for a second line that never comes: both wait, the program is killed
        for code in ["input()\ninput()\n", "import sys\nsys.stdin.read()\n"] {
            let mut body = game(code, python(PYTHON_INTERACTOR));
            body["limits"] = tight.clone();
            body["tests"] = json!([{"stdin": "10 3\n"}]);
            let started = std::time::Instant::now();
            let v = judge(&unix, &body).await;
            assert_eq!(statuses(&v), ["time_limit"], "{v:#}");
            assert_eq!(v["tests"][0]["exceeded"], "wall_time", "{v:#}");
            // the interactor read EOF and said so; the program's limit decided
            assert_eq!(v["tests"][0]["interactor"]["exit_code"], 2, "{v:#}");
            assert!(started.elapsed() < std::time::Duration::from_secs(50), "no hang");
        }
    });
}

/// Looks for the secret where a careless judge would leave it; without it, answers 1.
const CHEAT: &str = r#"import os, stat, sys
n = int(input())
found = None
for root, dirs, files in os.walk("/"):
    if root == "/":
        dirs[:] = [d for d in dirs if d not in ("proc", "sys", "dev")]
    for f in files:
        path = os.path.join(root, f)
        try:
            st = os.lstat(path)
            if not stat.S_ISREG(st.st_mode) or st.st_size > 64:
                continue
            words = open(path).read(64).split()
        except Exception:
            continue
        if len(words) == 2 and words[0] == str(n) and words[1].isdigit():
            found = words[1]
print("searched; found", found, file=sys.stderr)
print("!", found or 1, flush=True)
"#;

#[test]
fn a_program_cannot_find_the_interactor_s_input() {
    require_privileged!();
    let d = Daemon::start(&[]);
    runtime().block_on(async {
        let unix = d.unix();
        let mut body = game(CHEAT, python(PYTHON_INTERACTOR));
        body["tests"] = json!([{"stdin": "987654 123457\n"}]);
        let v = judge(&unix, &body).await;
        assert_eq!(statuses(&v), ["wrong_answer"], "{v:#}");
        assert_eq!(v["tests"][0]["stderr"], "searched; found None\n", "{v:#}");
        assert_eq!(v["tests"][0]["message"], "answered 1, the number was 123457");
    });
}

#[test]
fn an_interactor_that_crashes_or_never_finishes_is_a_judge_error() {
    require_privileged!();
    let d = Daemon::start(&[]);
    runtime().block_on(async {
        let unix = d.unix();
        // it dies before a word: the program waits, but the interactor ended first
        let mut body = game(BINARY, python("import sys\nprint(1 / (len(sys.argv) - 4))\n"));
        body["limits"] = json!({"cpu_time_ms": 2000, "wall_time_ms": 10_000});
        let v = judge(&unix, &body).await;
        assert_eq!(statuses(&v), ["judge_error"; 3], "{v:#}");
        let m = v["tests"][0]["message"].as_str().unwrap();
        assert!(m.starts_with("the interactor crashed (ZeroDivisionError"), "{m}");
        assert_eq!(v["status"], "judge_error");
        // a testlib interactor in C++ that fails
        let fail = "#include \"testlib.h\"\nint main(int argc, char* argv[]) {\n    registerInteraction(argc, argv);\n    quitf(_fail, \"the input is broken\");\n}\n";
        let mut body = game(BINARY, json!({"language": "cpp", "code": fail}));
        body["limits"] = json!({"cpu_time_ms": 2000, "wall_time_ms": 10_000});
        let v = judge(&unix, &body).await;
        assert_eq!(statuses(&v), ["judge_error"; 3], "{v:#}");
        assert!(v["tests"][0]["message"].as_str().unwrap().contains("the input is broken"), "{v:#}");
        // it takes the answer and never finishes: spinning (its CPU limit), then sleeping
        // (its wall limit: the program's and two seconds)
        for (tail, needle) in [("while True:\n    pass\n", " time limit of "), ("import time\ntime.sleep(600)\n", "wall time limit of ")] {
            let code = format!("print(10, flush=True)\ninput()\n{tail}");
            let mut interactor = python(&code);
            interactor["limits"] = json!({"cpu_time_ms": 1000, "wall_time_ms": 1000});
            let mut body = game("input()\nprint('! 3', flush=True)\n", interactor);
            body["limits"] = json!({"cpu_time_ms": 2000, "wall_time_ms": 3000});
            body["tests"] = json!([{"stdin": "10 3\n"}]);
            let v = judge(&unix, &body).await;
            assert_eq!(statuses(&v), ["judge_error"], "{v:#}");
            let m = v["tests"][0]["message"].as_str().unwrap();
            assert!(m.starts_with("the interactor failed") && m.contains(needle), "{m}");
            assert_eq!(v["tests"][0]["exit_code"], 0, "the program itself ended well: {v:#}");
        }
    });
}

/// The Kattis package written for these tests (the validator is the interactor).
const GUESS: &str = "tests/fixtures/kattis/guess";

#[test]
fn a_kattis_interactive_package_is_judged_from_the_command_line() {
    require_privileged!();
    let sub = |s: &str| format!("{GUESS}/submissions/{s}");
    let out = common::codeexec(&["judge", GUESS, &sub("accepted/guess.py")], b"");
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "{text}{}", String::from_utf8_lossy(&out.stderr));
    assert!(text.lines().last().unwrap() == "accepted: 4 of 4 tests passed", "{text}");
    let out = common::codeexec(&["judge", GUESS, &sub("wrong_answer/guess.py"), "--json"], b"");
    assert_eq!(out.status.code(), Some(1), "{}", String::from_utf8_lossy(&out.stderr));
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!((v["problem"].as_str(), v["status"].as_str()), (Some("Guess"), Some("wrong_answer")), "{v:#}");
    let statuses: Vec<&str> = v["tests"].as_array().unwrap().iter().map(|t| t["status"].as_str().unwrap()).collect();
    assert_eq!(statuses, ["wrong_answer", "accepted", "wrong_answer", "accepted"], "{v:#}");
    assert_eq!(v["tests"][0]["message"], "more than 20 questions", "the validator's judgemessage.txt: {v:#}");
}
