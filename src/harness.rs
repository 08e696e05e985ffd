//! The function harness: runs one function of the user's code on arguments given as JSON,
//! as a judge of LeetCode-style problems needs. [`wrap`] makes the files of such a run for
//! a language, a generated driver program and the user's code beside it; [`input`] is one
//! test's stdin; [`split_output`] takes the driver's stdout apart again.
//!
//! It is a leaf: it knows languages by their id and files as [`InputFile`]s, nothing of the
//! pipeline, the API or the sandbox. The drivers are templates under `src/harness/`.
//!
//! # The driver
//!
//! The driver is the first file and the entry: the language's main file (Java: the class
//! with `main`, which codeexec finds in the first file that has one); the user's code is a
//! file of its own, with its lines where the user wrote them, so diagnostics and the
//! frames of an uncaught error name the user's file and line:
//!
//! | language | files | how the user's code is loaded |
//! |---|---|---|
//! | `python` | `main.py`, `solution.py` | compiled and run as module `solution` (with `from typing import *` first, as LeetCode has it) |
//! | `javascript` | `main.js`, `solution.js` | `vm.runInThisContext`, so top-level `function`, `var`, `let`, `const` and `class` are all seen; `require`, `module` and `exports` are globals |
//! | `java` | `CodeexecHarness.java`, `Solution.java` (or the file the public class needs) | compiled with it; `import java.util.*; import java.util.function.*; import java.util.stream.*;` is put in front of line 1 when the code has no `package` clause |
//! | `cpp` | `main.cpp`, `solution.h` | `#include`d by the driver, after `#include <bits/stdc++.h>` and `using namespace std;` |
//! | `go` | `main.go`, `solution.go` | compiled with it in package `main`; `package main; ` is put in front of line 1 when the code has no `package` clause |
//!
//! It reads stdin, a JSON array with one element per parameter, decodes each into its
//! parameter's type, calls the function and prints the result as JSON on a marker line
//! ([`MARKER`]), after a newline of its own so that the marker starts a line. Output of
//! the user's code is flushed first, and may come before or after.
//!
//! The function: a free function named so when the code defines one (Python, JavaScript,
//! C++, Go), otherwise a method of class `Solution`, made with no arguments (a static
//! method is called without one). Java has only methods: of `Solution`, else of the other
//! top-level classes of the code, in order. C++ and Go learn which at generation time,
//! from the code's text: C++ calls `Solution::f` when the code declares `class Solution` or
//! `struct Solution`; Go calls the method when the code declares `func (… Solution) f(`
//! and no `func f(`.
//!
//! A test that does not fit the function (an argument of the wrong JSON type, a number out
//! of range, the wrong number of arguments), or a result that cannot be encoded, makes the
//! driver exit with status 2 and one line on stderr, `codeexec: argument 2 of 2 of twoSum:
//! expected int at [3], got a string`: a runtime error, never a wrong answer. (A Go panic
//! exits 2 as well; the `codeexec: ` line tells them apart.) An exception of the user's
//! code is not caught: the language reports it as it would any uncaught one.
//!
//! # Type mapping
//!
//! | JSON | Python, JavaScript | Java | C++ | Go |
//! |---|---|---|---|---|
//! | number | `int`/`float`, `number` | `int`, `long`, `short`, `byte`, `double`, `float` and boxed | `int`, `long`, `long long`, `short`, unsigned, `double`, `float` | `int`, `int8`…`int64`, `uint`…, `float32`, `float64` |
//! | string | `str`, `string` | `String` | `std::string` | `string` |
//! | one-character string | | `char`, `Character` | `char` | `byte`, `rune` (numbers too) |
//! | `true`/`false` | `bool`, `boolean` | `boolean`, `Boolean` | `bool` | `bool` |
//! | array | `list`, `Array` | arrays (`int[][]`), `List`, `ArrayList`, `LinkedList`, `Collection`, `Set` (any nesting: `List<List<Integer>>`) | `std::vector` (any nesting) | slices, arrays (any nesting) |
//! | object | `dict`, `Object` | `Map<String, V>` | (not decoded) | maps, structs (`encoding/json`) |
//! | `null` | `None`, `null` | null for any object type | (not decoded) | nil slices, maps, pointers |
//! | anything | as is | `Object` (`Integer`, `Long`, `Double`, `List`, `Map`) | | `any` (numbers as `float64`) |
//!
//! A whole-number parameter takes `3`, `3.0` or `3e0`, but not `3.5` or a number out of its
//! type's range. Results are printed the same way, with these rules: `void` (no result) is
//! `null`; NaN and infinities are `null`; doubles are printed so that they read back the
//! same (Java `Double.toString`, C++ `std::to_chars`, Go and Python as their JSON
//! libraries do), so `2.0` may come out as `2` in JavaScript, C++ and Go; Java and C++
//! `char` and Go `byte` are one-character strings; Python tuples, JavaScript typed arrays
//! and sets, Java collections, C++ `std::pair` (two elements), sets and other ranges are
//! arrays; Go nil slices are `[]`, several results one array of them. Not supported:
//! LeetCode's `ListNode`/`TreeNode` and other classes of the user's (C++ refuses them at
//! compile time with a `static_assert` in `main.cpp`).

