//! The Rust baseline (issue #14): the gateway a good Rust developer would
//! write with the ecosystem's crates, to measure noslate-fc's hand-written
//! mio loop against. Not part of noslate-fc and shares none of its code.
//!
//! - HTTP/1.1 server: `hyper` 1 (`http1::Builder` defaults, no timer), one
//!   task per connection, TCP_NODELAY on every accepted socket;
//! - data plane: the `h2` crate as the gRPC client, **one shared HTTP/2
//!   connection** to `<sockdir>/dp-0.sock` (the `SendRequest` is cloned per
//!   invoke; reconnects when the connection fails), 128 KiB stream / 8 MiB
//!   connection receive windows (noslate-fc's own, so flow control is not
//!   what differs);
//! - runtime: tokio current-thread;
//! - request bodies stream to the data plane as `InvokeRequest{body}` messages
//!   as hyper yields them (send window honoured; no whole-body buffering). A
//!   body whose exact length is at most 64 KiB is sent inline by the handler
//!   before it waits for the answer; a longer one by a spawned task, so the
//!   response can stream back while the upload goes on;
//! - response bodies stream back as they arrive: the hyper response body is a
//!   small `Body` impl over the h2 `RecvStream` that deframes gRPC messages
//!   (zero-copy when a message lies in one DATA frame) and yields each
//!   `result{body}` slice; window is returned as hyper pulls, so a slow client
//!   slows the data plane down instead of growing a buffer.
//!
//! Same routing and first message as noslate-fc (docs/fc-contract.md §12,
//! docs/noslated-protocol.md §7): `POST /invoke` (or `x-fc-control-path: /invoke`)
//! is an event, anything else an HTTP invocation; the function is
//! `x-noslate-function` for events and local requests (no control path), else
//! `NOSLATE_FUNCTION`; name, url (request target), method, headers minus
//! hop-by-hop and FC credentials, baggage (`fc-*` from the `x-fc-*` headers
//! plus `fc-invocation-type`), deadline = now + `NOSLATE_FC_TIMEOUT_MS`
//! (10 s), requestId = `x-fc-request-id` or a generated one, `grpc-timeout` =
//! timeout + 1 s. The answer: the function's status and headers (minus the
//! ones FC manages and `x-fc-*`) plus `x-fc-status: 200`; a failure before
//! the head is 404 + `x-fc-status: 404` + `{"errorName", "errorMessage"}`;
//! a failure after it cuts the response (hyper aborts the connection).
//! Not done (a baseline does not need it): `x-fc-base-path` stripping,
//! routes, services, control planes, log markers.
//!
//! Run by the bench binary re-executing itself: `e2e __e2e-rust-gateway`,
//! configured by the environment the other gateways read: `SERVER_PORT`,
//! `NOSLATE_FC_LISTEN`, `NOSLATE_FC_SOCK_DIR`, `NOSLATE_FUNCTION`,
//! `NOSLATE_FC_TIMEOUT_MS`.

use std::convert::Infallible;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{ready, Context, Poll};
use std::time::{SystemTime, UNIX_EPOCH};

use bytes::{Buf, Bytes, BytesMut};
use h2::client::SendRequest;
use h2::{RecvStream, SendStream};
use http::header::{HeaderName, HeaderValue, CONTENT_TYPE};
use http::{Method, Request, Response, StatusCode};
use http_body_util::{BodyExt, Either, Full};
use hyper::body::{Body, Frame, Incoming, SizeHint};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use tokio::net::{TcpListener, UnixStream};

use crate::wire::{self, Fields, Val};

type BoxError = Box<dyn std::error::Error + Send + Sync>;
type GwBody = Either<Full<Bytes>, InvokeBody>;

/// Receive windows advertised to the data plane: noslate-fc's (src/server/plane.rs).
const STREAM_WINDOW: u32 = 128 * 1024;
const CONNECTION_WINDOW: u32 = 8 * 1024 * 1024;
const INVOKE_PATH: &str = "http://localhost/noslated.data.PushServer/invoke";
/// Request bodies of at most this (exact) length are sent by the handler itself.
const INLINE_BODY_MAX: u64 = 64 * 1024;
/// Messages at most this long are copied into one buffer with their prefix;
/// longer ones go as prefix + the body slice hyper gave (no copy).
const COPY_MAX: usize = 8 * 1024;
/// Largest message sent (well under Noslated's 10 MiB limit).
const MESSAGE_MAX: usize = 1024 * 1024;

