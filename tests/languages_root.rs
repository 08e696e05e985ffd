//! Every language through its stages, with the real toolchains in real sandboxes (`codeexec
//! run --json -l LANG`, which answers as `POST /v1/execute` does): hello world, stdin, a
//! syntax error with its line and column, a compile error with its line and column
//! (compiled languages), a runtime error with its type and frame line, the time limit, the
//! memory limit, and a program of several files. Root only (see `require_privileged!`); the
//! toolchains come from `.ci/run`.

// An integration test crate is all tests: the lints for tests inside `src/` do not fit it.
#![allow(clippy::tests_outside_test_module, clippy::unwrap_used)]

mod common;

use serde_json::Value;

/// Runs `files` (the first is the source, the rest go in with `--file`) in `lang`.
fn run(lang: &str, files: &[(&str, &str)], flags: &[&str], stdin: &str) -> Value {
    let dir = tempfile::tempdir().unwrap();
    let mut args: Vec<String> = vec!["run".into(), "--json".into(), "--stdin".into(), "-".into()];
    args.extend(flags.iter().map(|f| (*f).to_owned()));
    for (name, text) in &files[1..] {
        let p = dir.path().join(name.replace('/', "_"));
        std::fs::write(&p, text).unwrap();
        args.push("--file".into());
        args.push(format!("{name}={}", p.display()));
    }
    let (name, text) = files[0];
    let src = dir.path().join(name);
    std::fs::write(&src, text).unwrap();
    args.extend(["-l".into(), lang.into(), src.display().to_string()]);
    let argv: Vec<&str> = args.iter().map(String::as_str).collect();
    let out = common::codeexec(&argv, stdin.as_bytes());
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!("{lang}: no JSON ({e}); exit {:?}; stderr: {}", out.status, String::from_utf8_lossy(&out.stderr))
    })
}

fn expect(v: &Value, status: &str) {
    assert_eq!(v["status"], status, "{v:#}");
}

/// The first error diagnostic is at `line`, and at `column` when given.
fn expect_diagnostic(v: &Value, line: u64, column: Option<u64>) {
    let d = v["diagnostics"]
        .as_array()
        .unwrap()
        .iter()
        .find(|d| d["severity"] == "error")
        .unwrap_or_else(|| panic!("no error diagnostic: {v:#}"));
    assert_eq!(d["line"].as_u64(), Some(line), "{v:#}");
    if let Some(c) = column {
        assert_eq!(d["column"].as_u64(), Some(c), "{v:#}");
    }
    assert!(!d["message"].as_str().unwrap().is_empty());
    assert!(!d["file"].as_str().unwrap().starts_with('/'), "paths are relative to /sandbox: {d}");
}

/// The uncaught error has this type and its innermost frame in a user file is at `line`.
fn expect_error(v: &Value, kind: &str, line: Option<u64>) {
    let e = &v["error"];
    assert_eq!(e["type"], kind, "{v:#}");
    if let Some(line) = line {
        let frame = e["frames"]
            .as_array()
            .unwrap()
            .iter()
            .find(|f| {
                !f["file"].as_str().unwrap().starts_with('/') && !f["file"].as_str().unwrap().starts_with("node:")
            })
            .unwrap_or_else(|| panic!("no user frame: {v:#}"));
        assert_eq!(frame["line"].as_u64(), Some(line), "{v:#}");
    }
}

#[test]
fn a_compiler_that_reads_forever_ends_in_its_limits() {
    require_privileged!();
    // compilers are untrusted too: this one reads /dev/random until a limit stops it
    let v = run("c", &[("main.c", "#include </dev/random>\nint main(void) { return 0; }\n")], &[], "");
    expect(&v, "compile_error");
    assert_eq!(v["stage"], "compile");
    let compile = v["compile"]["status"].as_str().unwrap();
    assert!(matches!(compile, "time_limit" | "memory_limit" | "file_size_limit"), "{v:#}");
    assert!(v["message"].as_str().unwrap().starts_with("the compiler did not finish"), "{v:#}");
    assert!(v["run"].is_null());
}