use serde_json::Value;

use crate::run::InputFile;

/// The languages the harness has a driver for (their ids).
pub const LANGUAGES: [&str; 5] = ["python", "javascript", "java", "cpp", "go"];

/// What starts the driver's result line (ASCII record separator, then a name): the driver
/// prints a newline, this, the result as JSON and a newline.
pub const MARKER: &str = "\u{1e}codeexec-result ";

/// The longest function name accepted.
pub const MAX_NAME_LEN: usize = 100;

/// A request the harness cannot make files for.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum HarnessError {
    /// No driver for this language.
    #[error("the function harness does not support language {0:?}; it supports {supported}", supported = LANGUAGES.join(", "))]
    Unsupported(String),
    /// The function name is not an identifier.
    #[error(
        "function name {0:?} is not an identifier (ASCII letters, digits and _, not starting with a digit, at most {MAX_NAME_LEN} characters)"
    )]
    FunctionName(String),
    /// The name is the driver's own entry point in this language.
    #[error("function name {name:?} cannot be called by the {lang} harness (its driver is {name})")]
    Reserved {
        /// The language's id.
        lang: &'static str,
        /// The name.
        name: String,
    },
}

type Result<T> = std::result::Result<T, HarnessError>;

/// The files of a harness run: the driver as the language's main file (the entry, and the
/// first file), the user's code in a file of its own.
pub fn wrap(lang_id: &str, function_name: &str, code: &str) -> Result<Vec<InputFile>> {
    let lang =
        LANGUAGES.iter().copied().find(|l| *l == lang_id).ok_or_else(|| HarnessError::Unsupported(lang_id.into()))?;
    check_name(lang, function_name)?;
    let files = match lang {
        "python" => vec![driver("main.py", PYTHON, function_name, &[]), user("solution.py", code.into())],
        "javascript" => vec![driver("main.js", JAVASCRIPT, function_name, &[]), user("solution.js", code.into())],
        "java" => java(function_name, code),
        "cpp" => cpp(function_name, code),
        _ => go(function_name, code),
    };
    Ok(files)
}

/// One test's stdin: its arguments, as JSON (one line).
pub fn input(args: &[Value]) -> Vec<u8> {
    let mut out = serde_json::to_vec(args).expect("a JSON value always serializes");
    out.push(b'\n');
    out
}