const HOP_BY_HOP: &[&str] = &["connection", "keep-alive", "transfer-encoding", "te", "upgrade", "trailer"];
const CREDENTIALS: &[&str] = &["x-fc-access-key-id", "x-fc-access-key-secret", "x-fc-security-token"];
const RESPONSE_DROP: &[&str] = &["connection", "content-length", "date", "keep-alive", "server", "transfer-encoding"];
const BAGGAGE: &[(&str, &str)] = &[
    ("x-fc-region", "fc-region"),
    ("x-fc-account-id", "fc-account-id"),
    ("x-fc-qualifier", "fc-qualifier"),
    ("x-fc-function-name", "fc-function-name"),
    ("x-fc-service-name", "fc-service-name"),
];

struct Gateway {
    sock: PathBuf,
    dp: Mutex<Option<SendRequest<Bytes>>>,
    function: Option<Bytes>,
    timeout_ms: u64,
    next_id: AtomicU64,
}

/// Why an invoke failed before its head: the 404 answer's JSON.
#[derive(Debug)]
struct Failure {
    name: String,
    message: String,
}

impl Failure {
    fn new(message: impl std::fmt::Display) -> Failure {
        Failure { name: "Error".into(), message: message.to_string() }
    }
}

impl From<h2::Error> for Failure {
    fn from(e: h2::Error) -> Failure {
        Failure::new(format!("noslated: {e}"))
    }
}

pub fn run() -> i32 {
    let env = |k: &str| std::env::var(k).ok().filter(|v| !v.is_empty());
    let Some(sock_dir) = env("NOSLATE_FC_SOCK_DIR") else {
        eprintln!("rust-gateway: set NOSLATE_FC_SOCK_DIR");
        return 2;
    };
    let port: u16 = env("SERVER_PORT").and_then(|p| p.parse().ok()).unwrap_or(9000);
    let host = env("NOSLATE_FC_LISTEN").unwrap_or_else(|| "0.0.0.0".into());
    let gw = Arc::new(Gateway {
        sock: Path::new(&sock_dir).join("dp-0.sock"),
        dp: Mutex::new(None),
        function: env("NOSLATE_FUNCTION").map(Bytes::from),
        timeout_ms: env("NOSLATE_FC_TIMEOUT_MS").and_then(|v| v.parse().ok()).unwrap_or(10_000),
        next_id: AtomicU64::new(0),
    });
    let rt = match tokio::runtime::Builder::new_current_thread().enable_io().enable_time().build() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("rust-gateway: runtime: {e}");
            return 1;
        }
    };
    match rt.block_on(serve(gw, (host, port))) {
        Ok(()) => 0,
        Err(e) => {
            eprintln!("rust-gateway: {e}");
            1
        }
    }
}

async fn serve(gw: Arc<Gateway>, addr: (String, u16)) -> Result<(), BoxError> {
    let listener = TcpListener::bind((addr.0.as_str(), addr.1)).await?;
    eprintln!("rust-gateway: listening on {}", listener.local_addr()?);
    // Connect up front when the data plane is there; invokes connect otherwise.
    if let Err(e) = gw.client().await {
        eprintln!("rust-gateway: data plane not ready yet: {}", e.message);
    }
    loop {
        let (tcp, _) = listener.accept().await?;
        tcp.set_nodelay(true)?;
        let gw = gw.clone();
        tokio::spawn(async move {
            let service = service_fn(move |req| handle(gw.clone(), req));
            // Errors here are clients going away (or a cut response): nothing to do.
            let _ = http1::Builder::new().serve_connection(TokioIo::new(tcp), service).await;
        });
    }
}

impl Gateway {
    /// A ready handle on the shared data-plane connection (connecting, or
    /// reconnecting after a failure, when needed).
    async fn client(&self) -> Result<SendRequest<Bytes>, Failure> {
        let current = self.dp.lock().map_err(|_| Failure::new("poisoned"))?.clone();
        if let Some(client) = current {
            if let Ok(ready) = client.ready().await {
                return Ok(ready);
            }
        }
        let stream = UnixStream::connect(&self.sock)
            .await
            .map_err(|e| Failure::new(format!("noslated: no data plane connected: {e}")))?;
        let (client, conn) = h2::client::Builder::new()
            .initial_window_size(STREAM_WINDOW)
            .initial_connection_window_size(CONNECTION_WINDOW)
            .handshake::<_, Bytes>(stream)
            .await?;
        tokio::spawn(async move {
            if let Err(e) = conn.await {
                eprintln!("rust-gateway: data plane connection: {e}");
            }
        });
        *self.dp.lock().map_err(|_| Failure::new("poisoned"))? = Some(client.clone());
        Ok(client.ready().await?)
    }

