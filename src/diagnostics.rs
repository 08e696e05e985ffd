//! Structured diagnostics and runtime errors parsed from the text that toolchains print.
//!
//! This module owns the parsing of checker and compiler output into [`Diagnostic`]s and of
//! a program's stderr into the [`RuntimeError`] that ended it. It only reads text: it
//! never runs a tool, never touches the sandbox and never sees the source files, so what
//! it reports is what the output states (see "Columns" for what that costs). Every parser
//! is total: any text, truncated or garbage, gives a (possibly empty) result, never a
//! panic.
//!
//! # Diagnostics
//!
//! - `file` is made relative to `/sandbox` by [`relative`]; it is empty for a message about
//!   no file (`collect2: error: ld returned 1 exit status`, `javac`'s `error: file not
//!   found`, rustc's `linking with cc failed`).
//! - `message` is the first line of the tool's message, without the location and the
//!   `error:` label. Trailing or leading option tags that only name the flag controlling
//!   a warning are dropped: gcc's `[-Wunused-variable]`, javac's `[removal]`. Codes are
//!   dropped too (`TS2322`, `E0308`). Texts that start with "syntax error" (go, ruby,
//!   bash) keep it: it is part of the tool's sentence.
//! - Notes are kept as [`Severity::Note`] where the tool gives them a location (gcc's
//!   `note:`, rustc top-level notes); location-less chatter (`javac`'s `Note: ... uses
//!   unchecked or unsafe operations`, rustc's `aborting due to ...` and
//!   `For more information ...`, `N errors`) is dropped.
//!
//! # Columns
//!
//! Lines and columns are 1-based. Columns are in characters where the output allows it:
//!
//! - rustc (JSON `column_start`) counts characters.
//! - javac and node print no column, but a caret under a copy of the source line; the
//!   caret's offset counts UTF-16 units (ruby's, bytes), and it is converted to
//!   characters with the copied line.
//! - gcc counts *display* columns: a tab advances to the next multiple of 8 and a wide
//!   character counts 2 (`-fdiagnostics-column-unit=display`, the default since GCC 11).
//!   Its echo of the source line has tabs expanded, so the character column cannot be
//!   recovered: the column is gcc's, exact for tab-free ASCII lines.
//! - go counts bytes (a tab is one), tsc UTF-16 units; both are kept as given.
//! - python prints the offending line with its leading blanks stripped and the caret
//!   under that stripped copy, so the caret's offset is not the column of an indented
//!   line; py_compile's `IndentationError`/`TabError` show no caret at all. The column is
//!   therefore always `None` for python (the daemon, which has the source, could add the
//!   line's indentation to the caret's offset).
//! - bash never gives a column; ruby gives one through its caret unless it cut the long
//!   line from the left (`...`).
//!
//! # Syntax errors
//!
//! `syntax` is true for an error (never a warning or note) that comes from parsing:
//!
//! - python: `SyntaxError`, `IndentationError`, `TabError`; node: `SyntaxError`.
//! - ruby: every `ruby -c` error (the check only parses); bash: every `bash -n` error.
//! - tsc: codes `TS1000`–`TS1999`.
//! - go: messages starting "syntax error" (and go/parser's "expected 'package'").
//! - rustc: errors with no error code whose text starts with "expected", "unexpected",
//!   "mismatched closing delimiter", "this file contains an unclosed delimiter",
//!   "unterminated", "unknown start of token", "unclosed delimiter".
//! - javac: messages ending in "expected" (`';' expected`, `<identifier> expected`,
//!   `class, interface, enum, or record expected`), or starting with "illegal start of",
//!   "reached end of file while parsing", "not a statement", "unclosed ", "illegal
//!   character", "'else' without 'if'".
//! - gcc/g++: messages starting "expected", "stray", "missing terminating".
//!
//! # Runtime errors
//!
//! Frames are innermost first; `kind` and `message` are the exception's type and the first
//! line of its message. Each runtime's layout is described at its parser; the pseudo-kinds
//! are `panic` (go, rust), `fatal error` (go runtime), `fatal runtime error` (rust),
//! `assertion` (glibc `assert`), `terminate` (C++ without an active exception), `Error`
//! (a rust `main` that returned `Err`) and `uncaught` (node, a thrown non-`Error` value).

use serde::{Deserialize, Serialize};

mod bash;
mod gcc;
mod go;
mod java;
mod node;
mod python;
mod ruby;
mod rust;
mod tsc;

/// How severe a diagnostic is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    /// The build or check fails because of it.
    Error,
    /// Reported, but does not fail the build.
    Warning,
    /// Context for a neighbouring error or warning.
    Note,
}

/// One message of a syntax checker or compiler.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Diagnostic {
    /// The file, relative to `/sandbox` (see [`relative`]); empty when the message is about
    /// no file.
    pub file: String,
    /// 1-based line.
    pub line: Option<u32>,
    /// 1-based column, in characters where the tool's output allows (see the module doc).
    pub column: Option<u32>,
    /// How severe.
    pub severity: Severity,
    /// The message text only: no `error:` label, no location, first line only.
    pub message: String,
    /// True when this is a parse (syntax) error, by the rules of the module doc.
    #[serde(skip)]
    pub syntax: bool,
}

/// An uncaught error that ended a program.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RuntimeError {
    /// The exception's type (`ZeroDivisionError`, `java.lang.ArithmeticException`,
    /// `std::runtime_error`) or a pseudo-kind (`panic`, `assertion`).
    #[serde(rename = "type")]
    pub kind: String,
    /// The first line of the error's message.
    pub message: String,
    /// The stack, innermost (where it happened) first.
    pub frames: Vec<Frame>,
}

/// One entry of a stack trace.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Frame {
    /// The file, relative to `/sandbox` (see [`relative`]); library paths stay absolute.
    pub file: String,
    /// 1-based line, when the trace gives one.
    pub line: Option<u32>,
    /// The function (method, block) as the runtime names it, when it does.
    pub function: Option<String>,
}

