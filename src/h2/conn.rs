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
//! Owned here: the stream table (a slab addressed by [`StreamRef`], each
//! entry's lifecycle a `State` from `state.rs`), the HPACK encoder and
//! decoder (whose dynamic table must see every header block, even on streams
//! we no longer track), both directions of flow control, the concurrency
//! queue and the output queue. The send side — send queues, the DATA
//! round-robin and the capacity offered to the caller — is the child module
//! `send` (`conn/send.rs`). `LIFECYCLE.md` has the states and transitions.
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
//!   RST_STREAM: the peer counts our resets (docs/noslated-protocol.md §3.4);
//! * a [`StreamRef`] stays valid until [`Event::Closed`] for it is polled;
//!   after that it is stale (its slot may hold a newer stream) and every
//!   call with it does nothing.

use std::collections::VecDeque;
use std::fmt;
use std::io::IoSlice;

use bytes::{Buf, Bytes, BytesMut};
use slab::Slab;

use self::send::{SendQueue, SendSchedule};
use super::flow::{RecvWindow, SendWindow};
use super::frame::{
    self, decode_frame, setting, ErrorCode, Frame, FrameError, DEFAULT_INITIAL_WINDOW_SIZE, DEFAULT_MAX_FRAME_SIZE,
    MAX_MAX_FRAME_SIZE, MAX_STREAM_ID, MAX_WINDOW_SIZE,
};
use super::state::{EndStream, Remote, State};
use super::HeaderList;
use crate::hpack;
use crate::idmap::IdMap;
use crate::pool::BufPool;

mod send;

/// A stream's slot in the stream table (inside this module only).
type Key = usize;

/// The caller's handle of a stream: its slot and the serial of the `open`
/// that filled it (as h2's `store::Key { index, stream_id }`). A handle kept
/// past its stream's [`Event::Closed`] names a slot a later `open` may have
/// reused; the serial tells them apart, so a stale handle reaches nothing
/// instead of another stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct StreamRef {
    key: Key,
    serial: u32,
}

/// Smallest reservation of the header arena: a whole response head and its
/// trailers without growing.
const HEADER_ARENA_MIN: usize = 4096;

/// Smallest buffer frames are written into (`scratch`).
const SCRATCH_CHUNK: usize = 4096;
/// Emptied header lists kept for reuse (one head and one trailer block per
/// stream in flight at once is the common case).
const SPARE_LISTS: usize = 8;

/// The client connection preface (§3.4).
pub const PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

/// [`Event::SendReady`] fires when a stream's queued bytes fall to this or
/// below after having been above it, or after its own send window, having
/// blocked it, reopens and it sends again.
pub const SEND_LOW_WATER: usize = 64 * 1024;

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

/// One stream's slab entry.
struct Stream {
    /// Which `open` made it (see [`StreamRef`]).
    serial: u32,
    /// Where it is in its lifecycle (§5.1), with its id once it has one.
    state: State,
    /// Request body not yet framed ([`send`]).
    send: SendQueue,
    send_window: SendWindow,
    /// Kept after the stream closes, until [`Event::Closed`] is polled: the
    /// caller may still release delivered bytes.
    recv_window: RecvWindow,
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
    Live(Key),
}

