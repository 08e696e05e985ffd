//! The judge's logic with a fake executor that answers by command and stdin; real
//! toolchains are in `tests/judge_root.rs`.

use std::sync::Mutex;
use std::time::Duration;

use serde_json::json;

use super::*;
use crate::run::{FileContent, OutputFile, RunRequest};

/// A fake toolchain: compiles anything but `bad`, and "runs" by answering stdin with
/// `answer(stdin)`.
struct Fake {
    answer: fn(&str) -> RunOutcome,
    seen: Mutex<Vec<RunRequest>>,
}

fn ended(status: Status, stdout: &str) -> RunOutcome {
    RunOutcome {
        status,
        exceeded: None,
        exit_code: (status == Status::Ok).then_some(0),
        signal: None,
        message: (status != Status::Ok).then(|| format!("{} happened", status.as_str())),
        stdout: stdout.as_bytes().to_vec(),
        stderr: Vec::new(),
        stdout_truncated: false,
        stderr_truncated: false,
        cpu_time: Duration::from_millis(3),
        wall_time: Duration::from_millis(4),
        memory_peak_bytes: 1 << 20,
        files: Vec::new(),
        files_truncated: false,
    }
}

impl Executor for Fake {
    fn execute(&self, req: &RunRequest) -> Result<RunOutcome, RunError> {
        self.seen.lock().unwrap().push(req.clone());
        let code = req.files.iter().find(|f| f.path == "main.c").map(|f| f.contents.clone()).unwrap_or_default();
        Ok(match req.argv[0].as_str() {
            "gcc" if code == b"bad" => {
                let mut o = ended(Status::RuntimeError, "");
                o.stderr = b"main.c:1:1: error: unknown type name 'bad'\n".to_vec();
                o
            }
            "gcc" => {
                let mut o = ended(Status::Ok, "");
                o.files = vec![OutputFile {
                    path: "main".into(),
                    content: FileContent::File { bytes: b"binary".to_vec(), executable: true },
                }];
                o
            }
            "python3" if req.argv[1] == "-m" => ended(Status::Ok, ""),
            _ => (self.answer)(&String::from_utf8_lossy(&req.stdin)),
        })
    }
}

fn fake(answer: fn(&str) -> RunOutcome) -> Fake {
    Fake { answer, seen: Mutex::new(Vec::new()) }
}

fn lang(id: &str) -> Language {
    crate::lang::builtin(id).unwrap()
}

/// Adds the two numbers of its stdin, except for the inputs that show each way to fail.
fn adder(stdin: &str) -> RunOutcome {
    match stdin {
        "loop" => ended(Status::TimeLimit, ""),
        "big" => ended(Status::MemoryLimit, ""),
        "crash" => ended(Status::RuntimeError, ""),
        "wrong" => ended(Status::Ok, "41\n"),
        s => {
            let sum: i64 = s.split_whitespace().map(|n| n.parse::<i64>().unwrap()).sum();
            ended(Status::Ok, &format!("{sum}\n"))
        }
    }
}

fn test(stdin: &str, expected: &str) -> Test {
    Test {
        stdin: stdin.as_bytes().to_vec(),
        args: Vec::new(),
        limits: Limits::default(),
        expected: Expected::Output(expected.as_bytes().to_vec()),
        name: None,
    }
}

fn request(code: &str, tests: Vec<Test>) -> Request {
    Request {
        source: Source::Code(code.into()),
        tests,
        checker: Checker::Trim,
        stop_on_failure: false,
        function: None,
        cancel: None,
        cache: None,
        keep: Keep::default(),
        access: Default::default(),
        rules: Rules::default(),
    }
}

fn verdicts(j: &Judged) -> Vec<&'static str> {
    j.tests.iter().map(|t| t.verdict.as_str()).collect()
}