/// Which checker or compiler printed the diagnostics.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Format {
    /// gcc or g++.
    Gcc,
    /// rustc, with `--error-format=json` (its human format is understood too).
    Rustc,
    /// javac.
    Javac,
    /// `go build`.
    Go,
    /// tsc with `--pretty false`.
    Tsc,
    /// `python3 -m py_compile`.
    Python,
    /// `node --check`.
    Node,
    /// `ruby -c`.
    Ruby,
    /// `bash -n`.
    Bash,
}

/// Which runtime printed an uncaught error.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ErrorFormat {
    /// CPython's traceback.
    Python,
    /// node's uncaught exception (also typescript run with `--enable-source-maps`).
    Node,
    /// The JVM's `Exception in thread "main"`.
    Java,
    /// ruby's uncaught exception.
    Ruby,
    /// go's panic and goroutine trace.
    Go,
    /// rust's panic message.
    Rust,
    /// libstdc++'s `terminate called after throwing`, or a glibc assertion.
    Cpp,
    /// A glibc assertion.
    C,
}

/// Diagnostics from a checker's or compiler's stdout and stderr (errors and warnings;
/// notes may be dropped or kept as Note).
pub fn parse_diagnostics(format: Format, stdout: &str, stderr: &str) -> Vec<Diagnostic> {
    let parse = match format {
        Format::Gcc => gcc::parse_diagnostics,
        Format::Rustc => rust::parse_diagnostics,
        Format::Javac => java::parse_diagnostics,
        Format::Go => go::parse_diagnostics,
        Format::Tsc => tsc::parse_diagnostics,
        Format::Python => python::parse_diagnostics,
        Format::Node => node::parse_diagnostics,
        Format::Ruby => ruby::parse_diagnostics,
        Format::Bash => bash::parse_diagnostics,
    };
    // tsc prints to stdout, the others to stderr; a tool never splits one message.
    let mut all = parse(stdout);
    all.extend(parse(stderr));
    all
}

/// How much of a program's stderr the runtime-error parsers read: its first and its last
/// this many lines (a trace's header and its innermost end), each cut to
/// [`MAX_ERROR_TEXT_BYTES`], so a program printing megabytes of fake trace costs the
/// daemon no more than this.
pub const ERROR_WINDOW_LINES: usize = 256;
/// The most frames a runtime error keeps: the innermost.
pub const MAX_FRAMES: usize = 64;
/// The longest message, file or function a runtime error keeps, in bytes.
pub const MAX_ERROR_TEXT_BYTES: usize = 1024;

/// The uncaught error a program's stderr shows, if any: read from
/// [`ERROR_WINDOW_LINES`] of it, within [`MAX_FRAMES`] and [`MAX_ERROR_TEXT_BYTES`].
pub fn parse_runtime_error(format: ErrorFormat, stderr: impl AsRef<[u8]>) -> Option<RuntimeError> {
    let window = error_window(stderr.as_ref());
    let text = String::from_utf8_lossy(&window);
    let stderr = text.as_ref();
    let e = match format {
        ErrorFormat::Python => python::parse_runtime_error(stderr),
        ErrorFormat::Node => node::parse_runtime_error(stderr),
        ErrorFormat::Java => java::parse_runtime_error(stderr),
        ErrorFormat::Ruby => ruby::parse_runtime_error(stderr),
        ErrorFormat::Go => go::parse_runtime_error(stderr),
        ErrorFormat::Rust => rust::parse_runtime_error(stderr),
        ErrorFormat::Cpp => gcc::parse_terminate(stderr).or_else(|| gcc::parse_assertion(stderr)),
        ErrorFormat::C => gcc::parse_assertion(stderr),
    };
    e.map(RuntimeError::capped)
}

/// The head and the tail of `stderr` (see [`ERROR_WINDOW_LINES`]).
fn error_window(stderr: &[u8]) -> Vec<u8> {
    let mut head = Vec::new();
    let mut tail = std::collections::VecDeque::new();
    for line in stderr.split_inclusive(|&b| b == b'\n') {
        let line = &line[..line.len().min(MAX_ERROR_TEXT_BYTES)];
        if head.len() < ERROR_WINDOW_LINES {
            head.push(line);
        } else {
            if tail.len() == ERROR_WINDOW_LINES {
                tail.pop_front();
            }
            tail.push_back(line);
        }
    }
    let mut out = Vec::new();
    for line in head.into_iter().chain(tail) {
        out.extend_from_slice(line);
        if !line.ends_with(b"\n") {
            out.push(b'\n');
        }
    }
    out
}

impl RuntimeError {
    /// Within [`MAX_FRAMES`] (the innermost) and [`MAX_ERROR_TEXT_BYTES`] each text.
    fn capped(mut self) -> Self {
        self.frames.truncate(MAX_FRAMES);
        cap_text(&mut self.kind);
        cap_text(&mut self.message);
        for f in &mut self.frames {
            cap_text(&mut f.file);
            if let Some(function) = f.function.as_mut() {
                cap_text(function);
            }
        }
        self
    }
}

/// `s` cut to [`MAX_ERROR_TEXT_BYTES`] at a character's boundary.
fn cap_text(s: &mut String) {
    if s.len() > MAX_ERROR_TEXT_BYTES {
        let mut end = MAX_ERROR_TEXT_BYTES;
        while !s.is_char_boundary(end) {
            end -= 1;
        }
        s.truncate(end);
    }
}

/// Python prints a syntax error's line without its indentation, with the caret under that
/// copy, so the parser leaves the column out; with the source at hand (`source`: a file's
/// text by its path relative to /sandbox) the column is the line's indentation plus the
/// caret's place. Other formats are left as they are.
pub fn fill_columns(
    format: Format,
    diagnostics: &mut [Diagnostic],
    stderr: &str,
    source: &dyn Fn(&str) -> Option<String>,
) {
    if format != Format::Python {
        return;
    }
    for (file, line, offset) in python::carets(stderr) {
        let Some(text) = source(&file) else { continue };
        let Some(src) = text.lines().nth(line.saturating_sub(1) as usize) else { continue };
        let indent = src.chars().take_while(|c| c.is_whitespace()).count();
        let column = u32::try_from(indent + offset + 1).ok();
        for d in diagnostics.iter_mut().filter(|d| d.file == file && d.line == Some(line) && d.column.is_none()) {
            d.column = column;
        }
    }
}