#[test]
fn warnings_come_with_a_program_that_runs() {
    require_privileged!();
    let v = run(
        "c",
        &[("main.c", "#include <stdio.h>\nint main(void) {\n  int unused;\n  puts(\"hello\");\n  return 0;\n}\n")],
        &[],
        "",
    );
    expect(&v, "ok");
    let d = &v["diagnostics"][0];
    assert_eq!(
        (d["severity"].as_str(), d["line"].as_u64(), d["column"].as_u64()),
        (Some("warning"), Some(3), Some(7)),
        "{v:#}"
    );
    assert_eq!(v["compile"]["status"], "ok");
    assert_eq!(v["stdout"], "hello\n");
}

macro_rules! language {
    ($name:ident, $lang:literal, {
        hello: $hello:expr,
        echo: $echo:expr,
        syntax: ($syntax:expr, $sline:expr, $scol:expr),
        compile: $compile:expr,
        runtime: ($runtime:expr, $rtype:expr, $rline:expr),
        spin: $spin:expr,
        hog: $hog:expr,
        files: $files:expr,
    }) => {
        mod $name {
            use super::*;

            #[test]
            fn hello_world() {
                require_privileged!();
                let v = run($lang, &[$hello], &[], "");
                expect(&v, "ok");
                assert_eq!(v["stdout"], "hello\n", "{v:#}");
                assert_eq!(v["stage"], "run");
            }

            #[test]
            fn stdin_reaches_the_program() {
                require_privileged!();
                let v = run($lang, &[$echo], &[], "some input\n");
                expect(&v, "ok");
                assert_eq!(v["stdout"], "SOME INPUT\n", "{v:#}");
            }

            #[test]
            fn a_syntax_error_has_its_line_and_column() {
                require_privileged!();
                let v = run($lang, &[$syntax], &[], "");
                expect(&v, "syntax_error");
                expect_diagnostic(&v, $sline, $scol);
                assert!(matches!(v["stage"].as_str(), Some("syntax" | "compile")), "{v:#}");
                assert!(!v["message"].as_str().unwrap().is_empty());
            }

            #[test]
            fn a_compile_error_has_its_line_and_column() {
                require_privileged!();
                let compile: Option<((&str, &str), u64, u64)> = $compile;
                let Some((file, line, col)) = compile else { return };
                let v = run($lang, &[file], &[], "");
                expect(&v, "compile_error");
                assert_eq!(v["stage"], "compile");
                assert!(v["run"].is_null(), "the program never ran");
                expect_diagnostic(&v, line, Some(col));
            }

            #[test]
            fn a_runtime_error_has_its_type_and_frame() {
                require_privileged!();
                let v = run($lang, &[$runtime], &[], "");
                let kind: Option<&str> = $rtype;
                match kind {
                    Some(kind) => {
                        assert!(matches!(v["status"].as_str(), Some("runtime_error" | "signaled")), "{v:#}");
                        expect_error(&v, kind, $rline);
                    }
                    None => expect(&v, "runtime_error"),
                }
                assert!(!v["stderr"].as_str().unwrap().is_empty(), "raw stderr is kept");
            }

            #[test]
            fn the_time_limit_ends_it() {
                require_privileged!();
                let v = run($lang, &[$spin], &["--cpu-time", "1s", "--wall-time", "10s"], "");
                expect(&v, "time_limit");
                assert_eq!(v["exceeded"], "cpu_time");
            }

            #[test]
            fn the_memory_limit_ends_it() {
                require_privileged!();
                // time enough that only memory can end it, on a loaded or emulated machine too
                let v = run($lang, &[$hog], &["--memory", "128M", "--cpu-time", "60s", "--wall-time", "120s"], "");
                expect(&v, "memory_limit");
                assert_eq!(v["exceeded"], "memory");
            }

            #[test]
            fn a_program_of_several_files() {
                require_privileged!();
                let files: &[(&str, &str)] = $files;
                let v = run($lang, files, &[], "");
                expect(&v, "ok");
                assert_eq!(v["stdout"], "42\n", "{v:#}");
            }
        }
    };
}

language!(python, "python", {
    hello: ("main.py", "print('hello')\n"),
    echo: ("main.py", "import sys\nprint(sys.stdin.read().upper(), end='')\n"),
    syntax: (("main.py", "x = 1\nprint((x)\n"), 2, Some(6)),
    compile: None,
    runtime: (("main.py", "def f(d):\n    return 1 / d\n\nf(0)\n"), Some("ZeroDivisionError"), Some(2)),
    spin: ("main.py", "while True:\n    pass\n"),
    hog: ("main.py", "x = bytearray(512 << 20)\nprint(len(x))\n"),
    files: &[("main.py", "from util import twice\nprint(twice(21))\n"), ("util.py", "def twice(x):\n    return 2 * x\n")],
});

