//! The invoke splice: one FC request ↔ one `PushServer/invoke` stream.
//!
//! Request: the first `InvokeRequest` (head fields, and the whole body when it
//! is small and already here) is encoded once; further body bytes go from the
//! client's read buffer into DATA frames as `[gRPC prefix + field-7 key and
//! length][slice]` — the slice is the read buffer itself (a refcount, no copy).
//! Response: `splice::ResponseDecoder` yields the head, body slices and errors,
//! which become the HTTP/1.1 response, again as slices.
//!
//! Body messages are announced whole (the rest of the Content-Length body or
//! of the chunk, up to `CHUNK_MAX`) and filled slice by slice as bytes arrive.
//!
//! Backpressure both ways: body bytes are read from the client only while the
//! stream has send capacity (`h2::ClientConnection::send_capacity`: what the
//! windows take at once, or a small queue allowance under a budget shared by
//! all streams), so request memory is bounded by the h2 budgets, not by the
//! number of clients; above `CLIENT_HIGH_WATER` bytes queued to the client we
//! stop returning flow-control window to the data plane, so response memory
//! is bounded by the stream and connection windows.

use std::time::{Duration, Instant};

use bytes::Bytes;

use super::client::{supports_chunked, Phase};
use super::{log, ClientTimer, Server};
use crate::answers::InvokeError;
use crate::grpc;
use crate::h2::{ErrorCode, HeaderList, StreamRef};
use crate::http1::body::BodyDecoder;
use crate::http1::chunked::Decoded;
use crate::http1::request::{BodyFraming, RequestHead};
use crate::http1::response::{self, ChunkHead, ResponseFraming};
use crate::proto::{self, InvokeRequestHead};
use crate::route::{Choice, Origin, Request};
use crate::splice::{Piece, ResponseDecoder};

/// Largest body that rides inside the first `InvokeRequest`.
const INLINE_BODY_MAX: usize = 64 * 1024;
/// Largest body chunk message (well under Noslated's 10 MiB message limit).
const CHUNK_MAX: usize = 64 * 1024;
/// Stop moving already-read body bytes onto a stream with this much queued
/// (reading more from the client stops earlier, at its send capacity).
const UPSTREAM_HIGH_WATER: usize = 256 * 1024;
/// Stop returning window to the data plane while this much waits for the client.
const CLIENT_HIGH_WATER: usize = 256 * 1024;

/// Hop-by-hop headers never forwarded (RFC 9110 §7.6.1), and FC's credentials
/// unless the operator allows them (fc-protocol.md §3).
const HOP_BY_HOP: &[&[u8]] = &[b"connection", b"keep-alive", b"transfer-encoding", b"te", b"upgrade", b"trailer"];
const CREDENTIALS: &[&[u8]] = &[b"x-fc-access-key-id", b"x-fc-access-key-secret", b"x-fc-security-token"];
/// Response headers FC manages itself (fc-protocol.md §6.2); our HTTP/1.1
/// layer writes its own framing.
const RESPONSE_DROP: &[&[u8]] = &[
    b"connection",
    b"content-length",
    b"date",
    b"keep-alive",
    b"server",
    b"transfer-encoding",
    b"trailer",
    b"upgrade",
];

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Resp {
    /// No response head written yet.
    Waiting,
    Chunked,
    Length(u64),
    /// HTTP/1.0 without a length: the body ends when we close.
    UntilClose,
    /// HEAD request, 204 or 304: headers only.
    NoBody,
    /// The response is complete.
    Done,
}

