use serde_json::json;

use super::*;

fn text(f: &InputFile) -> &str {
    std::str::from_utf8(&f.contents).unwrap()
}

fn paths(files: &[InputFile]) -> Vec<&str> {
    files.iter().map(|f| f.path.as_str()).collect()
}

const PY: &str = "class Solution:\n    def twoSum(self, nums, target):\n        return [0, 1]\n";

#[test]
fn every_language_has_a_driver_first_and_the_code_beside_it() {
    let expected = [
        ("python", ["main.py", "solution.py"]),
        ("javascript", ["main.js", "solution.js"]),
        ("java", ["CodeexecHarness.java", "Solution.java"]),
        ("cpp", ["main.cpp", "solution.h"]),
        ("go", ["main.go", "solution.go"]),
    ];
    for (lang, names) in expected {
        let files = wrap(lang, "twoSum", "x\ny\n").unwrap();
        assert_eq!(paths(&files), names, "{lang}");
        let driver = text(&files[0]);
        assert!(driver.contains("twoSum"), "{lang}: the driver names the function");
        for placeholder in ["@FUNCTION@", "@CALLEE@", "@CLASSES@"] {
            assert!(!driver.contains(placeholder), "{lang}: {placeholder} left in the driver");
        }
        assert!(driver.contains("codeexec-result "), "{lang}: the driver prints the marker");
        assert!(files.iter().all(|f| !f.executable));
    }
    // every language of LANGUAGES, and only those
    assert_eq!(LANGUAGES.map(|l| l.to_owned()), expected.map(|(l, _)| l.to_owned()));
}

#[test]
fn the_code_keeps_its_lines() {
    let code = "line 1\nline 2\n\nline 4 \u{e9}\n";
    for lang in ["python", "javascript", "cpp"] {
        assert_eq!(text(&wrap(lang, "f", code).unwrap()[1]), code, "{lang}: the code as given");
    }
    for lang in ["java", "go"] {
        let user = wrap(lang, "f", code).unwrap().remove(1);
        let user = text(&user);
        assert!(user.ends_with(code), "{lang}: only a prefix on line 1: {user:?}");
        assert_eq!(user.lines().count(), code.lines().count(), "{lang}");
        assert!(!user.lines().next().unwrap().contains('\n'));
    }
}

#[test]
fn go_gets_a_package_clause_only_when_it_has_none() {
    let files = wrap("go", "f", "func f() int { return 1 }\n").unwrap();
    assert_eq!(text(&files[1]), "package main; func f() int { return 1 }\n");
    let own = "// Package main is mine.\npackage main\n\nfunc f() int { return 1 }\n";
    assert_eq!(text(&wrap("go", "f", own).unwrap()[1]), own);
}

#[test]
fn go_calls_a_method_of_solution_only_without_a_free_function() {
    let call = |code: &str| {
        let files = wrap("go", "f", code).unwrap();
        let driver = text(&files[0]);
        driver.lines().find(|l| l.contains("ValueOf(")).unwrap().trim().to_owned()
    };
    assert_eq!(call("func f(x int) int { return x }"), "fn := codeexecReflect.ValueOf(f)");
    let method = "type Solution struct{}\nfunc (s *Solution) f(x int) int { return x }\n";
    assert_eq!(call(method), "fn := codeexecReflect.ValueOf((&Solution{}).f)");
    assert_eq!(
        call("type Solution struct{}\nfunc (Solution) f() {}\n"),
        "fn := codeexecReflect.ValueOf((&Solution{}).f)"
    );
    // another method's name, a method in a comment, a free function beside the method
    assert_eq!(call("func (s *Solution) g() {}\nfunc f() {}\n"), "fn := codeexecReflect.ValueOf(f)");
    assert_eq!(call("// func (s *Solution) f() {}\nfunc f() {}\n"), "fn := codeexecReflect.ValueOf(f)");
    assert_eq!(call("func (s *Solution) f() {}\nfunc f() {}\n"), "fn := codeexecReflect.ValueOf(f)");
}

