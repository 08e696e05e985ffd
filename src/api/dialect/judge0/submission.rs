//! A Judge0 submission: read from its request (the 422 field errors Judge0 gives), turned
//! into a native judge request of one test, decided from the native answer as Judge0's
//! `isolate_job.rb` decides, and written with `fields` and `base64_encoded`.

use std::collections::BTreeMap;

use base64::Engine as _;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value, json};

use super::tables::{self, LIMITS};

/// Field errors, as Rails writes them: `{"language_id": ["can't be blank"]}`.
pub(super) type FieldErrors = BTreeMap<String, Vec<String>>;

/// What a submission holds: its request and, once judged, its result.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub(super) struct Record {
    pub(super) token: String,
    pub(super) source_code: Vec<u8>,
    pub(super) language_id: i64,
    pub(super) stdin: Option<Vec<u8>>,
    pub(super) expected_output: Option<Vec<u8>>,
    /// The limits, in Judge0's units, in the order of [`LIMITS`].
    pub(super) limits: Vec<f64>,
    pub(super) command_line_arguments: Option<String>,
    pub(super) redirect_stderr_to_stdout: bool,
    pub(super) callback_url: Option<String>,
    /// Unix milliseconds.
    pub(super) created_at: u64,
    pub(super) finished_at: Option<u64>,
    pub(super) status_id: u8,
    pub(super) stdout: Option<Vec<u8>>,
    pub(super) stderr: Option<Vec<u8>>,
    pub(super) compile_output: Option<Vec<u8>>,
    pub(super) message: Option<Vec<u8>>,
    pub(super) time: Option<f64>,
    pub(super) wall_time: Option<f64>,
    pub(super) memory: Option<u64>,
    pub(super) exit_code: Option<i64>,
    pub(super) exit_signal: Option<i64>,
    /// codeexec's own status where Judge0's says less (`memory_limit` for Judge0's
    /// "Runtime Error (Other)"): shown only when `fields` names `codeexec_status`.
    pub(super) codeexec_status: Option<String>,
}

/// Ruby's `Base64.decode64`: lenient, characters outside the alphabet are skipped.
pub(super) fn decode64(text: &str) -> Vec<u8> {
    let clean: String = text.chars().filter(|c| c.is_ascii_alphanumeric() || *c == '+' || *c == '/').collect();
    let engine = base64::engine::GeneralPurpose::new(
        &base64::alphabet::STANDARD,
        base64::engine::GeneralPurposeConfig::new()
            .with_decode_padding_mode(base64::engine::DecodePaddingMode::Indifferent)
            .with_decode_allow_trailing_bits(true),
    );
    // a dangling sixth bit group cannot be decoded: drop it, as Ruby does
    let usable = if clean.len() % 4 == 1 { &clean[..clean.len() - 1] } else { &clean[..] };
    engine.decode(usable).unwrap_or_default()
}

/// Ruby's `Base64.encode64`: a newline after every 60 characters and at the end.
pub(super) fn encode64(bytes: &[u8]) -> String {
    let flat = base64::engine::general_purpose::STANDARD.encode(bytes);
    let mut out = String::with_capacity(flat.len() + flat.len() / 60 + 1);
    for chunk in flat.as_bytes().chunks(60) {
        out.push_str(&String::from_utf8_lossy(chunk));
        out.push('\n');
    }
    out
}

/// A number as Rails casts it: a JSON number or a numeric string.
fn number(v: &Value) -> Option<f64> {
    match v {
        Value::Number(n) => n.as_f64(),
        Value::String(s) => s.trim().parse().ok(),
        _ => None,
    }
}

fn truthy(v: Option<&Value>) -> bool {
    matches!(v, Some(Value::Bool(true))) || matches!(v, Some(Value::String(s)) if s == "true" || s == "1")
}

