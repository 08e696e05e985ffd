//! Wire types of sessions: `POST /v1/sessions`, a cell's request and answer, the list.

use serde::{Deserialize, Serialize};

use super::{FileOut, LanguageRef, LimitsIn, Times, text};
use crate::run::{CellOutcome, FileContent};

/// `POST /v1/sessions`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(in crate::api) struct SessionIn {
    pub(in crate::api) language: String,
    /// Checked against the language's version, when given.
    pub(in crate::api) version: Option<String>,
    pub(in crate::api) limits: Option<LimitsIn>,
    pub(in crate::api) idle_timeout_s: Option<u64>,
    pub(in crate::api) max_lifetime_s: Option<u64>,
}

/// What a session is, as created and listed.
#[derive(Debug, Serialize)]
pub(in crate::api) struct SessionOut {
    pub(in crate::api) id: String,
    pub(in crate::api) language: LanguageRef,
    /// Whether variables persist between cells (false: only files do).
    pub(in crate::api) stateful: bool,
    pub(in crate::api) idle_timeout_s: u64,
    pub(in crate::api) max_lifetime_s: u64,
    /// Seconds since it was opened, and since its last cell.
    pub(in crate::api) age_s: u64,
    pub(in crate::api) idle_s: u64,
    /// A cell is running in it.
    pub(in crate::api) busy: bool,
}

/// `POST /v1/sessions/{id}/execute`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(in crate::api) struct CellIn {
    pub(in crate::api) code: String,
    /// The cell's wall-clock limit (default: the language's wall time).
    pub(in crate::api) timeout_ms: Option<u64>,
}

/// One figure.
#[derive(Debug, Serialize)]
pub(in crate::api) struct DisplayOut {
    pub(in crate::api) mime: String,
    pub(in crate::api) data: String,
}

/// An exception of a cell.
#[derive(Debug, Serialize)]
pub(in crate::api) struct CellError {
    pub(in crate::api) name: String,
    pub(in crate::api) message: String,
}

/// A cell's answer: the /v1/execute shape's fields that apply, plus `value`, `display`,
/// the artifacts in `files`, and whether the session lives on.
#[derive(Debug, Serialize)]
pub(in crate::api) struct CellOut {
    pub(in crate::api) request_id: String,
    pub(in crate::api) session_id: String,
    pub(in crate::api) status: &'static str,
    pub(in crate::api) exceeded: Option<&'static str>,
    pub(in crate::api) exit_code: Option<i32>,
    pub(in crate::api) message: Option<String>,
    pub(in crate::api) stdout: String,
    pub(in crate::api) stdout_encoding: &'static str,
    pub(in crate::api) stdout_truncated: bool,
    pub(in crate::api) stderr: String,
    pub(in crate::api) stderr_encoding: &'static str,
    pub(in crate::api) stderr_truncated: bool,
    pub(in crate::api) time: Times,
    pub(in crate::api) memory_peak_kb: u64,
    pub(in crate::api) language: LanguageRef,
    pub(in crate::api) value: Option<String>,
    pub(in crate::api) display: Vec<DisplayOut>,
    pub(in crate::api) error: Option<CellError>,
    /// Files the cell wrote to `/sandbox/out`.
    pub(in crate::api) files: Vec<FileOut>,
    pub(in crate::api) files_truncated: bool,
    /// False when the cell ended the session (it died, hung or ran out of memory).
    pub(in crate::api) session_alive: bool,
}

impl CellOut {
    pub(in crate::api) fn new(request_id: &str, session_id: &str, o: CellOutcome, language: LanguageRef) -> Self {
        let (stdout, stdout_encoding) = text(&o.stdout);
        let (stderr, stderr_encoding) = text(&o.stderr);
        let files = o
            .artifacts
            .iter()
            .filter_map(|f| match &f.content {
                FileContent::File { bytes, executable } => {
                    let (content, encoding) = text(bytes);
                    Some(FileOut {
                        name: f.path.clone(),
                        kind: "file",
                        size: bytes.len() as u64,
                        executable: *executable,
                        content,
                        encoding,
                    })
                }
                FileContent::Symlink(_) => None,
            })
            .collect();
        CellOut {
            request_id: request_id.to_owned(),
            session_id: session_id.to_owned(),
            status: o.status.as_str(),
            exceeded: o.exceeded.map(|e| e.as_str()),
            exit_code: o.exit_code,
            message: o.message,
            stdout,
            stdout_encoding,
            stdout_truncated: o.stdout_truncated,
            stderr,
            stderr_encoding,
            stderr_truncated: o.stderr_truncated,
            time: Times { cpu_ms: o.cpu_time.as_secs_f64() * 1000.0, wall_ms: o.wall_time.as_secs_f64() * 1000.0 },
            memory_peak_kb: o.memory_peak_bytes / 1024,
            language,
            value: o.value,
            display: o.display.into_iter().map(|d| DisplayOut { mime: d.mime, data: d.data }).collect(),
            error: o.error.map(|e| CellError { name: e.name, message: e.message }),
            files,
            files_truncated: o.artifacts_truncated,
            session_alive: o.alive,
        }
    }
}