#[test]
fn it_compiles_once_and_gives_each_test_its_verdict_in_order() {
    for workers in [1, 3] {
        let f = fake(adder);
        let tests = vec![
            test("1 2", "3"),
            test("wrong", "42\n"),
            test("loop", "0"),
            test("big", "0"),
            test("crash", "0"),
            test("20 22", "42\n"),
        ];
        let j = judge(&f, &lang("c"), request("int main(){}", tests), &mut |_| workers).unwrap();
        assert_eq!(
            verdicts(&j),
            ["accepted", "wrong_answer", "time_limit", "memory_limit", "runtime_error", "accepted"],
            "{workers} workers"
        );
        assert_eq!(j.status(), "wrong_answer");
        assert_eq!(j.passed(), 2);
        let seen = f.seen.lock().unwrap();
        assert_eq!(seen.iter().filter(|r| r.argv[0] == "gcc").count(), 1, "compiled once");
        let runs: Vec<&RunRequest> = seen.iter().filter(|r| r.argv[0] == "./main").collect();
        assert_eq!(runs.len(), 6, "each test its own sandbox");
        assert!(runs.iter().all(|r| r.files.iter().any(|f| f.path == "main" && f.executable)));
        assert_eq!(j.tests[1].message.as_deref(), Some("line 1 differs: expected \"42\", got \"41\""));
        assert_eq!(j.tests[2].message.as_deref(), Some("time_limit happened"));
        assert_eq!(j.tests[0].run.as_ref().unwrap().stdout, b"3\n");
    }
}

#[test]
fn all_passing_is_accepted() {
    let f = fake(adder);
    let j = judge(&f, &lang("c"), request("x", vec![test("1 1", "2"), test("2 2", "4")]), &mut |_| 2).unwrap();
    assert_eq!(j.status(), "accepted");
    assert_eq!(j.passed(), 2);
}

#[test]
fn a_compile_error_marks_every_test_and_is_said_once() {
    let f = fake(adder);
    let j = judge(&f, &lang("c"), request("bad", vec![test("1 1", "2"), test("2 2", "4")]), &mut |_| 2).unwrap();
    assert_eq!(verdicts(&j), ["compile_error", "compile_error"]);
    assert_eq!(j.status(), "compile_error");
    assert_eq!(j.outcome.diagnostics.len(), 1);
    assert!(j.tests.iter().all(|t| t.run.is_none()));
    assert_eq!(f.seen.lock().unwrap().len(), 1, "nothing ran after the compiler");
}

#[test]
fn it_can_stop_at_the_first_failure() {
    let f = fake(adder);
    let mut r = request("x", vec![test("1 1", "2"), test("crash", "0"), test("2 2", "4"), test("3 3", "6")]);
    r.stop_on_failure = true;
    let j = judge(&f, &lang("c"), r, &mut |_| 1).unwrap();
    assert_eq!(verdicts(&j), ["accepted", "runtime_error", "skipped", "skipped"]);
    assert_eq!(j.status(), "runtime_error");
    assert_eq!(f.seen.lock().unwrap().len(), 3, "compile and two runs");
}

#[test]
fn each_test_has_its_own_stdin_args_and_limits() {
    let f = fake(adder);
    let mut t = test("5 5", "10");
    t.args = vec!["--fast".into()];
    t.limits.memory_bytes = 64 << 20;
    let j = judge(&f, &lang("c"), request("x", vec![t, test("1 1", "2")]), &mut |_| 1).unwrap();
    assert_eq!(j.status(), "accepted");
    let seen = f.seen.lock().unwrap();
    assert_eq!(seen[1].argv, ["./main", "--fast"]);
    assert_eq!(seen[1].limits.memory_bytes, 64 << 20);
    assert_eq!(seen[2].argv, ["./main"]);
    assert!(seen[1].limits.disk_bytes >= 8 << 20, "room for the compiled files");
}

#[test]
fn a_program_that_never_parsed_is_a_syntax_error_for_every_test() {
    // python checks syntax after a failed run; here the check refuses the program too
    struct Unparsable;
    impl Executor for Unparsable {
        fn execute(&self, _: &RunRequest) -> Result<RunOutcome, RunError> {
            let mut o = ended(Status::RuntimeError, "");
            o.stderr =
                b"  File \"/sandbox/main.py\", line 1\n    print(\n         ^\nSyntaxError: '(' was never closed\n"
                    .to_vec();
            Ok(o)
        }
    }
    let j =
        judge(&Unparsable, &lang("python"), request("print(", vec![test("", "1"), test("", "2")]), &mut |_| 2).unwrap();
    assert_eq!(verdicts(&j), ["syntax_error", "syntax_error"]);
    assert_eq!(j.status(), "syntax_error");
    assert_eq!(j.outcome.diagnostics[0].line, Some(1));
}