/// See the module documentation.
pub struct ClientConnection {
    cfg: Config,
    peer: PeerSettings,
    peer_settings_received: bool,
    streams: Slab<Stream>,
    ids: IdMap<u32, Key>,
    /// Streams waiting for a concurrency slot, FIFO.
    waiting: VecDeque<Key>,
    /// The round-robin and the capacity line ([`send`]).
    sends: SendSchedule,
    next_stream_id: u32,
    /// The serial the next `open` gives its stream (see [`StreamRef`]).
    next_serial: u32,
    /// Streams with an id that are not closed.
    open_count: usize,
    events: VecDeque<Event>,
    encoder: hpack::Encoder,
    decoder: hpack::Decoder,
    hpack_buf: Vec<u8>,
    /// Decoded names and values of received header blocks (`decode_block`).
    header_arena: BytesMut,
    header_spans: Vec<(usize, usize, usize)>,
    /// Emptied header lists kept for reuse (`recycle_headers`).
    spare_lists: Vec<HeaderList>,
    continuation: Option<PartialBlock>,
    conn_send: SendWindow,
    conn_recv: RecvWindow,
    /// Frames ready to write, oldest first; followed by `scratch`.
    output: VecDeque<Bytes>,
    output_queued: usize,
    /// Control frames and DATA heads being written; sealed into `output`
    /// before a borrowed DATA segment is queued.
    scratch: BytesMut,
    /// `scratch`'s earlier buffers, parked while frames sealed from them
    /// wait to be written, and reused after (`crate::pool`).
    scratch_chunks: BufPool,
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
            ids: IdMap::default(),
            waiting: VecDeque::new(),
            sends: SendSchedule::default(),
            next_stream_id: 1,
            next_serial: 0,
            open_count: 0,
            events: VecDeque::new(),
            encoder: hpack::Encoder::new(),
            // Until the server acknowledges our SETTINGS it may still use
            // the default table size, so never accept less than that.
            decoder: hpack::Decoder::new(cfg.header_table_size.max(DEFAULT_HEADER_TABLE_SIZE) as usize),
            hpack_buf: Vec::new(),
            header_arena: BytesMut::new(),
            header_spans: Vec::new(),
            spare_lists: Vec::new(),
            continuation: None,
            conn_send: SendWindow::new(DEFAULT_INITIAL_WINDOW_SIZE),
            conn_recv: RecvWindow::new(cfg.connection_window),
            output: VecDeque::new(),
            output_queued: 0,
            handshake_remaining: scratch.len(),
            scratch,
            scratch_chunks: BufPool::default(),
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
            if let Some(s) = self.key(stream).map(|key| self.streams.remove(key)) {
                // Delivered bytes the caller can no longer release.
                self.conn_recv.release(s.recv_window.unreleased() as usize);
                self.queue_window_updates(None);
                s.send.recycle(&mut self.sends);
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
        let refused = match s.state.remote() {
            Some(Remote::Body) => None,
            // §8.1: DATA before the response head.
            Some(Remote::AwaitingHead) => Some(ErrorCode::PROTOCOL_ERROR),
            // §5.1: half-closed (remote).
            None => Some(ErrorCode::STREAM_CLOSED),
        };
        if let Some(code) = refused {
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
            self.events.push_back(Event::Data { stream: self.handle(key), data: payload, end_stream });
        }
        if end_stream {
            let end = self.streams[key].state.received_end_stream();
            self.after_end_stream(key, end);
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
        let Some(remote) = s.state.remote() else {
            // §5.1: half-closed (remote).
            self.stream_error(key, ErrorCode::STREAM_CLOSED);
            return Ok(());
        };
        if remote == Remote::AwaitingHead {
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
                Some(_) => s.state.received_head(),
            }
        } else if !end_stream || fields.iter().any(|(name, _)| name.starts_with(b":")) {
            // §8.1: a second HEADERS is trailers, which end the stream and
            // carry no pseudo-headers.
            self.stream_error(key, ErrorCode::PROTOCOL_ERROR);
            return Ok(());
        }
        self.events.push_back(Event::Headers { stream: self.handle(key), fields, end_stream });
        if end_stream {
            let end = self.streams[key].state.received_end_stream();
            self.after_end_stream(key, end);
        }
        Ok(())
    }

    fn decode_block(&mut self, block: &[u8]) -> Result<HeaderList, ConnError> {
        // All names and values go into the connection's arena, handed out as
        // slices of one frozen split: once the slices of earlier blocks are
        // dropped, `reserve` takes the same allocation back (no allocation
        // per block in steady state). The span list and the returned list
        // are reused too (`recycle_headers`).
        let arena = &mut self.header_arena;
        // Decoded fields rarely exceed 4x their HPACK block; `extend` grows
        // the arena if they do.
        if arena.capacity() - arena.len() < block.len() * 4 {
            arena.reserve(HEADER_ARENA_MIN.max(block.len() * 4));
        }
        let spans = &mut self.header_spans;
        spans.clear();
        self.decoder
            .decode(block, self.cfg.max_header_list_size as usize, &mut |name: &[u8], value: &[u8]| {
                spans.push((arena.len(), name.len(), value.len()));
                arena.extend_from_slice(name);
                arena.extend_from_slice(value);
            })
            .map_err(|_| ConnError::Compression)?;
        let arena = self.header_arena.split().freeze();
        let mut fields = self.spare_lists.pop().unwrap_or_default();
        fields.extend(
            self.header_spans
                .iter()
                .map(|&(at, name, value)| (arena.slice(at..at + name), arena.slice(at + name..at + name + value))),
        );
        Ok(fields)
    }