language!(javascript, "javascript", {
    hello: ("main.js", "console.log('hello');\n"),
    echo: ("main.js", "process.stdout.write(require('fs').readFileSync(0, 'utf8').toUpperCase());\n"),
    syntax: (("main.js", "let x = 1;\nconsole.log((x);\n"), 2, None),
    compile: None,
    runtime: (("main.js", "function f() {\n  throw new TypeError('bad');\n}\nf();\n"), Some("TypeError"), Some(2)),
    spin: ("main.js", "for (;;) {}\n"),
    hog: ("main.js", "const a = [];\nfor (;;) a.push(Buffer.alloc(1 << 20, 1));\n"),
    files: &[("main.js", "const { twice } = require('./util');\nconsole.log(twice(21));\n"), ("util.js", "exports.twice = (x) => 2 * x;\n")],
});

language!(typescript, "typescript", {
    hello: ("main.ts", "console.log('hello');\n"),
    echo: ("main.ts", "import * as fs from 'fs';\nprocess.stdout.write(fs.readFileSync(0, 'utf8').toUpperCase());\n"),
    syntax: (("main.ts", "let x: number = 1;\nconsole.log((x);\n"), 2, Some(16)),
    compile: Some((("main.ts", "let x: number = 'a';\nconsole.log(x);\n"), 1, 5)),
    runtime: (("main.ts", "function f(): number {\n  throw new Error('boom');\n}\nf();\n"), Some("Error"), Some(2)),
    spin: ("main.ts", "for (;;) {}\n"),
    hog: ("main.ts", "const a: Buffer[] = [];\nfor (;;) a.push(Buffer.alloc(1 << 20, 1));\n"),
    files: &[("main.ts", "import { twice } from './util';\nconsole.log(twice(21));\n"), ("util.ts", "export function twice(x: number): number {\n  return 2 * x;\n}\n")],
});

language!(ruby, "ruby", {
    hello: ("main.rb", "puts 'hello'\n"),
    echo: ("main.rb", "print STDIN.read.upcase\n"),
    syntax: (("main.rb", "x = 1\nputs((x)\n"), 2, Some(9)),
    compile: None,
    runtime: (("main.rb", "def f\n  raise ArgumentError, 'bad'\nend\nf\n"), Some("ArgumentError"), Some(2)),
    spin: ("main.rb", "loop {}\n"),
    hog: ("main.rb", "a = []\nloop { a << ('x' * (1 << 20)) }\n"),
    files: &[("main.rb", "require_relative 'util'\nputs twice(21)\n"), ("util.rb", "def twice(x)\n  2 * x\nend\n")],
});

language!(bash, "bash", {
    hello: ("main.sh", "echo hello\n"),
    echo: ("main.sh", "tr a-z A-Z\n"),
    syntax: (("main.sh", "echo before\nif true; then\n  echo hi\n"), 4, None),
    compile: None,
    runtime: (("main.sh", "echo oops >&2\nexit 3\n"), None, None),
    spin: ("main.sh", "while :; do :; done\n"),
    hog: ("main.sh", "x=$(head -c 400M /dev/zero | tr '\\0' x)\necho ${#x}\n"),
    files: &[("main.sh", ". ./util.sh\ntwice 21\n"), ("util.sh", "twice() { echo $(( 2 * $1 )); }\n")],
});

language!(c, "c", {
    hello: ("main.c", "#include <stdio.h>\nint main(void) {\n  puts(\"hello\");\n  return 0;\n}\n"),
    echo: ("main.c", "#include <stdio.h>\n#include <ctype.h>\nint main(void) {\n  int c;\n  while ((c = getchar()) != EOF) putchar(toupper(c));\n  return 0;\n}\n"),
    syntax: (("main.c", "int main(void) {\n  int x = 1\n  return x;\n}\n"), 3, Some(3)),
    compile: Some((("main.c", "int main(void) {\n  return y;\n}\n"), 2, 10)),
    runtime: (("main.c", "#include <assert.h>\nint main(void) {\n  int x = 0;\n  assert(x > 0);\n  return 0;\n}\n"), Some("assertion"), Some(4)),
    spin: ("main.c", "int main(void) {\n  for (;;) {}\n}\n"),
    hog: ("main.c", "#include <stdlib.h>\n#include <string.h>\nint main(void) {\n  for (;;) {\n    char *p = malloc(1 << 20);\n    memset(p, 1, 1 << 20);\n  }\n}\n"),
    files: &[("main.c", "#include <stdio.h>\n#include \"util.h\"\nint main(void) {\n  printf(\"%d\\n\", twice(21));\n  return 0;\n}\n"), ("util.c", "#include \"util.h\"\nint twice(int x) { return 2 * x; }\n"), ("util.h", "int twice(int x);\n")],
});

