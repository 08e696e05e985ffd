//! `bash -n`: `main.sh: line 6: syntax error: unexpected end of file`. No columns.

use super::{Diagnostic, Location, Severity, at, number, relative};

/// Every `file: line N: msg` line. The line bash echoes after a syntax error
/// (``main.sh: line 2: `if then'``) is skipped; `warning: ` marks a warning. `bash -n`
/// only parses, so every error is a syntax error.
pub(super) fn parse_diagnostics(text: &str) -> Vec<Diagnostic> {
    text.lines()
        .filter_map(|line| {
            let (file, rest) = line.split_once(": line ")?;
            let (n, message) = rest.split_once(": ")?;
            if message.starts_with('`') && message.trim_end().ends_with('\'') {
                return None;
            }
            let (severity, message) = match message.strip_prefix("warning: ") {
                Some(m) => (Severity::Warning, m),
                None => (Severity::Error, message),
            };
            let loc = Location { file: relative(file), line: Some(number(n)?), column: None };
            Some(at(loc, severity, message, true))
        })
        .collect()
}