#[test]
fn tests_without_expected_output_only_need_to_end_well() {
    let f = fake(adder);
    let mut t = test("1 1", "");
    t.expected = Expected::Nothing;
    let mut crash = test("crash", "");
    crash.expected = Expected::Nothing;
    let j = judge(&f, &lang("c"), request("x", vec![t, crash]), &mut |_| 1).unwrap();
    assert_eq!(verdicts(&j), ["ok", "runtime_error"]);
}

/// A harness's output: the user's prints, then the marker line with the result.
fn split(stdout: &[u8]) -> (Vec<u8>, Option<Result<Value, String>>) {
    let text = String::from_utf8_lossy(stdout);
    match text.rsplit_once("RESULT ") {
        Some((own, v)) => (own.as_bytes().to_vec(), Some(serde_json::from_str(v.trim()).map_err(|e| e.to_string()))),
        None => (stdout.to_vec(), None),
    }
}

#[test]
fn the_function_harness_compares_values() {
    fn returns(stdin: &str) -> RunOutcome {
        match stdin {
            "[1,2]" => ended(Status::Ok, "debug\nRESULT 3\n"),
            "[2,2]" => ended(Status::Ok, "RESULT 5"),
            "[0.1,0.2]" => ended(Status::Ok, "RESULT 0.30000000000000004"),
            "[\"exit\"]" => ended(Status::Ok, "bye\n"),
            _ => ended(Status::Ok, "RESULT {nope"),
        }
    }
    let f = fake(returns);
    let value = |stdin: &str, v: Value| Test {
        stdin: stdin.as_bytes().to_vec(),
        args: Vec::new(),
        limits: Limits::default(),
        expected: Expected::Value(v),
        name: None,
    };
    let mut r = request(
        "x",
        vec![
            value("[1,2]", json!(3)),
            value("[2,2]", json!(4)),
            value("[0.1,0.2]", json!(0.3)),
            value("[\"exit\"]", json!(1)),
            value("[]", json!(1)),
        ],
    );
    r.function = Some(split);
    r.checker = Checker::Float { absolute: 1e-9, relative: 0.0 };
    let j = judge(&f, &lang("c"), r, &mut |_| 2).unwrap();
    assert_eq!(verdicts(&j), ["accepted", "wrong_answer", "accepted", "runtime_error", "wrong_answer"]);
    assert_eq!(j.tests[0].run.as_ref().unwrap().stdout, b"debug\n", "the user's own output, without the result");
    assert_eq!(j.tests[0].returned, Some(json!(3)));
    assert_eq!(j.tests[1].message.as_deref(), Some("expected 4, got 5"));
    assert!(j.tests[3].message.as_deref().unwrap().contains("before the function returned"));
}

#[test]
fn a_refused_request_is_an_error_not_a_verdict() {
    struct Refuses;
    impl Executor for Refuses {
        fn execute(&self, req: &RunRequest) -> Result<RunOutcome, RunError> {
            if req.argv[0] == "gcc" {
                let mut o = ended(Status::Ok, "");
                o.files = vec![OutputFile {
                    path: "main".into(),
                    content: FileContent::File { bytes: vec![], executable: true },
                }];
                return Ok(o);
            }
            Err(RunError::Busy(1))
        }
    }
    let r = judge(&Refuses, &lang("c"), request("x", vec![test("", ""), test("", "")]), &mut |_| 2);
    assert!(matches!(r, Err(RunError::Busy(1))), "{r:?}");
}