pub struct Invoke {
    pub head: RequestHead,
    pub event: bool,
    pub request_id: String,
    pub function: String,
    pub service: bool,
    /// Bytes of the target the function does not see (`route::function_url`).
    pub url_skip: usize,
    pub keep_alive: bool,
    pub deadline: Instant,
    pub deadline_ms: f64,
    pub body: BodyDecoder,
    pub body_done: bool,
    pub conn: Option<usize>,
    pub stream: Option<StreamRef>,
    /// The first message, kept (refcounted) so a stream refused before any
    /// processing can be retried on another connection.
    pub first: Option<(Bytes, Bytes)>,
    pub chunks_sent: bool,
    /// Bytes still owed to the body message in progress (announced in its
    /// gRPC and protobuf prefixes, not yet read from the client).
    pub msg_left: usize,
    pub sent_end: bool,
    pub decoder: ResponseDecoder,
    pub resp: Resp,
    /// DATA bytes received but not yet credited back to the data plane.
    pub unreleased: usize,
    pub trailers_ok: bool,
    pub continue_sent: bool,
    pub retries: u8,
    /// While parked without a data plane: give up (503/404) at this time;
    /// moved on by a thaw (`Server::thaw`).
    pub plane_wait_until: Instant,
}

impl Invoke {
    pub fn wants_body(&self, server: &Server) -> bool {
        self.send_capacity(server) > 0
    }

    /// How much more body the stream can send at once (0 once the body is
    /// done, or while there is no stream). Body bytes are read from the
    /// client only while this is above zero, so a data plane that takes
    /// them slowly keeps them in the client's socket, not in our memory.
    pub fn send_capacity(&self, server: &Server) -> usize {
        if self.body_done {
            return 0;
        }
        match (self.conn, self.stream) {
            (Some(conn), Some(stream)) => server.conns.get(conn).map_or(0, |c| c.h2.send_capacity(stream)),
            _ => 0,
        }
    }
}

impl Server {
    pub(super) fn start_invoke(&mut self, key: usize, head: RequestHead, event: bool, request_id: String) {
        log!(self, "FC Invoke Start RequestId: {request_id}");
        let keep_alive = head.keep_alive();
        let origin = Origin::new(event, head.header("x-fc-control-path").is_some());
        let request = Request {
            origin,
            function: head.header("x-noslate-function"),
            service: head.header("x-noslate-service"),
            target: head.target(),
            base_path: head.header("x-fc-base-path"),
        };
        let choice = self.cfg.routing.choose(&request, self.life.default_function.as_deref());
        let Choice { name: function, service, url_skip } = match choice {
            Ok(choice) => choice,
            Err(e) => return self.fail_early(key, head, event, request_id, e),
        };
        if self.life.draining() {
            return self.fail_early(key, head, event, request_id, InvokeError::Draining);
        }
        // FC never sends x-fc-function-timeout (fc-protocol.md §7): it is for
        // trusted callers, and an end user must not hold a worker for a day.
        let timeout = head
            .header("x-fc-function-timeout")
            .filter(|_| origin.trusted())
            .and_then(|v| std::str::from_utf8(v).ok())
            .and_then(|v| v.trim().parse::<u64>().ok())
            .filter(|s| *s > 0 && *s <= 86_400)
            .map(Duration::from_secs)
            .unwrap_or(self.cfg.timeout);
        let now = Instant::now();
        let limits = crate::http1::Limits { max_body: self.cfg.max_body, ..Default::default() };
        let body = BodyDecoder::new(head.framing(), &limits);
        let body_done = head.framing() == BodyFraming::None;
        let inv = Invoke {
            keep_alive,
            event,
            request_id,
            function,
            service,
            url_skip,
            deadline: now + timeout,
            deadline_ms: crate::sys::epoch_millis() + timeout.as_secs_f64() * 1000.0,
            body,
            body_done,
            conn: None,
            stream: None,
            first: None,
            chunks_sent: false,
            msg_left: 0,
            sent_end: false,
            decoder: ResponseDecoder::default(),
            resp: Resp::Waiting,
            unreleased: 0,
            trailers_ok: false,
            continue_sent: false,
            retries: 0,
            plane_wait_until: now,
            head,
        };
        let gen = self.clients[key].gen;
        self.client_timer_add(key, inv.deadline, gen, ClientTimer::Deadline);
        self.clients[key].phase = Phase::Invoke(Box::new(inv));
        self.dispatch_invoke(key);
    }