language!(cpp, "cpp", {
    hello: ("main.cpp", "#include <iostream>\nint main() {\n  std::cout << \"hello\" << std::endl;\n}\n"),
    echo: ("main.cpp", "#include <iostream>\n#include <cctype>\nint main() {\n  char c;\n  while (std::cin.get(c)) std::cout << (char)std::toupper(c);\n}\n"),
    syntax: (("main.cpp", "int main() {\n  int x = 1\n  return x;\n}\n"), 3, Some(3)),
    compile: Some((("main.cpp", "int main() {\n  return y;\n}\n"), 2, 10)),
    runtime: (("main.cpp", "#include <stdexcept>\nvoid f() {\n  throw std::runtime_error(\"boom\");\n}\nint main() {\n  f();\n}\n"), Some("std::runtime_error"), None),
    spin: ("main.cpp", "int main() {\n  for (;;) {}\n}\n"),
    hog: ("main.cpp", "#include <vector>\nint main() {\n  std::vector<std::vector<char>> v;\n  for (;;) v.emplace_back(1 << 20, 1);\n}\n"),
    files: &[("main.cpp", "#include <iostream>\n#include \"util.h\"\nint main() {\n  std::cout << twice(21) << std::endl;\n}\n"), ("util.cpp", "#include \"util.h\"\nint twice(int x) { return 2 * x; }\n"), ("util.h", "int twice(int x);\n")],
});

language!(java, "java", {
    hello: ("Main.java", "public class Main {\n  public static void main(String[] args) {\n    System.out.println(\"hello\");\n  }\n}\n"),
    echo: ("Main.java", "public class Main {\n  public static void main(String[] args) throws Exception {\n    System.out.print(new String(System.in.readAllBytes()).toUpperCase());\n  }\n}\n"),
    syntax: (("Main.java", "public class Main {\n  public static void main(String[] args) {\n    int x = 1\n  }\n}\n"), 3, Some(14)),
    compile: Some((("Main.java", "public class Main {\n  public static void main(String[] args) {\n    int x = \"s\";\n  }\n}\n"), 3, 13)),
    runtime: (("Main.java", "public class Main {\n  static int f(int d) {\n    return 1 / d;\n  }\n  public static void main(String[] args) {\n    f(0);\n  }\n}\n"), Some("java.lang.ArithmeticException"), Some(3)),
    spin: ("Main.java", "public class Main {\n  public static void main(String[] args) {\n    while (true) {}\n  }\n}\n"),
    hog: ("Main.java", "import java.util.*;\npublic class Main {\n  public static void main(String[] args) {\n    List<long[]> l = new ArrayList<>();\n    while (true) l.add(new long[1 << 17]);\n  }\n}\n"),
    files: &[("Solution.java", "public class Solution {\n  public static void main(String[] args) {\n    System.out.println(Util.twice(21));\n  }\n}\n"), ("Util.java", "class Util {\n  static int twice(int x) { return 2 * x; }\n}\n")],
});

