//! The sans-IO HTTP/2 client connection (RFC 9113) towards the Noslate data
//! plane (a grpc-js / nghttp2 server on a unix socket).
//!
//! The caller's event loop owns the socket. It hands every read to
//! [`ClientConnection::recv`], takes decisions out with
//! [`ClientConnection::poll_event`], and writes [`ClientConnection::fill_iovecs`]
//! with `writev`, reporting progress with [`ClientConnection::advance_output`].
//! Nothing here blocks, allocates per frame head, or copies body bytes: DATA
//! received is handed out as slices of the read buffer, DATA sent goes out as
//! the caller's own `Bytes` segments behind 9-byte heads.
//!
//! Owned here: the stream table (a slab addressed by [`StreamRef`]), the
//! HPACK encoder and decoder (whose dynamic table must see every header block,
//! even on streams we no longer track), both directions of flow control, the
//! concurrency queue and the output queue.
//!
//! Invariants:
//! * a stream gets its id only when its HEADERS are queued, so ids on the wire
//!   are odd and strictly increasing (§5.1.1);
//! * we never exceed the peer's stream window, connection window or maximum
//!   frame size; windows are signed (§6.9.2);
//! * the receive windows are credited only by [`ClientConnection::release`]
//!   (plus padding and frames we discard, which no one else will release);
//! * a stream that ended normally in both directions is never reset, and a
//!   stream whose response is complete is finished with END_STREAM rather than
//!   RST_STREAM: the peer counts our resets (protocol notes §14);
//! * a [`StreamRef`] stays valid until [`Event::Closed`] for it is polled.

use std::collections::{HashMap, VecDeque};
use std::fmt;
use std::io::IoSlice;

use bytes::{Buf, Bytes, BytesMut};
use slab::Slab;

use super::flow::{RecvWindow, SendWindow};
use super::frame::{
    self, decode_frame, setting, ErrorCode, Frame, FrameError, DEFAULT_INITIAL_WINDOW_SIZE, DEFAULT_MAX_FRAME_SIZE,
    MAX_MAX_FRAME_SIZE, MAX_STREAM_ID, MAX_WINDOW_SIZE,
};
use crate::hpack;

/// Local handle of a stream (a slab key).
pub type StreamRef = usize;

/// Decoded header fields in wire order, pseudo-headers included.
pub type HeaderList = Vec<(Bytes, Bytes)>;

/// The client connection preface (§3.4).
pub const PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

/// [`Event::SendReady`] fires when a stream's queued bytes fall to this or
/// below after having been above it, or after its own send window, having
/// blocked it, reopens and it sends again.
pub const SEND_LOW_WATER: usize = 64 * 1024;

/// What a stream told it may send is expected to queue at most, when
/// sharing out the output budget ([`ClientConnection::want_capacity`]).
const NOTIFY_ESTIMATE: usize = 64 * 1024;

/// Bound on one assembled header block (HEADERS + CONTINUATIONs). We
/// advertise a 64 KiB header list; a compressed block four times that is
/// abuse (§10.5.1).
pub const MAX_HEADER_BLOCK: usize = 256 * 1024;

/// Bound on CONTINUATION frames per block, against floods of empty ones
/// (§10.5).
pub const MAX_CONTINUATION_FRAMES: usize = 256;

/// Per-field overhead counted in SETTINGS_MAX_HEADER_LIST_SIZE (§6.5.2).
const HEADER_FIELD_OVERHEAD: usize = 32;

/// The HPACK table size every peer starts with (§6.5.2).
const DEFAULT_HEADER_TABLE_SIZE: u32 = 4096;

/// What we advertise to the server.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Config {
    /// SETTINGS_INITIAL_WINDOW_SIZE: per-stream receive window.
    pub stream_window: u32,
    /// Connection receive window, raised from 65535 with a WINDOW_UPDATE.
    pub connection_window: u32,
    /// SETTINGS_MAX_FRAME_SIZE.
    pub max_frame_size: u32,
    /// SETTINGS_HEADER_TABLE_SIZE for our decoder.
    pub header_table_size: u32,
    /// SETTINGS_MAX_HEADER_LIST_SIZE: larger response header lists are a
    /// connection error.
    pub max_header_list_size: u32,
    /// [`ClientConnection::send_capacity`] is 0 while this many octets wait
    /// to be written: however large the peer's windows, a caller that sends
    /// only on capacity keeps at most about this much in our memory.
    pub output_budget: usize,
    /// [`ClientConnection::send_capacity`] lets a stream queue this much
    /// beyond its send windows, so that every stream with data has some in
    /// the round-robin when a window opens (fair, and the pipe stays full).
    pub queue_allowance: usize,
    /// No stream gets its allowance while all streams together have this
    /// much queued beyond their windows: memory stays bounded by this and
    /// `output_budget`, not by the number of streams.
    pub queue_budget: usize,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            stream_window: 1 << 20,
            connection_window: 16 << 20,
            max_frame_size: DEFAULT_MAX_FRAME_SIZE,
            header_table_size: DEFAULT_HEADER_TABLE_SIZE,
            max_header_list_size: 65_536,
            output_budget: 256 * 1024,
            queue_allowance: 16 * 1024,
            queue_budget: 1 << 20,
        }
    }
}

/// What happened, in order.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Event {
    /// The response head (1xx heads are skipped), or the trailers
    /// (`end_stream` true). Trailers-only responses are one head with
    /// `end_stream`.
    Headers { stream: StreamRef, fields: HeaderList, end_stream: bool },
    /// Response body bytes, a slice of the buffer given to `recv`. Call
    /// [`ClientConnection::release`] as they are consumed.
    Data { stream: StreamRef, data: Bytes, end_stream: bool },
    /// The stream failed. `retryable`: the server processed none of it.
    Reset { stream: StreamRef, code: ErrorCode, retryable: bool },
    /// The stream's send queue drained (or its window reopened): push more.
    SendReady { stream: StreamRef },
    /// The server is going away; streams above `last_stream_id` have been
    /// reset as retryable, the others go on.
    GoAway { last_stream_id: u32, code: ErrorCode, debug: Bytes },
    /// Both directions are done; the handle is freed when this is polled.
    Closed { stream: StreamRef },
}