    fn request_id(&self) -> Bytes {
        let n = self.next_id.fetch_add(1, Ordering::Relaxed);
        Bytes::from(format!("rgw-{}-{n}", std::process::id()))
    }
}

async fn handle(gw: Arc<Gateway>, req: Request<Incoming>) -> Result<Response<GwBody>, Infallible> {
    Ok(invoke(&gw, req).await.unwrap_or_else(|f| {
        let body = serde_json::json!({ "errorName": f.name, "errorMessage": f.message }).to_string();
        let mut resp = Response::new(Either::Left(Full::new(Bytes::from(body))));
        *resp.status_mut() = StatusCode::NOT_FOUND;
        resp.headers_mut().insert(CONTENT_TYPE, HeaderValue::from_static("application/json; charset=utf-8"));
        resp.headers_mut().insert("x-fc-status", HeaderValue::from_static("404"));
        resp
    }))
}

async fn invoke(gw: &Gateway, req: Request<Incoming>) -> Result<Response<GwBody>, Failure> {
    let (parts, body) = req.into_parts();
    let headers = &parts.headers;
    let control = headers.get("x-fc-control-path").map(HeaderValue::as_bytes);
    let event = match control {
        Some(path) => path == b"/invoke",
        None => parts.method == Method::POST && parts.uri.path() == "/invoke",
    };
    let believed = if control.is_none() || event { headers.get("x-noslate-function") } else { None };
    let function = match believed {
        Some(v) => Bytes::copy_from_slice(v.as_bytes()),
        None => gw.function.clone().ok_or_else(|| Failure::new("no function: set NOSLATE_FUNCTION"))?,
    };
    let request_id = match headers.get("x-fc-request-id") {
        Some(v) => Bytes::copy_from_slice(v.as_bytes()),
        None => gw.request_id(),
    };
    let now_ms = SystemTime::now().duration_since(UNIX_EPOCH).unwrap_or_default().as_secs_f64() * 1e3;

    // The first InvokeRequest: the head fields (docs/noslated-protocol.md §6.4).
    let mut m = Vec::with_capacity(256);
    wire::put_bytes(&mut m, 1, &function);
    let url = parts.uri.path_and_query().map_or("/", |p| p.as_str());
    wire::put_bytes(&mut m, 2, url.as_bytes());
    wire::put_bytes(&mut m, 3, parts.method.as_str().as_bytes());
    for (name, value) in headers {
        let n = name.as_str();
        if HOP_BY_HOP.contains(&n) || n.starts_with("proxy-") || CREDENTIALS.contains(&n) {
            continue;
        }
        wire::put_pair(&mut m, 4, n.as_bytes(), value.as_bytes());
    }
    for (header, key) in BAGGAGE {
        if let Some(v) = headers.get(*header) {
            wire::put_pair(&mut m, 5, key.as_bytes(), v.as_bytes());
        }
    }
    wire::put_pair(&mut m, 5, b"fc-invocation-type", if event { b"event" } else { b"http" });
    wire::put_key(&mut m, 6, wire::WIRE_FIXED64);
    m.extend_from_slice(&(now_ms + gw.timeout_ms as f64).to_le_bytes());
    wire::put_bytes(&mut m, 8, &request_id);
    let mut first = Vec::with_capacity(5 + m.len());
    first.extend_from_slice(&wire::prefix(m.len()));
    first.extend_from_slice(&m);

    let dp_req = Request::post(INVOKE_PATH)
        .header(CONTENT_TYPE, "application/grpc+proto")
        .header("te", "trailers")
        .header("grpc-timeout", format!("{}m", gw.timeout_ms + 1000))
        .body(())
        .map_err(Failure::new)?;
    let mut client = gw.client().await?;
    let (answer, mut send) = client.send_request(dp_req, false)?;
    let no_body = body.is_end_stream();
    send.send_data(Bytes::from(first), no_body)?;
    if !no_body {
        if body.size_hint().exact().is_some_and(|n| n <= INLINE_BODY_MAX) {
            upload(body, &mut send).await.map_err(Failure::new)?;
        } else {
            tokio::spawn(async move {
                if upload(body, &mut send).await.is_err() {
                    send.send_reset(h2::Reason::CANCEL);
                }
            });
        }
    }

    let answer = answer.await?;
    if answer.status() != StatusCode::OK {
        return Err(Failure::new(format!("noslated: HTTP status {}", answer.status())));
    }
    if let Some(code) = answer.headers().get("grpc-status") {
        // Trailers-only: the call failed before any message.
        return Err(Failure::new(format!("noslated: grpc-status {code:?}")));
    }
    let mut rest = InvokeBody { recv: answer.into_body(), cur: Bytes::new(), partial: BytesMut::new(), done: false };
    let head = std::future::poll_fn(|cx| rest.poll_message(cx)).await.map_err(Failure::new)?;
    let Some(head) = head else { return Err(Failure::new("No headers received")) };
    let mut status = 200u16;
    let mut out = Response::builder();
    match Message::parse(&head) {
        Message::Error(f) => return Err(f),
        Message::Result { status: s, headers, .. } => {
            if s != 0 {
                status = u16::try_from(s).map_err(|_| Failure::new(format!("function status {s}")))?;
            }
            for (k, v) in headers {
                let (Ok(k), Ok(v)) = (HeaderName::from_bytes(k), HeaderValue::from_bytes(v)) else { continue };
                if RESPONSE_DROP.contains(&k.as_str()) || k.as_str().starts_with("x-fc-") {
                    continue;
                }
                out = out.header(k, v);
            }
        }
    }
    out.status(status).header("x-fc-status", "200").body(Either::Right(rest)).map_err(Failure::new)
}

