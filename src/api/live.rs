//! Live runs over HTTP: `POST /v1/execute` answered at once as a stream of events (NDJSON
//! or SSE), and the WebSocket at `GET /v1/connect` (the client sends the request, then stdin,
//! its close and signals). Each is one ordinary run through `routes::perform` with a
//! [`Live`] in its program; this module only puts the run's events on the wire and bounds
//! the clients: at most [`MAX_LIVE`] streams and WebSockets at once, and a client that
//! reads nothing for [`STALL_TIMEOUT`] is closed and its run killed, as is one that hangs up.

use std::convert::Infallible;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use base64::Engine as _;
use bytes::Bytes;
use futures_util::stream::{SplitSink, SplitStream};
use futures_util::{SinkExt, StreamExt};
use http_body_util::BodyExt;
use hyper::body::{Frame, Incoming};
use hyper::header::{CACHE_CONTROL, CONNECTION, CONTENT_TYPE, HeaderValue, UPGRADE};
use hyper::upgrade::Upgraded;
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use serde::{Deserialize, Serialize};
use tokio::sync::mpsc;
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::handshake::derive_accept_key;
use tokio_tungstenite::tungstenite::protocol::{Role, WebSocketConfig};

use super::Api;
use super::error::{ApiError, from_json};
use super::limiter::Ticket;
use super::plan::{Planned, Work, plan};
use super::routes::{Caller, Reply, perform};
use super::types::ExecuteRequest;
use crate::run::{Cancel, Control, Event, Live, parse_signal};

/// Streams and WebSockets open at once (each holds one socket and a few KiB); more are
/// refused with 429.
pub(super) const MAX_LIVE: usize = 1024;
/// A client that takes nothing for this long has its stream closed and its run killed.
pub(super) const STALL_TIMEOUT: Duration = Duration::from_secs(10);
/// A WebSocket has this long to send its `run` message.
const FIRST_MESSAGE_TIMEOUT: Duration = Duration::from_secs(30);
/// Frames queued between a stream's task and its HTTP body.
const BODY_FRAMES: usize = 16;

/// How a stream is framed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Format {
    /// `application/x-ndjson`: one JSON event per line.
    Ndjson,
    /// `text/event-stream`: `event: <type>` and `data: <json>`.
    Sse,
}

/// Whether a request asks for a stream: an `Accept` naming a stream type, or `"stream":
/// true` (NDJSON unless `Accept` asks for SSE).
pub(super) fn format(accept: Option<&str>, stream: Option<bool>) -> Option<Format> {
    let accept = accept.unwrap_or("").to_ascii_lowercase();
    if accept.contains("text/event-stream") {
        return Some(Format::Sse);
    }
    if accept.contains("application/x-ndjson") || stream == Some(true) {
        return Some(Format::Ndjson);
    }
    None
}

/// One event on the wire (the same on NDJSON, SSE and WebSocket).
#[derive(Debug, Serialize)]
#[serde(tag = "type", rename_all = "snake_case")]
enum WireEvent {
    Stage {
        stage: &'static str,
        state: &'static str,
    },
    Stdout {
        data: String,
        #[serde(skip_serializing_if = "Option::is_none")]
        encoding: Option<&'static str>,
    },
    Stderr {
        data: String,
        #[serde(skip_serializing_if = "Option::is_none")]
        encoding: Option<&'static str>,
    },
    Result {
        result: serde_json::Value,
    },
    Error {
        error: ErrorOut,
    },
}

#[derive(Debug, Serialize)]
struct ErrorOut {
    code: &'static str,
    message: String,
}

impl WireEvent {
    fn error(e: &ApiError) -> Self {
        WireEvent::Error { error: ErrorOut { code: e.code(), message: e.message() } }
    }

    fn name(&self) -> &'static str {
        match self {
            WireEvent::Stage { .. } => "stage",
            WireEvent::Stdout { .. } => "stdout",
            WireEvent::Stderr { .. } => "stderr",
            WireEvent::Result { .. } => "result",
            WireEvent::Error { .. } => "error",
        }
    }

    fn output(stderr: bool, data: String, encoding: Option<&'static str>) -> Self {
        if stderr { WireEvent::Stderr { data, encoding } } else { WireEvent::Stdout { data, encoding } }
    }
}

/// Turns output chunks into text: a character cut at a chunk's end waits for the rest;
/// bytes that are not UTF-8 go as base64.
#[derive(Debug, Default)]
struct Decoder {
    carry: [Vec<u8>; 2],
}