/// Reads a submission (`base64`: its text fields are base64). Field errors as Judge0's
/// 422 gives them.
pub(super) fn parse(r: &Map<String, Value>, base64: bool, created_at: u64) -> Result<Record, FieldErrors> {
    let mut errors = FieldErrors::new();
    let mut err = |field: &str, m: String| errors.entry(field.to_owned()).or_default().push(m);
    let text = |name: &str| -> Option<Vec<u8>> {
        match r.get(name)? {
            Value::String(s) if base64 => Some(decode64(s)),
            Value::String(s) => Some(s.clone().into_bytes()),
            Value::Null => None,
            other => Some(other.to_string().into_bytes()),
        }
    };
    let source_code = text("source_code").filter(|s| !s.iter().all(u8::is_ascii_whitespace));
    if source_code.is_none() {
        err("source_code", "can't be blank".into());
    }
    let language_id = r.get("language_id").and_then(number);
    match language_id {
        None => {
            err("language_id", "can't be blank".into());
            let given = r.get("language_id").map_or(String::new(), |v| v.as_str().map_or(v.to_string(), str::to_owned));
            err("language_id", format!("language with id {given} doesn't exist"));
        }
        #[allow(clippy::cast_possible_truncation)]
        Some(id) if tables::find(id as i64).is_none() || id.fract() != 0.0 => {
            err("language_id", format!("language with id {id} doesn't exist"));
        }
        Some(_) => {}
    }
    let mut limits = Vec::with_capacity(LIMITS.len());
    for (name, default, least, most) in LIMITS {
        let v = match r.get(name) {
            None | Some(Value::Null) => default,
            Some(v) => match number(v) {
                None => {
                    err(name, "is not a number".into());
                    default
                }
                Some(n) if n < least => {
                    let op = if name == "max_processes_and_or_threads" || name == "number_of_runs" {
                        format!("must be greater than {}", least - 1.0)
                    } else {
                        format!("must be greater than or equal to {}", show(least))
                    };
                    err(name, op);
                    default
                }
                Some(n) if n > most => {
                    err(name, format!("must be less than or equal to {}", show(most)));
                    default
                }
                Some(n) => n,
            },
        };
        limits.push(v);
    }
    for (name, message) in [
        ("enable_network", "enabling network is not allowed"),
        ("enable_per_process_and_thread_time_limit", "this option cannot be enabled"),
        ("enable_per_process_and_thread_memory_limit", "this option cannot be enabled"),
    ] {
        if truthy(r.get(name)) {
            err(name, message.into());
        }
    }
    if r.get("compiler_options").is_some_and(|v| v.as_str().is_some_and(|s| !s.is_empty())) {
        err("compiler_options", "setting compiler options is not allowed".into());
    }
    if r.get("additional_files").is_some_and(|v| !v.is_null()) {
        err("additional_files", "additional files are not allowed".into());
    }
    let args = r.get("command_line_arguments").and_then(Value::as_str).filter(|s| !s.is_empty());
    if args.is_some_and(|a| a.len() > 512) {
        err("command_line_arguments", "is too long (maximum is 512 characters)".into());
    }
    if !errors.is_empty() {
        return Err(errors);
    }
    #[allow(clippy::cast_possible_truncation)]
    Ok(Record {
        token: String::new(),
        source_code: source_code.unwrap_or_default(),
        language_id: language_id.unwrap_or_default() as i64,
        stdin: text("stdin"),
        expected_output: text("expected_output"),
        limits,
        // Judge0 strips these characters before its shell sees them
        command_line_arguments: args.map(|a| a.chars().filter(|c| !"$&;<>|`".contains(*c)).collect()),
        redirect_stderr_to_stdout: truthy(r.get("redirect_stderr_to_stdout")),
        callback_url: r.get("callback_url").and_then(Value::as_str).filter(|s| !s.is_empty()).map(str::to_owned),
        created_at,
        status_id: 1,
        ..Record::default()
    })
}

/// A count as Rails prints it (`15.0`, `512000`).
fn show(v: f64) -> String {
    if v.fract() == 0.0 && v >= 1000.0 { format!("{v:.0}") } else { format!("{v:?}") }
}

impl Record {
    fn limit(&self, name: &str) -> f64 {
        LIMITS.iter().position(|l| l.0 == name).and_then(|i| self.limits.get(i).copied()).unwrap_or(0.0)
    }

