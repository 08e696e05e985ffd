//! The Model Context Protocol at `/mcp` (streamable HTTP, protocol versions 2025-11-25
//! and 2026-07-28), served by the official SDK (`rmcp`): its Tower service is called from
//! the route table like any handler, stateless (a session of ours is a tool argument,
//! `session_id`, as 2026-07-28 asks of cross-call state), with plain JSON answers. The
//! tools are thin translations onto what the HTTP routes do: `run_code` (one run, or a
//! cell of a session), `create_session`, `close_session`, `write_file`, `read_file`,
//! `list_languages`. Whatever the model can fix (a bad language, a closed session, a
//! program that failed) is a result with `isError: true`; only our own failures are
//! JSON-RPC errors.

use std::sync::Arc;

use base64::Engine as _;
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::{Request, Response};
use rmcp::handler::server::router::tool::ToolRouter;
use rmcp::handler::server::wrapper::Parameters;
use rmcp::model::{CallToolResult, ContentBlock, Implementation, ServerCapabilities, ServerConfig};
use rmcp::service::RequestContext;
use rmcp::transport::streamable_http_server::session::never::NeverSessionManager;
use rmcp::transport::streamable_http_server::{StreamableHttpServerConfig, StreamableHttpService};
use rmcp::{ErrorData, RoleServer, ServerHandler, schemars, tool, tool_handler, tool_router};
use serde::Deserialize;
use serde_json::{Value, json};

use super::error::ApiError;
use super::routes::Caller;
use super::types::session::{CellIn, SessionIn};
use super::{Api, sessions};

/// The `/mcp` service.
pub(super) type Service = StreamableHttpService<Tools, NeverSessionManager>;

/// The service for `api` (weak: the API holds the service); `hosts` are the `Host`
/// values accepted (DNS rebinding).
pub(super) fn service(api: std::sync::Weak<Api>, hosts: Vec<String>) -> Service {
    let config = StreamableHttpServerConfig::default()
        .with_legacy_session_mode(false)
        .with_json_response(true)
        .with_sse_keep_alive(None)
        .with_allowed_hosts(hosts);
    let tools = move || api.upgrade().map(Tools::new).ok_or_else(|| std::io::Error::other("the daemon is stopping"));
    StreamableHttpService::new(tools, Arc::new(NeverSessionManager::default()), config)
}

/// Answers one `/mcp` request from `caller` (its key's sessions are its own).
pub(super) async fn handle(svc: &Service, mut req: Request<Incoming>, caller: Caller) -> Response<Full<Bytes>> {
    req.extensions_mut().insert(caller);
    let resp = match tower_service::Service::call(&mut svc.clone(), req).await {
        Ok(r) => r,
        Err(never) => match never {},
    };
    let (parts, body) = resp.into_parts();
    let bytes = body.collect().await.map(|c| c.to_bytes()).unwrap_or_default();
    Response::from_parts(parts, Full::new(bytes))
}

/// The tools, over the API's state.
#[derive(Debug, Clone)]
pub(super) struct Tools {
    api: Arc<Api>,
    tool_router: ToolRouter<Self>,
}

#[derive(Debug, Deserialize, schemars::JsonSchema)]
struct RunCode {
    /// The language (see list_languages): python, javascript, typescript, ruby, bash, c, cpp, java, go, rust.
    language: String,
    /// The source code.
    code: String,
    /// A version to insist on.
    version: Option<String>,
    /// The program's stdin (not with session_id).
    stdin: Option<String>,
    /// Run in this session (from create_session): variables and files persist.
    session_id: Option<String>,
    /// Wall-clock limit in milliseconds.
    timeout_ms: Option<u64>,
}

#[derive(Debug, Deserialize, schemars::JsonSchema)]
struct CreateSession {
    /// The language of the session's interpreter.
    language: String,
    /// A version to insist on.
    version: Option<String>,
    /// Seconds without a call after which the session ends.
    idle_timeout_s: Option<u64>,
}

#[derive(Debug, Deserialize, schemars::JsonSchema)]
struct SessionRef {
    /// The session's id.
    session_id: String,
}

#[derive(Debug, Deserialize, schemars::JsonSchema)]
struct WriteFile {
    /// The session's id.
    session_id: String,
    /// Path relative to /sandbox.
    path: String,
    /// The contents.
    content: String,
    /// utf8 (default) or base64.
    encoding: Option<String>,
}