impl Decoder {
    fn chunk(&mut self, stderr: bool, data: &[u8]) -> Option<WireEvent> {
        let carry = &mut self.carry[usize::from(stderr)];
        carry.extend_from_slice(data);
        let bytes = std::mem::take(carry);
        match std::str::from_utf8(&bytes) {
            Ok(_) => Some(WireEvent::output(stderr, String::from_utf8(bytes).ok()?, None)),
            // incomplete at the end (at most 3 bytes): the rest comes with the next chunk
            Err(e) if e.error_len().is_none() => {
                let (text, rest) = bytes.split_at(e.valid_up_to());
                *carry = rest.to_vec();
                let text = std::str::from_utf8(text).ok().filter(|t| !t.is_empty())?;
                Some(WireEvent::output(stderr, text.to_owned(), None))
            }
            Err(_) => Some(WireEvent::output(
                stderr,
                base64::engine::general_purpose::STANDARD.encode(&bytes),
                Some("base64"),
            )),
        }
    }

    /// What is left at the end (a cut character): as base64.
    fn flush(&mut self) -> Vec<WireEvent> {
        let mut out = Vec::new();
        for (i, carry) in self.carry.iter_mut().enumerate() {
            if !carry.is_empty() {
                let data = base64::engine::general_purpose::STANDARD.encode(std::mem::take(carry));
                out.push(WireEvent::output(i == 1, data, Some("base64")));
            }
        }
        out
    }

    fn event(&mut self, ev: Event) -> Option<WireEvent> {
        match ev {
            Event::Stage { stage, started } => {
                Some(WireEvent::Stage { stage, state: if started { "started" } else { "ended" } })
            }
            Event::Output { stderr, data } => self.chunk(stderr, &data),
        }
    }
}

/// The client went away, or stalled past [`STALL_TIMEOUT`].
#[derive(Debug)]
struct Gone;

type Ws = WebSocketStream<TokioIo<Upgraded>>;

/// Where events go.
enum Out {
    Body { tx: mpsc::Sender<Bytes>, format: Format },
    Ws(SplitSink<Ws, Message>),
}

impl Out {
    async fn send(&mut self, ev: &WireEvent, request_id: &str) -> Result<(), Gone> {
        let json = serde_json::to_string(ev).map_err(|_| Gone)?;
        let sent = match self {
            Out::Body { tx, format } => {
                let bytes = match format {
                    Format::Ndjson => format!("{json}\n"),
                    Format::Sse => format!("event: {}\ndata: {json}\n\n", ev.name()),
                };
                match tx.send_timeout(Bytes::from(bytes), STALL_TIMEOUT).await {
                    Ok(()) => Ok(()),
                    Err(mpsc::error::SendTimeoutError::Timeout(_)) => Err(true),
                    Err(mpsc::error::SendTimeoutError::Closed(_)) => Err(false),
                }
            }
            Out::Ws(sink) => match tokio::time::timeout(STALL_TIMEOUT, sink.send(Message::text(json))).await {
                Ok(Ok(())) => Ok(()),
                Ok(Err(_)) => Err(false),
                Err(_) => Err(true),
            },
        };
        sent.map_err(|stalled| {
            if stalled {
                tracing::info!(%request_id, "live client stalled: closing it and killing its run");
            }
            Gone
        })
    }

    /// Resolves when an HTTP client has hung up (a WebSocket's reader notices instead).
    async fn closed(&self) {
        match self {
            Out::Body { tx, .. } => tx.closed().await,
            Out::Ws(_) => std::future::pending().await,
        }
    }
}

/// The run's program, made live (a judge request is not: its tests are not streamed).
fn with_live(mut planned: Planned, live: Live) -> Result<Planned, ApiError> {
    match &mut planned.work {
        Work::Single(p) => p.live = Some(live),
        Work::Judge(_) => return Err(ApiError::Invalid("tests are not streamed: a live run is a single run".into())),
    }
    Ok(planned)
}

fn refuse_judge(planned: &Planned) -> Result<(), ApiError> {
    match planned.work {
        Work::Single(_) => Ok(()),
        Work::Judge(_) => Err(ApiError::Invalid("tests are not streamed: a live run is a single run".into())),
    }
}