    /// The native judge request of one test: the program, its stdin and expected output
    /// (compared as Judge0 does: trailing whitespace of each line and of the end does not
    /// count), its limits in native units.
    #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
    pub(super) fn native(&self, language: &str, main_file: &str) -> Value {
        let mut test = json!({});
        put_text(&mut test, "stdin", self.stdin.as_deref().unwrap_or_default());
        if let Some(e) = &self.expected_output {
            put_text(&mut test, "expected_output", e);
        }
        if let Some(a) = &self.command_line_arguments {
            test["args"] = json!(a.split_whitespace().collect::<Vec<_>>());
        }
        let ms = |s: f64| ((s * 1000.0).ceil() as u64).max(1);
        let memory_mb = (self.limit("memory_limit") / 1024.0).ceil() as u64;
        let mut limits = json!({
            "cpu_time_ms": ms(self.limit("cpu_time_limit")),
            "wall_time_ms": ms(self.limit("wall_time_limit")),
            "memory_mb": memory_mb.max(1),
            "processes": self.limit("max_processes_and_or_threads") as u64,
            "file_size_kb": (self.limit("max_file_size") as u64).max(1),
            // Judge0's stdout goes to a file: max_file_size caps it too
            "output_kb": (self.limit("max_file_size") as u64).max(1),
        });
        let stack_mb = ((self.limit("stack_limit") / 1024.0).ceil() as u64).min(memory_mb);
        if stack_mb > 0 {
            limits["stack_mb"] = json!(stack_mb);
        }
        let mut out = json!({
            "language": language,
            "tests": [test],
            "checker": "trim",
            "limits": limits,
            "cpu_extra_time_ms": ms(self.limit("cpu_extra_time")).min(10_000),
        });
        let runs = self.limit("number_of_runs") as u64;
        if runs > 1 {
            out["number_of_runs"] = json!(runs);
        }
        match std::str::from_utf8(&self.source_code) {
            Ok(code) => out["code"] = json!(code),
            Err(_) => {
                let content = base64::engine::general_purpose::STANDARD.encode(&self.source_code);
                out["files"] = json!([{"name": main_file, "content": content, "encoding": "base64"}]);
            }
        }
        out
    }

    /// Decides the submission from the native judge answer, as Judge0 does.
    pub(super) fn decide(&mut self, body: &Value, finished_at: u64) {
        self.finished_at = Some(finished_at);
        let top = body.get("status").and_then(Value::as_str).unwrap_or("internal_error");
        let nonempty = |b: Vec<u8>| (!b.is_empty()).then_some(b);
        if top == "compile_error" {
            let c = body.get("compile").unwrap_or(&Value::Null);
            let mut out = super::super::stream(c, "stdout");
            out.extend(super::super::stream(c, "stderr"));
            self.status_id = 6;
            self.compile_output = nonempty(out);
            self.codeexec_status = Some("compile_error".into());
            return;
        }
        // a syntax error is the interpreter's runtime error in Judge0 (it has no check)
        let (part, status) = match (top, body.get("syntax").filter(|s| !s.is_null())) {
            ("syntax_error", Some(s)) => (s, "runtime_error"),
            _ => {
                let t = body.get("tests").and_then(|t| t.get(0)).unwrap_or(&Value::Null);
                (t, t.get("status").and_then(Value::as_str).unwrap_or(top))
            }
        };
        let stdout = super::super::stream(part, "stdout");
        let stderr = super::super::stream(part, "stderr");
        if self.redirect_stderr_to_stdout {
            let mut all = stdout;
            all.extend(stderr);
            self.stdout = nonempty(all);
        } else {
            self.stdout = nonempty(stdout);
            self.stderr = nonempty(stderr);
        }
        let compile = body.get("compile").filter(|c| !c.is_null());
        if let Some(c) = compile {
            let mut out = super::super::stream(c, "stdout");
            out.extend(super::super::stream(c, "stderr"));
            self.compile_output = nonempty(out);
        }
        let signal = part.get("signal").and_then(Value::as_i64);
        let exit = part.get("exit_code").and_then(Value::as_i64);
        self.exit_signal = signal;
        self.exit_code = Some(exit.unwrap_or(0));
        let time = part.get("time");
        let secs = |k: &str| time.and_then(|t| t.get(k)).and_then(Value::as_f64).map(|ms| ms / 1000.0);
        self.time = secs("cpu_ms");
        self.wall_time = secs("wall_ms");
        self.memory = part.get("memory_peak_kb").and_then(Value::as_u64);
        self.status_id = status_id(status, signal);
        self.message = match self.status_id {
            5 => Some(b"Time limit exceeded".to_vec()),
            11 => Some(format!("Exited with error status {}", exit.unwrap_or(1)).into_bytes()),
            7..=10 | 12 => signal.map(|n| format!("Caught fatal signal {n}").into_bytes()),
            13 => part.get("message").and_then(Value::as_str).map(|m| m.as_bytes().to_vec()),
            _ => None,
        };
        self.codeexec_status = Some(status.to_owned());
    }
}