#[test]
fn a_cancelled_request_starts_no_more_tests() {
    let f = fake(adder);
    let mut r = request("x", vec![test("1 1", "2"), test("2 2", "4"), test("3 3", "6")]);
    let cancel = Cancel::new().unwrap();
    cancel.cancel();
    r.cancel = Some(cancel);
    let j = judge(&f, &lang("c"), r, &mut |_| 2).unwrap();
    assert_eq!(verdicts(&j), ["internal_error", "internal_error", "internal_error"]);
    assert!(j.tests[0].message.as_deref().unwrap().contains("cancelled"));
    assert_eq!(f.seen.lock().unwrap().iter().filter(|r| r.argv[0] == "./main").count(), 0, "no test ran");
}

#[test]
fn a_checked_test_keeps_only_what_the_response_shows() {
    fn noisy(_: &str) -> RunOutcome {
        let mut o = ended(Status::Ok, &"x".repeat(1000));
        o.files = (0..3)
            .map(|i| OutputFile {
                path: format!("f{i}.txt"),
                content: FileContent::File { bytes: vec![b'y'; 10], executable: false },
            })
            .chain(std::iter::once(OutputFile {
                path: "skip.bin".into(),
                content: FileContent::File { bytes: vec![1], executable: false },
            }))
            .collect();
        o
    }
    let f = fake(noisy);
    let mut r = request("x", vec![test("", &"x".repeat(1000)), test("", &"x".repeat(1000))]);
    r.keep = Keep {
        output: 100,
        files: Some(FileKeep { wanted: std::sync::Arc::new(|p: &str| p.ends_with(".txt")), count: 4, bytes: 1000 }),
    };
    let j = judge(&f, &lang("c"), r, &mut |_| 1).unwrap();
    assert_eq!(verdicts(&j), ["accepted", "accepted"], "the checker saw the whole output");
    let run = j.tests[0].run.as_ref().unwrap();
    assert_eq!((run.stdout.len(), run.stdout_truncated), (100, true));
    let names = |i: usize| j.tests[i].run.as_ref().unwrap().files.iter().map(|f| f.path.clone()).collect::<Vec<_>>();
    assert_eq!(names(0), ["f0.txt", "f1.txt", "f2.txt"]);
    assert_eq!(names(1), ["f0.txt"], "four files for all tests together");
    assert!(j.tests[1].run.as_ref().unwrap().files_truncated);
}

#[test]
fn files_are_kept_in_test_order_whichever_finishes_first() {
    fn writes(stdin: &str) -> RunOutcome {
        // the first test is the slowest: the others finish before it
        if stdin == "0" {
            std::thread::sleep(Duration::from_millis(200));
        }
        let mut o = ended(Status::Ok, "");
        o.files = (0..3)
            .map(|i| OutputFile {
                path: format!("{stdin}-{i}.txt"),
                content: FileContent::File { bytes: vec![b'y'; 10], executable: false },
            })
            .collect();
        o
    }
    let f = fake(writes);
    let mut r = request("x", ["0", "1", "2"].iter().map(|s| test(s, "")).collect());
    for t in &mut r.tests {
        t.expected = Expected::Nothing;
    }
    r.keep = Keep {
        output: 100,
        files: Some(FileKeep { wanted: std::sync::Arc::new(|_: &str| true), count: 4, bytes: 1000 }),
    };
    let j = judge(&f, &lang("c"), r, &mut |_| 3).unwrap();
    let kept: Vec<usize> = j.tests.iter().map(|t| t.run.as_ref().unwrap().files.len()).collect();
    assert_eq!(kept, [3, 1, 0], "the budget goes to the tests in their order");
    assert!(!j.tests[0].run.as_ref().unwrap().files_truncated);
    assert!(j.tests[1].run.as_ref().unwrap().files_truncated && j.tests[2].run.as_ref().unwrap().files_truncated);
}

#[test]
fn a_crash_is_a_runtime_error_for_a_judge() {
    fn aborts(_: &str) -> RunOutcome {
        let mut o = ended(Status::Signaled, "");
        o.signal = Some(6);
        o
    }
    let f = fake(aborts);
    let j = judge(&f, &lang("c"), request("x", vec![test("", "1")]), &mut |_| 1).unwrap();
    assert_eq!(verdicts(&j), ["runtime_error"]);
    assert_eq!(j.tests[0].run.as_ref().unwrap().signal, Some(6), "the signal is still there");
}

mod contest;
mod interactive;