/// Runs `planned` once a slot is free, sending its events to `out` as they come, any
/// `notes` (a WebSocket's refusals) between them, and last its result. Returns early, which
/// kills the run, when the client goes away or stalls.
#[allow(clippy::too_many_arguments)]
async fn drive(
    api: &Api,
    planned: Planned,
    ticket: Ticket,
    mut events: mpsc::UnboundedReceiver<Event>,
    out: &mut Out,
    mut notes: Option<mpsc::Receiver<WireEvent>>,
    cancel: Cancel,
    request_id: &str,
) -> Result<&'static str, Gone> {
    let slot = match api.limiter.slot(ticket).await {
        Ok(s) => s,
        Err(e) => {
            out.send(&WireEvent::error(&e), request_id).await?;
            return Ok(e.code());
        }
    };
    let run = perform(api, planned, slot, cancel, request_id);
    tokio::pin!(run);
    let mut dec = Decoder::default();
    let done = loop {
        tokio::select! {
            biased;
            Some(ev) = events.recv() => {
                if let Some(w) = dec.event(ev) {
                    out.send(&w, request_id).await?;
                }
            }
            Some(note) = async { match notes.as_mut() { Some(n) => n.recv().await, None => None } } => {
                out.send(&note, request_id).await?;
            }
            r = &mut run => break r,
            () = out.closed() => return Err(Gone),
        }
    };
    // the run's `Live` is gone with it: what is left comes, then the channel closes
    while let Some(ev) = events.recv().await {
        if let Some(w) = dec.event(ev) {
            out.send(&w, request_id).await?;
        }
    }
    for w in dec.flush() {
        out.send(&w, request_id).await?;
    }
    match done {
        Ok((result, status, _)) => {
            out.send(&WireEvent::Result { result }, request_id).await?;
            Ok(status)
        }
        Err(e) => {
            out.send(&WireEvent::error(&e), request_id).await?;
            Ok(e.code())
        }
    }
}

/// `POST /v1/execute` as a stream: answers at once; the run's events follow in the body.
pub(super) fn stream(
    api: &Arc<Api>,
    planned: Planned,
    ticket: Ticket,
    per_key: super::rate::RunPermit,
    format: Format,
    request_id: &str,
) -> Result<Reply, ApiError> {
    refuse_judge(&planned)?;
    let guard = Arc::clone(&api.live).try_acquire_owned().map_err(|_| ApiError::Busy)?;
    let (live, events) = Live::output();
    let planned = with_live(planned, live)?;
    let cancel = Cancel::new()?;
    let (tx, rx) = mpsc::channel(BODY_FRAMES);
    let api = Arc::clone(api);
    let request_id = request_id.to_owned();
    tokio::spawn(async move {
        let mut out = Out::Body { tx, format };
        let ended = drive(&api, planned, ticket, events, &mut out, None, cancel, &request_id).await;
        log_end(&request_id, ended);
        // the stream's place and its key's run count go when the run has ended
        drop((guard, per_key));
    });
    let content_type = match format {
        Format::Ndjson => "application/x-ndjson",
        Format::Sse => "text/event-stream",
    };
    let mut resp = Response::new(LiveBody { rx }.boxed());
    let headers = resp.headers_mut();
    headers.insert(CONTENT_TYPE, HeaderValue::from_static(content_type));
    headers.insert(CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    Ok(resp)
}

fn log_end(request_id: &str, ended: Result<&'static str, Gone>) {
    match ended {
        Ok(status) => tracing::info!(%request_id, run = status, "live run ended"),
        Err(Gone) => tracing::info!(%request_id, "live run killed: its client went away or stalled"),
    }
}

/// A streamed response's body: the frames the run's task sends.
struct LiveBody {
    rx: mpsc::Receiver<Bytes>,
}

impl hyper::body::Body for LiveBody {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        self.rx.poll_recv(cx).map(|b| b.map(|b| Ok(Frame::data(b))))
    }
}

/// `GET /v1/connect`: checks the WebSocket handshake, answers 101 and serves the socket on
/// a task of its own.
pub(super) fn connect(
    api: &Arc<Api>,
    req: Request<Incoming>,
    caller: Caller,
    request_id: &str,
) -> Result<Reply, ApiError> {
    let key = handshake_key(&req)?;
    let guard = Arc::clone(&api.live).try_acquire_owned().map_err(|_| ApiError::Busy)?;
    let accept = HeaderValue::from_str(&derive_accept_key(key.as_bytes()))
        .map_err(|e| ApiError::Internal(format!("the accept key: {e}")))?;
    let api = Arc::clone(api);
    let request_id = request_id.to_owned();
    tokio::spawn(async move {
        let upgraded = match hyper::upgrade::on(req).await {
            Ok(u) => u,
            Err(e) => {
                tracing::debug!(%request_id, error = %e, "the WebSocket upgrade failed");
                return;
            }
        };
        let ws = WebSocketStream::from_raw_socket(TokioIo::new(upgraded), Role::Server, Some(ws_config(&api))).await;
        session(&api, ws, caller, &request_id).await;
        drop(guard);
    });
    let mut resp = Response::new(http_body_util::Empty::new().map_err(|never| match never {}).boxed());
    *resp.status_mut() = StatusCode::SWITCHING_PROTOCOLS;
    let headers = resp.headers_mut();
    headers.insert(UPGRADE, HeaderValue::from_static("websocket"));
    headers.insert(CONNECTION, HeaderValue::from_static("Upgrade"));
    headers.insert("sec-websocket-accept", accept);
    Ok(resp)
}