/// For rustc's `--error-format=json`: the human text rustc would have printed (the
/// concatenated `rendered` fields); `None` for other formats or when stderr is not JSON
/// lines. The daemon shows this to users instead of the raw JSON.
pub fn human_output(format: Format, stderr: &str) -> Option<String> {
    match format {
        Format::Rustc => rust::human_output(stderr),
        _ => None,
    }
}

/// A path as the user should see it: "/sandbox/x/main.py" -> "x/main.py", "./main.go" ->
/// "main.go", "main.py" unchanged, any other absolute path (e.g.
/// "/usr/lib/python3.11/json/decoder.py") unchanged.
pub fn relative(path: &str) -> String {
    // node prints ES module frames as URLs.
    let path = path.strip_prefix("file://").unwrap_or(path);
    let mut rest = path.strip_prefix("/sandbox/").unwrap_or(path);
    while let Some(r) = rest.strip_prefix("./") {
        rest = r.trim_start_matches('/');
    }
    rest.to_string()
}

/// A file and the line and column after it, as in `main.c:5:9`.
#[derive(Debug, PartialEq)]
struct Location {
    file: String,
    line: Option<u32>,
    column: Option<u32>,
}

/// Splits `file[:line[:column]]`, taking the numbers from the right.
fn split_location(s: &str) -> Location {
    let (head, last) = split_number(s);
    match last {
        None => Location { file: relative(s), line: None, column: None },
        Some(last) => match split_number(head) {
            (file, Some(line)) => Location { file: relative(file), line: Some(line), column: Some(last) },
            (file, None) => Location { file: relative(file), line: Some(last), column: None },
        },
    }
}

/// `("main.c:5", Some(9))` from `"main.c:5:9"`; `(s, None)` when `s` does not end in `:N`.
fn split_number(s: &str) -> (&str, Option<u32>) {
    match s.rsplit_once(':') {
        Some((head, n)) if !head.is_empty() => match number(n) {
            Some(n) => (head, Some(n)),
            None => (s, None),
        },
        _ => (s, None),
    }
}

/// A decimal of ASCII digits only (no sign, no blanks) that fits in a `u32`.
fn number(s: &str) -> Option<u32> {
    if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    s.parse().ok()
}

/// Splits `file:line[:column]: rest` at the first `:N: ` or `:N:M: ` of a line; the file
/// must be non-empty and hold no `": "` of its own.
fn located(line: &str) -> Option<(Location, &str)> {
    for (i, _) in line.match_indices(':') {
        let file = &line[..i];
        let after = &line[i + 1..];
        let digits = after.bytes().take_while(u8::is_ascii_digit).count();
        let (num, tail) = after.split_at(digits);
        if let (false, Some(l)) = (file.is_empty(), number(num)) {
            if let Some(rest) = tail.strip_prefix(": ") {
                return Some((Location { file: relative(file), line: Some(l), column: None }, rest));
            }
            if let Some(tail) = tail.strip_prefix(':') {
                let digits = tail.bytes().take_while(u8::is_ascii_digit).count();
                let (num, tail) = tail.split_at(digits);
                if let (Some(c), Some(rest)) = (number(num), tail.strip_prefix(": ")) {
                    return Some((Location { file: relative(file), line: Some(l), column: Some(c) }, rest));
                }
            }
        }
        // Every later candidate's file would contain this `": "`.
        if after.starts_with(' ') {
            return None;
        }
    }
    None
}

/// What a caret's offset under a source line counts.
#[derive(Debug, Clone, Copy)]
enum Unit {
    /// UTF-8 bytes (ruby).
    Byte,
    /// UTF-16 code units (javac, V8).
    Utf16,
}

/// Whether `s` is a caret line: blanks, then `^` (possibly followed by more `^`/`~`).
fn is_caret_line(s: &str) -> bool {
    let t = s.trim_start();
    t.starts_with('^') && t.trim_end().chars().all(|c| c == '^' || c == '~')
}

/// The 1-based character column of the caret in `caret` under `source`, whose offset
/// counts `unit`s. A caret past the end of the line counts one character per unit there.
fn caret_column(source: &str, caret: &str, unit: Unit) -> Option<u32> {
    if !is_caret_line(caret) {
        return None;
    }
    // The blanks before the caret copy the source's tabs, one unit each.
    let mut units = caret.chars().take_while(|&c| c != '^').count();
    let mut chars = 0usize;
    for c in source.chars() {
        let width = match unit {
            Unit::Byte => c.len_utf8(),
            Unit::Utf16 => c.len_utf16(),
        };
        if units < width {
            break;
        }
        units -= width;
        chars += 1;
    }
    u32::try_from(chars + units + 1).ok()
}

/// The first line of a message, without trailing blanks.
fn first_line(s: &str) -> String {
    s.lines().next().unwrap_or("").trim_end().to_string()
}

/// A diagnostic with no location.
fn unlocated(severity: Severity, message: &str) -> Diagnostic {
    Diagnostic { file: String::new(), line: None, column: None, severity, message: first_line(message), syntax: false }
}

/// A diagnostic at a location.
fn at(loc: Location, severity: Severity, message: &str, syntax: bool) -> Diagnostic {
    Diagnostic {
        file: loc.file,
        line: loc.line,
        column: loc.column,
        severity,
        message: first_line(message),
        syntax: syntax && severity == Severity::Error,
    }
}

