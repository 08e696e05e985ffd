//! The stage logic with a fake executor that answers by command; the real toolchains are
//! exercised by `tests/languages_root.rs`.

use std::sync::Mutex;
use std::time::Duration;

use super::*;
use crate::cache::CompileCache;
use crate::run::OutputFile;

/// Answers each stage by its command's first word, and records the requests.
struct Fake {
    answers: Vec<(&'static str, RunOutcome)>,
    seen: Mutex<Vec<RunRequest>>,
}

fn outcome(status: Status, code: Option<i32>, stderr: &str) -> RunOutcome {
    RunOutcome {
        status,
        exceeded: None,
        exit_code: code,
        signal: None,
        message: (status != Status::Ok).then(|| format!("{} happened", status.as_str())),
        stdout: Vec::new(),
        stderr: stderr.as_bytes().to_vec(),
        stdout_truncated: false,
        stderr_truncated: false,
        cpu_time: Duration::from_millis(3),
        wall_time: Duration::from_millis(4),
        memory_peak_bytes: 1 << 20,
        files: Vec::new(),
        files_truncated: false,
    }
}

fn ok() -> RunOutcome {
    outcome(Status::Ok, Some(0), "")
}

impl Executor for Fake {
    fn execute(&self, req: &RunRequest) -> Result<RunOutcome, RunError> {
        self.seen.lock().unwrap().push(req.clone());
        let key = req.argv.iter().take(2).cloned().collect::<Vec<_>>().join(" ");
        let answer = self.answers.iter().find(|(k, _)| key.starts_with(k)).map_or_else(ok, |(_, o)| o.clone());
        Ok(answer)
    }
}

fn fake(answers: Vec<(&'static str, RunOutcome)>) -> Fake {
    Fake { answers, seen: Mutex::new(Vec::new()) }
}

fn lang(id: &str) -> Language {
    crate::lang::builtin(id).unwrap()
}

fn program(code: &str) -> Program {
    Program {
        source: Source::Code(code.into()),
        stdin: b"in".to_vec(),
        args: vec!["a".into()],
        limits: Limits::default(),
        cancel: None,
        collect_files: false,
        cache: None,
        access: Default::default(),
        live: None,
    }
}

#[test]
fn an_interpreted_program_runs_once_when_it_succeeds() {
    let f = fake(vec![]);
    let out = execute(&f, &lang("python"), program("print(1)")).unwrap();
    assert_eq!(out.verdict, Verdict::Run(Status::Ok));
    let seen = f.seen.lock().unwrap();
    assert_eq!(seen.len(), 1, "no syntax check when the run succeeded");
    assert_eq!(seen[0].argv, ["python3", "main.py", "a"]);
    assert_eq!(seen[0].stdin, b"in");
    assert_eq!(seen[0].files[0].path, "main.py");
    assert!(seen[0].env.contains(&("PYTHONDONTWRITEBYTECODE".into(), "1".into())));
    assert!(out.syntax.is_none() && out.compile.is_none());
    assert_eq!(out.last().0, "run");
}

#[test]
fn a_failed_run_is_checked_for_a_syntax_error() {
    let stderr = "  File \"/sandbox/main.py\", line 1\n    print(\n         ^\nSyntaxError: '(' was never closed\n";
    let f = fake(vec![
        ("python3 main.py", outcome(Status::RuntimeError, Some(1), stderr)),
        ("python3 -m", outcome(Status::RuntimeError, Some(1), stderr)),
    ]);
    let out = execute(&f, &lang("python"), program("print(")).unwrap();
    assert_eq!(out.verdict, Verdict::SyntaxError);
    assert_eq!(out.last().0, "syntax");
    assert!(out.run.is_some() && out.syntax.is_some());
    assert_eq!(f.seen.lock().unwrap()[1].argv, ["python3", "-m", "py_compile", "main.py"]);
    assert!(f.seen.lock().unwrap()[1].stdin.is_empty(), "checks get no stdin");
    let d = &out.diagnostics[0];
    assert_eq!((d.file.as_str(), d.line, d.column, d.syntax), ("main.py", Some(1), Some(6), true));
    assert!(out.message.unwrap().starts_with("main.py:1"), "the message names the place");
    assert!(out.error.is_none());

    // the check passes: the runtime error stands, with its parsed error
    let stderr = "Traceback (most recent call last):\n  File \"/sandbox/main.py\", line 1, in <module>\n    1/0\nZeroDivisionError: division by zero\n";
    let f = fake(vec![("python3 main.py", outcome(Status::RuntimeError, Some(1), stderr))]);
    let out = execute(&f, &lang("python"), program("1/0")).unwrap();
    assert_eq!(out.verdict, Verdict::Run(Status::RuntimeError));
    let e = out.error.clone().unwrap();
    assert_eq!((e.kind.as_str(), e.frames[0].line), ("ZeroDivisionError", Some(1)));
    assert_eq!(out.last().0, "run");
}

#[test]
fn bash_is_checked_before_it_runs() {
    let f = fake(vec![(
        "bash -n",
        outcome(Status::RuntimeError, Some(2), "main.sh: line 3: syntax error: unexpected end of file\n"),
    )]);
    let out = execute(&f, &lang("bash"), program("if true; then\n echo\n")).unwrap();
    assert_eq!(out.verdict, Verdict::SyntaxError);
    assert_eq!(f.seen.lock().unwrap().len(), 1, "the program never ran");
    assert!(out.run.is_none());
    assert_eq!(out.diagnostics[0].line, Some(3));
}

#[test]
fn a_compiler_error_stops_before_the_run_and_its_kind_is_told() {
    let syntax = "main.c: In function 'main':\nmain.c:3:5: error: expected ';' before '}' token\n";
    let f = fake(vec![("gcc", outcome(Status::RuntimeError, Some(1), syntax))]);
    let out = execute(&f, &lang("c"), program("int main(){return 0}")).unwrap();
    assert_eq!(out.verdict, Verdict::SyntaxError);
    assert_eq!(out.last().0, "compile");
    assert_eq!(f.seen.lock().unwrap().len(), 1);

    let semantic = "main.c: In function 'main':\nmain.c:1:19: error: 'x' undeclared (first use in this function)\n";
    let f = fake(vec![("gcc", outcome(Status::RuntimeError, Some(1), semantic))]);
    let out = execute(&f, &lang("c"), program("int main(){return x;}")).unwrap();
    assert_eq!(out.verdict, Verdict::CompileError);
    assert!(out.message.unwrap().starts_with("main.c:1:19: "));
    let d = &out.diagnostics[0];
    assert_eq!((d.line, d.column, d.syntax), (Some(1), Some(19), false));

    // a compiler over its limits is a compile error too
    let f = fake(vec![("gcc", outcome(Status::TimeLimit, None, ""))]);
    let out = execute(&f, &lang("c"), program("#include </dev/random>")).unwrap();
    assert_eq!(out.verdict, Verdict::CompileError);
    assert!(out.message.unwrap().starts_with("the compiler did not finish"));
}

#[test]
fn what_the_compiler_leaves_is_what_the_program_gets() {
    let mut compiled = ok();
    compiled.files = vec![
        OutputFile { path: "main.c".into(), content: FileContent::File { bytes: b"src".to_vec(), executable: false } },
        OutputFile { path: "main".into(), content: FileContent::File { bytes: vec![0x7f; 64], executable: true } },
        OutputFile { path: "link".into(), content: FileContent::Symlink("/etc/passwd".into()) },
    ];
    let f = fake(vec![("gcc", compiled)]);
    let out = execute(&f, &lang("c"), program("int main(){}")).unwrap();
    assert_eq!(out.verdict, Verdict::Run(Status::Ok));
    let seen = f.seen.lock().unwrap();
    assert!(seen[0].collect_files && !seen[1].collect_files);
    assert_eq!(seen[0].argv, ["gcc", "-O2", "-std=c17", "-Wall", "-o", "main", "main.c", "-lm"]);
    assert_eq!(seen[0].limits.cpu_time, Duration::from_secs(10), "the compiler's own limits");
    assert_eq!(seen[1].argv, ["./main", "a"]);
    let files: Vec<(&str, bool)> = seen[1].files.iter().map(|f| (f.path.as_str(), f.executable)).collect();
    assert_eq!(files, [("main.c", false), ("main", true)], "symlinks are not carried over");
    assert!(out.compile.as_ref().unwrap().files.is_empty(), "the outcome does not keep the binary");
}

#[test]
fn sources_go_in_order_with_the_entry_first() {
    let f = fake(vec![]);
    let files = vec![
        InputFile { path: "util.c".into(), contents: b"".to_vec(), executable: false },
        InputFile { path: "data.txt".into(), contents: b"".to_vec(), executable: false },
        InputFile { path: "main.c".into(), contents: b"".to_vec(), executable: false },
        InputFile { path: "a/b.c".into(), contents: b"".to_vec(), executable: false },
    ];
    let p = Program { source: Source::Files(files), ..program("") };
    execute(&f, &lang("c"), p).unwrap();
    let argv = f.seen.lock().unwrap()[0].argv.clone();
    assert_eq!(&argv[6..10], ["main.c", "a/b.c", "util.c", "-lm"]);
}

#[test]
fn java_finds_its_class_and_sizes_its_heap() {
    let code = "// public class Wrong {}\nimport java.util.*;\npublic class Solution {\n  static int f() { return 1; }\n  public static void main(String[] args) { }\n}\n";
    let f = fake(vec![]);
    let p = Program { limits: Limits { memory_bytes: 512 << 20, ..Limits::default() }, ..program(code) };
    execute(&f, &lang("java"), p).unwrap();
    let seen = f.seen.lock().unwrap();
    assert_eq!(seen[0].files[0].path, "Solution.java");
    assert!(seen[0].argv.ends_with(&["Solution.java".to_owned()]));
    let run = &seen[1].argv;
    assert!(run.contains(&"-Xmx384m".to_owned()), "{run:?}");
    assert_eq!(run[run.len() - 2..], ["Solution".to_owned(), "a".to_owned()]);
    assert_eq!(
        java_main_class(&[InputFile {
            path: "p/App.java".into(),
            contents: b"package com.x;\nclass Helper {}\nclass App { public static void main(String[] a) {} }".to_vec(),
            executable: false,
        }]),
        Some("com.x.App".into())
    );
    let none = Program { source: Source::Code("class A { void main() {} }".into()), ..program("") };
    assert!(matches!(execute(&f, &lang("java"), none), Err(RunError::Invalid(_))));
}

#[test]
fn an_out_of_memory_error_is_a_memory_limit() {
    let stderr =
        "Exception in thread \"main\" java.lang.OutOfMemoryError: Java heap space\n\tat Main.main(Main.java:3)\n";
    let f = fake(vec![("java -X", outcome(Status::RuntimeError, Some(1), stderr))]);
    let out =
        execute(&f, &lang("java"), program("public class Main { public static void main(String[] a) {} }")).unwrap();
    assert_eq!(out.verdict, Verdict::Run(Status::MemoryLimit));
    let run = out.run.unwrap();
    assert_eq!((run.status, run.exceeded), (Status::MemoryLimit, Some(Exceeded::Memory)));
    assert!(out.message.unwrap().contains("java.lang.OutOfMemoryError"));
}

#[test]
fn placeholders_expand_per_stage() {
    let f = fake(vec![]);
    let p = Program { limits: Limits { cpu_millicores: 1500, ..Limits::default() }, ..program("package main") };
    execute(&f, &lang("go"), p).unwrap();
    let seen = f.seen.lock().unwrap();
    assert!(seen[1].env.contains(&("GOMAXPROCS".into(), "2".into())));
    assert!(seen[0].env.contains(&("GOCACHE".into(), "/tmp/go-cache".into())));
    assert!(!seen[0].env.iter().any(|(k, _)| k == "GOMAXPROCS"), "the run's env is the run's");
    let f = fake(vec![]);
    execute(&f, &lang("typescript"), program("let x = 1")).unwrap();
    assert_eq!(f.seen.lock().unwrap()[1].argv, ["node", "--enable-source-maps", "main.js", "a"]);
}

#[test]
fn verdicts_have_wire_names() {
    for v in [Verdict::SyntaxError, Verdict::CompileError, Verdict::Run(Status::TimeLimit)] {
        assert_eq!(Verdict::parse(v.as_str()), Some(v));
    }
    assert_eq!(Verdict::parse("nope"), None);
}

#[test]
fn an_identical_compile_comes_from_the_cache() {
    let dir = tempfile::tempdir().unwrap();
    let cache = std::sync::Arc::new(CompileCache::open(dir.path(), 1 << 20).unwrap());
    let cr = |toolchain: &str| Some(CacheRef { cache: std::sync::Arc::clone(&cache), toolchain: toolchain.into() });
    let mut compiled = outcome(Status::Ok, Some(0), "main.c:1:5: warning: unused variable 'x' [-Wunused-variable]\n");
    compiled.files =
        vec![OutputFile { path: "main".into(), content: FileContent::File { bytes: vec![1; 8], executable: true } }];
    let f = fake(vec![("gcc", compiled)]);
    let with = |code: &str, toolchain: &str| Program { cache: cr(toolchain), ..program(code) };
    let first = prepare(&f, &lang("c"), Source::Code("int main(){}".into()), None, with("", "gcc 12").cache.as_ref());
    let Prepare::Ready(first) = first.unwrap() else { panic!("refused") };
    assert_eq!(first.outcome.compile_cache, Some(CacheUse::Miss));
    let out = execute(&f, &lang("c"), with("int main(){}", "gcc 12")).unwrap();
    assert_eq!(out.verdict, Verdict::Run(Status::Ok));
    let seen: Vec<String> = f.seen.lock().unwrap().iter().map(|r| r.argv[0].clone()).collect();
    assert_eq!(seen, ["gcc", "./main"], "the second compile did not run");
    let run = f.seen.lock().unwrap()[1].clone();
    assert_eq!(run.files[0].path, "main");
    assert!(run.files[0].executable);
    assert_eq!(out.diagnostics.len(), 1, "a hit keeps the compiler's warnings");
    assert_eq!(out.compile.as_ref().unwrap().wall_time, Duration::ZERO);
    assert_eq!(out.compile_cache, Some(CacheUse::Hit));

    // another source, another toolchain: misses
    for (code, toolchain) in [("int main(){ }", "gcc 12"), ("int main(){}", "gcc 13")] {
        let Prepare::Ready(p) =
            prepare(&f, &lang("c"), Source::Code(code.into()), None, cr(toolchain).as_ref()).unwrap()
        else {
            panic!("refused")
        };
        assert_eq!(p.outcome.compile_cache, Some(CacheUse::Miss), "{code} {toolchain}");
    }
    // a failed compile is not kept
    let f = fake(vec![("gcc", outcome(Status::RuntimeError, Some(1), "main.c:1:1: error: nope\n"))]);
    for _ in 0..2 {
        let p = prepare(&f, &lang("c"), Source::Code("bad".into()), None, cr("gcc 12").as_ref()).unwrap();
        assert!(matches!(p, Prepare::Refused(ref o) if o.verdict == Verdict::CompileError));
    }
    assert_eq!(f.seen.lock().unwrap().len(), 2);
}

#[test]
fn only_the_program_gets_network_and_mounts_not_its_checks_or_compiler() {
    let access =
        crate::run::Access { network: Some(crate::run::NetAccess { allow: None }), mounts: vec!["datasets".into()] };
    let f = fake(vec![]);
    let out = execute(&f, &lang("c"), Program { access: access.clone(), ..program("int main(){}") }).unwrap();
    assert_eq!(out.verdict, Verdict::Run(Status::Ok));
    let seen = f.seen.lock().unwrap();
    assert_eq!(seen.len(), 2);
    assert_eq!(seen[0].argv[0], "gcc");
    assert_eq!(seen[0].access, crate::run::Access::default(), "the compiler runs without them");
    assert_eq!(seen[1].access, access);
    drop(seen);
    let f = fake(vec![("python3 main.py", outcome(Status::RuntimeError, Some(1), "SyntaxError"))]);
    execute(&f, &lang("python"), Program { access: access.clone(), ..program("x(") }).unwrap();
    let seen = f.seen.lock().unwrap();
    assert!(seen.len() >= 2, "a syntax check and the run");
    for r in seen.iter().filter(|r| r.argv.get(1).map(String::as_str) != Some("main.py")) {
        assert_eq!(r.access, crate::run::Access::default(), "{:?} runs without them", r.argv);
    }
}