language!(go, "go", {
    hello: ("main.go", "package main\n\nimport \"fmt\"\n\nfunc main() {\n\tfmt.Println(\"hello\")\n}\n"),
    echo: ("main.go", "package main\n\nimport (\n\t\"io\"\n\t\"os\"\n\t\"strings\"\n)\n\nfunc main() {\n\tb, _ := io.ReadAll(os.Stdin)\n\tos.Stdout.WriteString(strings.ToUpper(string(b)))\n}\n"),
    syntax: (("main.go", "package main\n\nimport \"fmt\"\n\nfunc main() {\n\tfmt.Println(\"hi\"\n}\n"), 6, Some(18)),
    compile: Some((("main.go", "package main\n\nfunc main() {\n\tvar s string = 1\n\t_ = s\n}\n"), 4, 17)),
    runtime: (("main.go", "package main\n\nfunc f(d int) int {\n\treturn 1 / d\n}\n\nfunc main() {\n\tf(0)\n}\n"), Some("panic"), Some(4)),
    spin: ("main.go", "package main\n\nfunc main() {\n\tfor {\n\t}\n}\n"),
    hog: ("main.go", "package main\n\nfunc main() {\n\tvar all [][]byte\n\tfor {\n\t\tb := make([]byte, 1<<20)\n\t\tfor i := range b {\n\t\t\tb[i] = 1\n\t\t}\n\t\tall = append(all, b)\n\t}\n}\n"),
    files: &[("main.go", "package main\n\nimport \"fmt\"\n\nfunc main() {\n\tfmt.Println(twice(21))\n}\n"), ("util.go", "package main\n\nfunc twice(x int) int { return 2 * x }\n")],
});

language!(rust, "rust", {
    hello: ("main.rs", "fn main() {\n    println!(\"hello\");\n}\n"),
    echo: ("main.rs", "use std::io::Read;\nfn main() {\n    let mut s = String::new();\n    std::io::stdin().read_to_string(&mut s).unwrap();\n    print!(\"{}\", s.to_uppercase());\n}\n"),
    syntax: (("main.rs", "fn main() {\n    let x = 1\n    println!(\"{}\", x);\n}\n"), 2, Some(14)),
    compile: Some((("main.rs", "fn main() {\n    let x: i32 = \"a\";\n    println!(\"{}\", x);\n}\n"), 2, 18)),
    runtime: (("main.rs", "fn f(v: &[i32]) -> i32 {\n    v[10]\n}\nfn main() {\n    let v = vec![1];\n    println!(\"{}\", f(&v));\n}\n"), Some("panic"), Some(2)),
    spin: ("main.rs", "fn main() {\n    loop {}\n}\n"),
    hog: ("main.rs", "fn main() {\n    let mut all = Vec::new();\n    loop {\n        all.push(vec![1u8; 1 << 20]);\n    }\n}\n"),
    files: &[("main.rs", "mod util;\nfn main() {\n    println!(\"{}\", util::twice(21));\n}\n"), ("util.rs", "pub fn twice(x: i32) -> i32 {\n    2 * x\n}\n")],
});

// Verdicts third-party judge suites expect (issue 14, items 11 and 15 to 19).

#[test]
fn javac_runs_no_annotation_processor_the_request_ships() {
    require_privileged!();
    // a processor on the class path (/sandbox) with its service file: javac would run it
    // at compile time, as the request's code, unless told not to
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("Evil.java"), EVIL_PROCESSOR).unwrap();
    let built =
        std::process::Command::new("javac").arg("-d").arg(dir.path()).arg(dir.path().join("Evil.java")).status();
    assert!(built.unwrap().success(), "javac on the host builds the processor");
    let service = dir.path().join("service");
    std::fs::write(&service, "Evil\n").unwrap();
    let main = dir.path().join("Main.java");
    std::fs::write(
        &main,
        "public class Main {\n  public static void main(String[] a) {\n    System.out.println(new java.io.File(\"processor-ran\").exists());\n  }\n}\n",
    )
    .unwrap();
    let class = format!("Evil.class={}", dir.path().join("Evil.class").display());
    let service = format!("META-INF/services/javax.annotation.processing.Processor={}", service.display());
    let main = main.display().to_string();
    let args = ["run", "--json", "--file", &class, "--file", &service, "-l", "java", &main];
    let out = common::codeexec(&args, b"");
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    expect(&v, "ok");
    assert_eq!(v["stdout"], "false\n", "the processor ran inside javac: {v:#}");
}

const EVIL_PROCESSOR: &str = r#"import java.util.Set;
import javax.annotation.processing.*;
import javax.lang.model.SourceVersion;
import javax.lang.model.element.TypeElement;

@SupportedAnnotationTypes("*")
public class Evil extends AbstractProcessor {
  @Override
  public synchronized void init(ProcessingEnvironment env) {
    super.init(env);
    try {
      java.nio.file.Files.writeString(java.nio.file.Path.of("processor-ran"), "yes");
    } catch (Exception e) {
      throw new RuntimeException(e);
    }
  }
  @Override
  public boolean process(Set<? extends TypeElement> annotations, RoundEnvironment round) { return false; }
  @Override
  public SourceVersion getSupportedSourceVersion() { return SourceVersion.latestSupported(); }
}
"#;