#[derive(Debug, Deserialize, schemars::JsonSchema)]
struct ReadFile {
    /// The session's id.
    session_id: String,
    /// Path relative to /sandbox.
    path: String,
}

/// A result the model can act on: `isError` with the message.
fn refused(e: &ApiError) -> CallToolResult {
    let body = json!({ "error": { "code": e.code(), "message": e.message() } });
    let mut r = CallToolResult::error(vec![ContentBlock::text(format!("{}: {}", e.code(), e.message()))]);
    r.structured_content = Some(body);
    r
}

/// Our own failures are protocol errors; the rest are results.
fn answer(result: Result<CallToolResult, ApiError>) -> Result<CallToolResult, ErrorData> {
    match result {
        Ok(r) => Ok(r),
        Err(e @ ApiError::Internal(_)) => Err(ErrorData::internal_error(e.message(), None)),
        Err(e) => Ok(refused(&e)),
    }
}

fn caller(ctx: &RequestContext<RoleServer>) -> Caller {
    ctx.extensions
        .get::<hyper::http::request::Parts>()
        .and_then(|p| p.extensions.get::<Caller>().copied())
        .unwrap_or(Caller::Key(usize::MAX))
}

/// A run's or cell's answer as a tool result: a text summary, figures as images, the
/// whole answer as `structuredContent`; `isError` unless it ran to `ok`.
fn run_result(body: Value) -> CallToolResult {
    let status = body["status"].as_str().unwrap_or("internal_error").to_owned();
    let mut text = format!("status: {status}");
    for (k, label) in [("stdout", "stdout"), ("stderr", "stderr"), ("value", "value"), ("message", "message")] {
        if let Some(s) = body[k].as_str().filter(|s| !s.is_empty()) {
            text.push_str(&format!("\n{label}:\n{s}"));
        }
    }
    let mut content = vec![ContentBlock::text(text)];
    for d in body["display"].as_array().into_iter().flatten() {
        if let (Some(data), Some(mime)) = (d["data"].as_str(), d["mime"].as_str()) {
            content.push(ContentBlock::image(data, mime));
        }
    }
    let mut r = if status == "ok" { CallToolResult::success(content) } else { CallToolResult::error(content) };
    r.structured_content = Some(body);
    r
}

#[tool_router]
impl Tools {
    fn new(api: Arc<Api>) -> Self {
        Tools { api, tool_router: Self::tool_router() }
    }

