//! Interactive tests with a fake toolchain: how the program and the interactor are called,
//! and whose word counts when neither side's output is seen to end first (a fake hands
//! nothing to the relay). The relay itself is tested in `run::cross`, the whole on real
//! sandboxes in `tests/interactive_root.rs`.

use std::sync::Mutex;
use std::time::Duration;

use super::{ended, lang, request, test, verdicts};
use crate::judge::*;
use crate::limit::Limits;
use crate::pipeline::Executor;
use crate::run::{FileContent, OutputFile, RunError, RunOutcome, RunRequest, Status};

/// The program (`./main`, no arguments) ends well; the interactor (`./main` with three
/// files) exits with the code its input file starts with.
struct Game {
    seen: Mutex<Vec<RunRequest>>,
}

impl Executor for Game {
    fn execute(&self, req: &RunRequest) -> Result<RunOutcome, RunError> {
        // a clone keeps the plug alive: the relay must not wait for it
        self.seen.lock().unwrap().push(req.clone());
        let input = req.files.iter().find(|f| f.path == ".judge/input").map(|f| f.contents.clone());
        Ok(match (req.argv[0].as_str(), input) {
            ("gcc" | "g++", _) => {
                let mut o = ended(Status::Ok, "");
                o.files = vec![OutputFile {
                    path: "main".into(),
                    content: FileContent::File { bytes: b"bin".to_vec(), executable: true },
                }];
                o
            }
            ("./main", None) => ended(Status::Ok, ""),
            ("./main", Some(input)) => {
                let text = String::from_utf8_lossy(&input).into_owned();
                let code: i32 = text.split_whitespace().next().unwrap().parse().unwrap();
                let mut o = ended(if code == 0 { Status::Ok } else { Status::RuntimeError }, "");
                o.exit_code = Some(code);
                o.stderr = format!("said {code}").into_bytes();
                o
            }
            other => panic!("unexpected run {other:?}"),
        })
    }
}

fn interactor() -> ProgramChecker {
    ProgramChecker {
        lang: lang("cpp"),
        source: crate::pipeline::Source::Code("#include \"testlib.h\"\nint main(){}".into()),
        protocol: Protocol::Testlib,
        limits: Limits { wall_time: Duration::from_secs(1), ..Limits::default() },
        args: Vec::new(),
        cache: None,
    }
}

#[test]
fn the_interactor_gets_the_files_and_decides_a_program_that_ended_well() {
    let f = Game { seen: Mutex::new(Vec::new()) };
    let tests = ["0 ok", "1 ok", "2 ok", "3 ok"].iter().map(|s| test(s, "the answer")).collect();
    let mut r = request("x", tests);
    r.rules.interactor = Some(Box::new(interactor()));
    r.rules.transcript_bytes = 100;
    let j = judge(&f, &lang("c"), r, &mut |_| 2).unwrap();
    assert_eq!(verdicts(&j), ["accepted", "wrong_answer", "presentation_error", "judge_error"]);
    assert!(j.interactive);
    assert_eq!(j.tests[1].message.as_deref(), Some("said 1"));
    assert!(j.tests[3].message.as_deref().unwrap().starts_with("the interactor failed"), "{:?}", j.tests[3].message);
    assert_eq!(j.tests[0].transcript.as_ref().unwrap().messages, [], "a fake says nothing");
    let seen = f.seen.lock().unwrap();
    let programs: Vec<&RunRequest> = seen.iter().filter(|r| r.argv == ["./main"]).collect();
    assert_eq!(programs.len(), 4);
    for p in &programs {
        assert!(p.stdin.is_empty() && p.plug.is_some(), "the program reads the interactor, not the input");
        assert!(!p.files.iter().any(|f| f.path.starts_with(".judge")), "nor its files");
    }
    let interactors: Vec<&RunRequest> = seen.iter().filter(|r| r.argv.len() == 4).collect();
    assert_eq!(interactors.len(), 4);
    let i = interactors.iter().find(|r| r.files.iter().any(|f| f.contents == b"2 ok")).unwrap();
    assert_eq!(i.argv[1..], ["/sandbox/.judge/input", "/sandbox/.judge/output", "/sandbox/.judge/answer"]);
    assert!(i.files.iter().any(|f| f.path == ".judge/answer" && f.contents == b"the answer"));
    assert!(i.plug.is_some() && i.stdin.is_empty());
    // it outlives the program's wall limit, so a deadlock kills the program first
    assert_eq!(i.limits.wall_time, Limits::default().wall_time + Duration::from_secs(2));
    assert_eq!(seen.iter().filter(|r| r.argv[0] == "g++").count(), 1, "compiled once");
}

#[test]
fn a_program_that_did_not_end_well_is_judged_by_how_it_ended() {
    struct Slow(Game);
    impl Executor for Slow {
        fn execute(&self, req: &RunRequest) -> Result<RunOutcome, RunError> {
            if req.argv == ["./main"] {
                return Ok(ended(Status::TimeLimit, ""));
            }
            self.0.execute(req)
        }
    }
    let f = Slow(Game { seen: Mutex::new(Vec::new()) });
    let mut r = request("x", vec![test("2 tle", "")]);
    r.rules.interactor = Some(Box::new(interactor()));
    let j = judge(&f, &lang("c"), r, &mut |_| 1).unwrap();
    assert_eq!(verdicts(&j), ["time_limit"]);
    assert!(j.tests[0].transcript.is_none(), "none asked for");
    assert_eq!(j.tests[0].checker.as_ref().unwrap().exit_code, Some(2), "the interactor's run is kept");
}