/// A connection error: a GOAWAY is already queued, every stream has been
/// reset. Flush the output, then close the socket.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ConnError {
    /// The peer broke a rule of RFC 9113.
    Protocol(ErrorCode, &'static str),
    /// A header block failed to decode (§4.3): the HPACK state is lost.
    Compression,
}

impl ConnError {
    /// The code sent in our GOAWAY.
    pub fn code(&self) -> ErrorCode {
        match self {
            ConnError::Protocol(code, _) => *code,
            ConnError::Compression => ErrorCode::COMPRESSION_ERROR,
        }
    }

    fn reason(&self) -> &'static str {
        match self {
            ConnError::Protocol(_, reason) => reason,
            ConnError::Compression => "header block decoding failed",
        }
    }
}

impl fmt::Display for ConnError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "HTTP/2 connection error {}: {}", self.code(), self.reason())
    }
}

impl std::error::Error for ConnError {}

impl From<FrameError> for ConnError {
    fn from(e: FrameError) -> Self {
        ConnError::Protocol(e.code, e.reason)
    }
}

/// Why [`ClientConnection::open`] refused a stream.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum OpenError {
    /// GOAWAY sent or received, or the connection failed: use another one.
    Closing,
    /// The next stream id would exceed 2^31-1 (§5.1.1): use another one.
    StreamIdsExhausted,
    /// Larger than the peer's SETTINGS_MAX_HEADER_LIST_SIZE.
    HeaderListTooLarge,
}

impl fmt::Display for OpenError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            OpenError::Closing => "HTTP/2 connection is closing",
            OpenError::StreamIdsExhausted => "HTTP/2 stream ids exhausted",
            OpenError::HeaderListTooLarge => "header list exceeds the peer's limit",
        })
    }
}

impl std::error::Error for OpenError {}

/// The server's settings, RFC defaults until its SETTINGS arrive (§6.5.2).
#[derive(Clone, Copy, Debug)]
struct PeerSettings {
    header_table_size: u32,
    max_concurrent_streams: u32,
    initial_window_size: u32,
    max_frame_size: u32,
    max_header_list_size: u32,
}

impl Default for PeerSettings {
    fn default() -> Self {
        PeerSettings {
            header_table_size: DEFAULT_HEADER_TABLE_SIZE,
            max_concurrent_streams: u32::MAX,
            initial_window_size: DEFAULT_INITIAL_WINDOW_SIZE,
            max_frame_size: DEFAULT_MAX_FRAME_SIZE,
            max_header_list_size: u32::MAX,
        }
    }
}

struct Stream {
    /// 0 until HEADERS are queued.
    id: u32,
    /// Request fields of a stream waiting for a concurrency slot.
    pending_head: Option<HeaderList>,
    send_queue: VecDeque<Bytes>,
    /// Octets in `send_queue`.
    queued: usize,
    end_requested: bool,
    end_sent: bool,
    send_window: SendWindow,
    /// In the connection's round-robin `ready` list.
    in_ready: bool,
    /// Owes an [`Event::SendReady`].
    want_ready: bool,
    /// In `capacity_waiters`: owes an [`Event::SendReady`] once it has
    /// send capacity ([`ClientConnection::want_capacity`]).
    want_capacity: bool,
    recv_window: RecvWindow,
    head_received: bool,
    recv_ended: bool,
    /// [`Event::Closed`] is queued; the slab entry goes when it is polled.
    closed: bool,
}

impl Stream {
    fn has_send_work(&self) -> bool {
        self.queued > 0 || (self.end_requested && !self.end_sent)
    }
}

/// A header block being assembled from HEADERS + CONTINUATION (§4.3).
struct PartialBlock {
    stream_id: u32,
    end_stream: bool,
    block: Vec<u8>,
    frames: usize,
}

enum Lookup {
    /// We never opened it (§5.1: idle).
    Idle,
    /// Opened once, no longer tracked.
    Closed,
    Live(StreamRef),
}

/// See the module documentation.
pub struct ClientConnection {
    cfg: Config,
    peer: PeerSettings,
    peer_settings_received: bool,
    streams: Slab<Stream>,
    ids: HashMap<u32, StreamRef>,
    /// Streams waiting for a concurrency slot, FIFO.
    waiting: VecDeque<StreamRef>,
    /// Streams with something to send, served round-robin.
    ready: VecDeque<StreamRef>,
    /// Streams that asked to hear when they can send ([`Self::want_capacity`]).
    capacity_waiters: VecDeque<StreamRef>,
    /// Sum of every stream's `queued`.
    total_queued: usize,
    next_stream_id: u32,
    /// Streams with an id that are not closed.
    open_count: usize,
    events: VecDeque<Event>,
    encoder: hpack::Encoder,
    decoder: hpack::Decoder,
    hpack_buf: Vec<u8>,
    continuation: Option<PartialBlock>,
    conn_send: SendWindow,
    conn_recv: RecvWindow,
    /// Frames ready to write, oldest first; followed by `scratch`.
    output: VecDeque<Bytes>,
    output_queued: usize,
    /// Control frames and DATA heads being written; sealed into `output`
    /// before a borrowed DATA segment is queued.
    scratch: BytesMut,
    handshake_remaining: usize,
    goaway_received: Option<u32>,
    goaway_sent: bool,
    fatal: Option<ConnError>,
    resets_sent: u64,
}