/// The client's key, once the request is a WebSocket handshake (RFC 6455 section 4.2.1).
fn handshake_key(req: &Request<Incoming>) -> Result<String, ApiError> {
    let h = req.headers();
    let has = |name: hyper::header::HeaderName, token: &str| {
        h.get_all(name)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .any(|v| v.split(',').any(|t| t.trim().eq_ignore_ascii_case(token)))
    };
    if !has(UPGRADE, "websocket") || !has(CONNECTION, "upgrade") {
        return Err(ApiError::Invalid("GET /v1/connect is a WebSocket: send Upgrade: websocket".into()));
    }
    if h.get("sec-websocket-version").and_then(|v| v.to_str().ok()) != Some("13") {
        return Err(ApiError::Invalid("only WebSocket version 13 is spoken".into()));
    }
    h.get("sec-websocket-key")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned)
        .ok_or_else(|| ApiError::Invalid("no Sec-WebSocket-Key".into()))
}

/// Small buffers (a thousand idle sockets cost little) and messages no larger than a
/// request body.
fn ws_config(api: &Api) -> WebSocketConfig {
    let max = usize::try_from(api.policy.max_body_bytes).unwrap_or(usize::MAX);
    WebSocketConfig::default()
        .read_buffer_size(4096)
        .write_buffer_size(0)
        .max_message_size(Some(max))
        .max_frame_size(Some(max))
}

/// What a WebSocket client sends after its `run`.
#[derive(Debug, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
enum ClientMessage {
    Stdin {
        data: String,
        #[serde(default)]
        encoding: Option<String>,
    },
    StdinClose,
    Signal {
        signal: String,
    },
}

/// One WebSocket: its `run` message, then the run with the client's messages fed to it.
async fn session(api: &Arc<Api>, ws: Ws, caller: Caller, request_id: &str) {
    let (sink, mut stream) = ws.split();
    let mut out = Out::Ws(sink);
    let started = match tokio::time::timeout(FIRST_MESSAGE_TIMEOUT, stream.next()).await {
        Err(_) => Err(ApiError::BodyTimeout(FIRST_MESSAGE_TIMEOUT)),
        Ok(Some(Ok(Message::Text(t)))) => first_message(api, t.as_str(), caller),
        Ok(Some(Ok(_))) => Err(ApiError::BadJson("the first message must be a text {\"type\": \"run\", …}".into())),
        Ok(Some(Err(_)) | None) => return,
    };
    let ended = match started {
        Ok((planned, ticket, live, control, events)) => {
            let planned = match with_live(planned, live) {
                Ok(p) => p,
                Err(e) => return refuse(out, &e, request_id).await,
            };
            let cancel = match Cancel::new() {
                Ok(c) => c,
                Err(e) => return refuse(out, &ApiError::from(e), request_id).await,
            };
            let (notes_tx, notes_rx) = mpsc::channel(8);
            let reader = tokio::spawn(read_client(stream, control, cancel.clone(), notes_tx));
            let ended = drive(api, planned, ticket, events, &mut out, Some(notes_rx), cancel, request_id).await;
            reader.abort();
            ended
        }
        Err(e) => return refuse(out, &e, request_id).await,
    };
    log_end(request_id, ended);
    if let Out::Ws(mut sink) = out {
        let _ = tokio::time::timeout(STALL_TIMEOUT, sink.close()).await;
    }
}

type Started = (Planned, Ticket, Live, Control, mpsc::UnboundedReceiver<Event>);

/// `{"type": "run", …the /v1/execute body…}`: planned, a queue place taken, made live.
fn first_message(api: &Api, text: &str, caller: Caller) -> Result<Started, ApiError> {
    let mut value: serde_json::Value = serde_json::from_str(text).map_err(|e| from_json(&e))?;
    let obj = value.as_object_mut().ok_or_else(|| ApiError::BadJson("the run message is a JSON object".into()))?;
    if obj.remove("type").as_ref().and_then(|t| t.as_str()) != Some("run") {
        return Err(ApiError::Invalid("the first message must be {\"type\": \"run\", …}".into()));
    }
    obj.remove("stream");
    let dto: ExecuteRequest = serde_json::from_value(value).map_err(|e| from_json(&e))?;
    if dto.callback_url.is_some() {
        return Err(ApiError::Invalid("callback_url is for POST /v1/jobs".into()));
    }
    let planned = plan(api, dto, caller)?;
    refuse_judge(&planned)?;
    let ticket = api.limiter.admit()?;
    let (live, control, events) = Live::interactive(api.policy.max_body_bytes)?;
    Ok((planned, ticket, live, control, events))
}