#[test]
fn java_public_classes_with_modifiers_compile_and_run() {
    require_privileged!();
    let sources = [
        "public strictfp class Calc {\n  public static void main(String[] a) { System.out.println(\"ok\"); }\n}\n",
        "public sealed class Shape permits Sq {\n  public static void main(String[] a) { System.out.println(\"ok\"); }\n}\nfinal class Sq extends Shape {}\n",
        "sealed interface S permits Impl {}\npublic non-sealed class Impl implements S {\n  public static void main(String[] a) { System.out.println(\"ok\"); }\n}\n",
        "@SuppressWarnings(\"unused\")\npublic final class Tagged {\n  public static void main(String[] a) { System.out.println(\"ok\"); }\n}\n",
        "public @Deprecated class Old {\n  public static void main(String[] a) { System.out.println(\"ok\"); }\n}\n",
    ];
    for code in sources {
        // one source file goes as `code`: the daemon names its file after the public class
        let v = run("java", &[("source.java", code)], &[], "");
        expect(&v, "ok");
        assert_eq!(v["stdout"], "ok\n", "{code}");
    }
}

#[test]
fn java_without_main_or_with_an_over_long_class_name_is_a_compile_error() {
    require_privileged!();
    let v = run("java", &[("Main.java", "public class Main {\n  static int f() { return 1; }\n}\n")], &[], "");
    expect(&v, "compile_error");
    assert!(v["message"].as_str().unwrap().contains("public static void main"), "{v:#}");
    let name = "L".repeat(300);
    let code = format!("public class {name} {{\n  public static void main(String[] a) {{}}\n}}\n");
    let v = run("java", &[("source.java", code.as_str())], &[], "");
    expect(&v, "compile_error");
    assert!(v["message"].as_str().unwrap().contains("should be declared in a file named"), "{v:#}");
}

#[test]
fn go_without_package_main_is_a_compile_error() {
    require_privileged!();
    let v = run("go", &[("main.go", "package notmain\n\nfunc main() {}\n")], &[], "");
    expect(&v, "compile_error");
    assert!(v["message"].as_str().unwrap().contains("main package"), "{v:#}");
    assert!(v["run"].is_null(), "{v:#}");
}

#[test]
fn a_link_error_names_the_undefined_reference() {
    require_privileged!();
    let v = run("c", &[("main.c", "int helper(void) {\n  return 1;\n}\n")], &[], "");
    expect(&v, "compile_error");
    // "(and 1 more)": collect2's own line follows
    assert!(v["message"].as_str().unwrap().starts_with("undefined reference to `main'"), "{v:#}");
    let v = run("cpp", &[("main.cpp", "int f();\nint main() {\n  return f();\n}\n")], &[], "");
    expect(&v, "compile_error");
    assert!(v["message"].as_str().unwrap().starts_with("main.cpp: undefined reference to `f()'"), "{v:#}");
}

#[test]
fn a_syntax_error_in_a_required_module_is_a_syntax_error() {
    require_privileged!();
    for (lang, files, (line, column)) in [
        (
            "javascript",
            [
                ("main.js", "const u = require('./util');\nconsole.log(u.x);\n"),
                ("util.js", "// util\nexports.x = (;\n"),
            ],
            (2, 14),
        ),
        ("ruby", [("main.rb", "require_relative 'util'\nputs X\n"), ("util.rb", "# util\nX = (1 +\n")], (2, 0)),
    ] {
        let (entry, module) = (files[0].0, files[1].0);
        let v = run(lang, &files, &[], "");
        expect(&v, "syntax_error");
        let d = v["diagnostics"].as_array().unwrap().iter().find(|d| d["severity"] == "error").cloned();
        let d = d.unwrap_or_else(|| panic!("{lang}: no error diagnostic: {v:#}"));
        assert_eq!((d["file"].as_str(), d["line"].as_u64()), (Some(module), Some(line)), "{lang} ({entry}): {v:#}");
        if column > 0 {
            assert_eq!(d["column"].as_u64(), Some(column), "{v:#}");
        }
        assert!(v["message"].as_str().unwrap().starts_with(&format!("{module}:{line}")), "{v:#}");
    }
}