#[test]
fn cpp_calls_a_member_when_the_code_declares_solution() {
    let call = |code: &str| {
        let files = wrap("cpp", "twoSum", code).unwrap();
        text(&files[0]).lines().find(|l| l.starts_with("signed main")).unwrap().to_owned()
    };
    assert!(call("class Solution {\npublic:\n  int twoSum();\n};").contains("run(&Solution::twoSum)"));
    assert!(call("struct Solution { int twoSum(); };").contains("run(&Solution::twoSum)"));
    assert!(call("int twoSum(vector<int>& v) { return 1; }").contains("run(&::twoSum)"));
    // not in a comment or a string
    assert!(
        call("// class Solution\n/* struct Solution */\nconst char* s = \"class Solution\";\nint twoSum();")
            .contains("run(&::twoSum)")
    );
    let files = wrap("cpp", "twoSum", "int twoSum();").unwrap();
    let driver = text(&files[0]);
    assert!(driver.contains("#include \"solution.h\""));
    let include = driver.find("#include \"solution.h\"").unwrap();
    assert!(driver.find("#include <bits/stdc++.h>").unwrap() < include);
    assert!(driver.find("using namespace std;").unwrap() < include);
}

#[test]
fn java_names_the_file_after_the_public_class_and_lists_the_classes() {
    let files = wrap("java", "f", "class Solution {\n  int f() { return 1; }\n}\n").unwrap();
    assert_eq!(paths(&files), ["CodeexecHarness.java", "Solution.java"]);
    assert!(text(&files[0]).contains("CLASSES = {\"Solution\"};"), "{}", text(&files[0]));
    assert!(text(&files[1]).starts_with(JAVA_IMPORTS));

    let code = "import java.util.*;\n// public class Commented {}\nclass Helper {\n  static class Nested {}\n  \
                void g() { record Local(int x) {} }\n}\npublic class Answer {\n  public static int f() { return 1; }\n}\n\
                enum Color { RED }\n";
    let files = wrap("java", "f", code).unwrap();
    assert_eq!(paths(&files), ["CodeexecHarness.java", "Answer.java"]);
    assert!(
        text(&files[0]).contains("CLASSES = {\"Solution\", \"Helper\", \"Answer\", \"Color\"};"),
        "Solution first, then the top-level types in order: {}",
        text(&files[0])
    );

    let code = "package judge.app;\n\npublic class Solution {\n  int f() { return 1; }\n}\n";
    let files = wrap("java", "f", code).unwrap();
    assert_eq!(text(&files[1]), code, "no imports before a package clause");
    assert!(text(&files[0]).contains("CLASSES = {\"judge.app.Solution\"};"));
}

#[test]
fn the_java_main_is_the_first_method_of_the_driver() {
    // codeexec runs the class declared last before `static void main(` of the first file
    let files = wrap("java", "f", "class Solution {}").unwrap();
    // (comments aside, as codeexec reads it)
    let t = tokens(text(&files[0]), false);
    let main = t.windows(4).position(|w| w == ["static", "void", "main", "("]).unwrap();
    let last_type = t[..main].windows(2).rev().find(|w| matches!(w[0].as_str(), "class" | "record" | "enum"));
    assert_eq!(last_type.map(|w| w[1].as_str()), Some("CodeexecHarness"));
}

#[test]
fn function_names_must_be_identifiers() {
    for bad in ["", "1abc", "a-b", "a b", "a;b", "f()", "x.y", "caf\u{e9}", "a\n", "'); system('x", &"a".repeat(101)] {
        for lang in LANGUAGES {
            assert_eq!(wrap(lang, bad, PY), Err(HarnessError::FunctionName(bad.into())), "{lang} {bad:?}");
        }
    }
    for good in ["f", "_f", "twoSum", "max_profit2", "S", &"a".repeat(100)] {
        for lang in LANGUAGES {
            assert!(wrap(lang, good, PY).is_ok(), "{lang} {good:?}");
        }
    }
    let e = wrap("cpp", "main", "int main() {}").unwrap_err();
    assert_eq!(e, HarnessError::Reserved { lang: "cpp", name: "main".into() });
    assert!(matches!(wrap("go", "init", ""), Err(HarnessError::Reserved { .. })));
    assert!(wrap("python", "main", "def main(): pass").is_ok());
}

