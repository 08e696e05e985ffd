//! javac's diagnostics (no column: a caret under the copied source line) and the JVM's
//! uncaught exception.

use super::{Diagnostic, Frame, RuntimeError, Unit, at, caret_column, labelled, located, split_location, unlocated};

/// `Main.java:3: error: msg`, then (for a message with a position) the source line and a
/// caret, then the message's other lines, indented. `N errors`, `Note: ...` are skipped;
/// `error: file not found: x` is a file-less error.
pub(super) fn parse_diagnostics(text: &str) -> Vec<Diagnostic> {
    let lines: Vec<&str> = text.lines().collect();
    let mut out = Vec::new();
    let mut i = 0;
    while i < lines.len() {
        let line = lines[i];
        i += 1;
        if line.starts_with(char::is_whitespace) {
            continue;
        }
        let Some((mut loc, rest)) = located(line) else {
            if let Some((severity, message)) = labelled(line) {
                out.push(unlocated(severity, without_tag(message)));
            }
            continue;
        };
        let Some((severity, message)) = labelled(rest) else { continue };
        if let (Some(source), Some(caret)) = (lines.get(i), lines.get(i + 1)) {
            loc.column = caret_column(source, caret, Unit::Utf16);
            if loc.column.is_some() {
                // The source line could itself look like a diagnostic.
                i += 2;
            }
        }
        let message = without_tag(message);
        out.push(at(loc, severity, message, is_syntax(message)));
    }
    out
}

/// `msg` without a leading lint category such as `[removal] `.
fn without_tag(message: &str) -> &str {
    match message.strip_prefix('[').and_then(|m| m.split_once("] ")) {
        Some((tag, rest)) if !tag.contains(' ') => rest,
        _ => message,
    }
}

fn is_syntax(message: &str) -> bool {
    const STARTS: [&str; 6] = [
        "illegal start of",
        "reached end of file while parsing",
        "not a statement",
        "unclosed ",
        "illegal character",
        "'else' without 'if'",
    ];
    message.ends_with(" expected") || STARTS.iter().any(|s| message.starts_with(s))
}

/// `Exception in thread "main" TYPE: msg` and the `\tat Cls.meth(File.java:N)` frames of
/// that first exception; `Caused by:` sections are not read.
pub(super) fn parse_runtime_error(stderr: &str) -> Option<RuntimeError> {
    let mut lines = stderr.lines().skip_while(|l| !l.starts_with("Exception in thread \""));
    let head = lines.next()?;
    let (_, exception) = head.split_once("\" ")?;
    let (kind, message) = exception.split_once(": ").unwrap_or((exception, ""));
    let frames = lines.map_while(|l| l.strip_prefix("\tat ")).map(frame).collect();
    Some(RuntimeError { kind: kind.trim().to_string(), message: message.trim_end().to_string(), frames })
}

/// `java.base/java.lang.Integer.parseInt(Integer.java:668)`: the module and class loader
/// prefix is dropped; `(Native Method)`, `(Unknown Source)` give no file.
fn frame(text: &str) -> Frame {
    let text = text.trim_end();
    let (function, place) = match text.strip_suffix(')').and_then(|t| t.split_once('(')) {
        Some((function, place)) => (function, place),
        None => (text, ""),
    };
    let function = function.rsplit('/').next().unwrap_or(function);
    let loc = split_location(place);
    let file = if loc.line.is_some() { loc.file } else { String::new() };
    Frame { file, line: loc.line, function: Some(function.to_string()) }
}