/// Stream the client's body to the data plane, one `InvokeRequest{body}`
/// per chunk hyper yields, then half-close.
async fn upload(mut body: Incoming, send: &mut SendStream<Bytes>) -> Result<(), BoxError> {
    while let Some(frame) = body.frame().await {
        let Ok(mut data) = frame?.into_data() else { continue };
        while !data.is_empty() {
            let chunk = data.split_to(data.len().min(MESSAGE_MAX));
            let end = data.is_empty() && body.is_end_stream();
            send_message(send, chunk, end).await?;
            if end {
                return Ok(());
            }
        }
    }
    send.send_data(Bytes::new(), true)?;
    Ok(())
}

async fn send_message(send: &mut SendStream<Bytes>, chunk: Bytes, end: bool) -> Result<(), BoxError> {
    let mut prefix = Vec::with_capacity(16 + if chunk.len() <= COPY_MAX { chunk.len() } else { 0 });
    let len = 1 + wire::varint_len(chunk.len() as u64) + chunk.len();
    prefix.extend_from_slice(&wire::prefix(len));
    wire::put_key(&mut prefix, 7, wire::WIRE_LEN);
    wire::put_varint(&mut prefix, chunk.len() as u64);
    if chunk.len() <= COPY_MAX {
        prefix.extend_from_slice(&chunk);
        send_flow(send, Bytes::from(prefix), end).await
    } else {
        send_flow(send, Bytes::from(prefix), false).await?;
        send_flow(send, chunk, end).await
    }
}

/// Queue `data` on the stream as the send window allows.
async fn send_flow(send: &mut SendStream<Bytes>, mut data: Bytes, end: bool) -> Result<(), BoxError> {
    send.reserve_capacity(data.len());
    while !data.is_empty() {
        let cap = send.capacity();
        if cap == 0 {
            match std::future::poll_fn(|cx| send.poll_capacity(cx)).await {
                Some(r) => r?,
                None => return Err("data-plane stream closed".into()),
            };
            continue;
        }
        let piece = data.split_to(cap.min(data.len()));
        send.send_data(piece, end && data.is_empty())?;
    }
    Ok(())
}

/// An `InvokeResponse` (docs/noslated-protocol.md §6.4).
enum Message<'a> {
    Error(Failure),
    Result { status: u64, headers: Vec<(&'a [u8], &'a [u8])>, body: &'a [u8] },
}