/// A native verdict as Judge0's status id.
fn status_id(status: &str, signal: Option<i64>) -> u8 {
    match (status, signal) {
        ("accepted" | "ok", _) => 3,
        ("wrong_answer" | "presentation_error", _) => 4,
        ("time_limit", _) => 5,
        ("compile_error", _) => 6,
        // Judge0 sends stdout to a file capped by max_file_size: SIGXFSZ
        ("file_size_limit" | "output_limit", _) | (_, Some(25)) => 8,
        (_, Some(11)) => 7,
        (_, Some(8)) => 9,
        (_, Some(6)) => 10,
        ("internal_error" | "judge_error", _) => 13,
        // Judge0 has no memory status: the kill is "Runtime Error (Other)"
        ("memory_limit" | "blocked_syscall", _) | (_, Some(_)) => 12,
        _ => 11,
    }
}

/// `stdin` or `expected_output` of a native test: text, or base64 when not UTF-8.
fn put_text(test: &mut Value, name: &str, bytes: &[u8]) {
    match std::str::from_utf8(bytes) {
        Ok(s) => test[name] = json!(s),
        Err(_) => {
            test[name] = json!(base64::engine::general_purpose::STANDARD.encode(bytes));
            test[format!("{name}_encoding")] = json!("base64");
        }
    }
}

/// The 35 attributes of `fields=*`, in Judge0's order.
pub(super) const ALL_FIELDS: [&str; 35] = [
    "source_code",
    "language_id",
    "stdin",
    "expected_output",
    "stdout",
    "status_id",
    "created_at",
    "finished_at",
    "time",
    "memory",
    "stderr",
    "token",
    "number_of_runs",
    "cpu_time_limit",
    "cpu_extra_time",
    "wall_time_limit",
    "memory_limit",
    "stack_limit",
    "max_processes_and_or_threads",
    "enable_per_process_and_thread_time_limit",
    "enable_per_process_and_thread_memory_limit",
    "max_file_size",
    "compile_output",
    "exit_code",
    "exit_signal",
    "message",
    "wall_time",
    "compiler_options",
    "command_line_arguments",
    "redirect_stderr_to_stdout",
    "callback_url",
    "additional_files",
    "enable_network",
    "status",
    "language",
];

/// The default fields.
pub(super) const DEFAULT_FIELDS: [&str; 8] =
    ["token", "time", "memory", "stdout", "stderr", "compile_output", "message", "status"];

/// codeexec's own, never part of `*`.
const EXTRA_FIELDS: [&str; 1] = ["codeexec_status"];

/// The fields a `fields` parameter asks for, or the names it does not know.
pub(super) fn fields(param: Option<&str>) -> Result<Vec<&'static str>, String> {
    let param = param.map(str::trim).unwrap_or("");
    if param.is_empty() {
        return Ok(DEFAULT_FIELDS.to_vec());
    }
    if param == "*" {
        return Ok(ALL_FIELDS.to_vec());
    }
    let mut out = Vec::new();
    let mut bad = Vec::new();
    for f in param.split(',').map(str::trim).filter(|f| !f.is_empty()) {
        match ALL_FIELDS.iter().chain(EXTRA_FIELDS.iter()).find(|k| **k == f) {
            Some(k) if !out.contains(k) => out.push(*k),
            Some(_) => {}
            None => bad.push(f.to_owned()),
        }
    }
    if bad.is_empty() { Ok(out) } else { Err(format!("invalid fields: [{}]", bad.join(", "))) }
}

