//! gcc and g++: diagnostics (with the linker's), and the two ways a C or C++ program
//! reports its own death on stderr: a glibc assertion and libstdc++'s terminate handler.

use super::{Diagnostic, Frame, Location, RuntimeError, Severity, at, labelled, located, relative, unlocated};

/// `main.c:5:9: error: msg` lines, the linker's `main.c:(.text+0x5): undefined reference`
/// and the driver's `collect2: error: ...`; source echoes, fix-its and context lines
/// (`main.c: In function 'main':`) are skipped.
pub(super) fn parse_diagnostics(text: &str) -> Vec<Diagnostic> {
    text.lines().filter_map(parse_line).collect()
}

fn parse_line(line: &str) -> Option<Diagnostic> {
    // Source echoes ("    5 |  x") and "                 from main.c:1:" are indented.
    if line.starts_with(char::is_whitespace) {
        return None;
    }
    if let Some((loc, rest)) = located(line)
        && let Some((severity, message)) = labelled(rest)
    {
        let message = strip_option(message);
        return Some(at(loc, severity, message, is_syntax(message)));
    }
    if let Some(d) = linker(line) {
        return Some(d);
    }
    // The driver's own messages: "gcc: fatal error: no input files",
    // "collect2: error: ld returned 1 exit status", "cc1: error: ...".
    let (tool, rest) = line.split_once(": ")?;
    if tool.contains(' ') {
        return None;
    }
    let (severity, message) = labelled(rest)?;
    Some(unlocated(severity, strip_option(message)))
}

/// The linker's messages, with or without its `/usr/bin/ld: ` prefix.
fn linker(line: &str) -> Option<Diagnostic> {
    let (from_ld, rest) = match line.split_once(": ") {
        Some((tool, rest)) if tool == "ld" || tool.ends_with("/ld") || tool.ends_with("/ld.bfd") => (true, rest),
        _ => (false, line),
    };
    // "main.c:(.text.startup+0xa): undefined reference to `helper'": the file is the
    // object's source, the section is no line.
    if let Some((file, tail)) = rest.split_once(":(")
        && let Some((_, message)) = tail.split_once("): ")
    {
        let loc = Location { file: relative(file), line: None, column: None };
        return Some(at(loc, Severity::Error, message, false));
    }
    // "(.text+0x17): undefined reference to `main'": in an object of no source of ours
    // (crt1.o, after "/usr/bin/ld: …/Scrt1.o: in function `_start':")
    if let Some(tail) = rest.strip_prefix('(')
        && let Some((_, message)) = tail.split_once("): ")
    {
        return Some(unlocated(Severity::Error, message));
    }
    if !from_ld {
        return None;
    }
    // With debug information: "main.c:6: undefined reference to `helper'".
    if let Some((loc, message)) = located(rest) {
        return Some(at(loc, Severity::Error, message, false));
    }
    // "/tmp/ccx.o: in function `main':" only names the caller of the next line's symbol.
    if rest.ends_with(':') {
        return None;
    }
    Some(match labelled(rest) {
        Some((severity, message)) => unlocated(severity, message),
        None => unlocated(Severity::Error, rest),
    })
}

/// `msg` without gcc's trailing `[-Wunused-variable]`/`[-Werror=...]`/`[enabled by default]`.
fn strip_option(message: &str) -> &str {
    let Some(body) = message.strip_suffix(']') else { return message };
    match body.rfind(" [") {
        Some(i) if body[i + 2..].starts_with("-W") || &body[i + 2..] == "enabled by default" => &message[..i],
        _ => message,
    }
}

fn is_syntax(message: &str) -> bool {
    ["expected", "stray", "missing terminating"].iter().any(|p| message.starts_with(p))
}

/// glibc's `prog: file:line: function: Assertion `expr' failed.` as kind `assertion`, the
/// expression as the message and one frame.
pub(super) fn parse_assertion(stderr: &str) -> Option<RuntimeError> {
    stderr.lines().find_map(|line| {
        let (i, quote) = ["Assertion `", "Assertion '"].iter().find_map(|q| Some((line.find(q)?, q.len())))?;
        let tail = &line[i + quote..];
        let expr = tail.rfind("' failed").map_or(tail, |end| &tail[..end]);
        let prefix = line[..i].trim_end().trim_end_matches(':');
        Some(RuntimeError { kind: "assertion".into(), message: expr.to_string(), frames: assertion_frame(prefix) })
    })
}

/// The frame of `prog: main.c:5: half` (C++: `main.cpp:5: int half(int)`).
fn assertion_frame(prefix: &str) -> Vec<Frame> {
    let parts: Vec<&str> = prefix.split(": ").collect();
    parts
        .iter()
        .enumerate()
        .find_map(|(k, part)| {
            let (file, line) = part.rsplit_once(':')?;
            let line = super::number(line)?;
            let function = parts[k + 1..].join(": ");
            Some(Frame { file: relative(file), line: Some(line), function: (!function.is_empty()).then_some(function) })
        })
        .into_iter()
        .collect()
}

/// libstdc++'s `terminate called after throwing an instance of 'T'` and `  what():  msg`
/// as kind `T`; there is no stack.
pub(super) fn parse_terminate(stderr: &str) -> Option<RuntimeError> {
    let mut lines = stderr.lines();
    let line = lines.find(|l| l.starts_with("terminate called"))?;
    let Some(thrown) = line.strip_prefix("terminate called after throwing an instance of ") else {
        // "terminate called without an active exception", "... recursively".
        return Some(RuntimeError { kind: "terminate".into(), message: line.trim_end().into(), frames: vec![] });
    };
    let kind = thrown.trim_end().trim_start_matches('\'').trim_end_matches('\'');
    let message = lines
        .next()
        .and_then(|l| l.trim_start().strip_prefix("what():"))
        .map_or(String::new(), |m| m.trim().to_string());
    Some(RuntimeError { kind: kind.to_string(), message, frames: vec![] })
}