    fn fail_early(&mut self, key: usize, head: RequestHead, event: bool, request_id: String, err: InvokeError) {
        // The body is unread: keep the connection only if its rest is small
        // (then it is dropped); otherwise close, lingering.
        let left = match head.framing() {
            BodyFraming::None => Some(0),
            BodyFraming::Length(n) => Some(n),
            BodyFraming::Chunked => None,
        };
        let keep_alive = head.keep_alive() && self.can_discard(left);
        self.error_response(key, event, &err, keep_alive);
        log!(self, "FC Invoke End RequestId: {request_id}");
        self.finish_unread(key, keep_alive, left);
    }

    /// End an exchange answered before its body was all read: drop a small
    /// rest and go on (`keep_alive`), or close (lingering).
    fn finish_unread(&mut self, key: usize, keep_alive: bool, left: Option<u64>) {
        match left {
            Some(left) if keep_alive => self.finish_exchange_discarding(key, left),
            _ => self.finish_exchange(key, false),
        }
    }

    fn error_response(&mut self, key: usize, event: bool, err: &InvokeError, keep_alive: bool) {
        let status = if event { err.event_status() } else { err.http_status() };
        let body = err.json_body(self.cfg.expose_stack);
        self.answer(key, status, &body, &[(b"x-fc-status", b"404")], keep_alive);
    }

    /// Put a waiting invoke on a data plane connection, or wait for one.
    pub(super) fn dispatch_invoke(&mut self, key: usize) {
        let Some(conn) = self.pick_data_conn() else {
            let gen = self.clients[key].gen;
            let at = Instant::now() + self.cfg.ready_wait;
            if let Phase::Invoke(inv) = &mut self.clients[key].phase {
                inv.plane_wait_until = at;
            }
            self.client_timer_add(key, at, gen, ClientTimer::PlaneWait);
            self.life.waiting_plane.push((key, gen));
            return;
        };
        if let Err(why) = self.open_invoke_stream(key, conn) {
            self.fail_invoke(key, InvokeError::PlaneLost(why));
        }
    }

    fn open_invoke_stream(&mut self, key: usize, conn: usize) -> Result<(), String> {
        let Phase::Invoke(inv) = &mut self.clients[key].phase else { return Ok(()) };
        let path: &[u8] =
            if inv.service { b"/noslated.data.PushServer/invokeService" } else { b"/noslated.data.PushServer/invoke" };
        // grpc-timeout = deadline + 1 s, so the data plane's own timeout fires
        // first with a meaningful error (noslated-protocol.md §6).
        let left = inv.deadline.saturating_duration_since(Instant::now()) + Duration::from_secs(1);
        let timeout = grpc::encode_timeout(left.as_millis() as u64);
        let fields = grpc::request_fields(path, &timeout);
        let stream = self.conns[conn].h2.open(&fields, false).map_err(|e| format!("{e:?}"))?;
        if inv.first.is_none() {
            let first = self.encode_first_message(key);
            let Phase::Invoke(inv) = &mut self.clients[key].phase else { return Ok(()) };
            inv.first = Some(first);
        }
        let Phase::Invoke(inv) = &mut self.clients[key].phase else { return Ok(()) };
        let (head_bytes, body) = inv.first.clone().unwrap_or_default();
        inv.conn = Some(conn);
        inv.stream = Some(stream);
        // One DATA frame for the head, an inline body and END_STREAM.
        let h2 = &mut self.conns[conn].h2;
        h2.send_data_more(stream, head_bytes);
        h2.send_data_more(stream, body);
        if inv.body_done {
            h2.send_end(stream);
            inv.sent_end = true;
        } else {
            h2.flush_stream(stream);
        }
        let expects_continue = inv.head.expects_continue() && !inv.body_done && !inv.continue_sent;
        if expects_continue {
            inv.continue_sent = true;
        }
        let gen = self.clients[key].gen;
        self.conns[conn].owners.insert(stream, super::plane::Owner::Invoke(key, gen));
        self.mark_conn(conn);
        if expects_continue {
            self.clients[key].out.push(Bytes::from_static(response::CONTINUE));
            self.mark_client(key);
        }
        self.pump_invoke_body(key);
        Ok(())
    }

