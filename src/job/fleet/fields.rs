//! A job as a Redis hash: the fields written at submission and by `FINISH`, the job read
//! back from `HGETALL`, and the replies of the scripts that return a hash.

use std::collections::HashMap;

use redis::Value;

use super::super::{Callback, Failure, Job, Outcome, Result, State, StoreError, now_ms};

/// A job's hash fields, written at submission.
pub(super) fn fields_of(job: &Job, request: &[u8]) -> Vec<(&'static str, Vec<u8>)> {
    let mut f = vec![
        ("id", job.id.clone().into_bytes()),
        ("status", job.status.as_str().into()),
        ("created_at", job.created_at.to_string().into_bytes()),
        ("runs", b"0".to_vec()),
        ("request", request.to_vec()),
    ];
    if let Some(o) = &job.owner {
        f.push(("owner", o.clone().into_bytes()));
    }
    if let Some(c) = &job.callback {
        f.push(("callback", serde_json::to_vec(c).unwrap_or_default()));
    }
    f
}

/// The fields of an outcome, written by `FINISH`.
pub(super) fn outcome_fields(outcome: &Outcome) -> Vec<(&'static str, String)> {
    let mut f = vec![("finished_at", now_ms().to_string())];
    match outcome {
        Outcome::Done(v) => {
            f.push(("status", "done".into()));
            f.push(("result", v.to_string()));
        }
        Outcome::Failed(e) => {
            f.push(("status", "failed".into()));
            f.push(("error_code", e.code.clone()));
            f.push(("error_message", e.message.clone()));
        }
    }
    f
}

/// A job from its hash (`HGETALL`).
pub(super) fn job_of(id: &str, h: &HashMap<String, Vec<u8>>) -> Result<Job> {
    let damaged = |why: String| StoreError::Damaged { id: id.to_owned(), why };
    let text = |k: &str| h.get(k).map(|v| String::from_utf8_lossy(v).into_owned());
    let number = |k: &str| text(k).and_then(|t| t.parse::<u64>().ok());
    let status = text("status").and_then(|s| State::parse(&s)).ok_or_else(|| damaged("no valid status".into()))?;
    let result = match h.get("result") {
        Some(v) => Some(serde_json::from_slice(v).map_err(|e| damaged(format!("result: {e}")))?),
        None => None,
    };
    let callback: Option<Callback> = match h.get("callback") {
        Some(v) => Some(serde_json::from_slice(v).map_err(|e| damaged(format!("callback: {e}")))?),
        None => None,
    };
    Ok(Job {
        id: id.to_owned(),
        owner: text("owner"),
        status,
        created_at: number("created_at").unwrap_or(0),
        started_at: number("started_at"),
        finished_at: number("finished_at"),
        runs: number("runs").and_then(|r| u32::try_from(r).ok()).unwrap_or(0),
        result,
        error: text("error_code").map(|code| Failure { code, message: text("error_message").unwrap_or_default() }),
        callback,
    })
}

/// `(kind, HGETALL as a flat list)` from `START` and `FINISH`.
pub(super) fn parse_reply(v: Value) -> Result<(String, HashMap<String, Vec<u8>>)> {
    let damaged = |why: &str| StoreError::Damaged { id: String::new(), why: why.to_owned() };
    let Value::Array(items) = v else { return Err(damaged("a script answered no list")) };
    let mut items = items.into_iter();
    let kind: String = items
        .next()
        .and_then(|v| redis::from_redis_value(v).ok())
        .ok_or_else(|| damaged("a script answered no kind"))?;
    let mut hash = HashMap::new();
    if let Some(Value::Array(flat)) = items.next() {
        let mut flat = flat.into_iter();
        while let (Some(k), Some(v)) = (flat.next(), flat.next()) {
            if let (Ok(k), Ok(v)) = (redis::from_redis_value::<String>(k), redis::from_redis_value::<Vec<u8>>(v)) {
                hash.insert(k, v);
            }
        }
    }
    Ok((kind, hash))
}
