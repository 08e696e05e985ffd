//! Contest rules with fake toolchains: a checker program (compiled once, testlib beside
//! it, its verdicts), batches with dependencies, repeated runs.

use std::sync::Mutex;
use std::time::Duration;

use super::{ended, fake, lang, request, test, verdicts};
use crate::judge::*;
use crate::limit::Limits;
use crate::pipeline::Executor;
use crate::run::{FileContent, InputFile, OutputFile, RunError, RunOutcome, RunRequest, Status};

/// The contestant (C, `./main` with no arguments) echoes its stdin; the checker (C++,
/// `./main` with the three files) compares the output with the answer, and answers the
/// outputs `pe`, `half`, `fail` and `crash` as their names say.
struct Contest {
    seen: Mutex<Vec<RunRequest>>,
}

fn binary() -> Vec<OutputFile> {
    vec![OutputFile { path: "main".into(), content: FileContent::File { bytes: b"bin".to_vec(), executable: true } }]
}

fn file<'a>(req: &'a RunRequest, name: &str) -> &'a [u8] {
    &req.files.iter().find(|f: &&InputFile| f.path == format!(".judge/{name}")).unwrap().contents
}

impl Executor for Contest {
    fn execute(&self, req: &RunRequest) -> Result<RunOutcome, RunError> {
        self.seen.lock().unwrap().push(req.clone());
        let exit = |code: i32, stdout: &str, stderr: &str| {
            let mut o = ended(if code == 0 { Status::Ok } else { Status::RuntimeError }, stdout);
            o.exit_code = Some(code);
            o.stderr = stderr.as_bytes().to_vec();
            o
        };
        Ok(match (req.argv[0].as_str(), req.argv.len()) {
            ("gcc" | "g++", _) => {
                let mut o = ended(Status::Ok, "");
                o.files = binary();
                o
            }
            ("./main", 1) => ended(Status::Ok, &String::from_utf8_lossy(&req.stdin)),
            ("./main", 4) => {
                assert_eq!(
                    req.argv[1..],
                    ["/sandbox/.judge/input", "/sandbox/.judge/output", "/sandbox/.judge/answer"]
                );
                match file(req, "output") {
                    b"pe" => exit(2, "", "wrong output format"),
                    b"half" => exit(7, "", "points 0.5 half right"),
                    b"fail" => exit(3, "", "FAIL the answer is broken"),
                    b"crash" => {
                        let mut o = ended(Status::Signaled, "");
                        o.signal = Some(11);
                        o
                    }
                    out if out == file(req, "answer") && file(req, "input") == out => exit(0, "", "ok"),
                    _ => exit(1, "", "wrong answer differs"),
                }
            }
            other => panic!("unexpected run {other:?}"),
        })
    }
}

fn checker() -> ProgramChecker {
    ProgramChecker {
        lang: lang("cpp"),
        source: crate::pipeline::Source::Code("#include \"testlib.h\"\nint main(){}".into()),
        protocol: Protocol::Testlib,
        limits: Limits::default(),
        args: Vec::new(),
        cache: None,
    }
}

#[test]
fn a_checker_program_decides_each_test() {
    let f = Contest { seen: Mutex::new(Vec::new()) };
    let tests = ["same", "pe", "half", "other", "fail", "crash"].iter().map(|s| test(s, "same")).collect();
    let mut r = request("x", tests);
    r.tests[0].expected = Expected::Output(b"same".to_vec());
    r.rules.program = Some(Box::new(checker()));
    let j = judge(&f, &lang("c"), r, &mut |_| 2).unwrap();
    assert_eq!(
        verdicts(&j),
        ["accepted", "presentation_error", "partial", "wrong_answer", "judge_error", "judge_error"]
    );
    assert_eq!(j.tests[2].points, Some(0.5));
    assert_eq!(j.tests[3].message.as_deref(), Some("wrong answer differs"));
    assert!(j.tests[4].message.as_deref().unwrap().contains("FAIL the answer is broken"));
    assert!(j.tests[5].message.as_deref().unwrap().contains("the checker failed"), "{:?}", j.tests[5].message);
    assert_eq!(j.tests[5].checker.as_ref().unwrap().signal, Some(11));
    assert_eq!(j.status(), "judge_error", "the problem's fault comes first");
    let seen = f.seen.lock().unwrap();
    let compiles: Vec<&RunRequest> = seen.iter().filter(|r| r.argv[0] == "g++").collect();
    assert_eq!(compiles.len(), 1, "the checker compiled once");
    assert!(compiles[0].files.iter().any(|f| f.path == "testlib.h" && f.contents == program::TESTLIB_H));
    assert!(j.checker.as_ref().unwrap().compile.is_some());
}

#[test]
fn a_checker_that_does_not_compile_is_a_judge_error_for_every_test() {
    struct NoCompile;
    impl Executor for NoCompile {
        fn execute(&self, req: &RunRequest) -> Result<RunOutcome, RunError> {
            assert_eq!(req.argv[0], "g++", "nothing runs after the checker's compile failed");
            let mut o = ended(Status::RuntimeError, "");
            o.stderr = b"main.cpp:1:1: error: expected unqualified-id\n".to_vec();
            Ok(o)
        }
    }
    let mut r = request("x", vec![test("1", "1"), test("2", "2")]);
    r.rules.program = Some(Box::new(checker()));
    r.rules.batches = vec![Batch { name: "all".into(), points: 10.0, tests: vec![0, 1], depends_on: vec![] }];
    let j = judge(&NoCompile, &lang("c"), r, &mut |_| 2).unwrap();
    assert_eq!(verdicts(&j), ["judge_error", "judge_error"]);
    assert!(j.tests[0].message.as_deref().unwrap().starts_with("the checker did not compile"));
    assert_eq!(j.status(), "judge_error");
    assert_eq!(j.score(), Some((0.0, 10.0)));
}