impl ClientConnection {
    /// Queues the preface, our SETTINGS and the connection WINDOW_UPDATE.
    pub fn new(cfg: Config) -> Self {
        let cfg = Config {
            stream_window: cfg.stream_window.min(MAX_WINDOW_SIZE),
            connection_window: cfg.connection_window.clamp(DEFAULT_INITIAL_WINDOW_SIZE, MAX_WINDOW_SIZE),
            max_frame_size: cfg.max_frame_size.clamp(DEFAULT_MAX_FRAME_SIZE, MAX_MAX_FRAME_SIZE),
            ..cfg
        };
        let mut scratch = BytesMut::with_capacity(4096);
        scratch.extend_from_slice(PREFACE);
        frame::encode_settings(
            &mut scratch,
            &[
                (setting::ENABLE_PUSH, 0),
                (setting::INITIAL_WINDOW_SIZE, cfg.stream_window),
                (setting::MAX_FRAME_SIZE, cfg.max_frame_size),
                (setting::HEADER_TABLE_SIZE, cfg.header_table_size),
                (setting::MAX_HEADER_LIST_SIZE, cfg.max_header_list_size),
            ],
        );
        let raise = cfg.connection_window - DEFAULT_INITIAL_WINDOW_SIZE;
        if raise > 0 {
            frame::encode_window_update(&mut scratch, 0, raise);
        }
        ClientConnection {
            cfg,
            peer: PeerSettings::default(),
            peer_settings_received: false,
            streams: Slab::new(),
            ids: HashMap::new(),
            waiting: VecDeque::new(),
            ready: VecDeque::new(),
            capacity_waiters: VecDeque::new(),
            total_queued: 0,
            next_stream_id: 1,
            open_count: 0,
            events: VecDeque::new(),
            encoder: hpack::Encoder::new(),
            // Until the server acknowledges our SETTINGS it may still use
            // the default table size, so never accept less than that.
            decoder: hpack::Decoder::new(cfg.header_table_size.max(DEFAULT_HEADER_TABLE_SIZE) as usize),
            hpack_buf: Vec::new(),
            continuation: None,
            conn_send: SendWindow::new(DEFAULT_INITIAL_WINDOW_SIZE),
            conn_recv: RecvWindow::new(cfg.connection_window),
            output: VecDeque::new(),
            output_queued: 0,
            handshake_remaining: scratch.len(),
            scratch,
            goaway_received: None,
            goaway_sent: false,
            fatal: None,
            resets_sent: 0,
        }
    }

    // ----- input -----------------------------------------------------------

    /// Consume every complete frame in `buf`; incomplete bytes stay there.
    /// After an error, every later call returns the same error.
    pub fn recv(&mut self, buf: &mut BytesMut) -> Result<(), ConnError> {
        if let Some(err) = self.fatal {
            return Err(err);
        }
        loop {
            let result = match decode_frame(buf, self.cfg.max_frame_size) {
                Ok(None) => break,
                Ok(Some(frame)) => self.on_frame(frame),
                Err(e) => self.on_frame_error(e),
            };
            if let Err(err) = result {
                self.fail(err);
                return Err(err);
            }
        }
        self.settle();
        Ok(())
    }

    pub fn poll_event(&mut self) -> Option<Event> {
        let event = self.events.pop_front()?;
        if let Event::Closed { stream } = event {
            if let Some(s) = self.streams.try_remove(stream) {
                // Delivered bytes the caller can no longer release.
                self.conn_recv.release(s.recv_window.unreleased() as usize);
                self.queue_window_updates(None);
            }
        }
        Some(event)
    }

    fn on_frame_error(&mut self, e: FrameError) -> Result<(), ConnError> {
        let Some(id) = e.stream_id else {
            return Err(e.into());
        };
        if self.continuation.is_some() {
            return Err(ConnError::Protocol(ErrorCode::PROTOCOL_ERROR, "frame interleaved in a header block"));
        }
        if let Lookup::Live(key) = self.lookup(id) {
            self.stream_error(key, e.code);
        }
        Ok(())
    }

    fn on_frame(&mut self, frame: Frame) -> Result<(), ConnError> {
        if !self.peer_settings_received && !matches!(frame, Frame::Settings { ack: false, .. }) {
            // §3.4: the server preface is a SETTINGS frame.
            return Err(ConnError::Protocol(ErrorCode::PROTOCOL_ERROR, "server preface is not SETTINGS"));
        }
        if let Some(partial) = &self.continuation {
            let same = matches!(&frame, Frame::Continuation { stream_id, .. } if *stream_id == partial.stream_id);
            if !same {
                // §6.10
                return Err(ConnError::Protocol(ErrorCode::PROTOCOL_ERROR, "frame interleaved in a header block"));
            }
        }
        match frame {
            Frame::Data { stream_id, payload, end_stream, flow_len } => {
                self.on_data(stream_id, payload, end_stream, flow_len)
            }
            Frame::Headers { stream_id, block, end_stream, end_headers } => {
                if let Lookup::Idle = self.lookup(stream_id) {
                    return Err(ConnError::Protocol(ErrorCode::PROTOCOL_ERROR, "HEADERS on a stream we never opened"));
                }
                if end_headers {
                    return self.on_header_block(stream_id, &block, end_stream);
                }
                if block.len() > MAX_HEADER_BLOCK {
                    return Err(block_too_large());
                }
                self.continuation = Some(PartialBlock { stream_id, end_stream, block: block.to_vec(), frames: 1 });
                Ok(())
            }
            Frame::Continuation { block, end_headers, .. } => {
                let Some(partial) = self.continuation.as_mut() else {
                    return Err(ConnError::Protocol(ErrorCode::PROTOCOL_ERROR, "CONTINUATION without HEADERS"));
                };
                partial.frames += 1;
                if partial.block.len() + block.len() > MAX_HEADER_BLOCK || partial.frames > MAX_CONTINUATION_FRAMES {
                    return Err(block_too_large());
                }
                partial.block.extend_from_slice(&block);
                if end_headers {
                    if let Some(done) = self.continuation.take() {
                        return self.on_header_block(done.stream_id, &done.block, done.end_stream);
                    }
                }
                Ok(())
            }
            Frame::Priority { .. } => Ok(()),
            Frame::RstStream { stream_id, code } => self.on_rst_stream(stream_id, code),
            Frame::Settings { ack: true, .. } => Ok(()),
            Frame::Settings { ack: false, params } => self.on_settings(&params),
            Frame::PushPromise { .. } => {
                Err(ConnError::Protocol(ErrorCode::PROTOCOL_ERROR, "PUSH_PROMISE although SETTINGS_ENABLE_PUSH is 0"))
            }
            Frame::Ping { ack: false, payload } => {
                frame::encode_ping_ack(&mut self.scratch, payload);
                Ok(())
            }
            Frame::Ping { ack: true, .. } => Ok(()),
            Frame::GoAway { last_stream_id, code, debug } => {
                self.on_goaway(last_stream_id, code, debug);
                Ok(())
            }
            Frame::WindowUpdate { stream_id, increment } => self.on_window_update(stream_id, increment),
            Frame::Unknown { .. } => Ok(()),
        }
    }