    #[tool(
        description = "Run code in a fresh sandbox, or in a session (pass session_id from create_session to keep variables and files). Figures (matplotlib) come back as images."
    )]
    async fn run_code(
        &self,
        Parameters(p): Parameters<RunCode>,
        ctx: RequestContext<RoleServer>,
    ) -> Result<CallToolResult, ErrorData> {
        let caller = caller(&ctx);
        let api = &self.api;
        answer(
            async {
                if let Some(id) = p.session_id {
                    if p.stdin.is_some() {
                        return Err(ApiError::Invalid("stdin is not taken with session_id".into()));
                    }
                    let cell = CellIn { code: p.code, timeout_ms: p.timeout_ms };
                    let out = sessions::execute(api, &id, cell, caller, "mcp").await?;
                    let body = serde_json::to_value(&out).map_err(|e| ApiError::Internal(e.to_string()))?;
                    return Ok(run_result(body));
                }
                let mut req = json!({ "language": p.language, "code": p.code });
                if let Some(s) = p.stdin {
                    req["stdin"] = json!(s);
                }
                if let Some(t) = p.timeout_ms {
                    req["limits"] = json!({ "wall_time_ms": t });
                }
                if let Some(v) = p.version {
                    req["version"] = json!(v);
                }
                Ok(run_result(super::routes::execute_value(api, req, caller).await?))
            }
            .await,
        )
    }

    #[tool(
        description = "Open a session: a sandbox whose interpreter keeps variables, imports and files between run_code calls. Returns session_id."
    )]
    async fn create_session(
        &self,
        Parameters(p): Parameters<CreateSession>,
        ctx: RequestContext<RoleServer>,
    ) -> Result<CallToolResult, ErrorData> {
        let dto = SessionIn {
            language: p.language,
            version: p.version,
            idle_timeout_s: p.idle_timeout_s,
            ..Default::default()
        };
        answer(sessions::create(&self.api, dto, caller(&ctx)).await.map(|out| {
            let mut v = serde_json::to_value(&out).unwrap_or_default();
            v["session_id"] = v["id"].clone();
            let mut r = CallToolResult::success(vec![ContentBlock::text(format!("session_id: {}", out.id))]);
            r.structured_content = Some(v);
            r
        }))
    }

    #[tool(description = "Close a session and free its sandbox.")]
    async fn close_session(
        &self,
        Parameters(p): Parameters<SessionRef>,
        ctx: RequestContext<RoleServer>,
    ) -> Result<CallToolResult, ErrorData> {
        answer(sessions::close(&self.api, &p.session_id, caller(&ctx)).await.map(|()| {
            let mut r = CallToolResult::success(vec![ContentBlock::text("closed")]);
            r.structured_content = Some(json!({ "session_id": p.session_id, "closed": true }));
            r
        }))
    }

    #[tool(description = "Write a file into a session's /sandbox (path relative to it).")]
    async fn write_file(
        &self,
        Parameters(p): Parameters<WriteFile>,
        ctx: RequestContext<RoleServer>,
    ) -> Result<CallToolResult, ErrorData> {
        let data = match p.encoding.as_deref() {
            None | Some("utf8") => Ok(p.content.into_bytes()),
            Some("base64") => base64::engine::general_purpose::STANDARD
                .decode(p.content.as_bytes())
                .map_err(|e| ApiError::Invalid(format!("content is not base64: {e}"))),
            Some(other) => Err(ApiError::Invalid(format!("encoding {other:?}: utf8 or base64"))),
        };
        let size = data.as_ref().map_or(0, Vec::len);
        let path = p.path.clone();
        let written = match data {
            Ok(data) if data.len() as u64 > sessions::MAX_FILE_BYTES => {
                Err(ApiError::TooLarge(sessions::MAX_FILE_BYTES))
            }
            Ok(data) => {
                sessions::with_files(&self.api, &p.session_id, caller(&ctx), move |s| s.write_file(&path, &data)).await
            }
            Err(e) => Err(e),
        };
        answer(written.map(|()| {
            let mut r = CallToolResult::success(vec![ContentBlock::text(format!("wrote {size} bytes to {}", p.path))]);
            r.structured_content = Some(json!({ "path": p.path, "size": size }));
            r
        }))
    }

    #[tool(description = "Read a file from a session's /sandbox (path relative to it).")]
    async fn read_file(
        &self,
        Parameters(p): Parameters<ReadFile>,
        ctx: RequestContext<RoleServer>,
    ) -> Result<CallToolResult, ErrorData> {
        let path = p.path.clone();
        let read = sessions::with_files(&self.api, &p.session_id, caller(&ctx), move |s| {
            s.read_file(&path, sessions::MAX_FILE_BYTES)
        })
        .await;
        answer(read.map(|bytes| {
            let (content, encoding) = super::types::text(&bytes);
            let block = if encoding == "utf8" {
                ContentBlock::text(content.clone())
            } else if bytes.starts_with(b"\x89PNG\r\n\x1a\n") {
                ContentBlock::image(content.clone(), "image/png")
            } else {
                ContentBlock::text(format!("{} bytes, base64:\n{content}", bytes.len()))
            };
            let mut r = CallToolResult::success(vec![block]);
            r.structured_content =
                Some(json!({ "path": p.path, "size": bytes.len(), "content": content, "encoding": encoding }));
            r
        }))
    }

    #[tool(
        description = "The languages this daemon runs, with their versions and whether sessions keep their variables."
    )]
    async fn list_languages(&self) -> Result<CallToolResult, ErrorData> {
        let langs = super::routes::language_list(&self.api);
        let names: Vec<String> = langs.iter().filter_map(|l| l["id"].as_str().map(str::to_owned)).collect();
        let mut r = CallToolResult::success(vec![ContentBlock::text(names.join(", "))]);
        r.structured_content = Some(json!({ "languages": langs }));
        Ok(r)
    }
}

#[tool_handler(router = self.tool_router)]
impl ServerHandler for Tools {
    fn get_info(&self) -> ServerConfig {
        ServerConfig::new(ServerCapabilities::builder().enable_tools().build())
            .with_server_info(Implementation::new("codeexec", env!("CARGO_PKG_VERSION")))
            .with_instructions(
                "Run code in sandboxes. Use create_session and pass session_id to run_code to keep state.",
            )
    }
}