/// `text` split after a leading severity label (`error: `, `warning: `, `note: `, gcc's
/// `fatal error: `, ...).
fn labelled(text: &str) -> Option<(Severity, &str)> {
    const LABELS: [(&str, Severity); 6] = [
        ("error: ", Severity::Error),
        ("warning: ", Severity::Warning),
        ("note: ", Severity::Note),
        ("fatal error: ", Severity::Error),
        ("internal compiler error: ", Severity::Error),
        ("sorry, unimplemented: ", Severity::Error),
    ];
    LABELS.iter().find_map(|&(label, severity)| Some((severity, text.strip_prefix(label)?)))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// One fixture's raw output, captured by `tests/fixtures/diagnostics/capture.sh` from the
    /// daemon's command in a real sandbox.
    macro_rules! fixture {
        ($name:literal) => {
            ($name, "", include_str!(concat!("../tests/fixtures/diagnostics/", $name, ".txt")))
        };
        ($name:literal, stdout) => {
            (
                $name,
                include_str!(concat!("../tests/fixtures/diagnostics/", $name, ".stdout.txt")),
                include_str!(concat!("../tests/fixtures/diagnostics/", $name, ".txt")),
            )
        };
    }

    use Severity::{Error as E, Note as N, Warning as W};

    /// A fixture's name, stdout and stderr.
    type Fixture = (&'static str, &'static str, &'static str);

    /// file, line, column, severity, syntax, start of the message.
    type Expected = (&'static str, Option<u32>, Option<u32>, Severity, bool, &'static str);

    /// Every diagnostics fixture with everything it must parse to, in order. Lines and
    /// columns were checked against the source next to each fixture
    /// (`<case>.<ext>`; the file is `main.<ext>` in the sandbox).
    #[rustfmt::skip]
    fn diagnostic_cases() -> Vec<(Format, Fixture, Vec<Expected>)> {
        vec![
            // `total = sum([1, 2, 3]` on line 3: the caret is under the stripped line (no column).
            (Format::Python, fixture!("python-syntax"), vec![("main.py", Some(3), None, E, true, "'(' was never closed")]),
            // Indented by 8: the caret's offset (7) is not the column (15), hence None.
            (Format::Python, fixture!("python-indented"), vec![("main.py", Some(3), None, E, true, "invalid syntax. Perhaps you forgot a comma?")]),
            // py_compile prints IndentationError as `Sorry: ...` with no caret.
            (Format::Python, fixture!("python-indent"), vec![("main.py", Some(3), None, E, true, "unexpected indent")]),
            (Format::Python, fixture!("python-warn"), vec![("main.py", Some(2), None, W, false, "\"is\" with a literal")]),
            // `console.log(add(1, 2);`: V8 puts the caret under the `)` (column 21).
            (Format::Node, fixture!("node-syntax"), vec![("main.js", Some(5), Some(21), E, true, "missing ) after argument list")]),
            // tsc prints on stdout; the same line as node's, at the `;` (column 22).
            (Format::Tsc, fixture!("typescript-syntax", stdout), vec![("main.ts", Some(5), Some(22), E, true, "')' expected.")]),
            (Format::Tsc, fixture!("typescript-type", stdout), vec![("main.ts", Some(5), Some(7), E, false, "Type 'number' is not assignable to type 'string'.")]),
            (Format::Tsc, fixture!("typescript-multi", stdout), vec![
                ("main.ts", Some(6), Some(32), E, false, "Type 'string' is not assignable to type 'number'."),
                ("main.ts", Some(7), Some(15), E, false, "Property 'nmae' does not exist on type 'User'."),
                ("main.ts", Some(8), Some(13), E, false, "Cannot find name 'missing'."),
                ("main.ts", Some(9), Some(5), E, false, "Type 'string' is not assignable to type 'number'."),
            ]),
            // main.ts imports shapes.ts, whose line 2 is wrong.
            (Format::Tsc, fixture!("typescript-files", stdout), vec![("shapes.ts", Some(2), Some(9), E, false, "Type 'string' is not assignable")]),
            // A missing `end`: ruby points past the end of the last line (`greet("x")`, 10 chars).
            (Format::Ruby, fixture!("ruby-syntax"), vec![("main.rb", Some(4), Some(11), E, true, "syntax error, unexpected end-of-input, expecting `end'")]),
            (Format::Ruby, fixture!("ruby-syntax2"), vec![
                ("main.rb", Some(2), Some(7), E, true, "syntax error, unexpected *"),
                ("main.rb", Some(5), Some(15), E, true, "syntax error, unexpected end-of-input"),
            ]),
            (Format::Bash, fixture!("bash-syntax"), vec![("main.sh", Some(6), None, E, true, "syntax error: unexpected end of file")]),
            // The echo of the offending line (`main.sh: line 2: `if then'`) is no diagnostic.
            (Format::Bash, fixture!("bash-syntax2"), vec![("main.sh", Some(2), None, E, true, "syntax error near unexpected token `then'")]),
            // `int x = 41` lacks its `;`: gcc reports it at the next statement.
            (Format::Gcc, fixture!("c-syntax"), vec![
                ("main.c", Some(5), Some(5), E, true, "expected ‘,’ or ‘;’ before ‘printf’"),
                ("main.c", Some(4), Some(9), W, false, "unused variable ‘x’"),
            ]),
            (Format::Gcc, fixture!("c-undeclared"), vec![
                ("main.c", Some(8), Some(20), E, false, "‘totl’ undeclared (first use in this function); did you mean ‘total’?"),
                ("main.c", Some(8), Some(20), N, false, "each undeclared identifier is reported only once"),
            ]),
            (Format::Gcc, fixture!("c-warn"), vec![
                ("main.c", Some(6), Some(13), W, false, "initialization of ‘int’ from ‘const char *’ makes integer from pointer without a cast"),
                ("main.c", Some(7), Some(20), E, false, "‘count’ undeclared"),
                ("main.c", Some(7), Some(20), N, false, "each undeclared identifier"),
                ("main.c", Some(4), Some(9), W, false, "unused variable ‘unused’"),
            ]),
            (Format::Gcc, fixture!("c-multi"), vec![
                ("main.c", Some(7), Some(21), E, false, "‘struct point’ has no member named ‘z’"),
                ("main.c", Some(8), Some(5), W, false, "implicit declaration of function ‘undefined_fn’"),
                ("main.c", Some(9), Some(19), E, false, "invalid operands to binary *"),
                ("main.c", Some(10), Some(12), E, false, "‘b’ undeclared"),
                ("main.c", Some(10), Some(12), N, false, "each undeclared identifier"),
                ("main.c", Some(9), Some(9), W, false, "unused variable ‘a’"),
            ]),
            // `\tprintf("%d\n", v + missing);`: `missing` is character 21, display column 28.
            (Format::Gcc, fixture!("c-tabs"), vec![
                ("main.c", Some(5), Some(28), E, false, "‘missing’ undeclared"),
                ("main.c", Some(5), Some(28), N, false, "each undeclared identifier"),
            ]),
            // The linker names the object's source file but no line.
            (Format::Gcc, fixture!("c-link"), vec![
                ("main.c", None, None, E, false, "undefined reference to `helper'"),
                ("", None, None, E, false, "ld returned 1 exit status"),
            ]),
            (Format::Gcc, fixture!("cpp-syntax"), vec![("main.cpp", Some(4), Some(35), E, true, "expected ‘;’ before ‘return’")]),
            (Format::Gcc, fixture!("cpp-type"), vec![
                ("main.cpp", Some(6), Some(27), E, false, "conversion from ‘std::vector<int>::size_type’"),
                ("main.cpp", Some(7), Some(13), E, false, "‘undeclared’ was not declared in this scope"),
            ]),
            (Format::Gcc, fixture!("cpp-warn"), vec![
                ("main.cpp", Some(6), Some(18), E, false, "‘nme’ was not declared in this scope; did you mean ‘name’?"),
                ("main.cpp", Some(4), Some(9), W, false, "unused variable ‘unused’"),
            ]),
            // The caret sits just past `int x = 41` (18 characters).
            (Format::Javac, fixture!("java-syntax"), vec![("Main.java", Some(3), Some(19), E, true, "';' expected")]),
            // Past `... "é😀"; int n = s` (34 characters, 35 UTF-16 units, 38 bytes).
            (Format::Javac, fixture!("java-syntax2"), vec![
                ("Main.java", Some(3), Some(35), E, true, "';' expected"),
                ("Main.java", Some(5), Some(6), E, true, "reached end of file while parsing"),
            ]),
            (Format::Javac, fixture!("java-type"), vec![
                ("Main.java", Some(3), Some(20), E, false, "incompatible types: int cannot be converted to String"),
                ("Main.java", Some(4), Some(32), E, false, "cannot find symbol"),
            ]),
            (Format::Javac, fixture!("java-warn"), vec![
                ("Main.java", Some(3), Some(25), W, false, "Integer(int) in Integer has been deprecated and marked for removal"),
                ("Main.java", Some(4), Some(17), E, false, "incompatible types: String cannot be converted to int"),
            ]),
            // `\tx := []int{1, 2, 3`: go counts bytes, the tab is one.
            (Format::Go, fixture!("go-syntax"), vec![
                ("main.go", Some(6), Some(20), E, true, "syntax error: unexpected newline in composite literal"),
                ("main.go", Some(7), Some(15), E, true, "syntax error: unexpected ) at end of statement"),
            ]),
            (Format::Go, fixture!("go-undeclared"), vec![("main.go", Some(10), Some(14), E, false, "undefined: totl")]),
            (Format::Go, fixture!("go-multi"), vec![
                ("main.go", Some(5), Some(2), E, false, "imported and not used: \"os\""),
                ("main.go", Some(9), Some(14), E, false, "cannot use \"five\" (untyped string constant) as int value"),
                ("main.go", Some(10), Some(2), E, false, "unused declared but not used"),
                ("main.go", Some(11), Some(18), E, false, "undefined: missing"),
            ]),
            // Two primary spans (4:1 first in JSON); rustc shows 2:17, the unclosed `[`.
            (Format::Rustc, fixture!("rust-syntax"), vec![
                ("main.rs", Some(4), Some(1), E, true, "expected one of `.`, `;`, `?`, `else`, or an operator, found `}`"),
                ("main.rs", Some(2), Some(17), E, true, "mismatched closing delimiter: `}`"),
            ]),
            (Format::Rustc, fixture!("rust-type"), vec![("main.rs", Some(6), Some(21), E, false, "mismatched types")]),
            (Format::Rustc, fixture!("rust-warn"), vec![
                ("main.rs", Some(1), Some(5), W, false, "unused import: `std::collections::HashMap`"),
                ("main.rs", Some(5), Some(8), W, false, "unnecessary parentheses around `if` condition"),
                ("main.rs", Some(8), Some(21), E, false, "mismatched types"),
            ]),
            // `s` after "é😀" on line 2 is character 32 (byte 36).
            (Format::Rustc, fixture!("rust-multi"), vec![
                ("main.rs", Some(3), Some(5), E, false, "cannot find function `undefined_fn` in this scope"),
                ("main.rs", Some(2), Some(32), E, false, "mismatched types"),
            ]),
        ]
    }

    #[test]
    fn python_columns_come_from_the_source() {
        let stderr = include_str!("../tests/fixtures/diagnostics/python-indented.txt");
        let source = include_str!("../tests/fixtures/diagnostics/python-indented.py");
        let mut found = parse_diagnostics(Format::Python, "", stderr);
        fill_columns(Format::Python, &mut found, stderr, &|p: &str| (p == "main.py").then(|| source.to_owned()));
        // `        print("hello" name)`: the caret is under `"hello"`, the 15th character
        assert_eq!((found[0].line, found[0].column), (Some(3), Some(15)));
        // without the source, no column is made up
        let mut found = parse_diagnostics(Format::Python, "", stderr);
        fill_columns(Format::Python, &mut found, stderr, &|_: &str| None);
        assert_eq!(found[0].column, None);
    }

    #[test]
    fn diagnostics_of_every_fixture() {
        for (format, (name, stdout, stderr), expected) in diagnostic_cases() {
            let got = parse_diagnostics(format, stdout, stderr);
            assert_eq!(got.len(), expected.len(), "{name}: {got:#?}");
            for (d, &(file, line, column, severity, syntax, message)) in got.iter().zip(&expected) {
                assert_eq!(
                    (d.file.as_str(), d.line, d.column, d.severity, d.syntax),
                    (file, line, column, severity, syntax),
                    "{name}: {d:?}"
                );
                assert!(d.message.starts_with(message), "{name}: {:?} does not start with {message:?}", d.message);
                assert!(!d.message.contains('\n'), "{name}: {:?}", d.message);
            }
        }
    }

    /// kind, message, innermost frame (file, line, function), number of frames.
    type ExpectedError = (&'static str, &'static str, (&'static str, Option<u32>, Option<&'static str>), usize);

    #[rustfmt::skip]
    fn runtime_cases() -> Vec<(ErrorFormat, Fixture, ExpectedError)> {
        vec![
            (ErrorFormat::Python, fixture!("python-rt-nested"), ("ZeroDivisionError", "division by zero", ("main.py", Some(2), Some("ratio")), 3)),
            // The last exception of the chain, with its own frames only.
            (ErrorFormat::Python, fixture!("python-rt-chained"), ("RuntimeError", "bad config: {oops", ("main.py", Some(8), Some("load")), 3)),
            (ErrorFormat::Python, fixture!("python-rt-import"), ("ValueError", "invalid literal for int() with base 10: 'x'", ("lib.py", Some(2), Some("parse")), 4)),
            // A type with no message: what the daemon matches to report a memory limit.
            (ErrorFormat::Python, fixture!("python-rt-memory"), ("MemoryError", "", ("main.py", Some(2), Some("table")), 2)),
            (ErrorFormat::Python, fixture!("python-rt-syntax"), ("SyntaxError", "'(' was never closed", ("main.py", Some(3), None), 1)),
            (ErrorFormat::Node, fixture!("node-rt-nested"), ("Error", "too big: 3", ("main.js", Some(3), Some("check")), 10)),
            (ErrorFormat::Node, fixture!("node-rt-type"), ("TypeError", "Cannot read properties of null (reading 'port')", ("main.js", Some(4), Some("port")), 8)),
            (ErrorFormat::Node, fixture!("node-rt-string"), ("uncaught", "plain string", ("main.js", Some(2), None), 1)),
            // node's own frame first, kept as node prints it; the last frame ends in ` {`.
            (ErrorFormat::Node, fixture!("node-rt-enoent"), ("Error", "ENOENT: no such file or directory, open 'missing.json'", ("node:fs", Some(448), Some("Object.readFileSync")), 9)),
            // Source maps: the frames name main.ts and its lines.
            (ErrorFormat::Node, fixture!("typescript-rt-throw"), ("Error", "order 2 has no items", ("main.ts", Some(8), Some("validate")), 10)),
            (ErrorFormat::Java, fixture!("java-rt-arith"), ("java.lang.ArithmeticException", "/ by zero", ("Main.java", Some(3), Some("Main.divide")), 3)),
            (ErrorFormat::Java, fixture!("java-rt-caused"), ("java.lang.IllegalStateException", "bad number: 12x", ("Main.java", Some(6), Some("Main.parse")), 2)),
            (ErrorFormat::Java, fixture!("java-rt-oom"), ("java.lang.OutOfMemoryError", "Java heap space", ("Main.java", Some(8), Some("Main.hoard")), 2)),
            (ErrorFormat::Ruby, fixture!("ruby-rt-nested"), ("ArgumentError", "negative: -2", ("main.rb", Some(2), Some("check")), 5)),
            (ErrorFormat::Ruby, fixture!("ruby-rt-zerodiv"), ("ZeroDivisionError", "divided by 0", ("main.rb", Some(2), Some("/")), 3)),
            // Both calls are inlined: `main.divide(...)`, no `+0x` offset.
            (ErrorFormat::Go, fixture!("go-rt-divzero"), ("panic", "runtime error: integer divide by zero", ("main.go", Some(6), Some("main.divide")), 3)),
            (ErrorFormat::Go, fixture!("go-rt-panic"), ("panic", "missing key \"b\" (have 1 keys)", ("main.go", Some(8), Some("main.lookup")), 2)),
            // The `[signal SIGSEGV ...]` line is not part of the message.
            (ErrorFormat::Go, fixture!("go-rt-nil"), ("panic", "runtime error: invalid memory address or nil pointer dereference", ("main.go", Some(11), Some("main.second")), 2)),
            (ErrorFormat::Rust, fixture!("rust-rt-panic"), ("panic", "negative value: -3", ("main.rs", Some(3), None), 1)),
            (ErrorFormat::Rust, fixture!("rust-rt-index"), ("panic", "index out of bounds: the len is 3 but the index is 10", ("main.rs", Some(2), None), 1)),
            (ErrorFormat::Cpp, fixture!("cpp-rt-throw"), ("std::runtime_error", "negative input: -1", ("", None, None), 0)),
            (ErrorFormat::C, fixture!("c-rt-assert"), ("assertion", "x % 2 == 0", ("main.c", Some(5), Some("half")), 1)),
        ]
    }

    #[test]
    fn runtime_error_of_every_fixture() {
        for (format, (name, _, stderr), (kind, message, innermost, frames)) in runtime_cases() {
            let got = parse_runtime_error(format, stderr);
            let Some(e) = got else { panic!("{name}: no error found") };
            assert_eq!(
                (e.kind.as_str(), e.message.as_str(), e.frames.len()),
                (kind, message, frames),
                "{name}: {e:#?}"
            );
            if let Some(f) = e.frames.first() {
                assert_eq!((f.file.as_str(), f.line, f.function.as_deref()), innermost, "{name}: {e:#?}");
            }
        }
    }

    /// `main() -> Result` returning `Err`: rust prints the error's `Debug` and exits 1.
    #[test]
    fn rust_main_returning_err() {
        let (_, _, stderr) = fixture!("rust-rt-result");
        let e = parse_runtime_error(ErrorFormat::Rust, stderr).unwrap();
        assert_eq!((e.kind.as_str(), e.message.as_str()), ("Error", "ParseIntError { kind: InvalidDigit }"));
    }

    /// Every `<case>.txt` in the fixture directory is in one of the tables above.
    #[test]
    fn every_fixture_is_tested() {
        let dir = std::path::Path::new(file!()).with_file_name("../tests/fixtures/diagnostics");
        let mut known: Vec<&str> = diagnostic_cases().into_iter().map(|(_, (name, _, _), _)| name).collect();
        known.extend(runtime_cases().into_iter().map(|(_, (name, _, _), _)| name));
        known.push("rust-rt-result");
        let mut count = 0;
        for entry in std::fs::read_dir(&dir).unwrap() {
            let file = entry.unwrap().file_name().into_string().unwrap();
            if let Some(case) = file.strip_suffix(".txt").filter(|c| !c.ends_with(".stdout")) {
                assert!(known.contains(&case), "fixture {file} is not in a table");
                count += 1;
            }
        }
        assert_eq!(count, known.len());
    }

    #[test]
    fn chained_python_keeps_only_the_last_exception() {
        let (_, _, stderr) = fixture!("python-rt-chained");
        let e = parse_runtime_error(ErrorFormat::Python, stderr).unwrap();
        let functions: Vec<_> = e.frames.iter().map(|f| f.function.as_deref().unwrap()).collect();
        assert_eq!(functions, ["load", "main", "<module>"]);
        assert!(e.frames.iter().all(|f| f.file == "main.py"));
    }

    #[test]
    fn frames_are_innermost_first_across_files() {
        let (_, _, stderr) = fixture!("python-rt-import");
        let e = parse_runtime_error(ErrorFormat::Python, stderr).unwrap();
        let frames: Vec<_> = e.frames.iter().map(|f| (f.file.as_str(), f.line.unwrap())).collect();
        assert_eq!(frames, [("lib.py", 2), ("lib.py", 6), ("lib.py", 6), ("main.py", 3)]);
        let (_, _, stderr) = fixture!("java-rt-caused");
        let e = parse_runtime_error(ErrorFormat::Java, stderr).unwrap();
        assert_eq!(e.frames[1].function.as_deref(), Some("Main.main"), "frames of `Caused by` are not read");
    }

    #[test]
    fn human_output_concatenates_rendered() {
        let (_, _, stderr) = fixture!("rust-warn");
        let text = human_output(Format::Rustc, stderr).unwrap();
        assert!(text.starts_with("warning: unused import: `std::collections::HashMap`\n --> main.rs:1:5\n"), "{text}");
        assert!(text.contains("error[E0308]: mismatched types\n --> main.rs:8:21\n"), "{text}");
        assert!(text.ends_with("For more information about this error, try `rustc --explain E0308`.\n"), "{text}");
        assert!(!text.contains("\"rendered\""));
        assert_eq!(human_output(Format::Gcc, stderr), None);
        let (_, _, stderr) = fixture!("c-syntax");
        assert_eq!(human_output(Format::Rustc, stderr), None);
        assert_eq!(human_output(Format::Rustc, ""), None);
    }

    #[test]
    fn rustc_human_format_is_a_fallback() {
        let (_, _, stderr) = fixture!("rust-warn");
        let human = human_output(Format::Rustc, stderr).unwrap();
        let from_human = parse_diagnostics(Format::Rustc, "", &human);
        let from_json = parse_diagnostics(Format::Rustc, "", stderr);
        assert_eq!(from_human, from_json);
    }

    #[test]
    fn relative_paths() {
        assert_eq!(relative("/sandbox/x/main.py"), "x/main.py");
        assert_eq!(relative("/sandbox/main.py"), "main.py");
        assert_eq!(relative("./main.go"), "main.go");
        assert_eq!(relative("main.py"), "main.py");
        assert_eq!(relative("/usr/lib/python3.11/json/decoder.py"), "/usr/lib/python3.11/json/decoder.py");
        assert_eq!(relative("file:///sandbox/main.mjs"), "main.mjs");
        assert_eq!(relative("/sandboxed/main.py"), "/sandboxed/main.py");
        assert_eq!(relative("node:internal/main/run_main_module"), "node:internal/main/run_main_module");
    }

    /// Outputs with no uncaught error, including ordinary stderr of a program that went on.
    #[test]
    fn no_error_is_none() {
        let quiet = ["", "\n", "warning: something odd\n", "Syntax OK\n", "done: 3 items\n"];
        for format in ERROR_FORMATS {
            for text in quiet {
                assert_eq!(parse_runtime_error(format, text), None, "{format:?} {text:?}");
            }
        }
        for format in FORMATS {
            assert_eq!(parse_diagnostics(format, "Syntax OK\n", ""), vec![], "{format:?}");
        }
    }

    /// Layouts of other versions than the host's, typed from their documentation: rust 1.73+
    /// panics, ruby 3.4 quotes, a python message of several lines.
    #[test]
    fn other_versions() {
        let e = parse_runtime_error(
            ErrorFormat::Rust,
            "thread 'main' panicked at src/main.rs:3:9:\nboom\nnote: run with `RUST_BACKTRACE=1`\n",
        )
        .unwrap();
        assert_eq!((e.message.as_str(), e.frames[0].file.as_str(), e.frames[0].line), ("boom", "src/main.rs", Some(3)));
        let e = parse_runtime_error(
            ErrorFormat::Ruby,
            "main.rb:2:in 'Object#check': bad (ArgumentError)\n\tfrom main.rb:5:in '<main>'\n",
        )
        .unwrap();
        assert_eq!(
            (e.kind.as_str(), e.frames[0].function.as_deref(), e.frames.len()),
            ("ArgumentError", Some("Object#check"), 2)
        );
        let e = parse_runtime_error(ErrorFormat::Ruby, "m.rb:1:in `<main>': a (RuntimeError)\nb\n").unwrap();
        assert_eq!((e.kind.as_str(), e.message.as_str()), ("RuntimeError", "a"));
        let e = parse_runtime_error(ErrorFormat::Ruby, "m.rb:1:in `<main>': a\nb (KeyError)\n\tfrom x\n").unwrap();
        assert_eq!((e.kind.as_str(), e.message.as_str()), ("KeyError", "a"));
        let py = "Traceback (most recent call last):\n  File \"/sandbox/m.py\", line 1, in <module>\n    raise RuntimeError(\"line1\\nline2\")\nRuntimeError: line1\nline2\n";
        let e = parse_runtime_error(ErrorFormat::Python, py).unwrap();
        assert_eq!((e.kind.as_str(), e.message.as_str()), ("RuntimeError", "line1"));
    }

    const FORMATS: [Format; 9] = [
        Format::Gcc,
        Format::Rustc,
        Format::Javac,
        Format::Go,
        Format::Tsc,
        Format::Python,
        Format::Node,
        Format::Ruby,
        Format::Bash,
    ];
    const ERROR_FORMATS: [ErrorFormat; 8] = [
        ErrorFormat::Python,
        ErrorFormat::Node,
        ErrorFormat::Java,
        ErrorFormat::Ruby,
        ErrorFormat::Go,
        ErrorFormat::Rust,
        ErrorFormat::Cpp,
        ErrorFormat::C,
    ];

    fn every_parser(text: &str) {
        for format in FORMATS {
            let _ = parse_diagnostics(format, text, text);
            let _ = human_output(format, text);
        }
        for format in ERROR_FORMATS {
            let _ = parse_runtime_error(format, text);
        }
        let _ = relative(text);
    }

    /// Pieces the parsers look for, so that random text reaches their deeper branches.
    const PIECES: [&str; 40] = [
        ":",
        "1",
        "42",
        ": ",
        ":3:",
        "(",
        ")",
        "'",
        "`",
        "\"",
        "^",
        "~",
        " ",
        "\t",
        "\n",
        "...",
        "é",
        "😀",
        "{",
        "}",
        "[",
        "]",
        ",",
        "main.c",
        "/sandbox/",
        "./",
        "error: ",
        "warning: ",
        "note: ",
        "File \"",
        ", line ",
        ", in ",
        "Traceback (most recent call last):\n",
        "    at ",
        "\tat ",
        "\tfrom ",
        ":in `",
        "panic: ",
        "goroutine 1 [running]:\n",
        "thread 'main' panicked at '",
    ];

    /// A small deterministic generator (xorshift64), so a failure reproduces.
    fn garbage(seed: u64, pieces: usize) -> String {
        let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
        let mut out = String::new();
        for _ in 0..pieces {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            let r = usize::try_from(x % 1000).unwrap();
            if r < 40 {
                out.push_str(PIECES[r]);
            } else {
                out.push(char::from_u32(u32::try_from(x >> 40).unwrap() % 0x3000).unwrap_or('?'));
            }
        }
        out
    }

    #[test]
    fn a_huge_trace_is_read_from_its_head_and_tail_and_capped() {
        let frame = "  File \"/sandbox/main.py\", line 7, in f\n    f()\n";
        let stderr = format!(
            "Traceback (most recent call last):\n{}ValueError: {}\n",
            frame.repeat(100_000),
            "é".repeat(10_000)
        );
        let e = parse_runtime_error(ErrorFormat::Python, stderr.as_bytes()).unwrap();
        assert_eq!(e.kind, "ValueError");
        assert_eq!(e.frames.len(), MAX_FRAMES);
        assert_eq!(e.frames[0], Frame { file: "main.py".into(), line: Some(7), function: Some("f".into()) });
        assert!(e.message.len() <= MAX_ERROR_TEXT_BYTES && e.message.starts_with('é'));
        // the window is lines from both ends, each capped
        let w = error_window(stderr.as_bytes());
        assert_eq!(w.iter().filter(|&&b| b == b'\n').count(), 2 * ERROR_WINDOW_LINES);
        assert!(w.starts_with(b"Traceback") && w.ends_with(b"\n"));
    }

    #[test]
    fn garbage_never_panics() {
        for seed in 0..3000 {
            every_parser(&garbage(seed, 60));
        }
        every_parser(&String::from_utf8_lossy(&[0xff, 0xfe, b':', b'1', b':', 0xc3, b'\n', 0, b'^']));
    }

    /// Every fixture cut short anywhere (all of it mixed into every parser, not only its own).
    #[test]
    fn truncated_fixtures_never_panic() {
        let mut all: Vec<Fixture> = diagnostic_cases().into_iter().map(|(_, f, _)| f).collect();
        all.extend(runtime_cases().into_iter().map(|(_, f, _)| f));
        for (_, stdout, stderr) in all {
            for text in [stdout, stderr] {
                let step = (text.len() / 200).max(1);
                for cut in (0..text.len()).step_by(step).filter(|&c| text.is_char_boundary(c)) {
                    every_parser(&text[..cut]);
                    every_parser(&text[cut..]);
                }
            }
        }
    }

    /// Huge and adversarial lines finish quickly: a parser that rescanned a line per
    /// character would take minutes here (the daemon keeps 64 KiB of each stream).
    #[test]
    fn huge_output_is_linear() {
        let start = std::time::Instant::now();
        for unit in ["(", ":", ":1", "a:1:", "(1,", "'", ", line ", "    at (", "\tat (", "^", "))"] {
            every_parser(&unit.repeat(50_000));
            every_parser(&format!("{}\n", unit.repeat(20)).repeat(2_500));
        }
        assert!(start.elapsed() < std::time::Duration::from_secs(60), "took {:?}", start.elapsed());
    }
}