impl<'a> Message<'a> {
    fn parse(msg: &'a [u8]) -> Message<'a> {
        let mut result = None;
        for (field, val) in Fields::new(msg) {
            match (field, val) {
                (1, Val::Len(e)) => {
                    let mut f = Failure::new("invoke failed");
                    for (field, val) in Fields::new(e) {
                        match (field, val) {
                            (1, Val::Len(s)) => f.name = String::from_utf8_lossy(s).into_owned(),
                            (2, Val::Len(s)) => f.message = String::from_utf8_lossy(s).into_owned(),
                            _ => {}
                        }
                    }
                    return Message::Error(f);
                }
                (2, Val::Len(r)) => result = Some(r),
                _ => {}
            }
        }
        let Some(r) = result else { return Message::Error(Failure::new("malformed InvokeResponse")) };
        let (mut status, mut headers, mut body) = (0, Vec::new(), &b""[..]);
        for (field, val) in Fields::new(r) {
            match (field, val) {
                (1, Val::Varint(s)) => status = s,
                (2, Val::Len(kv)) => {
                    let (mut k, mut v) = (&b""[..], &b""[..]);
                    for (field, val) in Fields::new(kv) {
                        match (field, val) {
                            (1, Val::Len(s)) => k = s,
                            (2, Val::Len(s)) => v = s,
                            _ => {}
                        }
                    }
                    headers.push((k, v));
                }
                (3, Val::Len(b)) => body = b,
                _ => {}
            }
        }
        Message::Result { status, headers, body }
    }
}

/// The response body: gRPC messages deframed from the h2 stream, each
/// `result{body}` yielded as one frame (a slice of the received bytes when
/// the message lies in one DATA frame; copied only when it spans frames).
pub struct InvokeBody {
    recv: RecvStream,
    /// The unread part of the latest DATA frame.
    cur: Bytes,
    /// A message begun in an earlier DATA frame (prefix included).
    partial: BytesMut,
    done: bool,
}

fn framed_len(b: &[u8]) -> Option<usize> {
    (b.len() >= 5).then(|| 5 + u32::from_be_bytes([b[1], b[2], b[3], b[4]]) as usize)
}

impl InvokeBody {
    /// The next complete message; `None` at a clean end (grpc-status 0).
    fn poll_message(&mut self, cx: &mut Context<'_>) -> Poll<Result<Option<Bytes>, BoxError>> {
        loop {
            if self.partial.is_empty() {
                if let Some(n) = framed_len(&self.cur) {
                    if n - 5 > wire::MAX_MESSAGE || self.cur[0] != 0 {
                        return Poll::Ready(Err("bad gRPC message prefix".into()));
                    }
                    if self.cur.len() >= n {
                        let mut msg = self.cur.split_to(n);
                        msg.advance(5);
                        return Poll::Ready(Ok(Some(msg)));
                    }
                }
                if !self.cur.is_empty() {
                    self.partial.extend_from_slice(&self.cur);
                    self.cur.clear();
                }
            } else {
                let need = match framed_len(&self.partial) {
                    Some(n) => n - self.partial.len(),
                    None => 5 - self.partial.len(),
                };
                let take = need.min(self.cur.len());
                self.partial.extend_from_slice(&self.cur.split_to(take));
                if let Some(n) = framed_len(&self.partial) {
                    if n - 5 > wire::MAX_MESSAGE {
                        return Poll::Ready(Err("gRPC message too large".into()));
                    }
                    if self.partial.len() == n {
                        let mut msg = self.partial.split().freeze();
                        msg.advance(5);
                        return Poll::Ready(Ok(Some(msg)));
                    }
                }
                if !self.cur.is_empty() {
                    continue;
                }
            }
            match ready!(self.recv.poll_data(cx)) {
                Some(chunk) => {
                    let chunk = chunk?;
                    let _ = self.recv.flow_control().release_capacity(chunk.len());
                    self.cur = chunk;
                }
                None => {
                    let trailers = ready!(self.recv.poll_trailers(cx))?;
                    let code = trailers.as_ref().and_then(|t| t.get("grpc-status")).map(HeaderValue::as_bytes);
                    if code != Some(b"0") {
                        return Poll::Ready(Err(format!("grpc-status {code:?}").into()));
                    }
                    if !self.partial.is_empty() || !self.cur.is_empty() {
                        return Poll::Ready(Err("stream ended inside a message".into()));
                    }
                    self.done = true;
                    return Poll::Ready(Ok(None));
                }
            }
        }
    }
}

impl Body for InvokeBody {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let this = self.get_mut();
        if this.done {
            return Poll::Ready(None);
        }
        loop {
            let Some(msg) = ready!(this.poll_message(cx))? else { return Poll::Ready(None) };
            match Message::parse(&msg) {
                Message::Result { body: [], .. } => continue,
                Message::Result { body, .. } => return Poll::Ready(Some(Ok(Frame::data(msg.slice_ref(body))))),
                // After the head: the body is truncated; hyper cuts the response.
                Message::Error(f) => return Poll::Ready(Some(Err(format!("{}: {}", f.name, f.message).into()))),
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        self.done
    }

    fn size_hint(&self) -> SizeHint {
        SizeHint::default()
    }
}
