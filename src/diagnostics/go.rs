//! `go build`: `./main.go:6:20: msg` lines (go has no warnings), and a panic's goroutine
//! trace.

use super::{Diagnostic, Frame, RuntimeError, Severity, at, located, split_location, unlocated};

/// Every `file:line:col: msg` line; the `# package` header, tab-indented continuations
/// (`\thave (int)`) and `too many errors` are skipped, `go: ...` and `-buildmode=...` are
/// file-less errors.
pub(super) fn parse_diagnostics(text: &str) -> Vec<Diagnostic> {
    text.lines()
        .filter_map(|line| {
            if line.starts_with(char::is_whitespace) || line.starts_with('#') {
                return None;
            }
            if let Some((loc, message)) = located(line) {
                let syntax = message.starts_with("syntax error") || message.starts_with("expected 'package'");
                return Some(at(loc, Severity::Error, message, syntax));
            }
            // "-buildmode=exe requires exactly one main package": not `package main`
            let message = line.strip_prefix("go: ").or_else(|| line.starts_with("-buildmode=").then_some(line));
            message.map(|message| unlocated(Severity::Error, message))
        })
        .collect()
}

/// `panic: msg` (kind `panic`; ` [recovered]` dropped) or `fatal error: msg`, with the
/// frames of the first goroutine printed, which is the one that panicked: pairs of a
/// function line `main.divide(...)` and `\t/sandbox/main.go:6 +0x1e`.
pub(super) fn parse_runtime_error(stderr: &str) -> Option<RuntimeError> {
    let mut lines = stderr.lines().skip_while(|l| !l.starts_with("panic: ") && !l.starts_with("fatal error: "));
    let first = lines.next()?;
    let (kind, message) = match first.strip_prefix("panic: ") {
        Some(m) => ("panic", m.strip_suffix(" [recovered]").unwrap_or(m)),
        None => ("fatal error", first.strip_prefix("fatal error: ").unwrap_or(first)),
    };
    let mut lines = lines.skip_while(|l| !l.starts_with("goroutine "));
    lines.next();
    let mut frames = Vec::new();
    let mut function = None;
    for line in lines {
        if line.trim().is_empty() {
            break;
        }
        match line.strip_prefix('\t') {
            Some(place) => {
                let place = place.split(" +0x").next().unwrap_or(place);
                let loc = split_location(place.trim_end());
                // "created by main.main" names where a goroutine started, not a call.
                if let Some(f) = function.take().filter(|f: &String| !f.starts_with("created by ")) {
                    frames.push(Frame { file: loc.file, line: loc.line, function: Some(f) });
                }
            }
            None => function = Some(without_arguments(line).to_string()),
        }
    }
    Some(RuntimeError { kind: kind.into(), message: message.trim_end().to_string(), frames })
}

/// `main.lookup` from `main.lookup(0xc000086e70, {0x49960f, 0x1})`; the name itself may
/// hold parentheses (`main.(*T).m(...)`).
fn without_arguments(line: &str) -> &str {
    let line = line.trim_end();
    if !line.ends_with(')') {
        return line;
    }
    let mut depth = 0usize;
    for (i, c) in line.char_indices().rev() {
        match c {
            ')' => depth += 1,
            '(' => {
                depth = depth.saturating_sub(1);
                if depth == 0 {
                    return &line[..i];
                }
            }
            _ => {}
        }
    }
    line
}