    /// The first InvokeRequest: head fields, plus the whole body when it is
    /// small and already buffered (then the request is complete at once).
    fn encode_first_message(&mut self, key: usize) -> (Bytes, Bytes) {
        let forward_credentials = self.cfg.forward_credentials;
        let c = &mut self.clients[key];
        let Phase::Invoke(inv) = &mut c.phase else { return Default::default() };
        let mut inline = Bytes::new();
        if let BodyFraming::Length(n) = inv.head.framing() {
            if n as usize <= INLINE_BODY_MAX && c.rbuf.len() >= n as usize {
                if let Ok(Decoded::Data(data)) = inv.body.decode(&mut c.rbuf, n as usize) {
                    inline = data;
                }
                if inline.len() as u64 == n {
                    inv.body_done = true;
                }
            }
        }
        let head = &inv.head;
        let headers: Vec<(&[u8], &[u8])> = head
            .headers()
            .filter(|(name, _)| {
                let hop = HOP_BY_HOP.iter().any(|h| name.eq_ignore_ascii_case(h))
                    || (name.len() >= 6 && name[..6].eq_ignore_ascii_case(b"proxy-"));
                let secret = !forward_credentials && CREDENTIALS.iter().any(|h| name.eq_ignore_ascii_case(h));
                !hop && !secret
            })
            .collect();
        // Header names go lower-case (as Node's HTTP server presents them);
        // only names that need it are copied.
        let lower: Vec<(std::borrow::Cow<'_, [u8]>, &[u8])> = headers
            .iter()
            .map(|(n, v)| {
                let name = if n.iter().any(u8::is_ascii_uppercase) {
                    std::borrow::Cow::Owned(n.to_ascii_lowercase())
                } else {
                    std::borrow::Cow::Borrowed(*n)
                };
                (name, *v)
            })
            .collect();
        let headers: Vec<(&[u8], &[u8])> = lower.iter().map(|(n, v)| (n.as_ref(), *v)).collect();
        // Without FC's x-fc-base-path prefix, and without the route prefix
        // when NOSLATE_FC_ROUTES_STRIP says so (fc-protocol.md §9.5).
        let url = crate::route::function_url(head.target(), inv.url_skip);
        let mut baggage: Vec<(&[u8], &[u8])> = Vec::new();
        for (name, key) in [
            ("x-fc-region", b"fc-region" as &[u8]),
            ("x-fc-account-id", b"fc-account-id"),
            ("x-fc-qualifier", b"fc-qualifier"),
            ("x-fc-function-name", b"fc-function-name"),
            ("x-fc-service-name", b"fc-service-name"),
        ] {
            if let Some(v) = head.header(name) {
                baggage.push((key, v));
            }
        }
        baggage.push((b"fc-invocation-type", if inv.event { b"event" } else { b"http" }));
        let msg = InvokeRequestHead {
            name: &inv.function,
            url: Some(&url),
            method: Some(head.method()),
            headers: &headers,
            baggage: &baggage,
            deadline: Some(inv.deadline_ms),
            request_id: Some(inv.request_id.as_bytes()),
        };
        let len = msg.encoded_len(inline.len());
        let mut buf = Vec::with_capacity(grpc::MESSAGE_PREFIX_LEN + len - inline.len());
        buf.extend_from_slice(&grpc::message_prefix(len as u32));
        msg.encode_with_body_prefix(inline.len(), &mut buf);
        (Bytes::from(buf), inline)
    }

    /// Move request body bytes from the client's buffer into the stream, as
    /// long as the stream has room.
    pub(super) fn pump_invoke_body(&mut self, key: usize) {
        let Some(c) = self.clients.get_mut(key) else { return };
        let Phase::Invoke(inv) = &mut c.phase else { return };
        let (Some(conn), Some(stream)) = (inv.conn, inv.stream) else { return };
        if inv.sent_end {
            return;
        }
        let Some(pc) = self.conns.get_mut(conn) else { return };
        let mut error = None;
        while !inv.body_done && pc.h2.queued(stream) < UPSTREAM_HIGH_WATER {
            let max = if inv.msg_left > 0 { inv.msg_left } else { CHUNK_MAX };
            match inv.body.decode(&mut c.rbuf, max) {
                Ok(Decoded::Data(data)) => {
                    if inv.msg_left == 0 {
                        // A new body message, announced whole — the rest of
                        // the Content-Length body or of this chunk, up to
                        // CHUNK_MAX — and then fed slice by slice as the
                        // bytes arrive: how much we read at a time does not
                        // change how many messages the data plane decodes.
                        let more = inv.body.unit_remaining().min((CHUNK_MAX - data.len()) as u64) as usize;
                        let prefix = proto::body_chunk_prefix(data.len() + more);
                        pc.h2.send_data_more(stream, self.scratch.bytes(&[prefix.as_bytes()]));
                        inv.msg_left = more;
                    } else {
                        inv.msg_left -= data.len();
                    }
                    // Framed below, with END_STREAM if the body ends here.
                    pc.h2.send_data_more(stream, data);
                    inv.chunks_sent = true;
                }
                Ok(Decoded::NeedMore) => break,
                Ok(Decoded::End) => inv.body_done = true,
                Err(e) => {
                    error = Some(e);
                    break;
                }
            }
        }
        if inv.body_done && !inv.sent_end {
            debug_assert_eq!(inv.msg_left, 0, "body ended inside an announced message");
            pc.h2.send_end(stream);
            inv.sent_end = true;
        } else {
            pc.h2.flush_stream(stream);
        }
        if !inv.body_done && error.is_none() && pc.h2.send_capacity(stream) == 0 {
            // Reading stops here; hear when the windows open again.
            pc.h2.want_capacity(stream);
        }
        if inv.body_done && c.rbuf.is_empty() {
            // The body's read buffer now lives only as long as its slices
            // wait to be written; the wait for the answer holds none.
            c.rbuf = bytes::BytesMut::new();
        }
        self.mark_conn(conn);
        if let Some(e) = error {
            // The body broke its own framing mid-stream: cancel upstream and
            // answer the client if we still can.
            let status = e.status();
            let Phase::Invoke(inv) = std::mem::replace(&mut self.clients[key].phase, Phase::Idle) else { return };
            self.detach_stream(&inv);
            let waiting = inv.resp == Resp::Waiting;
            let id = inv.request_id.clone();
            if waiting {
                self.answer(key, status, &crate::answers::error_body(e.reason()), &[(b"x-fc-status", b"404")], false);
            } else {
                self.clients[key].out.clear();
                self.clients[key].closing = true;
            }
            log!(self, "FC Invoke End RequestId: {id}");
            self.mark_client(key);
            return;
        }
        let done = matches!(&self.clients[key].phase, Phase::Invoke(inv) if inv.body_done && inv.resp == Resp::Done);
        if done {
            self.complete_invoke(key);
        }
    }

    /// HEADERS on the invoke stream: the gRPC response head, or trailers.
    pub(super) fn invoke_headers(&mut self, key: usize, fields: HeaderList, end_stream: bool) {
        let pairs = || fields.iter().map(|(k, v)| (k.as_ref(), v.as_ref()));
        if !end_stream {
            if let Err(e) = grpc::check_response_head(pairs()) {
                return self.fail_invoke(key, InvokeError::Protocol(e.to_string()));
            }
            return;
        }
        match grpc::status_from_trailers(pairs()) {
            Ok(status) if status.code.0 == 0 => {
                let Some(Phase::Invoke(inv)) = self.clients.get_mut(key).map(|c| &mut c.phase) else { return };
                if !inv.decoder.is_idle() {
                    return self.fail_invoke(key, InvokeError::Protocol("stream ended inside a message".into()));
                }
                if !inv.decoder.head_seen() {
                    return self.fail_invoke(key, InvokeError::Protocol("No headers received".into()));
                }
                inv.trailers_ok = true;
                self.end_response(key);
            }
            Ok(status) => self.fail_invoke(key, InvokeError::Status { code: status.code.0, message: status.message }),
            Err(e) => self.fail_invoke(key, InvokeError::Protocol(e.to_string())),
        }
    }

    /// DATA on the invoke stream.
    pub(super) fn invoke_data(&mut self, key: usize, data: Bytes) {
        let Some(c) = self.clients.get_mut(key) else { return };
        let Phase::Invoke(inv) = &mut c.phase else { return };
        inv.unreleased += data.len();
        let mut pieces = std::mem::take(&mut self.pieces);
        let result = inv.decoder.feed(data, &mut |p| pieces.push(p));
        let mut drained = pieces.drain(..);
        for piece in drained.by_ref() {
            match piece {
                Piece::Head { status, headers } => self.write_response_head(key, status, &headers),
                Piece::Body(b) => self.write_body(key, b),
                Piece::Error(f) => {
                    return self.fail_invoke(key, InvokeError::Noslated(f));
                }
            }
            if !matches!(self.clients.get(key).map(|c| &c.phase), Some(Phase::Invoke(_))) {
                return;
            }
        }
        drop(drained);
        // Keep the (empty) vector: no allocation per DATA frame.
        self.pieces = pieces;
        if let Err(e) = result {
            return self.fail_invoke(key, InvokeError::Protocol(e.to_string()));
        }
        self.release_window(key);
    }

    fn write_response_head(&mut self, key: usize, status: u16, headers: &[(Bytes, Bytes)]) {
        let c = &mut self.clients[key];
        let Phase::Invoke(inv) = &mut c.phase else { return };
        let is_head = inv.head.method() == b"HEAD";
        let mut length = None;
        let mut out: Vec<(&[u8], &[u8])> = Vec::with_capacity(headers.len() + 1);
        for (name, value) in headers {
            if name.eq_ignore_ascii_case(b"content-length") {
                length = std::str::from_utf8(value).ok().and_then(|v| v.trim().parse::<u64>().ok());
            }
            let forbidden = RESPONSE_DROP.iter().any(|h| name.eq_ignore_ascii_case(h))
                || (name.len() >= 5 && name[..5].eq_ignore_ascii_case(b"x-fc-"));
            let valid = !name.is_empty()
                && name.iter().all(|b| b.is_ascii_graphic() && *b != b':')
                && value.iter().all(|b| *b == b'\t' || (*b >= 0x20 && *b != 0x7f));
            if !forbidden && valid {
                out.push((name, value));
            }
        }
        out.push((b"x-fc-status", b"200"));
        let no_body = is_head || status == 204 || status == 304 || (100..200).contains(&status);
        let (framing, resp) = if no_body {
            (ResponseFraming::NoBody, Resp::NoBody)
        } else if let Some(n) = length {
            (ResponseFraming::Length(n), Resp::Length(n))
        } else if supports_chunked(&inv.head) {
            (ResponseFraming::Chunked, Resp::Chunked)
        } else {
            inv.keep_alive = false;
            (ResponseFraming::NoBody, Resp::UntilClose)
        };
        // HEAD keeps the function's length visible without sending a body.
        let framing = match (framing, length) {
            (ResponseFraming::NoBody, Some(n)) if is_head => ResponseFraming::Length(n),
            (f, _) => f,
        };
        inv.resp = resp;
        let mut buf = bytes::BytesMut::with_capacity(256);
        response::write_head(&mut buf, status, &out, framing, inv.keep_alive);
        c.out.push(buf.freeze());
        self.mark_client(key);
    }

    fn write_body(&mut self, key: usize, body: Bytes) {
        let c = &mut self.clients[key];
        let Phase::Invoke(inv) = &mut c.phase else { return };
        match inv.resp {
            Resp::Chunked => {
                let size = ChunkHead::new(body.len());
                c.out.push(self.scratch.bytes(&[size.as_bytes()]));
                c.out.push(body);
                c.out.push(Bytes::from_static(response::CHUNK_END));
            }
            Resp::Length(left) => {
                if body.len() as u64 > left {
                    // More than the function promised: never send it.
                    return self.fail_invoke(key, InvokeError::Protocol("body longer than content-length".into()));
                }
                inv.resp = Resp::Length(left - body.len() as u64);
                c.out.push(body);
            }
            Resp::UntilClose => c.out.push(body),
            Resp::NoBody | Resp::Done | Resp::Waiting => {}
        }
        self.mark_client(key);
    }

    /// Trailers said OK: finish the HTTP response.
    fn end_response(&mut self, key: usize) {
        let c = &mut self.clients[key];
        let Phase::Invoke(inv) = &mut c.phase else { return };
        match inv.resp {
            Resp::Chunked => c.out.push(Bytes::from_static(response::LAST_CHUNK)),
            Resp::Length(0) | Resp::NoBody => {}
            Resp::Length(_) => {
                return self.fail_invoke(key, InvokeError::Protocol("body shorter than content-length".into()));
            }
            Resp::UntilClose => inv.keep_alive = false,
            Resp::Waiting | Resp::Done => {}
        }
        inv.resp = Resp::Done;
        // A function that answered before the whole body arrived: the rest
        // cannot be forwarded any more, so the connection cannot be reused
        // (complete_invoke closes it when body_done is false).
        self.mark_client(key);
        self.complete_invoke(key);
    }

    /// Both directions are done: release everything, next request.
    fn complete_invoke(&mut self, key: usize) {
        let Phase::Invoke(inv) = std::mem::replace(&mut self.clients[key].phase, Phase::Idle) else { return };
        self.detach_stream(&inv);
        log!(self, "FC Invoke End RequestId: {}", inv.request_id);
        let left = unread_body(&inv);
        let keep_alive = inv.keep_alive && self.can_discard(left);
        self.finish_unread(key, keep_alive, left);
    }

    /// The invocation failed. Before the head: an error response. After it:
    /// cut the response so the client can tell (noslated-protocol.md §5.5).
    pub(super) fn fail_invoke(&mut self, key: usize, err: InvokeError) {
        let Some(c) = self.clients.get_mut(key) else { return };
        let Phase::Invoke(inv) = std::mem::replace(&mut c.phase, Phase::Idle) else { return };
        self.detach_stream(&inv);
        eprintln!("noslate-fc: invoke {} failed: {}", inv.request_id, err.log_text());
        if inv.resp == Resp::Waiting {
            let left = unread_body(&inv);
            let keep_alive = inv.keep_alive && self.can_discard(left);
            self.error_response(key, inv.event, &err, keep_alive);
            log!(self, "FC Invoke End RequestId: {}", inv.request_id);
            self.finish_unread(key, keep_alive, left);
        } else {
            // Headers are out: close without a clean end (no last chunk, or
            // short of Content-Length). What was queued is still sent.
            log!(self, "FC Invoke End RequestId: {}", inv.request_id);
            let c = &mut self.clients[key];
            c.closing = true;
            self.mark_client(key);
        }
    }

    /// Unhook the invoke's stream: forget the owner, credit what was read,
    /// and cancel it unless it ended normally in both directions (a finished
    /// stream is never reset: Node counts resets, noslated-protocol.md §14).
    fn detach_stream(&mut self, inv: &Invoke) {
        let (Some(conn), Some(stream)) = (inv.conn, inv.stream) else { return };
        let Some(pc) = self.conns.get_mut(conn) else { return };
        pc.owners.remove(&stream);
        pc.h2.release(stream, inv.unreleased);
        if !(inv.trailers_ok && inv.sent_end) {
            pc.h2.reset(stream, ErrorCode::CANCEL);
        }
        self.mark_conn(conn);
        self.conn_maybe_retire(conn);
    }

    /// Give window back to the data plane once the client has taken the bytes.
    pub(super) fn release_window(&mut self, key: usize) {
        let Some(c) = self.clients.get_mut(key) else { return };
        let Phase::Invoke(inv) = &mut c.phase else { return };
        if inv.unreleased == 0 || c.out.len() > CLIENT_HIGH_WATER {
            return;
        }
        let (Some(conn), Some(stream)) = (inv.conn, inv.stream) else { return };
        if let Some(pc) = self.conns.get_mut(conn) {
            pc.h2.release(stream, inv.unreleased);
            inv.unreleased = 0;
            self.mark_conn(conn);
        }
    }

    /// The client's output drained: resume what waited on it.
    pub(super) fn client_drained(&mut self, key: usize) {
        match self.clients.get(key).map(|c| (&c.phase, c.out.len(), c.rbuf.is_empty())) {
            Some((Phase::Invoke(_), _, _)) => self.release_window(key),
            // Pipelined requests held back by a client that was not reading.
            Some((Phase::Idle, out, false)) if out < super::client::MAX_PENDING_OUTPUT => self.pump_client(key),
            _ => {}
        }
    }

    pub(super) fn invoke_deadline(&mut self, key: usize) {
        if matches!(self.clients.get(key).map(|c| &c.phase), Some(Phase::Invoke(_))) {
            self.fail_invoke(key, InvokeError::Deadline);
        }
    }

    pub(super) fn invoke_plane_wait_expired(&mut self, key: usize) {
        let until = match self.clients.get(key).map(|c| &c.phase) {
            Some(Phase::Invoke(inv)) if inv.conn.is_none() => inv.plane_wait_until,
            _ => return,
        };
        if Instant::now() < until {
            // Thawed since: the wait restarted (the plane was stopped too).
            let gen = self.clients[key].gen;
            self.client_timer_add(key, until, gen, ClientTimer::PlaneWait);
            return;
        }
        {
            let gen = self.clients[key].gen;
            self.life.waiting_plane.retain(|w| *w != (key, gen));
            self.fail_invoke(key, InvokeError::NoDataPlane);
        }
    }

    /// Cancel whatever this client had in flight upstream (client gone).
    pub(super) fn abort_invoke(&mut self, key: usize, why: &str) {
        let Some(c) = self.clients.get_mut(key) else { return };
        let phase = std::mem::replace(&mut c.phase, Phase::Idle);
        match phase {
            Phase::Invoke(inv) => {
                self.detach_stream(&inv);
                eprintln!("noslate-fc: invoke {} cancelled: {why}", inv.request_id);
                log!(self, "FC Invoke End RequestId: {}", inv.request_id);
            }
            Phase::Init { request_id, .. } => log!(self, "FC Initialize End RequestId: {request_id}"),
            Phase::PreStop { request_id, .. } => log!(self, "FC PreStop End RequestId: {request_id}"),
            Phase::Idle | Phase::Discard { .. } | Phase::Linger { .. } => {}
        }
    }

    /// The stream failed underneath an invoke (reset, GOAWAY, connection loss).
    pub(super) fn invoke_stream_failed(&mut self, key: usize, why: String, retryable: bool) {
        let Some(c) = self.clients.get_mut(key) else { return };
        let Phase::Invoke(inv) = &mut c.phase else { return };
        inv.stream = None;
        inv.conn = None;
        let can_retry = retryable && !inv.chunks_sent && inv.resp == Resp::Waiting && inv.retries < 3;
        if can_retry {
            inv.retries += 1;
            inv.unreleased = 0;
            inv.decoder = ResponseDecoder::default();
            inv.sent_end = false;
            self.dispatch_invoke(key);
            // Body bytes left in the socket while the stream was gone.
            self.pump_client(key);
        } else {
            self.fail_invoke(key, InvokeError::PlaneLost(why));
        }
    }
}

/// The part of the request body not read yet when the exchange ends: none
/// once the body is done, the rest of a Content-Length body, unknown (None)
/// for a chunked one.
fn unread_body(inv: &Invoke) -> Option<u64> {
    if inv.body_done {
        return Some(0);
    }
    match inv.body {
        // Bytes already buffered are still counted here (and dropped first).
        BodyDecoder::Length { remaining } => Some(remaining),
        _ => None,
    }
}
