//! ruby: `ruby -c`'s syntax errors and warnings, and an uncaught exception.

use super::{Diagnostic, Frame, RuntimeError, Severity, Unit, at, caret_column, is_caret_line, located, split_number};

/// `main.rb:2: syntax error, unexpected *`, usually followed by the source line and a
/// caret whose offset counts bytes. A long line is cut and marked with `...`; cut from
/// the left, it gives no column. `main.rb:3: warning: msg` is a warning. `ruby -c` only
/// parses, so every error is a syntax error.
pub(super) fn parse_diagnostics(text: &str) -> Vec<Diagnostic> {
    let lines: Vec<&str> = text.lines().collect();
    let mut out = Vec::new();
    let mut i = 0;
    while i < lines.len() {
        let line = lines[i];
        i += 1;
        let Some((mut loc, rest)) = located(line) else { continue };
        let (severity, message) = match rest.strip_prefix("warning: ") {
            Some(m) => (Severity::Warning, m),
            None => (Severity::Error, rest),
        };
        if let (Some(source), Some(caret)) = (lines.get(i), lines.get(i + 1)) {
            if is_caret_line(caret) {
                loc.column = caret_column(source, caret, Unit::Byte).filter(|_| !source.starts_with("..."));
                i += 2;
            } else if caret.strip_prefix("...").is_some_and(is_caret_line) {
                i += 2;
            }
        }
        out.push(at(loc, severity, message, true));
    }
    out
}

/// `main.rb:2:in `check': msg (ArgumentError)` then `\tfrom main.rb:7:in `total'` lines
/// (ruby 3.4 quotes `'Object#check'`). A multi-line message puts ` (Type)` on its last
/// line. A syntax error found when loading the script is kind `SyntaxError`.
pub(super) fn parse_runtime_error(stderr: &str) -> Option<RuntimeError> {
    let lines: Vec<&str> = stderr.lines().collect();
    let Some(start) = lines.iter().position(|l| place(l).is_some_and(|p| p.rest.is_some())) else {
        return syntax_error(&lines);
    };
    let head = place(lines[start])?;
    let text = head.rest.unwrap_or("");
    let mut kind_line = text;
    let mut frames = vec![Frame { file: head.file, line: head.line, function: Some(head.function.to_string()) }];
    for line in &lines[start + 1..] {
        match line.strip_prefix("\tfrom ") {
            Some(from) => {
                if let Some(p) = place(from) {
                    frames.push(Frame { file: p.file, line: p.line, function: Some(p.function.to_string()) });
                }
            }
            // "\t ... 10061 levels..." of a deep recursion.
            None if line.starts_with('\t') => {}
            // Before the first `from`: the rest of a multi-line message.
            None if frames.len() == 1 => kind_line = line,
            None => break,
        }
    }
    let (message, kind) = match split_type(text) {
        Some((message, kind)) => (message, Some(kind)),
        None => (text, split_type(kind_line).map(|(_, kind)| kind)),
    };
    let kind = kind.unwrap_or("RuntimeError").to_string();
    Some(RuntimeError { kind, message: message.trim_end().to_string(), frames })
}

/// `("msg", "Type")` from a message line ending in ` (Type)`.
fn split_type(line: &str) -> Option<(&str, &str)> {
    let (message, kind) = line.trim_end().strip_suffix(')')?.rsplit_once(" (")?;
    (!kind.is_empty() && !kind.contains(' ')).then_some((message, kind))
}

/// `main.rb:4: syntax error, unexpected end-of-input` when the script does not parse.
fn syntax_error(lines: &[&str]) -> Option<RuntimeError> {
    lines.iter().find_map(|l| {
        let (loc, message) = located(l)?;
        message.starts_with("syntax error").then(|| RuntimeError {
            kind: "SyntaxError".into(),
            message: message.trim_end().to_string(),
            frames: vec![Frame { file: loc.file, line: loc.line, function: None }],
        })
    })
}

/// One `file:line:in `function'` place and, in the first line, the text after `': `.
struct Place<'a> {
    file: String,
    line: Option<u32>,
    function: &'a str,
    rest: Option<&'a str>,
}

fn place(text: &str) -> Option<Place<'_>> {
    let (head, tail) = text.split_once(":in ")?;
    let (file, line) = split_number(head);
    line?;
    let tail = tail.strip_prefix(['`', '\''])?;
    let (function, rest) = match tail.split_once("': ") {
        Some((f, r)) => (f, Some(r)),
        None => (tail.trim_end().strip_suffix('\'')?, None),
    };
    Some(Place { file: super::relative(file), line, function, rest })
}