#[test]
fn batches_stop_at_their_first_failure_and_wait_for_their_dependencies() {
    let f = fake(super::adder);
    let tests = vec![
        test("1 1", "2"),   // 0: sample, in no batch
        test("1 2", "3"),   // 1: a
        test("2 2", "4"),   // 2: a
        test("wrong", "3"), // 3: b fails
        test("3 3", "6"),   // 4: c, depends on b: not run
        test("crash", "0"), // 5: d fails first
        test("4 4", "8"),   // 6: d: not run after 5
        test("5 5", "10"),  // 7: e, depends on a
    ];
    let mut r = request("x", tests);
    let batch = |name: &str, points, tests: &[usize], depends_on: &[usize]| Batch {
        name: name.into(),
        points,
        tests: tests.to_vec(),
        depends_on: depends_on.to_vec(),
    };
    r.rules.batches = vec![
        batch("e", 5.0, &[7], &[1]),
        batch("a", 10.0, &[1, 2], &[]),
        batch("b", 20.0, &[3], &[]),
        batch("c", 30.0, &[4], &[2]),
        batch("d", 40.0, &[5, 6], &[]),
    ];
    let j = judge(&f, &lang("c"), r, &mut |_| 1).unwrap();
    assert_eq!(
        verdicts(&j),
        ["accepted", "accepted", "accepted", "wrong_answer", "skipped", "runtime_error", "skipped", "accepted"]
    );
    assert!(j.tests[4].message.as_deref().unwrap().contains("depends on batch \"b\""));
    assert!(j.tests[6].message.as_deref().unwrap().contains("an earlier test of batch \"d\""));
    let scores: Vec<f64> = j.batches.iter().map(|b| b.score).collect();
    assert_eq!(scores, [5.0, 10.0, 0.0, 0.0, 0.0]);
    assert_eq!(j.score(), Some((15.0, 105.0)));
    let runs = f.seen.lock().unwrap().iter().filter(|r| r.argv[0] == "./main").count();
    assert_eq!(runs, 6, "tests 4 and 6 never ran");
}

#[test]
fn repeated_runs_report_the_median_and_stop_at_a_failure() {
    static CALLS: Mutex<u32> = Mutex::new(0);
    fn slowing(stdin: &str) -> RunOutcome {
        let mut n = CALLS.lock().unwrap();
        *n += 1;
        let mut o = ended(Status::Ok, "2\n");
        if stdin == "flaky" && *n == 5 {
            o = ended(Status::RuntimeError, "");
        }
        o.cpu_time = Duration::from_millis([30, 10, 20, 5, 7][(*n as usize - 1) % 5]);
        o
    }
    let f = fake(slowing);
    let mut r = request("x", vec![test("1 1", "2"), test("flaky", "2")]);
    r.rules.runs = 3;
    let j = judge(&f, &lang("c"), r, &mut |_| 1).unwrap();
    assert_eq!(verdicts(&j), ["accepted", "runtime_error"]);
    let t = &j.tests[0];
    assert_eq!(t.run.as_ref().unwrap().cpu_time, Duration::from_millis(20), "the median of 30, 10, 20");
    assert_eq!(t.times.iter().map(|t| t.0.as_millis()).collect::<Vec<_>>(), [30, 10, 20]);
    assert!(j.tests[1].message.as_deref().unwrap().starts_with("run 2 of 3: "), "{:?}", j.tests[1].message);
    assert_eq!(j.tests[1].times.len(), 2);
}

#[test]
fn case_can_be_ignored() {
    fn shouts(stdin: &str) -> RunOutcome {
        ended(Status::Ok, &stdin.to_uppercase())
    }
    let f = fake(shouts);
    let mut r = request("x", vec![test("yes", "yes")]);
    assert_eq!(verdicts(&judge(&f, &lang("c"), r.clone(), &mut |_| 1).unwrap()), ["wrong_answer"]);
    r.rules.ignore_case = true;
    assert_eq!(verdicts(&judge(&f, &lang("c"), r, &mut |_| 1).unwrap()), ["accepted"]);
}

#[test]
fn partial_points_do_not_stop_a_batch_but_nothing_earned_does() {
    let f = Contest { seen: Mutex::new(Vec::new()) };
    let tests = ["half", "same", "other", "same"].iter().map(|s| test(s, "same")).collect();
    let mut r = request("x", tests);
    r.tests[1].expected = Expected::Output(b"same".to_vec());
    r.rules.program = Some(Box::new(checker()));
    r.rules.batches = vec![Batch { name: "b".into(), points: 8.0, tests: vec![0, 1, 2, 3], depends_on: vec![] }];
    let j = judge(&f, &lang("c"), r, &mut |_| 1).unwrap();
    assert_eq!(verdicts(&j), ["partial", "accepted", "wrong_answer", "skipped"]);
    assert_eq!(j.score(), Some((0.0, 8.0)));
}