async fn refuse(mut out: Out, e: &ApiError, request_id: &str) {
    let _ = out.send(&WireEvent::error(e), request_id).await;
    if let Out::Ws(mut sink) = out {
        let _ = tokio::time::timeout(STALL_TIMEOUT, sink.close()).await;
    }
    log_end(request_id, Ok(e.code()));
}

/// Feeds the client's messages to the run; a client that closes or breaks the socket has
/// its run killed. A message that cannot be taken is answered with an `error` event.
async fn read_client(mut stream: SplitStream<Ws>, control: Control, cancel: Cancel, notes: mpsc::Sender<WireEvent>) {
    while let Some(Ok(msg)) = stream.next().await {
        let refused = match msg {
            Message::Text(t) => apply(&control, t.as_str()).err(),
            Message::Binary(b) => control.stdin(&b).map_err(|e| ApiError::Invalid(e.to_string())).err(),
            Message::Close(_) => break,
            Message::Ping(_) | Message::Pong(_) | Message::Frame(_) => None,
        };
        if let Some(e) = refused {
            let _ = notes.try_send(WireEvent::error(&e));
        }
    }
    cancel.cancel();
}

fn apply(control: &Control, text: &str) -> Result<(), ApiError> {
    let msg: ClientMessage = serde_json::from_str(text).map_err(|e| from_json(&e))?;
    match msg {
        ClientMessage::Stdin { data, encoding } => {
            let bytes = match encoding.as_deref() {
                None | Some("utf8") => data.into_bytes(),
                Some("base64") => base64::engine::general_purpose::STANDARD
                    .decode(data)
                    .map_err(|e| ApiError::Invalid(format!("stdin: not base64: {e}")))?,
                Some(other) => return Err(ApiError::Invalid(format!("stdin: unknown encoding {other:?}"))),
            };
            control.stdin(&bytes).map_err(|e| ApiError::Invalid(e.to_string()))
        }
        ClientMessage::StdinClose => {
            control.close_stdin();
            Ok(())
        }
        ClientMessage::Signal { signal } => {
            let sig = parse_signal(&signal).ok_or_else(|| {
                let names: Vec<&str> = crate::run::ALLOWED_SIGNALS.iter().map(|s| s.as_str()).collect();
                ApiError::Invalid(format!("signal {signal:?}: one of {}", names.join(", ")))
            })?;
            control.signal(sig);
            Ok(())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_character_cut_between_chunks_stays_text() {
        let mut d = Decoder::default();
        let e = "é".as_bytes();
        let first = d.chunk(false, &[b'a', e[0]]).unwrap();
        assert!(matches!(first, WireEvent::Stdout { ref data, encoding: None } if data == "a"));
        let second = d.chunk(false, &[e[1], b'b']).unwrap();
        assert!(matches!(second, WireEvent::Stdout { ref data, encoding: None } if data == "éb"));
        let binary = d.chunk(true, &[0xff, 0x00]).unwrap();
        assert!(matches!(binary, WireEvent::Stderr { ref data, encoding: Some("base64") } if data == "/wA="));
        assert!(d.chunk(false, &[e[0]]).is_none());
        assert_eq!(d.flush().len(), 1);
    }

    #[test]
    fn the_format_comes_from_accept_or_the_body() {
        assert_eq!(format(Some("text/event-stream"), None), Some(Format::Sse));
        assert_eq!(format(Some("application/x-ndjson"), None), Some(Format::Ndjson));
        assert_eq!(format(None, Some(true)), Some(Format::Ndjson));
        assert_eq!(format(Some("application/json"), Some(false)), None);
        assert_eq!(format(None, None), None);
    }

    #[test]
    fn events_keep_the_wire_contract() {
        let ev = WireEvent::Stage { stage: "run", state: "started" };
        assert_eq!(
            serde_json::to_value(&ev).unwrap(),
            serde_json::json!({"type": "stage", "stage": "run", "state": "started"})
        );
        let ev = WireEvent::output(false, "hi".into(), None);
        assert_eq!(serde_json::to_value(&ev).unwrap(), serde_json::json!({"type": "stdout", "data": "hi"}));
    }
}