/// Splits a driver run's stdout into what the user's code printed itself and the returned
/// value: `None` when the driver never printed a result (the function threw, or the program
/// was killed); `Some(Err(msg))` when the result line is not valid JSON. The last marker
/// line counts; the newline the driver put before it is dropped, and output after it (an
/// exit handler's) is the user's too.
pub fn split_output(stdout: &[u8]) -> (Vec<u8>, Option<std::result::Result<Value, String>>) {
    let needle = [b"\n", MARKER.as_bytes()].concat();
    let Some(at) = stdout.windows(needle.len()).rposition(|w| w == needle) else {
        return (stdout.to_vec(), None);
    };
    let start = at + needle.len();
    let (line, rest) = match stdout[start..].iter().position(|b| *b == b'\n') {
        Some(n) => (&stdout[start..start + n], &stdout[start + n + 1..]),
        None => (&stdout[start..], &[][..]),
    };
    let mut own = stdout[..at].to_vec();
    own.extend_from_slice(rest);
    let value = serde_json::from_slice(line).map_err(|e| format!("the function's result is not valid JSON: {e}"));
    (own, Some(value))
}

const PYTHON: &str = include_str!("harness/driver.py");
const JAVASCRIPT: &str = include_str!("harness/driver.js");
const JAVA: &str = include_str!("harness/CodeexecHarness.java");
const CPP: &str = include_str!("harness/driver.cpp");
const GO: &str = include_str!("harness/driver.go");

/// Names a language's driver cannot call: its own entry point.
const RESERVED: &[(&str, &str)] = &[("cpp", "main"), ("go", "main"), ("go", "init")];

fn check_name(lang: &'static str, name: &str) -> Result<()> {
    let mut chars = name.chars();
    let first_ok = chars.next().is_some_and(|c| c.is_ascii_alphabetic() || c == '_');
    if !first_ok || !chars.all(|c| c.is_ascii_alphanumeric() || c == '_') || name.len() > MAX_NAME_LEN {
        return Err(HarnessError::FunctionName(name.into()));
    }
    if RESERVED.contains(&(lang, name)) {
        return Err(HarnessError::Reserved { lang, name: name.into() });
    }
    Ok(())
}

/// A driver from its template: `@FUNCTION@` is the function's name, then each `(from, to)`.
fn driver(path: &str, template: &str, function_name: &str, more: &[(&str, &str)]) -> InputFile {
    let mut text = template.replace("@FUNCTION@", function_name);
    for (from, to) in more {
        text = text.replace(from, to);
    }
    InputFile { path: path.into(), contents: text.into_bytes(), executable: false }
}

fn user(path: &str, code: String) -> InputFile {
    InputFile { path: path.into(), contents: code.into_bytes(), executable: false }
}

/// What Java code without a `package` clause gets in front of its first line (LeetCode's
/// implicit imports; on the same line, so that every line keeps its number).
pub const JAVA_IMPORTS: &str = "import java.util.*; import java.util.function.*; import java.util.stream.*; ";

fn java(function_name: &str, code: &str) -> Vec<InputFile> {
    let tokens = tokens(code, false);
    let package = java_package(&tokens);
    let types = java_types(&tokens);
    let mut classes = vec!["Solution"];
    classes.extend(types.iter().map(|(name, _)| name.as_str()).filter(|n| *n != "Solution"));
    let qualified = |c: &str| package.as_ref().map_or_else(|| c.to_owned(), |p| format!("{p}.{c}"));
    let list: Vec<String> = classes.iter().map(|c| format!("\"{}\"", qualified(c))).collect();
    let file = types.iter().find(|(_, public)| *public).map_or("Solution", |(name, _)| name.as_str());
    let code = if package.is_some() { code.to_owned() } else { format!("{JAVA_IMPORTS}{code}") };
    vec![
        driver("CodeexecHarness.java", JAVA, function_name, &[("@CLASSES@", &list.join(", "))]),
        user(&format!("{file}.java"), code),
    ]
}

fn cpp(function_name: &str, code: &str) -> Vec<InputFile> {
    let tokens = tokens(code, false);
    let member = tokens.windows(2).any(|w| matches!(w[0].as_str(), "class" | "struct") && w[1] == "Solution");
    let callee = if member { format!("&Solution::{function_name}") } else { format!("&::{function_name}") };
    vec![driver("main.cpp", CPP, function_name, &[("@CALLEE@", &callee)]), user("solution.h", code.into())]
}