    fn lookup(&self, id: u32) -> Lookup {
        if id.is_multiple_of(2) || id >= self.next_stream_id {
            return Lookup::Idle;
        }
        match self.ids.get(&id) {
            Some(&key) => Lookup::Live(key),
            None => Lookup::Closed,
        }
    }

    fn on_data(&mut self, stream_id: u32, payload: Bytes, end_stream: bool, flow_len: u32) -> Result<(), ConnError> {
        let key = match self.lookup(stream_id) {
            Lookup::Idle => {
                return Err(ConnError::Protocol(ErrorCode::PROTOCOL_ERROR, "DATA on a stream we never opened"))
            }
            Lookup::Closed => None,
            Lookup::Live(key) => Some(key),
        };
        // §6.9: every DATA frame counts against the connection window,
        // whatever becomes of it.
        if self.conn_recv.receive(flow_len).is_err() {
            return Err(ConnError::Protocol(ErrorCode::FLOW_CONTROL_ERROR, "DATA beyond the connection window"));
        }
        let Some(key) = key else {
            // A stream we reset or finished: nobody will release these.
            self.discard_received(flow_len);
            return Ok(());
        };
        let s = &mut self.streams[key];
        if !s.head_received || s.recv_ended {
            let code = if s.recv_ended { ErrorCode::STREAM_CLOSED } else { ErrorCode::PROTOCOL_ERROR };
            self.discard_received(flow_len);
            self.stream_error(key, code);
            return Ok(());
        }
        if s.recv_window.receive(flow_len).is_err() {
            self.discard_received(flow_len);
            self.stream_error(key, ErrorCode::FLOW_CONTROL_ERROR);
            return Ok(());
        }
        // Padding is flow-controlled but never delivered: credit it now.
        let padding = (flow_len as usize).saturating_sub(payload.len());
        if padding > 0 {
            s.recv_window.release(padding);
            self.conn_recv.release(padding);
        }
        if !payload.is_empty() || end_stream {
            self.events.push_back(Event::Data { stream: key, data: payload, end_stream });
        }
        if end_stream {
            self.streams[key].recv_ended = true;
            self.maybe_close(key);
        }
        if padding > 0 {
            self.queue_window_updates(Some(key));
        }
        Ok(())
    }

    /// Connection credit for DATA no consumer will see.
    fn discard_received(&mut self, flow_len: u32) {
        self.conn_recv.release(flow_len as usize);
        self.queue_window_updates(None);
    }

    fn on_header_block(&mut self, stream_id: u32, block: &[u8], end_stream: bool) -> Result<(), ConnError> {
        // Decode even for streams we dropped: the dynamic table must follow
        // the encoder's (RFC 7541 §2.2).
        let fields = self.decode_block(block)?;
        let Lookup::Live(key) = self.lookup(stream_id) else {
            return Ok(());
        };
        let s = &mut self.streams[key];
        if s.recv_ended {
            self.stream_error(key, ErrorCode::STREAM_CLOSED);
            return Ok(());
        }
        if !s.head_received {
            let status =
                fields.iter().find(|(name, _)| &name[..] == b":status").and_then(|(_, value)| parse_status(value));
            match status {
                None => {
                    self.stream_error(key, ErrorCode::PROTOCOL_ERROR);
                    return Ok(());
                }
                // §8.1: informational heads precede the final one.
                Some(100..=199) if !end_stream => return Ok(()),
                Some(100..=199) => {
                    self.stream_error(key, ErrorCode::PROTOCOL_ERROR);
                    return Ok(());
                }
                Some(_) => s.head_received = true,
            }
        } else if !end_stream || fields.iter().any(|(name, _)| name.starts_with(b":")) {
            // §8.1: a second HEADERS is trailers, which end the stream and
            // carry no pseudo-headers.
            self.stream_error(key, ErrorCode::PROTOCOL_ERROR);
            return Ok(());
        }
        self.events.push_back(Event::Headers { stream: key, fields, end_stream });
        if end_stream {
            self.streams[key].recv_ended = true;
            self.maybe_close(key);
        }
        Ok(())
    }

    fn decode_block(&mut self, block: &[u8]) -> Result<HeaderList, ConnError> {
        // All names and values go into one allocation, handed out as slices.
        let mut arena = BytesMut::with_capacity(block.len() * 2);
        let mut spans: Vec<(usize, usize, usize)> = Vec::new();
        self.decoder
            .decode(block, self.cfg.max_header_list_size as usize, &mut |name: &[u8], value: &[u8]| {
                spans.push((arena.len(), name.len(), value.len()));
                arena.extend_from_slice(name);
                arena.extend_from_slice(value);
            })
            .map_err(|_| ConnError::Compression)?;
        let arena = arena.freeze();
        Ok(spans
            .into_iter()
            .map(|(at, name, value)| (arena.slice(at..at + name), arena.slice(at + name..at + name + value)))
            .collect())
    }

