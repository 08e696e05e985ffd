//! rustc's diagnostics (JSON lines, or the human format as a fallback), their human
//! rendering, and a rust program's panic.

use serde::Deserialize;

use super::{Diagnostic, Frame, Location, RuntimeError, Severity, at, split_location, unlocated};

/// The parse errors that carry no error code start with one of these.
const SYNTAX: [&str; 7] = [
    "expected",
    "unexpected",
    "mismatched closing delimiter",
    "this file contains an unclosed delimiter",
    "unclosed delimiter",
    "unterminated",
    "unknown start of token",
];

/// One line of `--error-format=json` (the fields read here).
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct Message {
    message: String,
    code: Option<Code>,
    level: String,
    spans: Vec<Span>,
    rendered: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct Code {
    code: String,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct Span {
    file_name: String,
    line_start: u64,
    column_start: u64,
    is_primary: bool,
}

/// One JSON message per line; lines that are not JSON are ignored, unless none is, when
/// the text is read as rustc's human format.
pub(super) fn parse_diagnostics(text: &str) -> Vec<Diagnostic> {
    let messages: Vec<Message> = text.lines().filter_map(json).collect();
    if messages.is_empty() {
        return parse_human(text);
    }
    messages.iter().filter_map(diagnostic).collect()
}

fn json(line: &str) -> Option<Message> {
    line.trim_start().starts_with('{').then(|| serde_json::from_str(line).ok()).flatten()
}

fn severity(level: &str) -> Option<Severity> {
    match level {
        "error" | "error: internal compiler error" => Some(Severity::Error),
        "warning" => Some(Severity::Warning),
        "note" | "help" => Some(Severity::Note),
        // "failure-note": `For more information about this error, try ...`.
        _ => None,
    }
}

/// `aborting due to 2 previous errors; 1 warning emitted`, `3 warnings emitted`.
fn is_summary(message: &str) -> bool {
    message.starts_with("aborting due to")
        || message.ends_with(" warning emitted")
        || message.ends_with(" warnings emitted")
}

fn is_syntax(code: Option<&str>, message: &str) -> bool {
    code.is_none_or(str::is_empty) && SYNTAX.iter().any(|p| message.starts_with(p))
}

/// The location is the one rustc shows (`--> main.rs:2:17` in `rendered`): with several
/// primary spans (a mismatched delimiter has two) it is not always the first in `spans`.
fn diagnostic(m: &Message) -> Option<Diagnostic> {
    let severity = severity(&m.level)?;
    if m.spans.is_empty() && is_summary(&m.message) {
        return None;
    }
    let shown = m.rendered.as_deref().and_then(arrow);
    let loc = shown.or_else(|| {
        let span = m.spans.iter().find(|s| s.is_primary).or(m.spans.first())?;
        Some(Location {
            file: super::relative(&span.file_name),
            line: u32::try_from(span.line_start).ok().filter(|&l| l > 0),
            column: u32::try_from(span.column_start).ok().filter(|&c| c > 0),
        })
    });
    let syntax = is_syntax(m.code.as_ref().map(|c| c.code.as_str()), &m.message);
    Some(match loc {
        Some(loc) => at(loc, severity, &m.message, syntax),
        None => unlocated(severity, &m.message),
    })
}

/// The location of a rendered message's first ` --> file:line:col` line.
fn arrow(rendered: &str) -> Option<Location> {
    let place = rendered.lines().find_map(|l| l.trim_start().strip_prefix("--> "))?;
    Some(split_location(place.trim_end())).filter(|loc| loc.line.is_some())
}

/// rustc's human format: `error[E0308]: msg` then ` --> main.rs:6:21`.
fn parse_human(text: &str) -> Vec<Diagnostic> {
    let mut out: Vec<Diagnostic> = Vec::new();
    let mut open = false;
    for line in text.lines() {
        if let Some(place) = line.trim_start().strip_prefix("--> ") {
            if let (true, Some(last)) = (open, out.last_mut()) {
                let loc = split_location(place.trim_end());
                (last.file, last.line, last.column) = (loc.file, loc.line, loc.column);
            }
            open = false;
            continue;
        }
        let Some((severity, code, message)) = human_header(line) else { continue };
        open = !is_summary(message);
        if open {
            let syntax = severity == Severity::Error && is_syntax(code, message);
            out.push(Diagnostic { syntax, ..unlocated(severity, message) });
        }
    }
    out
}

/// `(Error, Some("E0308"), "mismatched types")` from `error[E0308]: mismatched types`.
fn human_header(line: &str) -> Option<(Severity, Option<&str>, &str)> {
    let (severity, rest) = match line.strip_prefix("error") {
        Some(rest) => (Severity::Error, rest),
        None => (Severity::Warning, line.strip_prefix("warning")?),
    };
    let (code, rest) = match rest.strip_prefix('[').and_then(|r| r.split_once(']')) {
        Some((code, rest)) => (Some(code), rest),
        None => (None, rest),
    };
    Some((severity, code, rest.strip_prefix(": ")?))
}

/// The `rendered` texts of the JSON lines, with any other line kept as it is; None when
/// no line is a JSON message.
pub(super) fn human_output(stderr: &str) -> Option<String> {
    let mut out = String::new();
    let mut any = false;
    for line in stderr.lines() {
        match json(line) {
            Some(m) => {
                any = true;
                out.push_str(m.rendered.as_deref().unwrap_or(""));
            }
            None => {
                out.push_str(line);
                out.push('\n');
            }
        }
    }
    any.then_some(out)
}

/// `thread 'main' panicked at 'msg', main.rs:3:9` (rust before 1.73) or `thread 'main'
/// panicked at main.rs:3:9:` with the message on the next line (1.73 on): kind `panic`,
/// one frame. Else `fatal runtime error: msg` (a stack overflow), else the `Error: ...`
/// that a `main` returning `Err` prints.
pub(super) fn parse_runtime_error(stderr: &str) -> Option<RuntimeError> {
    let lines: Vec<&str> = stderr.lines().collect();
    let panic = lines.iter().enumerate().find_map(|(i, line)| {
        let (_, after) = line.strip_prefix("thread '")?.split_once("' panicked at ")?;
        let (message, loc) = match after.strip_prefix('\'') {
            Some(quoted) => quoted_panic(&lines[i..], quoted)?,
            None => (lines.get(i + 1).copied().unwrap_or(""), split_location(after.trim_end().strip_suffix(':')?)),
        };
        let frames = vec![Frame { file: loc.file, line: loc.line, function: None }];
        Some(RuntimeError { kind: "panic".into(), message: message.trim_end().to_string(), frames })
    });
    panic.or_else(|| {
        let (kind, message) = lines
            .iter()
            .find_map(|l| Some(("fatal runtime error", l.strip_prefix("fatal runtime error: ")?)))
            .or_else(|| lines.iter().rev().find_map(|l| Some(("Error", l.strip_prefix("Error: ")?))))?;
        Some(RuntimeError { kind: kind.into(), message: message.trim_end().to_string(), frames: vec![] })
    })
}

/// The first line of `msg', main.rs:3:9` (the message may span lines: the location
/// closes it, within a few lines).
fn quoted_panic<'a>(lines: &[&'a str], quoted: &'a str) -> Option<(&'a str, Location)> {
    let first = std::iter::once(quoted).chain(lines.iter().skip(1).copied());
    first.take(64).enumerate().find_map(|(j, text)| {
        let (message, place) = text.rsplit_once("', ")?;
        let loc = split_location(place.trim_end());
        loc.column?;
        Some((if j == 0 { message } else { quoted }, loc))
    })
}
