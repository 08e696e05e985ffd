//! Sessions and MCP through a running daemon (used by scripts/bench): opening a Python
//! session, a cell in a warm one (`x = 1`, then `print(x)` measured) beside a fresh
//! `/v1/execute` run of the same, and an MCP `run_code` round trip.

use std::time::{Duration, Instant};

use serde_json::{Value, json};

use super::{Row, Series};
use crate::client::{Connection, Endpoint};

fn chain(e: &dyn std::error::Error) -> String {
    crate::error_chain(e)
}

async fn post(conn: &mut Connection, path: &str, body: &Value) -> Result<Value, String> {
    let r = conn.post_json(path, body).await.map_err(|e| chain(&e))?;
    if !r.status.is_success() {
        return Err(format!("{path} answered {}: {}", r.status, String::from_utf8_lossy(&r.body)));
    }
    Ok(r.json())
}

/// The rows: session create, warm cell, fresh run, MCP round trip (5 unmeasured first).
pub async fn rows(endpoint: &Endpoint, runs: usize) -> Result<Vec<Row>, String> {
    let mut conn = Connection::open(endpoint, None).await.map_err(|e| chain(&e))?;
    let mode = "API, unix socket";
    let (mut create, mut cell, mut fresh, mut mcp) = (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    let opens = runs.min(50);
    for i in 0..opens + 5 {
        let t = Instant::now();
        let v = post(&mut conn, "/v1/sessions", &json!({"language": "python"})).await?;
        keep(&mut create, i, t);
        close(&mut conn, v["id"].as_str().unwrap_or_default()).await?;
    }
    let v = post(&mut conn, "/v1/sessions", &json!({"language": "python"})).await?;
    let id = v["id"].as_str().unwrap_or_default().to_owned();
    let path = format!("/v1/sessions/{id}/execute");
    for i in 0..runs + 5 {
        post(&mut conn, &path, &json!({"code": "x = 1"})).await?;
        let t = Instant::now();
        let v = post(&mut conn, &path, &json!({"code": "print(x)"})).await?;
        keep(&mut cell, i, t);
        if v["stdout"] != "1\n" {
            return Err(format!("the cell answered {v}"));
        }
    }
    close(&mut conn, &id).await?;
    for i in 0..runs + 5 {
        let t = Instant::now();
        post(&mut conn, "/v1/execute", &json!({"language": "python", "code": "x = 1\nprint(x)"})).await?;
        keep(&mut fresh, i, t);
    }
    for i in 0..runs + 5 {
        let t = Instant::now();
        mcp_run_code(&mut conn).await?;
        keep(&mut mcp, i, t);
    }
    Ok(vec![
        Row { workload: "python session, open", mode, runs: opens, series: Series::of(create) },
        Row { workload: "python cell `print(x)`, warm session", mode, runs, series: Series::of(cell) },
        Row { workload: "python `x = 1; print(x)`, fresh run", mode, runs, series: Series::of(fresh) },
        Row { workload: "MCP tools/call run_code (python print(1))", mode, runs, series: Series::of(mcp) },
    ])
}

fn keep(samples: &mut Vec<Duration>, i: usize, t: Instant) {
    if i >= 5 {
        samples.push(t.elapsed());
    }
}

async fn close(conn: &mut Connection, id: &str) -> Result<(), String> {
    let r = conn
        .send(hyper::Method::DELETE, &format!("/v1/sessions/{id}"), None, bytes::Bytes::new())
        .await
        .map_err(|e| chain(&e))?;
    if !r.status.is_success() {
        return Err(format!("closing a session answered {}", r.status));
    }
    Ok(())
}

/// One stateless (2026-07-28) `tools/call` of `run_code`.
async fn mcp_run_code(conn: &mut Connection) -> Result<(), String> {
    let meta = json!({
        "io.modelcontextprotocol/protocolVersion": "2026-07-28",
        "io.modelcontextprotocol/clientCapabilities": {},
        "io.modelcontextprotocol/clientInfo": {"name": "codeexec-bench", "version": "1"},
    });
    let body = json!({"jsonrpc": "2.0", "id": 1, "method": "tools/call", "params": {
        "name": "run_code", "arguments": {"language": "python", "code": "print(1)"}, "_meta": meta}});
    let req = hyper::Request::builder()
        .method(hyper::Method::POST)
        .uri("/mcp")
        .header(hyper::header::HOST, "localhost")
        .header(hyper::header::CONTENT_TYPE, "application/json")
        .header(hyper::header::ACCEPT, "application/json, text/event-stream")
        .header("mcp-protocol-version", "2026-07-28")
        .header("mcp-method", "tools/call")
        .header("mcp-name", "run_code")
        .body(http_body_util::Full::new(bytes::Bytes::from(body.to_string())))
        .map_err(|e| e.to_string())?;
    let r = conn.raw(req).await.map_err(|e| chain(&e))?;
    let v: Value = serde_json::from_slice(&r.body).unwrap_or(Value::Null);
    if v["result"]["structuredContent"]["stdout"] != "1\n" {
        return Err(format!("/mcp answered {}: {}", r.status, String::from_utf8_lossy(&r.body)));
    }
    Ok(())
}