    fn on_rst_stream(&mut self, stream_id: u32, code: ErrorCode) -> Result<(), ConnError> {
        match self.lookup(stream_id) {
            Lookup::Idle => Err(ConnError::Protocol(ErrorCode::PROTOCOL_ERROR, "RST_STREAM on an idle stream")),
            Lookup::Closed => Ok(()),
            Lookup::Live(key) => {
                if self.streams[key].recv_ended && code == ErrorCode::NO_ERROR {
                    // §8.1: the response is complete, the server just asks
                    // us to stop sending. Not a failure.
                    self.terminate(key, None, None);
                } else {
                    let retryable = code == ErrorCode::REFUSED_STREAM;
                    self.terminate(key, None, Some((code, retryable)));
                }
                Ok(())
            }
        }
    }

    fn on_settings(&mut self, params: &[(u16, u32)]) -> Result<(), ConnError> {
        for &(id, value) in params {
            match id {
                setting::HEADER_TABLE_SIZE => self.peer.header_table_size = value,
                setting::ENABLE_PUSH if value != 0 => {
                    // §6.5.2
                    return Err(ConnError::Protocol(ErrorCode::PROTOCOL_ERROR, "server sent SETTINGS_ENABLE_PUSH=1"));
                }
                setting::MAX_CONCURRENT_STREAMS => self.peer.max_concurrent_streams = value,
                setting::INITIAL_WINDOW_SIZE => {
                    // §6.9.2: shift every stream's send window by the delta.
                    let delta = i64::from(value) - i64::from(self.peer.initial_window_size);
                    for (_, s) in self.streams.iter_mut().filter(|(_, s)| !s.closed) {
                        if s.send_window.adjust(delta).is_err() {
                            return Err(ConnError::Protocol(
                                ErrorCode::FLOW_CONTROL_ERROR,
                                "SETTINGS_INITIAL_WINDOW_SIZE overflows a window",
                            ));
                        }
                    }
                    self.peer.initial_window_size = value;
                }
                setting::MAX_FRAME_SIZE => self.peer.max_frame_size = value,
                setting::MAX_HEADER_LIST_SIZE => self.peer.max_header_list_size = value,
                _ => {}
            }
        }
        self.peer_settings_received = true;
        frame::encode_settings_ack(&mut self.scratch);
        let keys: Vec<StreamRef> = self.streams.iter().map(|(key, _)| key).collect();
        for key in keys {
            self.mark_ready(key);
        }
        self.promote_waiting();
        Ok(())
    }

    fn on_goaway(&mut self, last_stream_id: u32, code: ErrorCode, debug: Bytes) {
        let last = self.goaway_received.map_or(last_stream_id, |prev| prev.min(last_stream_id));
        self.goaway_received = Some(last);
        self.events.push_back(Event::GoAway { last_stream_id, code, debug });
        // §6.8: streams above the last id were never processed.
        let refused: Vec<StreamRef> =
            self.streams.iter().filter(|(_, s)| !s.closed && (s.id == 0 || s.id > last)).map(|(key, _)| key).collect();
        for key in refused {
            self.terminate(key, None, Some((ErrorCode::REFUSED_STREAM, true)));
        }
    }

    fn on_window_update(&mut self, stream_id: u32, increment: u32) -> Result<(), ConnError> {
        if stream_id == 0 {
            return self
                .conn_send
                .increase(increment)
                .map_err(|_| ConnError::Protocol(ErrorCode::FLOW_CONTROL_ERROR, "connection window above 2^31-1"));
        }
        match self.lookup(stream_id) {
            Lookup::Idle => Err(ConnError::Protocol(ErrorCode::PROTOCOL_ERROR, "WINDOW_UPDATE on an idle stream")),
            Lookup::Closed => Ok(()),
            Lookup::Live(key) => {
                if self.streams[key].send_window.increase(increment).is_err() {
                    self.stream_error(key, ErrorCode::FLOW_CONTROL_ERROR);
                } else {
                    self.mark_ready(key);
                }
                Ok(())
            }
        }
    }

    // ----- stream lifecycle ------------------------------------------------

    /// The peer broke a stream rule: RST_STREAM and report (§5.4.2).
    fn stream_error(&mut self, key: StreamRef, code: ErrorCode) {
        self.terminate(key, Some(code), Some((code, false)));
    }

    fn maybe_close(&mut self, key: StreamRef) {
        let s = &self.streams[key];
        if s.end_sent && s.recv_ended && !s.closed {
            self.terminate(key, None, None);
        }
    }

    /// End a stream: optionally send RST_STREAM `rst`, optionally report
    /// `Reset { code, retryable }`, then `Closed`.
    fn terminate(&mut self, key: StreamRef, rst: Option<ErrorCode>, report: Option<(ErrorCode, bool)>) {
        let Some(s) = self.streams.get_mut(key) else {
            return;
        };
        if s.closed {
            return;
        }
        s.closed = true;
        s.send_queue.clear();
        self.total_queued -= s.queued;
        s.queued = 0;
        s.pending_head = None;
        if s.id == 0 {
            self.waiting.retain(|&k| k != key);
        } else {
            self.ids.remove(&s.id);
            self.open_count -= 1;
            if let Some(code) = rst {
                if self.fatal.is_none() {
                    frame::encode_rst_stream(&mut self.scratch, s.id, code);
                    self.resets_sent += 1;
                }
            }
        }
        if let Some((code, retryable)) = report {
            self.events.push_back(Event::Reset { stream: key, code, retryable });
        }
        self.events.push_back(Event::Closed { stream: key });
        self.promote_waiting();
    }

    /// Give queued streams their ids while the peer allows (§5.1.2).
    fn promote_waiting(&mut self) {
        if !self.accepting_streams() {
            return;
        }
        while self.open_count < self.peer.max_concurrent_streams as usize {
            let Some(key) = self.waiting.pop_front() else {
                break;
            };
            let fields = self.streams[key].pending_head.take().unwrap_or_default();
            self.activate(key, fields.iter().map(|(n, v)| (&n[..], &v[..])));
        }
    }