fn go(function_name: &str, code: &str) -> Vec<InputFile> {
    let tokens = tokens(code, true);
    let free = tokens.windows(3).any(|w| w[0] == "func" && w[1] == function_name && w[2] == "(");
    let method = go_method(&tokens, function_name);
    let callee = if method && !free { format!("(&Solution{{}}).{function_name}") } else { function_name.to_owned() };
    let code =
        if tokens.first().is_some_and(|t| t == "package") { code.to_owned() } else { format!("package main; {code}") };
    vec![driver("main.go", GO, function_name, &[("@CALLEE@", &callee)]), user("solution.go", code)]
}

/// Whether Go code declares `func (s *Solution) name(` (any receiver name, pointer or not).
fn go_method(tokens: &[String], name: &str) -> bool {
    tokens.windows(2).enumerate().filter(|(_, w)| w[0] == "func" && w[1] == "(").any(|(i, _)| {
        let rest = &tokens[i + 2..];
        let Some(close) = rest.iter().position(|t| t == ")") else { return false };
        let at = |k: usize, t: &str| rest.get(k).is_some_and(|x| x == t);
        close > 0 && at(close - 1, "Solution") && at(close + 1, name) && at(close + 2, "(")
    })
}

/// `package a.b;` of Java code, as `a.b`.
fn java_package(tokens: &[String]) -> Option<String> {
    if tokens.first()? != "package" {
        return None;
    }
    Some(tokens[1..].iter().take_while(|t| *t != ";").map(String::as_str).collect())
}

/// The top-level types of Java code, in order, and whether each is public.
fn java_types(tokens: &[String]) -> Vec<(String, bool)> {
    let mut out = Vec::new();
    let mut depth = 0usize;
    let mut public = false;
    for (i, t) in tokens.iter().enumerate() {
        match t.as_str() {
            "{" => depth += 1,
            "}" => {
                depth = depth.saturating_sub(1);
                public = false;
            }
            ";" => public = false,
            "public" if depth == 0 => public = true,
            "class" | "interface" | "enum" | "record" if depth == 0 && (i == 0 || tokens[i - 1] != ".") => {
                if let Some(name) = tokens.get(i + 1).filter(|n| is_identifier(n)) {
                    out.push((name.clone(), public));
                }
                public = false;
            }
            _ => {}
        }
    }
    out
}

fn is_identifier(t: &str) -> bool {
    t.chars().next().is_some_and(|c| c.is_alphabetic() || c == '_' || c == '$')
}

/// The tokens of C-family code (C++, Java, Go): identifiers and numbers whole, any other
/// character alone; comments dropped and every string or character literal one `""` token
/// (Go's raw strings too, with `backquotes`).
fn tokens(code: &str, backquotes: bool) -> Vec<String> {
    let mut out = Vec::new();
    let mut chars = code.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '/' if chars.peek() == Some(&'/') => {
                chars.by_ref().find(|c| *c == '\n');
            }
            '/' if chars.peek() == Some(&'*') => {
                chars.next();
                let mut prev = ' ';
                chars.by_ref().find(|c| std::mem::replace(&mut prev, *c) == '*' && *c == '/');
            }
            '"' | '\'' => {
                while let Some(d) = chars.next() {
                    if d == '\\' {
                        chars.next();
                    } else if d == c {
                        break;
                    }
                }
                out.push("\"\"".into());
            }
            '`' if backquotes => {
                chars.by_ref().find(|d| *d == '`');
                out.push("\"\"".into());
            }
            c if c.is_alphanumeric() || c == '_' || c == '$' => {
                let mut word = String::from(c);
                while let Some(&d) = chars.peek().filter(|d| d.is_alphanumeric() || **d == '_' || **d == '$') {
                    word.push(d);
                    chars.next();
                }
                out.push(word);
            }
            c if c.is_whitespace() => {}
            c => out.push(c.to_string()),
        }
    }
    out
}

#[cfg(test)]
mod tests;