    /// Give back a header list from an [`Event::Headers`] once it is read:
    /// the next decoded block reuses its storage.
    pub fn recycle_headers(&mut self, mut fields: HeaderList) {
        fields.clear();
        if self.spare_lists.len() < SPARE_LISTS {
            self.spare_lists.push(fields);
        }
    }

    fn on_rst_stream(&mut self, stream_id: u32, code: ErrorCode) -> Result<(), ConnError> {
        match self.lookup(stream_id) {
            Lookup::Idle => Err(ConnError::Protocol(ErrorCode::PROTOCOL_ERROR, "RST_STREAM on an idle stream")),
            Lookup::Closed => Ok(()),
            Lookup::Live(key) => {
                let response_complete = self.streams[key].state.response_complete_id().is_some();
                if response_complete && code == ErrorCode::NO_ERROR {
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
                    for (_, s) in self.streams.iter_mut().filter(|(_, s)| !s.state.is_closed()) {
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
        let keys: Vec<Key> = self.streams.iter().map(|(key, _)| key).collect();
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
        let refused: Vec<Key> = self
            .streams
            .iter()
            .filter(|(_, s)| !s.state.is_closed() && s.state.id().is_none_or(|id| id > last))
            .map(|(key, _)| key)
            .collect();
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
    //
    // The transitions themselves are `State`'s methods (`src/h2/state.rs`);
    // here is what the connection does around them.

    /// The peer broke a stream rule: RST_STREAM and report (§5.4.2).
    fn stream_error(&mut self, key: Key, code: ErrorCode) {
        self.terminate(key, Some(code), Some((code, false)));
    }

    /// After END_STREAM went either way: if that was the second one, the
    /// stream is closed (§5.1) and the connection forgets it.
    fn after_end_stream(&mut self, key: Key, end: EndStream) {
        if let EndStream::Closed { id } = end {
            self.forget(key, Some(id), None, None);
        }
    }

    /// End a stream early (§5.1: any state → closed): optionally send
    /// RST_STREAM `rst`, optionally report `Reset { code, retryable }`, then
    /// `Closed`. Nothing for a stream already closed.
    fn terminate(&mut self, key: Key, rst: Option<ErrorCode>, report: Option<(ErrorCode, bool)>) {
        let Some(s) = self.streams.get_mut(key) else {
            return;
        };
        if s.state.is_closed() {
            return;
        }
        let id = s.state.close();
        self.forget(key, id, rst, report);
    }

    /// The bookkeeping for a stream that just closed and had `id` (`None`:
    /// it was still waiting for a slot): drop its queue, unmap or unqueue
    /// it, send `rst`, report, and hand its slot on.
    fn forget(&mut self, key: Key, id: Option<u32>, rst: Option<ErrorCode>, report: Option<(ErrorCode, bool)>) {
        self.drop_send_queue(key);
        match id {
            None => self.waiting.retain(|&k| k != key),
            Some(id) => {
                self.ids.remove(&id);
                self.open_count -= 1;
                if let Some(code) = rst {
                    if self.fatal.is_none() {
                        frame::encode_rst_stream(&mut self.scratch, id, code);
                        self.resets_sent += 1;
                    }
                }
            }
        }
        if let Some((code, retryable)) = report {
            self.events.push_back(Event::Reset { stream: self.handle(key), code, retryable });
        }
        self.events.push_back(Event::Closed { stream: self.handle(key) });
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
            let fields = self.streams[key].state.take_head();
            self.activate(key, fields.iter().map(|(n, v)| (&n[..], &v[..])));
        }
    }

    fn accepting_streams(&self) -> bool {
        self.fatal.is_none() && !self.goaway_sent && self.goaway_received.is_none()
    }

    /// Assign the next id and queue the HEADERS (§5.1.1: ids are odd and
    /// increase, so they are handed out only here, in sending order).
    fn activate<'a>(&mut self, key: Key, fields: impl IntoIterator<Item = (&'a [u8], &'a [u8])>) {
        let id = self.next_stream_id;
        self.next_stream_id += 2;
        self.ids.insert(id, key);
        self.open_count += 1;
        let s = &mut self.streams[key];
        let end_stream = s.state.activate(id, s.send.is_empty());
        self.hpack_buf.clear();
        self.encoder.encode(fields, &mut self.hpack_buf);
        self.scratch_room(self.hpack_buf.len() + 2 * frame::FRAME_HEAD_LEN);
        frame::encode_headers(&mut self.scratch, id, &self.hpack_buf, end_stream, self.peer.max_frame_size);
        self.mark_ready(key);
    }

    /// WINDOW_UPDATEs due on the connection and on stream `key`.
    /// Room for `n` more octets of frames in `scratch` without allocating
    /// in the steady state (the pool hands back a written-out buffer).
    fn scratch_room(&mut self, n: usize) {
        if self.scratch.capacity() - self.scratch.len() < n {
            self.scratch_chunks.refill(&mut self.scratch, n, SCRATCH_CHUNK);
        }
    }

    fn queue_window_updates(&mut self, key: Option<Key>) {
        if self.fatal.is_some() {
            return;
        }
        self.scratch_room(2 * (frame::FRAME_HEAD_LEN + 4));
        if let Some(s) = key.and_then(|key| self.streams.get_mut(key)) {
            // Not once the peer can send no more on it (§6.9).
            if let Some(id) = s.state.receiving_id() {
                if let Some(n) = s.recv_window.take_update() {
                    frame::encode_window_update(&mut self.scratch, id, n);
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
        let live: Vec<(Key, bool)> = self
            .streams
            .iter()
            .filter(|(_, s)| !s.state.is_closed())
            .map(|(key, s)| (key, s.state.id().is_none()))
            .collect();
        for (key, never_sent) in live {
            self.terminate(key, None, Some((err.code(), never_sent)));
        }
        self.sends.clear_ready();
    }

    // ----- public stream API -------------------------------------------------

    /// The slot of a live handle; `None` for a stale one (its stream was
    /// closed and polled, the slot perhaps reused).
    fn key(&self, stream: StreamRef) -> Option<Key> {
        self.streams.get(stream.key).filter(|s| s.serial == stream.serial).map(|_| stream.key)
    }

    /// The caller's handle of the stream in slot `key`.
    fn handle(&self, key: Key) -> StreamRef {
        StreamRef { key, serial: self.streams[key].serial }
    }

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
        let slot_free = self.open_count < self.peer.max_concurrent_streams as usize;
        let send_now = self.waiting.is_empty() && slot_free;
        // Only a stream that has to wait keeps a copy of its head.
        let head = if send_now {
            HeaderList::new()
        } else {
            fields.iter().map(|(n, v)| (Bytes::copy_from_slice(n), Bytes::copy_from_slice(v))).collect()
        };
        let serial = self.next_serial;
        self.next_serial = serial.wrapping_add(1);
        let key = self.streams.insert(Stream {
            serial,
            state: State::queued(head, end_stream),
            send: SendQueue::new(&mut self.sends),
            send_window: SendWindow::new(self.peer.initial_window_size),
            recv_window: RecvWindow::new(self.cfg.stream_window),
        });
        if send_now {
            self.activate(key, fields.iter().copied());
        } else {
            self.waiting.push_back(key);
        }
        Ok(StreamRef { key, serial })
    }

    /// Abandon the stream; `Closed` follows. RST_STREAM is sent only if the
    /// server may still be working on it: a stream that never got an id
    /// needs nothing, and one whose response is complete is finished with
    /// an empty END_STREAM DATA instead, which costs none of the peer's
    /// reset allowance (docs/noslated-protocol.md §3.4). Ended streams are never reset.
    pub fn reset(&mut self, stream: StreamRef, code: ErrorCode) {
        let Some(stream) = self.key(stream) else {
            return;
        };
        let s = &self.streams[stream];
        if let Some(id) = s.state.response_complete_id() {
            if self.fatal.is_none() {
                // Half-closed (remote): END_STREAM closes it (§5.1).
                self.drop_send_queue(stream);
                self.emit_data(stream, id, 0, true);
                return;
            }
        }
        self.terminate(stream, Some(code), None);
    }

    /// The caller consumed `n` octets of received DATA on `stream`.
    pub fn release(&mut self, stream: StreamRef, n: usize) {
        let Some(stream) = self.key(stream) else {
            return;
        };
        let s = &mut self.streams[stream];
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
        let waiting: Vec<Key> = self.waiting.iter().copied().collect();
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