/// Rails' time format: UTC with milliseconds.
fn timestamp(ms: u64) -> String {
    let secs = i64::try_from(ms / 1000).unwrap_or(0);
    let days = secs.div_euclid(86_400);
    let rem = secs.rem_euclid(86_400);
    // civil from days (Howard Hinnant's algorithm)
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!("{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}.{:03}Z", rem / 3600, rem % 3600 / 60, rem % 60, ms % 1000)
}

/// A decimal as Rails writes it: a string (`"0.012"`, `"5.0"`).
fn decimal(v: f64) -> Value {
    let rounded = (v * 1000.0).round() / 1000.0;
    json!(format!("{rounded:?}"))
}

/// Text as the client asked: base64 (Ruby's) or UTF-8; Err when it is not UTF-8 and base64
/// was not asked for.
fn text(bytes: Option<&[u8]>, base64: bool) -> Result<Value, ()> {
    match bytes {
        None => Ok(Value::Null),
        Some(b) if base64 => Ok(json!(encode64(b))),
        Some(b) => std::str::from_utf8(b).map(|s| json!(s)).map_err(|_| ()),
    }
}

/// The submission with `fields`; Err when a text field is not UTF-8 and `base64` is off.
#[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
pub(super) fn render(r: &Record, fields: &[&str], base64: bool, language_name: &str) -> Result<Value, ()> {
    let mut out = Map::new();
    for f in fields {
        let v = match *f {
            "token" => json!(r.token),
            "source_code" => text(Some(&r.source_code), base64)?,
            "language_id" => json!(r.language_id),
            "stdin" => text(r.stdin.as_deref(), base64)?,
            "expected_output" => text(r.expected_output.as_deref(), base64)?,
            "stdout" => text(r.stdout.as_deref(), base64)?,
            "stderr" => text(r.stderr.as_deref(), base64)?,
            "compile_output" => text(r.compile_output.as_deref(), base64)?,
            "message" => text(r.message.as_deref(), base64)?,
            "status_id" => json!(r.status_id),
            "status" => json!({"id": r.status_id, "description": tables::describe(r.status_id)}),
            "language" => json!({"id": r.language_id, "name": language_name}),
            "created_at" => json!(timestamp(r.created_at)),
            "finished_at" => r.finished_at.map_or(Value::Null, |t| json!(timestamp(t))),
            "time" => r.time.map_or(Value::Null, decimal),
            "wall_time" => r.wall_time.map_or(Value::Null, decimal),
            "memory" => json!(r.memory),
            "exit_code" => json!(r.exit_code),
            "exit_signal" => json!(r.exit_signal),
            "cpu_time_limit" | "cpu_extra_time" | "wall_time_limit" => decimal(r.limit(f)),
            "number_of_runs" | "memory_limit" | "stack_limit" | "max_processes_and_or_threads" | "max_file_size" => {
                json!(r.limit(f) as u64)
            }
            "enable_per_process_and_thread_time_limit"
            | "enable_per_process_and_thread_memory_limit"
            | "enable_network" => json!(false),
            "redirect_stderr_to_stdout" => json!(r.redirect_stderr_to_stdout),
            "command_line_arguments" => json!(r.command_line_arguments),
            "callback_url" => json!(r.callback_url),
            "codeexec_status" => json!(r.codeexec_status),
            // compiler_options, additional_files: never set here
            _ => Value::Null,
        };
        out.insert((*f).to_owned(), v);
    }
    Ok(Value::Object(out))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base64_is_rubys() {
        assert_eq!(encode64(b"hello, Judge0\n"), "aGVsbG8sIEp1ZGdlMAo=\n");
        let long = encode64(&[b'a'; 50]);
        assert_eq!(long.lines().next().unwrap().len(), 60);
        assert!(long.ends_with('\n'));
        assert_eq!(decode64("cHJpbnQoMSk=\n"), b"print(1)");
        assert_eq!(decode64("cHJp\nbnQo MSk"), b"print(1)");
        assert_eq!(decode64("!!!"), b"");
    }

    #[test]
    fn timestamps_have_milliseconds() {
        assert_eq!(timestamp(0), "1970-01-01T00:00:00.000Z");
        assert_eq!(timestamp(1_712_123_251_306), "2024-04-03T05:47:31.306Z");
    }

    #[test]
    fn requests_get_rails_field_errors() {
        let parse_json = |v: Value| parse(v.as_object().unwrap(), false, 0);
        let e = parse_json(json!({"source_code": "x"})).unwrap_err();
        assert_eq!(e["language_id"][0], "can't be blank");
        let e = parse_json(json!({"source_code": "x", "language_id": 999_999})).unwrap_err();
        assert_eq!(e["language_id"], vec!["language with id 999999 doesn't exist".to_owned()]);
        let e = parse_json(json!({"source_code": "x", "language_id": 71, "cpu_time_limit": 99})).unwrap_err();
        assert_eq!(e["cpu_time_limit"], vec!["must be less than or equal to 15.0".to_owned()]);
        let e = parse_json(json!({"source_code": "x", "language_id": 71, "memory_limit": 1e9})).unwrap_err();
        assert_eq!(e["memory_limit"], vec!["must be less than or equal to 512000".to_owned()]);
        let r = parse_json(json!({"source_code": "x", "language_id": "71", "memory_limit": 128000.0})).unwrap();
        assert_eq!(r.language_id, 71);
        let r = parse(json!({"source_code": "cHJpbnQoMSk=", "language_id": 71}).as_object().unwrap(), true, 0);
        assert_eq!(r.unwrap().source_code, b"print(1)");
    }

    #[test]
    fn verdicts_are_judge0s() {
        assert_eq!(status_id("accepted", None), 3);
        assert_eq!(status_id("ok", None), 3);
        assert_eq!(status_id("wrong_answer", None), 4);
        assert_eq!(status_id("time_limit", Some(9)), 5);
        assert_eq!(status_id("runtime_error", Some(11)), 7);
        assert_eq!(status_id("file_size_limit", Some(25)), 8);
        assert_eq!(status_id("runtime_error", Some(8)), 9);
        assert_eq!(status_id("runtime_error", Some(6)), 10);
        assert_eq!(status_id("runtime_error", None), 11);
        assert_eq!(status_id("memory_limit", Some(9)), 12);
        assert_eq!(status_id("internal_error", None), 13);
        let mut r = Record::default();
        r.decide(&json!({"status": "syntax_error", "syntax": {"exit_code": 1, "stderr": "SyntaxError"}}), 1);
        assert_eq!((r.status_id, r.stderr.as_deref()), (11, Some(&b"SyntaxError"[..])));
        let mut r = Record::default();
        r.decide(&json!({"status": "compile_error", "compile": {"stdout": "", "stderr": "error: x"}}), 1);
        assert_eq!((r.status_id, r.stdout.clone(), r.time), (6, None, None));
    }

    #[test]
    fn fields_are_checked_and_star_has_35() {
        assert_eq!(fields(None).unwrap(), DEFAULT_FIELDS.to_vec());
        assert_eq!(fields(Some("*")).unwrap().len(), 35);
        assert!(!fields(Some("*")).unwrap().contains(&"codeexec_status"));
        assert_eq!(fields(Some("stdout,bogus")).unwrap_err(), "invalid fields: [bogus]");
        assert_eq!(fields(Some("stdout,codeexec_status")).unwrap(), vec!["stdout", "codeexec_status"]);
        let r = Record { stdout: Some(vec![0xff]), ..Record::default() };
        assert!(render(&r, &["stdout"], false, "").is_err());
        assert_eq!(render(&r, &["stdout"], true, "").unwrap()["stdout"], "/w==\n");
        let all = render(&Record::default(), &ALL_FIELDS, true, "Python (3.11.2)").unwrap();
        assert_eq!(all.as_object().unwrap().len(), 35);
        assert_eq!(all["time"], Value::Null);
        assert_eq!(all["cpu_time_limit"], json!("0.0"));
    }
}
