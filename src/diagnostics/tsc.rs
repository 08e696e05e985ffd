//! tsc with `--pretty false`: `main.ts(5,22): error TS1005: ')' expected.` on stdout.
//! Columns count UTF-16 units, as tsc gives them.

use super::{Diagnostic, Location, Severity, at, number, relative};

/// Every `file(line,col): error TSn: msg` line and every location-less `error TSn: msg`
/// (configuration errors); indented continuation lines (elaborations) are skipped.
pub(super) fn parse_diagnostics(text: &str) -> Vec<Diagnostic> {
    text.lines().filter_map(parse_line).collect()
}

fn parse_line(line: &str) -> Option<Diagnostic> {
    if line.starts_with(char::is_whitespace) {
        return None;
    }
    let (loc, rest) = match place(line) {
        Some((loc, rest)) => (loc, rest),
        None => (Location { file: String::new(), line: None, column: None }, line),
    };
    let (word, rest) = rest.split_once(" TS")?;
    let severity = match word {
        "error" => Severity::Error,
        "warning" => Severity::Warning,
        "message" | "suggestion" => Severity::Note,
        _ => return None,
    };
    let (code, message) = rest.split_once(": ")?;
    let code = number(code)?;
    Some(at(loc, severity, message, (1000..=1999).contains(&code)))
}

/// `main.ts(5,22): rest` split into the location and the rest.
fn place(line: &str) -> Option<(Location, &str)> {
    let end = line.find("): ")?;
    let i = line[..end].rfind('(')?;
    let (l, c) = line[i + 1..end].split_once(',')?;
    let (l, c) = (number(l)?, number(c)?);
    let file = &line[..i];
    (!file.is_empty()).then(|| (Location { file: relative(file), line: Some(l), column: Some(c) }, &line[end + 3..]))
}