    fn accepting_streams(&self) -> bool {
        self.fatal.is_none() && !self.goaway_sent && self.goaway_received.is_none()
    }

    /// Assign the next id and queue the HEADERS.
    fn activate<'a>(&mut self, key: StreamRef, fields: impl IntoIterator<Item = (&'a [u8], &'a [u8])>) {
        let id = self.next_stream_id;
        self.next_stream_id += 2;
        self.ids.insert(id, key);
        self.open_count += 1;
        let s = &mut self.streams[key];
        s.id = id;
        let end_stream = s.end_requested && s.queued == 0;
        s.end_sent = end_stream;
        self.hpack_buf.clear();
        self.encoder.encode(fields, &mut self.hpack_buf);
        frame::encode_headers(&mut self.scratch, id, &self.hpack_buf, end_stream, self.peer.max_frame_size);
        self.mark_ready(key);
    }

    fn mark_ready(&mut self, key: StreamRef) {
        if let Some(s) = self.streams.get_mut(key) {
            if !s.closed && s.id != 0 && !s.in_ready && s.has_send_work() {
                s.in_ready = true;
                self.ready.push_back(key);
            }
        }
    }

    // ----- output: DATA scheduling -----------------------------------------

    /// Emit DATA frames round-robin, one frame per stream per pass, as far
    /// as the windows and the peer's frame size allow.
    fn flush_sends(&mut self) {
        if self.fatal.is_some() {
            return;
        }
        let mut progress = true;
        while progress {
            progress = false;
            for _ in 0..self.ready.len() {
                let Some(key) = self.ready.pop_front() else {
                    break;
                };
                let Some(s) = self.streams.get_mut(key) else {
                    continue;
                };
                s.in_ready = false;
                if s.closed || s.id == 0 {
                    continue;
                }
                if s.queued == 0 {
                    if s.end_requested && !s.end_sent {
                        // An empty DATA frame needs no window (§6.9.1).
                        self.emit_data(key, 0, true);
                        progress = true;
                        self.maybe_close(key);
                    }
                    continue;
                }
                let limit = s.send_window.usable().min(self.conn_send.usable()).min(self.peer.max_frame_size as usize);
                if limit == 0 {
                    if s.send_window.usable() > 0 {
                        // Only the connection window is closed: keep its turn.
                        s.in_ready = true;
                        self.ready.push_back(key);
                    } else {
                        // Parked until a WINDOW_UPDATE for this stream; the
                        // caller hears about the reopening.
                        s.want_ready = true;
                    }
                    continue;
                }
                let n = limit.min(s.queued);
                let end_stream = s.end_requested && n == s.queued;
                self.emit_data(key, n, end_stream);
                progress = true;
                let s = &mut self.streams[key];
                if end_stream {
                    self.maybe_close(key);
                    continue;
                }
                if s.want_ready && s.queued <= SEND_LOW_WATER && !s.end_requested {
                    s.want_ready = false;
                    // One SendReady answers a capacity request too (the
                    // waiter list drops entries whose flag is clear).
                    s.want_capacity = false;
                    self.events.push_back(Event::SendReady { stream: key });
                }
                if s.has_send_work() {
                    s.in_ready = true;
                    self.ready.push_back(key);
                }
            }
        }
    }

    /// One DATA frame of the next `n` queued octets: a head in `scratch`,
    /// then the segments themselves (sliced, not copied).
    fn emit_data(&mut self, key: StreamRef, n: usize, end_stream: bool) {
        let s = &mut self.streams[key];
        self.scratch.extend_from_slice(&frame::data_head(s.id, n as u32, end_stream));
        if end_stream {
            s.end_sent = true;
        }
        if n == 0 {
            return;
        }
        if !self.scratch.is_empty() {
            let sealed = self.scratch.split().freeze();
            self.output_queued += sealed.len();
            self.output.push_back(sealed);
        }
        let mut left = n;
        while left > 0 {
            let Some(front) = s.send_queue.front_mut() else {
                break;
            };
            let segment =
                if front.len() <= left { s.send_queue.pop_front().unwrap_or_default() } else { front.split_to(left) };
            left -= segment.len();
            self.output_queued += segment.len();
            self.output.push_back(segment);
        }
        s.queued -= n;
        self.total_queued -= n;
        s.send_window.consume(n);
        self.conn_send.consume(n);
    }

    /// WINDOW_UPDATEs due on the connection and on stream `key`.
    fn queue_window_updates(&mut self, key: Option<StreamRef>) {
        if self.fatal.is_some() {
            return;
        }
        if let Some(s) = key.and_then(|key| self.streams.get_mut(key)) {
            if !s.closed && !s.recv_ended {
                if let Some(n) = s.recv_window.take_update() {
                    frame::encode_window_update(&mut self.scratch, s.id, n);
                }
            }
        }
        if let Some(n) = self.conn_recv.take_update() {
            frame::encode_window_update(&mut self.scratch, 0, n);
        }
    }

    /// Connection error: GOAWAY, every stream reset.
    fn fail(&mut self, err: ConnError) {
        if self.fatal.is_some() {
            return;
        }
        // §5.4.1: last stream id is the last peer-initiated one: none.
        frame::encode_goaway(&mut self.scratch, 0, err.code(), err.reason().as_bytes());
        self.goaway_sent = true;
        self.fatal = Some(err);
        self.continuation = None;
        let live: Vec<(StreamRef, bool)> =
            self.streams.iter().filter(|(_, s)| !s.closed).map(|(key, s)| (key, s.id == 0)).collect();
        for (key, never_sent) in live {
            self.terminate(key, None, Some((err.code(), never_sent)));
        }
        self.ready.clear();
    }

    // ----- public stream API -------------------------------------------------

    /// Start a request stream (see the crate docs for queuing and ids).
    pub fn open(&mut self, fields: &[(&[u8], &[u8])], end_stream: bool) -> Result<StreamRef, OpenError> {
        if !self.accepting_streams() {
            return Err(OpenError::Closing);
        }
        let next_id = u64::from(self.next_stream_id) + 2 * self.waiting.len() as u64;
        if next_id > u64::from(MAX_STREAM_ID) {
            return Err(OpenError::StreamIdsExhausted);
        }
        let list_size: usize = fields.iter().map(|(n, v)| n.len() + v.len() + HEADER_FIELD_OVERHEAD).sum();
        if list_size > self.peer.max_header_list_size as usize {
            return Err(OpenError::HeaderListTooLarge);
        }
        let key = self.streams.insert(Stream {
            id: 0,
            pending_head: None,
            send_queue: VecDeque::new(),
            queued: 0,
            end_requested: end_stream,
            end_sent: false,
            send_window: SendWindow::new(self.peer.initial_window_size),
            in_ready: false,
            want_ready: false,
            want_capacity: false,
            recv_window: RecvWindow::new(self.cfg.stream_window),
            head_received: false,
            recv_ended: false,
            closed: false,
        });
        let slot_free = self.open_count < self.peer.max_concurrent_streams as usize;
        if self.waiting.is_empty() && slot_free {
            self.activate(key, fields.iter().copied());
        } else {
            self.streams[key].pending_head =
                Some(fields.iter().map(|(n, v)| (Bytes::copy_from_slice(n), Bytes::copy_from_slice(v))).collect());
            self.waiting.push_back(key);
        }
        Ok(key)
    }

    /// How much more the caller should queue on the stream now: what its
    /// own and the connection's send windows take at once beyond its queue,
    /// or what is left of `queue_allowance` (while all streams together
    /// queue less than `queue_budget`), whichever is more. 0 while the output
    /// is over `output_budget`, and for a stream that ended. A caller that
    /// reads its source only this far keeps about `output_budget` plus
    /// `queue_budget` in memory, whatever the peer's windows and however
    /// many streams there are.
    pub fn send_capacity(&self, stream: StreamRef) -> usize {
        match self.streams.get(stream) {
            Some(s) if !s.closed && !s.end_requested && self.output_len() < self.cfg.output_budget => {
                let windows = if s.id == 0 { 0 } else { s.send_window.usable().min(self.conn_send.usable()) };
                let allowance = if self.total_queued < self.cfg.queue_budget { self.cfg.queue_allowance } else { 0 };
                windows.max(allowance).saturating_sub(s.queued)
            }
            _ => 0,
        }
    }

    /// Ask for an [`Event::SendReady`] once [`Self::send_capacity`] is above
    /// zero (a window update, the stream getting its id, or the output
    /// falling below the budget). Lets a caller
    /// read its source only as fast as the peer takes the bytes.
    pub fn want_capacity(&mut self, stream: StreamRef) {
        if let Some(s) = self.streams.get_mut(stream) {
            if !s.closed && !s.want_capacity {
                s.want_capacity = true;
                self.capacity_waiters.push_back(stream);
            }
        }
    }

    /// Tell waiting streams that they can send, oldest first. While the
    /// output budget is what holds them back, only as many as the free
    /// budget can take are told (a thundering herd of readers would mostly
    /// find it gone again); the others keep their place in the line.
    fn notify_capacity(&mut self) {
        // Nobody can be told: no waiters, the output is over budget, or no
        // window is open and the queue budget is spent.
        let no_allowance = self.total_queued >= self.cfg.queue_budget && self.conn_send.usable() == 0;
        if self.capacity_waiters.is_empty() || self.output_len() >= self.cfg.output_budget || no_allowance {
            return;
        }
        let mut budget = self.cfg.output_budget.saturating_sub(self.output_len());
        let mut kept = VecDeque::new();
        while let Some(key) = self.capacity_waiters.pop_front() {
            let live = self.streams.get(key).is_some_and(|s| !s.closed && !s.end_requested && s.want_capacity);
            if !live {
                continue;
            }
            let capacity = self.send_capacity(key);
            if capacity == 0 || budget == 0 {
                kept.push_back(key);
                continue;
            }
            budget = budget.saturating_sub(capacity.min(NOTIFY_ESTIMATE));
            let s = &mut self.streams[key];
            s.want_capacity = false;
            s.want_ready = false;
            self.events.push_back(Event::SendReady { stream: key });
        }
        self.capacity_waiters = kept;
    }

    /// Queue request body bytes (already gRPC-framed) on the stream and
    /// frame what the windows allow. Ignored after `send_end`, `reset` or
    /// once the stream is closed.
    pub fn send_data(&mut self, stream: StreamRef, data: Bytes) {
        self.queue_data(stream, data);
        self.flush_stream(stream);
    }

    /// Like [`Self::send_data`], but more follows at once: nothing is framed
    /// until the next `send_data`, `flush_stream` or `send_end`, so a message
    /// prefix and its payload (or the last bytes and END_STREAM) share one
    /// DATA frame.
    pub fn send_data_more(&mut self, stream: StreamRef, data: Bytes) {
        self.queue_data(stream, data);
    }

    /// Frame whatever the windows allow and tell capacity waiters. For the
    /// caller to run before it writes: state can change between frames
    /// without a window update (a reset frees a concurrency slot and queue
    /// budget, another stream's send drains a queue), and a waiter must not
    /// be left to hear of it only when the peer next sends something.
    pub fn settle(&mut self) {
        self.flush_sends();
        self.notify_capacity();
    }

    /// Frame what `send_data_more` queued, as far as the windows allow.
    pub fn flush_stream(&mut self, stream: StreamRef) {
        if self.streams.get(stream).is_none_or(|s| s.queued == 0) {
            return;
        }
        self.mark_ready(stream);
        self.flush_sends();
        if let Some(s) = self.streams.get_mut(stream) {
            if s.queued > SEND_LOW_WATER {
                s.want_ready = true;
            }
        }
    }

    fn queue_data(&mut self, stream: StreamRef, data: Bytes) -> bool {
        let Some(s) = self.streams.get_mut(stream) else {
            return false;
        };
        if s.closed || s.end_requested || data.is_empty() {
            return false;
        }
        s.queued += data.len();
        self.total_queued += data.len();
        s.send_queue.push_back(data);
        true
    }

    /// Half-close once everything queued has been sent.
    pub fn send_end(&mut self, stream: StreamRef) {
        let Some(s) = self.streams.get_mut(stream) else {
            return;
        };
        if s.closed || s.end_requested {
            return;
        }
        s.end_requested = true;
        self.mark_ready(stream);
        self.flush_sends();
    }

    /// Octets accepted by `send_data` and not yet framed into the output.
    pub fn queued(&self, stream: StreamRef) -> usize {
        self.streams.get(stream).map_or(0, |s| s.queued)
    }

    /// Abandon the stream; `Closed` follows. RST_STREAM is sent only if the
    /// server may still be working on it: a stream that never got an id
    /// needs nothing, and one whose response is complete is finished with
    /// an empty END_STREAM DATA instead, which costs none of the peer's
    /// reset allowance (§14). Ended streams are never reset.
    pub fn reset(&mut self, stream: StreamRef, code: ErrorCode) {
        let Some(s) = self.streams.get_mut(stream) else {
            return;
        };
        if s.closed {
            return;
        }
        if s.id != 0 && s.recv_ended && self.fatal.is_none() {
            s.send_queue.clear();
            self.total_queued -= s.queued;
            s.queued = 0;
            if !s.end_sent {
                self.emit_data(stream, 0, true);
            }
            self.maybe_close(stream);
            return;
        }
        self.terminate(stream, Some(code), None);
    }

    /// The caller consumed `n` octets of received DATA on `stream`.
    pub fn release(&mut self, stream: StreamRef, n: usize) {
        let Some(s) = self.streams.get_mut(stream) else {
            return;
        };
        let n = n.min(s.recv_window.unreleased() as usize);
        s.recv_window.release(n);
        self.conn_recv.release(n);
        self.queue_window_updates(Some(stream));
    }

    pub fn resets_sent(&self) -> u64 {
        self.resets_sent
    }

    /// Streams opened and not closed, plus streams waiting for a slot.
    pub fn active_streams(&self) -> usize {
        self.open_count + self.waiting.len()
    }

    /// The handshake is written and no GOAWAY or error has happened.
    pub fn is_open_for_streams(&self) -> bool {
        self.handshake_remaining == 0 && self.accepting_streams()
    }

    pub fn peer_settings_received(&self) -> bool {
        self.peer_settings_received
    }

    pub fn ping(&mut self, payload: [u8; 8]) {
        if self.fatal.is_none() {
            frame::encode_ping(&mut self.scratch, false, payload);
        }
    }

    /// Graceful shutdown: GOAWAY, refuse new streams, fail those still
    /// waiting for a slot (retryable); open streams run to completion.
    pub fn close(&mut self, code: ErrorCode) {
        if self.fatal.is_some() || self.goaway_sent {
            return;
        }
        frame::encode_goaway(&mut self.scratch, 0, code, b"");
        self.goaway_sent = true;
        let waiting: Vec<StreamRef> = self.waiting.iter().copied().collect();
        for key in waiting {
            self.terminate(key, None, Some((ErrorCode::REFUSED_STREAM, true)));
        }
    }

    // ----- public output API -----------------------------------------------

    pub fn has_output(&self) -> bool {
        self.output_len() > 0
    }

    /// Fill `iov` from the front of the output; returns how many were set.
    pub fn fill_iovecs<'a>(&'a self, iov: &mut [IoSlice<'a>]) -> usize {
        let chunks =
            self.output.iter().map(|b| &b[..]).chain(std::iter::once(&self.scratch[..])).filter(|c| !c.is_empty());
        let mut n = 0;
        for (slot, chunk) in iov.iter_mut().zip(chunks) {
            *slot = IoSlice::new(chunk);
            n += 1;
        }
        n
    }

    /// Events are waiting for [`Self::poll_event`].
    pub fn has_events(&self) -> bool {
        !self.events.is_empty()
    }

    /// `n` octets from the front of the output were written.
    pub fn advance_output(&mut self, n: usize) {
        let over_budget = self.output_len() >= self.cfg.output_budget;
        self.advance(n);
        if over_budget && self.output_len() < self.cfg.output_budget {
            self.notify_capacity();
        }
    }

    fn advance(&mut self, n: usize) {
        let mut n = n.min(self.output_len());
        self.handshake_remaining = self.handshake_remaining.saturating_sub(n);
        while n > 0 {
            match self.output.front_mut() {
                Some(front) if front.len() <= n => {
                    n -= front.len();
                    self.output_queued -= front.len();
                    self.output.pop_front();
                }
                Some(front) => {
                    front.advance(n);
                    self.output_queued -= n;
                    n = 0;
                }
                None => {
                    self.scratch.advance(n);
                    n = 0;
                }
            }
        }
    }

    pub fn output_len(&self) -> usize {
        self.output_queued + self.scratch.len()
    }
}

fn block_too_large() -> ConnError {
    ConnError::Protocol(ErrorCode::ENHANCE_YOUR_CALM, "header block exceeds the assembly limit")
}

/// `:status` is exactly three digits (§8.3.2).
fn parse_status(value: &[u8]) -> Option<u16> {
    match value {
        [a, b, c] if value.iter().all(u8::is_ascii_digit) => {
            Some(u16::from(a - b'0') * 100 + u16::from(b - b'0') * 10 + u16::from(c - b'0'))
        }
        _ => None,
    }
}

#[cfg(test)]
mod tests;
