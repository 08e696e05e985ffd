//! `codeexec mcp`: the MCP stdio transport bridged to a daemon's `/mcp` (streamable
//! HTTP). Each JSON-RPC line read from stdin is POSTed as it is; the answer (a JSON
//! object, or the `data` of each SSE event) is written to stdout as one line; a
//! notification's 202 writes nothing. The bridge keeps no protocol state beyond the
//! version the server negotiated (sent back as `MCP-Protocol-Version`), so it serves both
//! 2025-11-25 and 2026-07-28 clients unchanged. It is a transport, not an MCP peer: the
//! SDK's server lives in the daemon, and speaking the protocol here again would only
//! repeat it.

use std::io::{BufRead, Write};

use bytes::Bytes;
use http_body_util::Full;
use hyper::header::{ACCEPT, CONTENT_TYPE, HOST};
use hyper::{Method, Request};
use serde_json::{Value, json};

use super::{ClientError, Connection, Endpoint};

/// Largest line read from stdin.
const MAX_LINE: usize = 64 << 20;

/// Bridges `input` to `endpoint`'s `/mcp`, writing answers to `output`, until `input`
/// ends. Runs requests one at a time, in order.
pub fn bridge(
    runtime: &tokio::runtime::Runtime,
    endpoint: &Endpoint,
    api_key: Option<&str>,
    input: impl BufRead,
    mut output: impl Write,
) -> Result<(), ClientError> {
    let mut conn: Option<Connection> = None;
    let mut version: Option<String> = None;
    for line in input.lines() {
        let line = line.map_err(|source| ClientError::Connect { endpoint: "stdin".into(), source })?;
        if line.trim().is_empty() {
            continue;
        }
        if line.len() > MAX_LINE {
            continue;
        }
        let msg: Value = serde_json::from_str(&line).unwrap_or(Value::Null);
        let answers = runtime.block_on(exchange(&mut conn, endpoint, api_key, &line, &msg, version.as_deref()));
        for a in answers {
            if let Some(v) = a["result"]["protocolVersion"].as_str() {
                version = Some(v.to_owned());
            }
            let text = serde_json::to_string(&a).unwrap_or_default();
            let written = writeln!(output, "{text}").and_then(|()| output.flush());
            written.map_err(|source| ClientError::Connect { endpoint: "stdout".into(), source })?;
        }
    }
    Ok(())
}

/// One message's answers; a transport failure becomes a JSON-RPC error for a request.
async fn exchange(
    conn: &mut Option<Connection>,
    endpoint: &Endpoint,
    api_key: Option<&str>,
    line: &str,
    msg: &Value,
    version: Option<&str>,
) -> Vec<Value> {
    let meta = msg["params"]["_meta"]["io.modelcontextprotocol/protocolVersion"].as_str();
    let mut builder = Request::builder()
        .method(Method::POST)
        .uri("/mcp")
        .header(CONTENT_TYPE, "application/json")
        .header(ACCEPT, "application/json, text/event-stream");
    if let Some(v) = meta.or(version) {
        builder = builder.header("mcp-protocol-version", v);
    }
    if let Some(m) = msg["method"].as_str() {
        builder = builder.header("mcp-method", m);
    }
    if let Some(n) = msg["params"]["name"].as_str().or_else(|| msg["params"]["uri"].as_str()) {
        builder = builder.header("mcp-name", n);
    }
    let id = msg.get("id").cloned();
    let failed = |message: String| match &id {
        Some(id) => vec![json!({"jsonrpc": "2.0", "id": id, "error": {"code": -32603, "message": message}})],
        None => Vec::new(),
    };
    for attempt in 0..2 {
        if conn.is_none() {
            match Connection::open(endpoint, api_key).await {
                Ok(c) => *conn = Some(c),
                Err(e) => return failed(format!("cannot reach the daemon: {}", crate::error_chain(&e))),
            }
        }
        let Some(c) = conn.as_mut() else { continue };
        let mut b = builder.clone_headers();
        b = b.header(HOST, c.host.clone());
        if let Some(k) = &c.api_key {
            b = b.header("x-api-key", k.clone());
        }
        let req = match b.body(Full::new(Bytes::copy_from_slice(line.as_bytes()))) {
            Ok(r) => r,
            Err(e) => return failed(format!("building the request: {e}")),
        };
        match c.raw(req).await {
            Ok(reply) => {
                let ct = reply.headers.get(CONTENT_TYPE).and_then(|v| v.to_str().ok()).unwrap_or("").to_owned();
                if reply.status.as_u16() == 202 || reply.body.is_empty() {
                    return Vec::new();
                }
                if ct.starts_with("text/event-stream") {
                    return sse_data(&reply.body);
                }
                return match serde_json::from_slice::<Value>(&reply.body) {
                    Ok(v) if v.get("jsonrpc").is_some() => vec![v],
                    Ok(v) => failed(format!("the daemon answered {}: {}", reply.status, v["error"]["message"])),
                    Err(_) => failed(format!("the daemon answered {}", reply.status)),
                };
            }
            // a kept-alive connection the daemon closed: once more on a new one
            Err(_) if attempt == 0 => *conn = None,
            Err(e) => return failed(format!("talking to the daemon: {}", crate::error_chain(&e))),
        }
    }
    failed("the daemon could not be reached".into())
}

/// The JSON of each event's `data` lines.
fn sse_data(body: &[u8]) -> Vec<Value> {
    let text = String::from_utf8_lossy(body);
    let mut out = Vec::new();
    for event in text.split("\n\n") {
        let data: Vec<&str> = event.lines().filter_map(|l| l.strip_prefix("data:")).map(str::trim_start).collect();
        if data.is_empty() {
            continue;
        }
        if let Ok(v) = serde_json::from_str::<Value>(&data.join("\n")) {
            out.push(v);
        }
    }
    out
}

/// A request builder's method, URI and headers again (the builder is not `Clone`).
trait CloneHeaders {
    fn clone_headers(&self) -> hyper::http::request::Builder;
}

impl CloneHeaders for hyper::http::request::Builder {
    fn clone_headers(&self) -> hyper::http::request::Builder {
        let mut b = Request::builder().method(Method::POST).uri("/mcp");
        if let Some(h) = self.headers_ref() {
            for (k, v) in h {
                b = b.header(k, v);
            }
        }
        b
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_sse_event_is_one_message() {
        let body = b"event: message\ndata: {\"jsonrpc\":\"2.0\",\"id\":1,\"result\":{}}\n\ndata: {\"jsonrpc\":\"2.0\",\"method\":\"x\"}\n\n";
        let v = sse_data(body);
        assert_eq!(v.len(), 2);
        assert_eq!(v[0]["id"], 1);
        assert_eq!(v[1]["method"], "x");
    }
}
