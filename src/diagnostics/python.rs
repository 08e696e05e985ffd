//! CPython: `py_compile`'s syntax errors and warnings, and tracebacks.
//!
//! Python prints the offending line stripped of its leading blanks with the caret under
//! that copy, so the caret does not give the line's column: columns are always `None`.

use super::{Diagnostic, Frame, Location, RuntimeError, Severity, at, located, number, relative};

/// The exception types of a parse error.
const SYNTAX: [&str; 3] = ["SyntaxError", "IndentationError", "TabError"];

/// Three shapes: a `SyntaxError` block (`  File "main.py", line 3`, the stripped line, a
/// caret, `SyntaxError: msg`); `Sorry: IndentationError: msg (main.py, line 3)`, which is
/// how py_compile reports the `SyntaxError` subclasses; and compile-time warnings
/// (`main.py:2: SyntaxWarning: msg`).
pub(super) fn parse_diagnostics(text: &str) -> Vec<Diagnostic> {
    let lines: Vec<&str> = text.lines().collect();
    let mut out = Vec::new();
    let mut i = 0;
    while i < lines.len() {
        let line = lines[i];
        i += 1;
        if let Some(rest) = line.strip_prefix("Sorry: ") {
            out.extend(sorry(rest));
        } else if let Some((file, line_number, _)) = file_line(line) {
            let (kind, message, next) = exception_after(&lines, i);
            i = next;
            if kind.is_empty() {
                continue;
            }
            let loc = Location { file, line: line_number, column: None };
            out.push(at(loc, Severity::Error, message, SYNTAX.contains(&kind)));
        } else if let Some((loc, rest)) = located(line)
            && let Some((_, message)) = exception(rest).filter(|(kind, _)| kind.ends_with("Warning"))
        {
            out.push(at(loc, Severity::Warning, message, false));
        }
    }
    out
}

/// Each `SyntaxError` block's file, line, and the caret's offset in the printed line (which
/// Python prints stripped of its indentation, after four spaces).
pub(super) fn carets(text: &str) -> Vec<(String, u32, usize)> {
    let lines: Vec<&str> = text.lines().collect();
    let mut out = Vec::new();
    for (i, line) in lines.iter().enumerate() {
        let Some((file, Some(number), None)) = file_line(line) else { continue };
        let (Some(src), Some(caret)) = (lines.get(i + 1), lines.get(i + 2)) else { continue };
        let indent = src.len() - src.trim_start().len();
        let Some(pos) = caret.find('^') else { continue };
        if pos < indent || !caret[..pos].bytes().all(|b| b == b' ') {
            continue;
        }
        out.push((file, number, pos - indent));
    }
    out
}

/// `IndentationError: unexpected indent (main.py, line 3)`.
fn sorry(rest: &str) -> Option<Diagnostic> {
    let (kind, message) = exception(rest)?;
    let (message, place) = message.strip_suffix(')').and_then(|m| m.rsplit_once(" ("))?;
    let (file, line) = place.rsplit_once(", line ")?;
    let loc = Location { file: relative(file), line: number(line), column: None };
    Some(at(loc, Severity::Error, message, SYNTAX.contains(&kind)))
}

/// The file, line and function of `  File "main.py", line 3, in f` (the function is
/// missing in a `SyntaxError`'s block).
fn file_line(line: &str) -> Option<(String, Option<u32>, Option<String>)> {
    let rest = line.strip_prefix("  File \"")?;
    let (file, rest) = rest.rsplit_once("\", line ")?;
    let (number_text, function) = match rest.split_once(", in ") {
        Some((n, f)) => (n, Some(f.trim_end().to_string())),
        None => (rest.trim_end(), None),
    };
    Some((relative(file), number(number_text), function))
}

/// `("ZeroDivisionError", "division by zero")` from `ZeroDivisionError: division by zero`;
/// the type may be dotted (`json.decoder.JSONDecodeError`) and the message absent.
fn exception(line: &str) -> Option<(&str, &str)> {
    let (kind, message) = line.split_once(": ").unwrap_or((line, ""));
    let kind = kind.trim_end();
    let mut chars = kind.chars();
    let starts_well = chars.next().is_some_and(|c| c.is_alphabetic() || c == '_');
    let rest_ok = chars.all(|c| c.is_alphanumeric() || c == '_' || c == '.');
    (starts_well && rest_ok).then_some((kind, message))
}

/// The exception line that ends a traceback or `SyntaxError` block starting at `lines[i]`:
/// the first unindented line after the indented source and caret lines. Returns its type,
/// message and the index after it.
fn exception_after<'a>(lines: &[&'a str], mut i: usize) -> (&'a str, &'a str, usize) {
    while i < lines.len() && (lines[i].starts_with(' ') || lines[i].is_empty()) {
        i += 1;
    }
    match lines.get(i).and_then(|l| exception(l)) {
        Some((kind, message)) => (kind, message, i + 1),
        None => ("", "", i),
    }
}

/// The last traceback of stderr (a chain prints the causes first): its `File` lines as
/// frames and the exception line after them. A `SyntaxError` raised while compiling the
/// script prints no `Traceback` header, only its `File` line.
pub(super) fn parse_runtime_error(stderr: &str) -> Option<RuntimeError> {
    let lines: Vec<&str> = stderr.lines().collect();
    let start = match lines.iter().rposition(|l| l.starts_with("Traceback (most recent call last):")) {
        Some(s) => s + 1,
        None => lines.iter().rposition(|l| l.starts_with("  File \""))?,
    };
    let mut frames = Vec::new();
    let mut i = start;
    while let Some(line) = lines.get(i) {
        if !line.starts_with(' ') && !line.is_empty() {
            break;
        }
        // The other indented lines are source, carets, `[Previous line repeated N more times]`.
        if let Some((file, line, function)) = file_line(line) {
            frames.push(Frame { file, line, function });
        }
        i += 1;
    }
    let (kind, message) = exception(lines.get(i)?)?;
    frames.reverse();
    Some(RuntimeError { kind: kind.to_string(), message: message.trim_end().to_string(), frames })
}
