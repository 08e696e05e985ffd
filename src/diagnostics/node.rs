//! node: `node --check`'s syntax error and an uncaught exception (typescript's too, whose
//! frames point at the `.ts` files through `--enable-source-maps`).
//!
//! Both start with the same header: `/sandbox/main.js:5`, the source line and a caret
//! (offset in UTF-16 units), a blank line; then the error's `stack` (`TypeError: msg` and
//! `    at fn (file:line:col)` lines), perhaps the error's own properties (`{ code: ... }`)
//! and `Node.js v20...`.

use super::{
    Diagnostic, Frame, Location, RuntimeError, Severity, Unit, at, caret_column, split_location, split_number,
};

/// The throw site that node prints above the error.
struct Header {
    file: String,
    line: Option<u32>,
    column: Option<u32>,
    /// The index of the line after the caret.
    end: usize,
}

/// The first `file:N` line that is followed by a source line and a caret line.
fn header(lines: &[&str]) -> Option<Header> {
    lines.windows(3).enumerate().find_map(|(i, w)| {
        let (file, line) = split_number(w[0]);
        let line = line.filter(|_| !file.is_empty() && !w[0].starts_with(char::is_whitespace))?;
        let column = caret_column(w[1], w[2], Unit::Utf16)?;
        Some(Header { file: super::relative(file), line: Some(line), column: Some(column), end: i + 3 })
    })
}

/// `TypeError: msg` as `("TypeError", "msg")`; `Error [ERR_X]: msg` as `("Error", "msg")`;
/// `[UnhandledPromiseRejection: msg] {` as `("UnhandledPromiseRejection", "msg")`.
fn error_line(line: &str) -> Option<(&str, &str)> {
    let line = match line.strip_prefix('[') {
        Some(inner) => inner.trim_end().trim_end_matches(" {").strip_suffix(']')?,
        None => line,
    };
    let (name, message) = line.split_once(": ").unwrap_or((line, ""));
    let kind = name.split_once(" [").map_or(name, |(k, _)| k);
    let mut chars = kind.chars();
    let starts_well = chars.next().is_some_and(|c| c.is_alphabetic() || c == '_' || c == '$');
    let rest_ok = chars.all(|c| c.is_alphanumeric() || c == '_' || c == '$');
    (starts_well && rest_ok).then_some((kind, message))
}

/// An error line whose name says it is one (`SyntaxError`, `Error`, `DOMException`), for
/// text without a header.
fn named_error(line: &str) -> Option<(&str, &str)> {
    error_line(line)
        .filter(|(kind, _)| kind.ends_with("Error") || kind.ends_with("Exception") || kind.ends_with("Rejection"))
}

/// The first non-blank line after the header, with its index.
fn after_header<'a>(lines: &[&'a str], header: &Header) -> Option<(usize, &'a str)> {
    lines.iter().enumerate().skip(header.end).find(|(_, l)| !l.trim().is_empty()).map(|(i, l)| (i, *l))
}

/// `node --check`: the header gives the place, the error line after it the message.
/// Without a header (node failed before parsing), the first named error line.
pub(super) fn parse_diagnostics(text: &str) -> Vec<Diagnostic> {
    let lines: Vec<&str> = text.lines().collect();
    let (loc, error) = match header(&lines) {
        Some(h) => {
            let error = after_header(&lines, &h).and_then(|(_, l)| error_line(l));
            (Location { file: h.file, line: h.line, column: h.column }, error)
        }
        None => (Location { file: String::new(), line: None, column: None }, lines.iter().find_map(|l| named_error(l))),
    };
    match error {
        Some((kind, message)) => vec![at(loc, Severity::Error, message, kind == "SyntaxError")],
        None => Vec::new(),
    }
}

/// The error line after the header and its `at` frames. A thrown value that is not an
/// `Error` (`throw "x"`) prints only itself after the header: kind `uncaught`, its first
/// line as the message. Without frames, the header is the one frame. Without a header, a
/// named error line counts only when `at` frames follow it (not some logged text).
pub(super) fn parse_runtime_error(stderr: &str) -> Option<RuntimeError> {
    let lines: Vec<&str> = stderr.lines().collect();
    let header = header(&lines);
    let (i, kind, message) = match &header {
        Some(h) => {
            let (i, line) = after_header(&lines, h)?;
            let (kind, message) = error_line(line).unwrap_or(("uncaught", line));
            (i, kind, message)
        }
        None => lines.iter().enumerate().find_map(|(i, l)| {
            let (kind, message) = named_error(l).filter(|_| is_frame(lines.get(i + 1)))?;
            Some((i, kind, message))
        })?,
    };
    let mut frames: Vec<Frame> = lines[i + 1..].iter().map_while(|l| l.strip_prefix("    at ")).map(frame).collect();
    if frames.is_empty()
        && let Some(h) = header
    {
        frames.push(Frame { file: h.file, line: h.line, function: None });
    }
    Some(RuntimeError { kind: kind.to_string(), message: message.trim_end().to_string(), frames })
}

fn is_frame(line: Option<&&str>) -> bool {
    line.is_some_and(|l| l.starts_with("    at "))
}

/// `fn (file:line:col)`, `file:line:col`, `Array.map (<anonymous>)`; the last frame of an
/// error with properties ends in ` {`.
fn frame(text: &str) -> Frame {
    let text = text.trim_end();
    let text = text.strip_suffix(" {").unwrap_or(text);
    let (function, place) = match text.strip_suffix(')').and_then(|t| open_paren(t).map(|i| (t, i))) {
        Some((t, i)) => (Some(t[..i].trim_end().to_string()), &t[i + 1..]),
        None => (None, text),
    };
    let loc = split_location(place);
    Frame { file: loc.file, line: loc.line, function }
}

/// The index of the `(` that opens the parenthesised place at the end of `t` (whose `)`
/// was stripped): `eval at f (main.js:1:2), <anonymous>:1:1` nests.
fn open_paren(t: &str) -> Option<usize> {
    let mut depth = 0usize;
    for (i, c) in t.char_indices().rev() {
        match c {
            ')' => depth += 1,
            '(' if depth == 0 => return Some(i),
            '(' => depth -= 1,
            _ => {}
        }
    }
    None
}