#[test]
fn other_languages_are_refused_with_the_list() {
    for lang in ["ruby", "c", "rust", "Python", "py", "", "typescript"] {
        let e = wrap(lang, "f", "").unwrap_err();
        assert_eq!(e, HarnessError::Unsupported(lang.into()));
        assert!(e.to_string().ends_with("it supports python, javascript, java, cpp, go"), "{e}");
    }
}

#[test]
fn input_is_one_json_line() {
    assert_eq!(input(&[json!([2, 7, 11, 15]), json!(9)]), b"[[2,7,11,15],9]\n");
    assert_eq!(input(&[]), b"[]\n");
    assert_eq!(input(&[json!("a\nb"), json!(null), json!({"k": [true]})]), b"[\"a\\nb\",null,{\"k\":[true]}]\n");
}

fn result(json: &str) -> Vec<u8> {
    format!("\n{MARKER}{json}\n").into_bytes()
}

#[test]
fn split_output_takes_the_result_line_out() {
    // nothing printed, printed with and without a newline of its own
    assert_eq!(split_output(&result("[0,1]")), (vec![], Some(Ok(json!([0, 1])))));
    let out = [b"debug\n".as_slice(), &result("3")].concat();
    assert_eq!(split_output(&out), (b"debug\n".to_vec(), Some(Ok(json!(3)))));
    let out = [b"no newline".as_slice(), &result("\"s\"")].concat();
    assert_eq!(split_output(&out), (b"no newline".to_vec(), Some(Ok(json!("s")))));
    assert_eq!(split_output(&result("null")), (vec![], Some(Ok(Value::Null))));
}

#[test]
fn split_output_without_a_result() {
    for out in [&b""[..], b"partial output", b"line\n", MARKER.as_bytes(), b"\x1ecodeexec-result 1\n"] {
        assert_eq!(split_output(out), (out.to_vec(), None), "{out:?}");
    }
}

#[test]
fn split_output_reports_a_result_that_is_not_json() {
    let (own, value) = split_output(&[b"x".as_slice(), &result("[1,")].concat());
    assert_eq!(own, b"x");
    let e = value.unwrap().unwrap_err();
    assert!(e.starts_with("the function's result is not valid JSON"), "{e}");
    // cut off (an output limit): no newline after the result
    let cut = format!("out\n{MARKER}[1,2");
    assert!(split_output(cut.as_bytes()).1.unwrap().is_err());
    let whole = format!("out\n{MARKER}[1,2]");
    assert_eq!(split_output(whole.as_bytes()), (b"out".to_vec(), Some(Ok(json!([1, 2])))));
}

#[test]
fn split_output_takes_the_last_marker() {
    // the user's code printed marker-like lines itself: the driver's comes last
    let out = [b"a".as_slice(), &result("\"fake\""), b"b", &result("[9]")].concat();
    let (own, value) = split_output(&out);
    assert_eq!(value, Some(Ok(json!([9]))));
    assert_eq!(own, [b"a".as_slice(), &result("\"fake\""), b"b"].concat());
}

#[test]
fn split_output_keeps_what_was_printed_after_the_result() {
    let out = [b"before".as_slice(), &result("1"), b"at exit\n"].concat();
    assert_eq!(split_output(&out), (b"beforeat exit\n".to_vec(), Some(Ok(json!(1)))));
}

#[test]
fn tokens_skip_comments_and_literals() {
    let t = tokens("a /* class X */ b // c\n\"class Y\" 'x' '\\'' c\\u0041 `raw`", true);
    assert_eq!(t, ["a", "b", "\"\"", "\"\"", "\"\"", "c", "\\", "u0041", "\"\""]);
    assert_eq!(tokens("`a`", false), ["`", "a", "`"]);
}
