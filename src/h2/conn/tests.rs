//! Unit tests of the client connection: a scripted server (`FakeServer`)
//! drives [`ClientConnection`] frame by frame and checks what it writes.

use super::*;
use crate::h2::frame::{kind, FrameHead, FRAME_HEAD_LEN};

const BIG: u32 = MAX_MAX_FRAME_SIZE;

fn req() -> Vec<(&'static [u8], &'static [u8])> {
    vec![
        (b":method", b"POST"),
        (b":scheme", b"http"),
        (b":path", b"/noslated.data.PushServer/invoke"),
        (b":authority", b"localhost"),
        (b"content-type", b"application/grpc"),
        (b"te", b"trailers"),
    ]
}

/// A scripted server: encodes frames with our own encoders and a real
/// HPACK encoder, feeds them to the client and decodes what the client
/// writes.
struct FakeServer {
    conn: ClientConnection,
    enc: hpack::Encoder,
    dec: hpack::Decoder,
    wire: BytesMut,
}

impl FakeServer {
    /// A client whose handshake has been checked and written.
    fn start(cfg: Config) -> FakeServer {
        let conn = ClientConnection::new(cfg);
        let mut server =
            FakeServer { conn, enc: hpack::Encoder::new(), dec: hpack::Decoder::new(4096), wire: BytesMut::new() };
        server.drain_output();
        assert!(server.wire.starts_with(PREFACE));
        server.wire.advance(PREFACE.len());
        server
    }

    /// Handshake completed with `settings` from the server.
    fn ready(cfg: Config, settings: &[(u16, u32)]) -> FakeServer {
        let mut server = FakeServer::start(cfg);
        server.frames(); // client SETTINGS + WINDOW_UPDATE
        server.settings(settings).unwrap();
        assert_eq!(server.frames(), vec![Frame::Settings { ack: true, params: vec![] }]);
        server
    }

    fn drain_output(&mut self) {
        while self.conn.has_output() {
            let mut iov = [IoSlice::new(&[]); 8];
            let n = self.conn.fill_iovecs(&mut iov);
            assert!(n > 0);
            let mut written = 0;
            for slice in &iov[..n] {
                self.wire.extend_from_slice(slice);
                written += slice.len();
            }
            self.conn.advance_output(written);
        }
        assert_eq!(self.conn.output_len(), 0);
    }

    /// Frames the client wrote since the last call.
    fn frames(&mut self) -> Vec<Frame> {
        self.drain_output();
        let mut out = Vec::new();
        while let Some(f) = decode_frame(&mut self.wire, BIG).expect("client frame is valid") {
            out.push(f);
        }
        assert!(self.wire.is_empty(), "client wrote a partial frame");
        out
    }

    fn feed(&mut self, f: &Frame) -> Result<(), ConnError> {
        let mut b = BytesMut::new();
        f.encode(&mut b);
        self.conn.recv(&mut b)
    }

    fn settings(&mut self, params: &[(u16, u32)]) -> Result<(), ConnError> {
        self.feed(&Frame::Settings { ack: false, params: params.to_vec() })
    }

    fn block(&mut self, fields: &[(&str, &str)]) -> Bytes {
        let mut block = Vec::new();
        self.enc.encode(fields.iter().map(|(n, v)| (n.as_bytes(), v.as_bytes())), &mut block);
        Bytes::from(block)
    }

    fn headers(&mut self, id: u32, fields: &[(&str, &str)], end: bool) -> Result<(), ConnError> {
        let block = self.block(fields);
        self.feed(&Frame::Headers { stream_id: id, block, end_stream: end, end_headers: true })
    }

    fn data(&mut self, id: u32, payload: &[u8], end: bool) -> Result<(), ConnError> {
        self.feed(&Frame::Data {
            stream_id: id,
            payload: Bytes::copy_from_slice(payload),
            end_stream: end,
            flow_len: payload.len() as u32,
        })
    }

    fn window_update(&mut self, id: u32, increment: u32) -> Result<(), ConnError> {
        self.feed(&Frame::WindowUpdate { stream_id: id, increment })
    }

    fn events(&mut self) -> Vec<Event> {
        std::iter::from_fn(|| self.conn.poll_event()).collect()
    }

    fn decode(&mut self, block: &[u8]) -> Vec<(String, String)> {
        let mut out = Vec::new();
        self.dec
            .decode(block, 1 << 20, &mut |n, v| {
                out.push((String::from_utf8_lossy(n).into_owned(), String::from_utf8_lossy(v).into_owned()))
            })
            .unwrap();
        out
    }

    /// Open a stream and check its HEADERS frame.
    fn open(&mut self, end: bool) -> (StreamRef, u32) {
        let stream = self.conn.open(&req(), end).unwrap();
        let frames = self.frames();
        let [Frame::Headers { stream_id, block, end_stream, end_headers: true }] = &frames[..] else {
            panic!("expected one HEADERS, got {frames:?}");
        };
        assert_eq!(*end_stream, end);
        let fields = self.decode(block);
        assert_eq!(fields[2], (":path".into(), "/noslated.data.PushServer/invoke".into()));
        (stream, *stream_id)
    }
}

fn ok_head() -> [(&'static str, &'static str); 2] {
    [(":status", "200"), ("content-type", "application/grpc+proto")]
}

fn trailers() -> [(&'static str, &'static str); 2] {
    [("grpc-status", "0"), ("grpc-message", "OK")]
}

/// Sum of DATA payloads per stream id, and whether END_STREAM was seen.
fn data_of(frames: &[Frame], id: u32) -> (usize, bool) {
    let mut n = 0;
    let mut end = false;
    for f in frames {
        if let Frame::Data { stream_id, payload, end_stream, .. } = f {
            if *stream_id == id {
                n += payload.len();
                end |= *end_stream;
            }
        }
    }
    (n, end)
}

fn max_data_frame(frames: &[Frame]) -> usize {
    frames
        .iter()
        .filter_map(|f| match f {
            Frame::Data { payload, .. } => Some(payload.len()),
            _ => None,
        })
        .max()
        .unwrap_or(0)
}

fn has_goaway(frames: &[Frame], code: ErrorCode) -> bool {
    frames.iter().any(|f| matches!(f, Frame::GoAway { code: c, .. } if *c == code))
}

#[test]
fn handshake() {
    let mut server = FakeServer::start(Config::default());
    assert!(server.conn.is_open_for_streams(), "handshake written");
    let frames = server.frames();
    assert_eq!(
        frames,
        vec![
            Frame::Settings {
                ack: false,
                params: vec![
                    (setting::ENABLE_PUSH, 0),
                    (setting::INITIAL_WINDOW_SIZE, 1 << 20),
                    (setting::MAX_FRAME_SIZE, 16_384),
                    (setting::HEADER_TABLE_SIZE, 4096),
                    (setting::MAX_HEADER_LIST_SIZE, 65_536),
                ],
            },
            Frame::WindowUpdate { stream_id: 0, increment: (16 << 20) - 65_535 },
        ]
    );
    assert!(!server.conn.peer_settings_received());
    // Node's observed preface: an empty SETTINGS (docs/noslated-protocol.md §3.1).
    server.settings(&[]).unwrap();
    assert!(server.conn.peer_settings_received());
    assert_eq!(server.frames(), vec![Frame::Settings { ack: true, params: vec![] }]);
    // Our SETTINGS acknowledged: nothing to answer.
    server.feed(&Frame::Settings { ack: true, params: vec![] }).unwrap();
    assert!(server.frames().is_empty());
    assert!(server.events().is_empty());
}

#[test]
fn handshake_not_written_is_not_open() {
    let conn = ClientConnection::new(Config::default());
    assert!(!conn.is_open_for_streams());
    assert!(conn.has_output());
}

#[test]
fn server_preface_must_be_settings() {
    let mut server = FakeServer::start(Config::default());
    server.frames();
    let err = server.feed(&Frame::Ping { ack: false, payload: [0; 8] }).unwrap_err();
    assert_eq!(err.code(), ErrorCode::PROTOCOL_ERROR);
    assert!(has_goaway(&server.frames(), ErrorCode::PROTOCOL_ERROR));
    assert!(!server.conn.is_open_for_streams());
    // Every later call reports the same error.
    assert_eq!(server.settings(&[]), Err(err));
}

#[test]
fn request_response_trailers() {
    let mut server = FakeServer::ready(Config::default(), &[]);
    let (stream, id) = server.open(false);
    assert_eq!(id, 1);
    server.conn.send_data(stream, Bytes::from_static(b"\0\0\0\0\x02hi"));
    server.conn.send_end(stream);
    // DATA goes out as soon as it is queued, so the end that follows
    // is an empty DATA frame.
    let frames = server.frames();
    assert_eq!(
        frames,
        vec![
            Frame::Data {
                stream_id: 1,
                payload: Bytes::from_static(b"\0\0\0\0\x02hi"),
                end_stream: false,
                flow_len: 7,
            },
            Frame::Data { stream_id: 1, payload: Bytes::new(), end_stream: true, flow_len: 0 },
        ]
    );
    assert_eq!(server.conn.queued(stream), 0);

    server.headers(1, &ok_head(), false).unwrap();
    server.data(1, b"\0\0\0\0\x01x", false).unwrap();
    server.headers(1, &trailers(), true).unwrap();
    let events = server.events();
    assert_eq!(events.len(), 4, "{events:?}");
    let Event::Headers { fields, end_stream: false, .. } = &events[0] else { panic!("{events:?}") };
    assert_eq!(&fields[0].0[..], b":status");
    assert_eq!(&fields[0].1[..], b"200");
    assert_eq!(events[1], Event::Data { stream, data: Bytes::from_static(b"\0\0\0\0\x01x"), end_stream: false });
    let Event::Headers { fields, end_stream: true, .. } = &events[2] else { panic!("{events:?}") };
    assert_eq!(&fields[0].0[..], b"grpc-status");
    assert_eq!(events[3], Event::Closed { stream });
    assert_eq!(server.conn.active_streams(), 0);
    // Finished normally: never reset.
    server.conn.reset(stream, ErrorCode::CANCEL);
    assert!(server.frames().is_empty());
    assert_eq!(server.conn.resets_sent(), 0);
    // Late frames on the closed stream are ignored.
    server.data(1, b"late", false).unwrap();
    server.headers(1, &trailers(), true).unwrap();
    assert!(server.events().is_empty());
    // The next stream gets the next odd id.
    assert_eq!(server.open(true).1, 3);
}

#[test]
fn trailers_only_response() {
    let mut server = FakeServer::ready(Config::default(), &[]);
    let (stream, _) = server.open(true);
    server.headers(1, &[(":status", "200"), ("grpc-status", "12"), ("grpc-message", "x")], true).unwrap();
    let events = server.events();
    assert!(matches!(
        &events[..],
        [Event::Headers { end_stream: true, .. }, Event::Closed { stream: s }] if *s == stream
    ));
}

#[test]
fn informational_heads_are_skipped_and_bad_heads_reset() {
    let mut server = FakeServer::ready(Config::default(), &[]);
    let (a, _) = server.open(true);
    server.headers(1, &[(":status", "100")], false).unwrap();
    assert!(server.events().is_empty());
    server.headers(1, &ok_head(), false).unwrap();
    // A second HEADERS without END_STREAM is malformed (§8.1).
    server.headers(1, &[("x", "y")], false).unwrap();
    let events = server.events();
    assert!(matches!(events[0], Event::Headers { .. }));
    assert_eq!(events[1], Event::Reset { stream: a, code: ErrorCode::PROTOCOL_ERROR, retryable: false });
    assert_eq!(events[2], Event::Closed { stream: a });
    assert_eq!(server.frames(), vec![Frame::RstStream { stream_id: 1, code: ErrorCode::PROTOCOL_ERROR }]);
    // No :status in the head.
    let (b, _) = server.open(true);
    server.headers(3, &[("content-type", "x")], false).unwrap();
    assert!(matches!(
        server.events()[0],
        Event::Reset { stream, code: ErrorCode::PROTOCOL_ERROR, .. } if stream == b
    ));
    // DATA before any head.
    server.frames();
    let (c, _) = server.open(true);
    server.data(5, b"x", false).unwrap();
    assert!(matches!(
        server.events()[0],
        Event::Reset { stream, code: ErrorCode::PROTOCOL_ERROR, .. } if stream == c
    ));
    assert_eq!(server.conn.resets_sent(), 3);
}

#[test]
fn data_queued_with_more_shares_a_frame_with_what_follows() {
    let mut server = FakeServer::ready(Config::default(), &[]);
    let (stream, id) = server.open(false);
    server.conn.send_data_more(stream, Bytes::from_static(b"prefix"));
    assert!(server.frames().is_empty(), "nothing framed yet");
    server.conn.send_data_more(stream, Bytes::from_static(b"-body"));
    server.conn.send_end(stream);
    let frames = server.frames();
    assert_eq!(frames.len(), 1, "{frames:?}");
    assert!(matches!(&frames[0], Frame::Data { stream_id, payload, end_stream: true, .. }
        if *stream_id == id && &payload[..] == b"prefix-body"));
    // flush_stream frames without ending; with nothing queued it is a no-op.
    let (other, id2) = server.open(false);
    server.conn.flush_stream(other);
    assert!(server.frames().is_empty());
    server.conn.send_data_more(other, Bytes::from_static(b"a"));
    server.conn.send_data_more(other, Bytes::from_static(b"b"));
    server.conn.flush_stream(other);
    assert_eq!(data_of(&server.frames(), id2), (2, false));
}

#[test]
fn send_capacity_follows_windows_allowance_and_output_budget() {
    let cfg = Config { output_budget: 40_000, queue_allowance: 16_384, ..Config::default() };
    let mut server = FakeServer::ready(cfg, &[]);
    let (stream, id) = server.open(false);
    // Default windows (65,535 each): capacity is what they take at once.
    assert_eq!(server.conn.send_capacity(stream), 65_535);
    server.conn.send_data(stream, Bytes::from(vec![1u8; 65_535]));
    // Framed but not written: over the output budget, nothing more.
    assert_eq!(server.conn.send_capacity(stream), 0);
    server.conn.want_capacity(stream);
    assert_eq!(data_of(&server.frames(), id), (65_535, false));
    // Written: the windows are closed, but a stream may queue its
    // allowance so that it has bytes in the round-robin when they open.
    assert_eq!(server.conn.send_capacity(stream), 16_384);
    assert_eq!(server.events(), vec![Event::SendReady { stream }], "told when the output drained");
    server.conn.send_data(stream, Bytes::from(vec![2u8; 16_384]));
    assert_eq!(server.conn.send_capacity(stream), 0);
    server.conn.want_capacity(stream);
    // The stream window alone does not open the connection's.
    server.window_update(id, 100_000).unwrap();
    assert!(server.events().is_empty());
    assert_eq!(server.conn.send_capacity(stream), 0);
    server.window_update(0, 30_000).unwrap();
    assert_eq!(data_of(&server.frames(), id), (16_384, false));
    // 13,616 left in the connection window; the allowance is more.
    assert_eq!(server.conn.send_capacity(stream), 16_384);
    assert_eq!(server.events(), vec![Event::SendReady { stream }]);
    // Ended streams have none; a second request is not needed.
    server.conn.want_capacity(stream);
    server.conn.want_capacity(stream);
    server.conn.send_end(stream);
    assert_eq!(server.conn.send_capacity(stream), 0);
    server.window_update(0, 1000).unwrap();
    assert!(server.events().is_empty(), "no SendReady after the end");
}

#[test]
fn settle_tells_a_stream_activated_by_a_reset() {
    let mut server = FakeServer::ready(Config::default(), &[(setting::MAX_CONCURRENT_STREAMS, 1)]);
    let (a, _) = server.open(false);
    // B waits for a concurrency slot: it may queue its allowance only.
    let b = server.conn.open(&req(), false).unwrap();
    assert_eq!(server.conn.send_capacity(b), 16_384);
    server.conn.send_data(b, Bytes::from(vec![5u8; 16_384]));
    assert_eq!(server.conn.send_capacity(b), 0);
    server.conn.want_capacity(b);
    // Cancelling A gives B its id; nothing arrives from the peer.
    server.conn.reset(a, ErrorCode::CANCEL);
    assert!(!server.events().iter().any(|e| matches!(e, Event::SendReady { .. })));
    server.conn.settle();
    assert_eq!(server.events(), vec![Event::SendReady { stream: b }]);
    let frames = server.frames();
    assert!(frames.iter().any(|f| matches!(f, Frame::Headers { stream_id: 3, .. })), "{frames:?}");
    assert_eq!(data_of(&frames, 3), (16_384, false));
}

#[test]
fn queue_budget_bounds_what_all_streams_queue_beyond_their_windows() {
    let cfg = Config { queue_allowance: 16_384, queue_budget: 20_000, ..Config::default() };
    let mut server = FakeServer::ready(cfg, &[]);
    let streams: Vec<(StreamRef, u32)> = (0..3).map(|_| server.open(false)).collect();
    // Use up the connection window: from here on only allowances queue.
    server.conn.send_data(streams[0].0, Bytes::from(vec![0u8; 65_535]));
    server.frames();
    for &(s, _) in &streams {
        assert_eq!(server.conn.send_capacity(s), 16_384);
    }
    server.conn.send_data(streams[1].0, Bytes::from(vec![0u8; 16_384]));
    // 16,384 queued in all, under the budget: the others still may.
    assert_eq!(server.conn.send_capacity(streams[2].0), 16_384);
    server.conn.send_data(streams[2].0, Bytes::from(vec![0u8; 4_000]));
    // 20,384: over the budget. Nobody gets an allowance now.
    for &(s, _) in &streams {
        assert_eq!(server.conn.send_capacity(s), 0);
        server.conn.want_capacity(s);
    }
    // The window opens for stream 1's queue: the budget frees up.
    server.window_update(0, 16_384).unwrap();
    assert_eq!(data_of(&server.frames(), streams[1].1), (16_384, false));
    assert_eq!(server.conn.send_capacity(streams[0].0), 16_384);
    assert_eq!(server.conn.send_capacity(streams[2].0), 16_384 - 4_000);
    let told = server.events();
    assert_eq!(told.len(), 3, "{told:?}");
}

#[test]
fn capacity_waiters_are_told_oldest_first_as_the_budget_allows() {
    let cfg = Config { output_budget: 50_000, queue_allowance: 16_384, ..Config::default() };
    let mut server = FakeServer::ready(cfg, &[]);
    server.window_update(0, 1 << 24).unwrap();
    let streams: Vec<StreamRef> = (0..4).map(|_| server.open(false).0).collect();
    let fillers: Vec<StreamRef> = (0..3).map(|_| server.open(false).0).collect();
    let fill = |server: &mut FakeServer, i: usize| {
        server.conn.send_data(fillers[i], Bytes::from(vec![0u8; 65_535]));
    };
    fill(&mut server, 0);
    for &s in &streams {
        assert_eq!(server.conn.send_capacity(s), 0);
        server.conn.want_capacity(s);
    }
    // Written: 50,000 of budget free, shared out as up to 64 KiB per
    // stream told: the oldest (capacity 65,535 each) takes it all.
    server.frames();
    assert_eq!(server.events(), vec![Event::SendReady { stream: streams[0] }]);
    // The others keep their place, and come first next time round.
    fill(&mut server, 1);
    server.frames();
    assert_eq!(server.events(), vec![Event::SendReady { stream: streams[1] }]);
    // A stream that queued its allowance counts for that much only.
    server.conn.send_data(streams[1], Bytes::from(vec![0u8; 65_535 + 16_384]));
    server.conn.want_capacity(streams[1]);
    fill(&mut server, 2);
    server.frames();
    assert_eq!(server.events(), vec![Event::SendReady { stream: streams[2] }]);
    assert_eq!(server.conn.send_capacity(streams[1]), 0);
    assert_eq!(server.conn.send_capacity(streams[3]), 65_535);
}

#[test]
fn send_blocked_by_stream_and_connection_windows() {
    let mut server = FakeServer::ready(Config::default(), &[]);
    let (stream, id) = server.open(false);
    let body = Bytes::from(vec![7u8; 100_000]);
    server.conn.send_data(stream, body);
    let frames = server.frames();
    assert_eq!(data_of(&frames, id), (65_535, false));
    assert!(max_data_frame(&frames) <= 16_384);
    assert_eq!(server.conn.queued(stream), 100_000 - 65_535);
    server.conn.send_end(stream);
    assert!(server.frames().is_empty());

    // The stream window alone does not help: the connection is closed.
    server.window_update(id, 50_000).unwrap();
    assert!(server.frames().is_empty());
    // Opening the connection window sends what the stream allows.
    server.window_update(0, 10_000).unwrap();
    assert_eq!(data_of(&server.frames(), id), (10_000, false));
    assert!(server.events().is_empty(), "no SendReady once the end is queued");
    server.window_update(0, 1 << 20).unwrap();
    let frames = server.frames();
    assert_eq!(data_of(&frames, id), (100_000 - 75_535, true));
    assert_eq!(server.conn.queued(stream), 0);
}

#[test]
fn send_ready_after_draining_below_low_water() {
    let mut server = FakeServer::ready(Config::default(), &[]);
    let (stream, id) = server.open(false);
    server.conn.send_data(stream, Bytes::from(vec![1u8; 200_000]));
    assert_eq!(server.conn.queued(stream), 200_000 - 65_535);
    assert!(server.events().is_empty());
    server.window_update(id, 1 << 20).unwrap();
    server.window_update(0, 100_000).unwrap();
    // 34465 left: below the low-water mark.
    assert_eq!(server.conn.queued(stream), 34_465);
    assert_eq!(server.events(), vec![Event::SendReady { stream }]);
    // A stream blocked by its window is told when it drains again.
    server.window_update(0, 1 << 20).unwrap();
    assert_eq!(server.conn.queued(stream), 0);
    assert!(server.events().is_empty());
    server.frames();
    let (other, id2) = server.open(false);
    server.conn.send_data(other, Bytes::from(vec![2u8; 65_535 + 10]));
    assert_eq!(server.conn.queued(other), 10);
    server.window_update(id2, 10).unwrap();
    assert_eq!(server.events(), vec![Event::SendReady { stream: other }]);
}

#[test]
fn initial_window_change_can_go_negative() {
    let mut server = FakeServer::ready(Config::default(), &[]);
    server.window_update(0, 1 << 20).unwrap();
    let (stream, id) = server.open(false);
    server.conn.send_data(stream, Bytes::from(vec![0u8; 70_000]));
    assert_eq!(data_of(&server.frames(), id), (65_535, false));
    // Shrink to 1000: the window becomes 1000 - 65535 = -64535.
    server.settings(&[(setting::INITIAL_WINDOW_SIZE, 1000)]).unwrap();
    server.frames(); // ACK
    server.window_update(id, 64_535).unwrap();
    assert!(server.frames().is_empty(), "window is exactly 0");
    server.window_update(id, 500).unwrap();
    assert_eq!(data_of(&server.frames(), id), (500, false));
    // Growing the initial window grows open streams' windows too.
    server.settings(&[(setting::INITIAL_WINDOW_SIZE, 5000)]).unwrap();
    let frames = server.frames();
    assert_eq!(data_of(&frames, id), (3_965, false));
    assert!(frames.contains(&Frame::Settings { ack: true, params: vec![] }));
    // A new stream starts with the current initial window.
    let (s2, id2) = server.open(false);
    server.conn.send_data(s2, Bytes::from(vec![0u8; 6000]));
    assert_eq!(data_of(&server.frames(), id2), (5000, false));
}

#[test]
fn initial_window_overflow_is_a_connection_error() {
    let mut server = FakeServer::ready(Config::default(), &[]);
    let (_stream, id) = server.open(false);
    server.window_update(id, MAX_WINDOW_SIZE - 65_535).unwrap();
    let err = server.settings(&[(setting::INITIAL_WINDOW_SIZE, 65_536)]).unwrap_err();
    assert_eq!(err.code(), ErrorCode::FLOW_CONTROL_ERROR);
}

#[test]
fn window_update_overflow() {
    let mut server = FakeServer::ready(Config::default(), &[]);
    let (stream, id) = server.open(false);
    server.window_update(id, MAX_WINDOW_SIZE - 65_535).unwrap();
    server.window_update(id, 1).unwrap();
    let events = server.events();
    assert_eq!(events[0], Event::Reset { stream, code: ErrorCode::FLOW_CONTROL_ERROR, retryable: false });
    assert!(server.frames().contains(&Frame::RstStream { stream_id: id, code: ErrorCode::FLOW_CONTROL_ERROR }));
    let err = server.window_update(0, MAX_WINDOW_SIZE).unwrap_err();
    assert_eq!(err.code(), ErrorCode::FLOW_CONTROL_ERROR);
    assert!(has_goaway(&server.frames(), ErrorCode::FLOW_CONTROL_ERROR));
}

#[test]
fn max_frame_size_respected() {
    for (peer_max, expected) in [(None, 16_384), (Some(20_000), 20_000)] {
        let settings: Vec<(u16, u32)> = peer_max
            .map(|m| (setting::MAX_FRAME_SIZE, m))
            .into_iter()
            .chain([(setting::INITIAL_WINDOW_SIZE, 1 << 20)])
            .collect();
        let mut server = FakeServer::ready(Config::default(), &settings);
        server.window_update(0, 1 << 20).unwrap();
        let (stream, id) = server.open(false);
        // Many small segments and one large one.
        for _ in 0..100 {
            server.conn.send_data(stream, Bytes::from(vec![3u8; 1000]));
        }
        server.conn.send_data(stream, Bytes::from(vec![4u8; 100_000]));
        server.conn.send_end(stream);
        let frames = server.frames();
        assert_eq!(max_data_frame(&frames), expected);
        assert_eq!(data_of(&frames, id), (200_000, true));
    }
}

#[test]
fn large_request_headers_use_continuation() {
    let mut server = FakeServer::ready(Config::default(), &[]);
    let value = vec![b'v'; 40_000];
    let mut fields = req();
    fields.push((b"x-big", &value));
    server.conn.open(&fields, true).unwrap();
    let frames = server.frames();
    assert!(matches!(frames[0], Frame::Headers { end_headers: false, end_stream: true, .. }));
    assert!(matches!(frames[1], Frame::Continuation { end_headers: false, .. }));
    assert!(matches!(frames[2], Frame::Continuation { end_headers: true, .. }));
    assert_eq!(frames.len(), 3);
}

#[test]
fn peer_header_list_limit() {
    let mut server = FakeServer::ready(Config::default(), &[(setting::MAX_HEADER_LIST_SIZE, 100)]);
    assert_eq!(server.conn.open(&req(), true), Err(OpenError::HeaderListTooLarge));
    assert!(server.frames().is_empty());
}

#[test]
fn max_concurrent_streams_queues_and_assigns_ids_late() {
    let mut server = FakeServer::ready(Config::default(), &[(setting::MAX_CONCURRENT_STREAMS, 1)]);
    let (a, id_a) = server.open(false);
    assert_eq!(id_a, 1);
    let b = server.conn.open(&req(), false).unwrap();
    server.conn.send_data(b, Bytes::from_static(b"queued"));
    server.conn.send_end(b);
    assert_eq!(server.conn.active_streams(), 2);
    assert_eq!(server.conn.queued(b), 6);
    assert!(server.frames().is_empty(), "second stream waits for a slot");
    // A third stream waits behind it.
    server.conn.open(&req(), true).unwrap();
    // Finish the first stream.
    server.conn.send_end(a);
    server.headers(1, &ok_head(), false).unwrap();
    server.headers(1, &trailers(), true).unwrap();
    let frames = server.frames();
    assert_eq!(frames.len(), 3, "{frames:?}");
    assert!(matches!(frames[0], Frame::Data { stream_id: 1, end_stream: true, .. }));
    assert!(matches!(frames[1], Frame::Headers { stream_id: 3, end_stream: false, .. }));
    assert_eq!(
        frames[2],
        Frame::Data { stream_id: 3, payload: Bytes::from_static(b"queued"), end_stream: true, flow_len: 6 }
    );
    assert_eq!(server.conn.active_streams(), 2);
    let events = server.events();
    assert_eq!(events.last(), Some(&Event::Closed { stream: a }));
    // Refusal of the active stream frees the slot for the third one.
    server.feed(&Frame::RstStream { stream_id: 3, code: ErrorCode::REFUSED_STREAM }).unwrap();
    assert_eq!(
        server.events(),
        vec![Event::Reset { stream: b, code: ErrorCode::REFUSED_STREAM, retryable: true }, Event::Closed { stream: b }]
    );
    let frames = server.frames();
    assert!(matches!(frames[..], [Frame::Headers { stream_id: 5, end_stream: true, .. }]));
}

#[test]
fn continuation_assembly() {
    let mut server = FakeServer::ready(Config::default(), &[]);
    let (stream, id) = server.open(true);
    let block = server.block(&[(":status", "200"), ("x-long", &"z".repeat(100))]);
    let (first, rest) = block.split_at(10);
    let (mid, last) = rest.split_at(20);
    server
        .feed(&Frame::Headers {
            stream_id: id,
            block: Bytes::copy_from_slice(first),
            end_stream: false,
            end_headers: false,
        })
        .unwrap();
    assert!(server.events().is_empty());
    for (part, end) in [(mid, false), (last, true)] {
        server
            .feed(&Frame::Continuation { stream_id: id, block: Bytes::copy_from_slice(part), end_headers: end })
            .unwrap();
    }
    let events = server.events();
    let [Event::Headers { stream: s, fields, end_stream: false }] = &events[..] else {
        panic!("{events:?}");
    };
    assert_eq!(*s, stream);
    assert_eq!(fields[1].1.len(), 100);
}

#[test]
fn interleaved_frame_in_header_block_is_a_connection_error() {
    let mut server = FakeServer::ready(Config::default(), &[]);
    let (stream, id) = server.open(true);
    let block = server.block(&ok_head());
    server.feed(&Frame::Headers { stream_id: id, block, end_stream: false, end_headers: false }).unwrap();
    let err = server.feed(&Frame::Ping { ack: false, payload: [0; 8] }).unwrap_err();
    assert_eq!(err.code(), ErrorCode::PROTOCOL_ERROR);
    assert!(has_goaway(&server.frames(), ErrorCode::PROTOCOL_ERROR));
    assert_eq!(
        server.events(),
        vec![Event::Reset { stream, code: ErrorCode::PROTOCOL_ERROR, retryable: false }, Event::Closed { stream }]
    );
    assert_eq!(server.conn.open(&req(), true), Err(OpenError::Closing));

    // CONTINUATION out of the blue.
    let mut server = FakeServer::ready(Config::default(), &[]);
    let (_, id) = server.open(true);
    let err = server.feed(&Frame::Continuation { stream_id: id, block: Bytes::new(), end_headers: true }).unwrap_err();
    assert_eq!(err.code(), ErrorCode::PROTOCOL_ERROR);
}

#[test]
fn empty_continuation_flood_is_bounded() {
    let mut server = FakeServer::ready(Config::default(), &[]);
    let (_, id) = server.open(true);
    server.feed(&Frame::Headers { stream_id: id, block: Bytes::new(), end_stream: false, end_headers: false }).unwrap();
    let mut result = Ok(());
    for _ in 0..=MAX_CONTINUATION_FRAMES {
        result = server.feed(&Frame::Continuation { stream_id: id, block: Bytes::new(), end_headers: false });
        if result.is_err() {
            break;
        }
    }
    assert_eq!(result.unwrap_err().code(), ErrorCode::ENHANCE_YOUR_CALM);
}

#[test]
fn goaway_resets_streams_above_last_id_as_retryable() {
    let mut server = FakeServer::ready(Config::default(), &[(setting::MAX_CONCURRENT_STREAMS, 2)]);
    let (a, _) = server.open(true);
    let (b, _) = server.open(true);
    let c = server.conn.open(&req(), true).unwrap(); // waits for a slot
    server
        .feed(&Frame::GoAway { last_stream_id: 1, code: ErrorCode::NO_ERROR, debug: Bytes::from_static(b"bye") })
        .unwrap();
    let events = server.events();
    assert_eq!(
        events[0],
        Event::GoAway { last_stream_id: 1, code: ErrorCode::NO_ERROR, debug: Bytes::from_static(b"bye") }
    );
    for s in [b, c] {
        assert!(events.contains(&Event::Reset { stream: s, code: ErrorCode::REFUSED_STREAM, retryable: true }));
        assert!(events.contains(&Event::Closed { stream: s }));
    }
    assert_eq!(events.len(), 5);
    assert!(!server.conn.is_open_for_streams());
    assert_eq!(server.conn.open(&req(), true), Err(OpenError::Closing));
    assert!(server.frames().is_empty(), "no RST_STREAM for refused streams");
    // Stream 1 carries on.
    server.headers(1, &ok_head(), false).unwrap();
    server.headers(1, &trailers(), true).unwrap();
    let events = server.events();
    assert_eq!(events.last(), Some(&Event::Closed { stream: a }));
    assert_eq!(server.conn.active_streams(), 0);
}

#[test]
fn connection_error_marks_unsent_streams_retryable() {
    let mut server = FakeServer::ready(Config::default(), &[(setting::MAX_CONCURRENT_STREAMS, 1)]);
    let (a, _) = server.open(true);
    let b = server.conn.open(&req(), true).unwrap();
    let err = server
        .feed(&Frame::PushPromise { stream_id: 1, promised_id: 2, block: Bytes::new(), end_headers: true })
        .unwrap_err();
    assert_eq!(err.code(), ErrorCode::PROTOCOL_ERROR);
    let events = server.events();
    assert!(events.contains(&Event::Reset { stream: a, code: ErrorCode::PROTOCOL_ERROR, retryable: false }));
    assert!(events.contains(&Event::Reset { stream: b, code: ErrorCode::PROTOCOL_ERROR, retryable: true }));
    let frames = server.frames();
    assert_eq!(frames.len(), 1, "only the GOAWAY: {frames:?}");
    assert!(has_goaway(&frames, ErrorCode::PROTOCOL_ERROR));
}

#[test]
fn rst_stream_from_server() {
    let mut server = FakeServer::ready(Config::default(), &[]);
    let (a, _) = server.open(false);
    let (b, _) = server.open(false);
    for (id, code) in [(1, ErrorCode::REFUSED_STREAM), (3, ErrorCode::CANCEL)] {
        server.feed(&Frame::RstStream { stream_id: id, code }).unwrap();
    }
    assert_eq!(
        server.events(),
        vec![
            Event::Reset { stream: a, code: ErrorCode::REFUSED_STREAM, retryable: true },
            Event::Closed { stream: a },
            Event::Reset { stream: b, code: ErrorCode::CANCEL, retryable: false },
            Event::Closed { stream: b },
        ]
    );
    // Never answered with a reset, and a closed stream is never reset.
    server.conn.reset(a, ErrorCode::CANCEL);
    assert!(server.frames().is_empty());
    assert_eq!(server.conn.resets_sent(), 0);
    // RST_STREAM on an idle stream is a connection error (§6.4).
    let err = server.feed(&Frame::RstStream { stream_id: 99, code: ErrorCode::CANCEL }).unwrap_err();
    assert_eq!(err.code(), ErrorCode::PROTOCOL_ERROR);
}

#[test]
fn rst_no_error_after_complete_response_is_not_a_failure() {
    let mut server = FakeServer::ready(Config::default(), &[]);
    let (stream, id) = server.open(false);
    server.conn.send_data(stream, Bytes::from_static(b"still sending"));
    server.frames();
    server.headers(id, &ok_head(), false).unwrap();
    server.headers(id, &trailers(), true).unwrap();
    server.feed(&Frame::RstStream { stream_id: id, code: ErrorCode::NO_ERROR }).unwrap();
    let events = server.events();
    assert!(!events.iter().any(|e| matches!(e, Event::Reset { .. })));
    assert_eq!(events.last(), Some(&Event::Closed { stream }));
}

#[test]
fn reset_discipline() {
    let mut server = FakeServer::ready(Config::default(), &[(setting::MAX_CONCURRENT_STREAMS, 2)]);
    // An active stream is cancelled with RST_STREAM.
    let (a, id_a) = server.open(false);
    server.conn.send_data(a, Bytes::from_static(b"abc"));
    server.frames();
    server.conn.reset(a, ErrorCode::CANCEL);
    assert_eq!(server.frames(), vec![Frame::RstStream { stream_id: id_a, code: ErrorCode::CANCEL }]);
    assert_eq!(server.events(), vec![Event::Closed { stream: a }]);
    assert_eq!(server.conn.resets_sent(), 1);
    server.conn.reset(a, ErrorCode::CANCEL); // handle gone: no-op
                                             // A response that is complete while we still send: END_STREAM, not RST.
    let (b, id_b) = server.open(false);
    server.conn.send_data(b, Bytes::from(vec![0u8; 100_000]));
    server.frames();
    server.headers(id_b, &ok_head(), false).unwrap();
    server.headers(id_b, &trailers(), true).unwrap();
    server.events();
    server.conn.reset(b, ErrorCode::CANCEL);
    assert_eq!(
        server.frames(),
        vec![Frame::Data { stream_id: id_b, payload: Bytes::new(), end_stream: true, flow_len: 0 }]
    );
    assert_eq!(server.events(), vec![Event::Closed { stream: b }]);
    assert_eq!(server.conn.resets_sent(), 1);
    // A stream still waiting for a slot leaves no trace on the wire.
    let _c = server.open(false);
    let _d = server.open(false);
    let e = server.conn.open(&req(), false).unwrap();
    server.conn.reset(e, ErrorCode::CANCEL);
    assert!(server.frames().is_empty());
    assert_eq!(server.events(), vec![Event::Closed { stream: e }]);
    assert_eq!(server.conn.resets_sent(), 1);
    assert_eq!(server.conn.active_streams(), 2);
}

#[test]
fn ping_is_acknowledged() {
    let mut server = FakeServer::ready(Config::default(), &[]);
    server.feed(&Frame::Ping { ack: false, payload: *b"pingpong" }).unwrap();
    assert_eq!(server.frames(), vec![Frame::Ping { ack: true, payload: *b"pingpong" }]);
    server.feed(&Frame::Ping { ack: true, payload: [1; 8] }).unwrap();
    assert!(server.frames().is_empty());
    server.conn.ping([9; 8]);
    assert_eq!(server.frames(), vec![Frame::Ping { ack: false, payload: [9; 8] }]);
}

#[test]
fn release_sends_window_update_after_half_window() {
    let cfg = Config { stream_window: 100_000, connection_window: 300_000, ..Config::default() };
    let mut server = FakeServer::ready(cfg, &[]);
    let (stream, id) = server.open(true);
    server.headers(id, &ok_head(), false).unwrap();
    for _ in 0..5 {
        server.data(id, &[1u8; 12_000], false).unwrap();
    }
    server.events();
    assert!(server.frames().is_empty(), "no credit without release");
    server.conn.release(stream, 30_000);
    server.conn.release(stream, 18_000);
    assert!(server.frames().is_empty(), "48000 < half of 100000");
    server.conn.release(stream, 2_000);
    assert_eq!(server.frames(), vec![Frame::WindowUpdate { stream_id: id, increment: 50_000 }]);
    // Over-release is clamped to what was received.
    server.conn.release(stream, 1_000_000);
    assert!(server.frames().is_empty());
    // The connection window (300000) is credited at 150000.
    for _ in 0..9 {
        server.data(id, &[1u8; 12_000], false).unwrap();
        let n = 12_000;
        server.conn.release(stream, n);
    }
    let frames = server.frames();
    assert!(frames.contains(&Frame::WindowUpdate { stream_id: 0, increment: 156_000 }), "{frames:?}");
}

#[test]
fn receive_window_violations() {
    let cfg = Config { stream_window: 1_000, connection_window: 65_535, ..Config::default() };
    let mut server = FakeServer::ready(cfg, &[]);
    let (a, id_a) = server.open(true);
    server.headers(id_a, &ok_head(), false).unwrap();
    server.data(id_a, &[0u8; 1_000], false).unwrap();
    server.data(id_a, &[0u8; 1], false).unwrap();
    let events = server.events();
    assert!(events.contains(&Event::Reset { stream: a, code: ErrorCode::FLOW_CONTROL_ERROR, retryable: false }));
    // Streams: each well under 1000, but together beyond 65535 on the
    // connection.
    let mut result = Ok(());
    let mut sent = 1_001;
    while result.is_ok() && sent <= 70_000 {
        server.frames();
        let (_, id) = server.open(true);
        server.headers(id, &ok_head(), false).unwrap();
        result = server.data(id, &[0u8; 900], false);
        sent += 900;
    }
    assert_eq!(result.unwrap_err().code(), ErrorCode::FLOW_CONTROL_ERROR);
}

#[test]
fn padding_counts_for_flow_control_and_is_credited() {
    let cfg = Config { stream_window: 1_000, connection_window: 65_535, ..Config::default() };
    let mut server = FakeServer::ready(cfg, &[]);
    let (stream, id) = server.open(true);
    server.headers(id, &ok_head(), false).unwrap();
    server.events();
    // 10 octets of data in a 200-octet frame.
    server
        .feed(&Frame::Data {
            stream_id: id,
            payload: Bytes::from_static(b"0123456789"),
            end_stream: false,
            flow_len: 200,
        })
        .unwrap();
    assert_eq!(
        server.events(),
        vec![Event::Data { stream, data: Bytes::from_static(b"0123456789"), end_stream: false }]
    );
    // 190 of padding credited at once, but below half: no update yet.
    assert!(server.frames().is_empty());
    server.conn.release(stream, 10);
    assert!(server.frames().is_empty(), "200 < 500");
    // Padding-only frames push the stream over half the window.
    for _ in 0..2 {
        server.feed(&Frame::Data { stream_id: id, payload: Bytes::new(), end_stream: false, flow_len: 256 }).unwrap();
    }
    assert!(server.events().is_empty(), "empty DATA is not an event");
    assert_eq!(server.frames(), vec![Frame::WindowUpdate { stream_id: id, increment: 712 }]);
    // The window is whole again (1000): one more octet is too many.
    server.data(id, &[0u8; 1_001], false).unwrap();
    assert_eq!(
        server.events(),
        vec![Event::Reset { stream, code: ErrorCode::FLOW_CONTROL_ERROR, retryable: false }, Event::Closed { stream }]
    );
}

#[test]
fn data_on_reset_stream_counts_for_the_connection_only() {
    let cfg = Config { connection_window: 65_535, ..Config::default() };
    let mut server = FakeServer::ready(cfg, &[]);
    let (stream, id) = server.open(true);
    server.conn.reset(stream, ErrorCode::CANCEL);
    server.frames();
    server.events();
    // 4 * 16000 > 65535 would overflow the connection window if the
    // discarded frames were not credited back.
    for _ in 0..8 {
        server.data(id, &[0u8; 16_000], false).unwrap();
    }
    assert!(server.events().is_empty());
    let updates: u32 = server
        .frames()
        .iter()
        .map(|f| match f {
            Frame::WindowUpdate { stream_id: 0, increment } => *increment,
            Frame::WindowUpdate { .. } => panic!("stream update for a reset stream"),
            _ => 0,
        })
        .sum();
    assert!(updates >= 96_000);
}

#[test]
fn peer_protocol_violations() {
    type Case = fn(&mut FakeServer) -> Result<(), ConnError>;
    let cases: [(Case, ErrorCode); 7] = [
        (|s| s.settings(&[(setting::ENABLE_PUSH, 1)]), ErrorCode::PROTOCOL_ERROR),
        (|s| s.data(2, b"x", false), ErrorCode::PROTOCOL_ERROR),
        (|s| s.data(7, b"x", false), ErrorCode::PROTOCOL_ERROR),
        (|s| s.headers(4, &ok_head(), false), ErrorCode::PROTOCOL_ERROR),
        (|s| s.window_update(9, 1), ErrorCode::PROTOCOL_ERROR),
        (
            |s| {
                s.feed(&Frame::Headers {
                    stream_id: 1,
                    block: Bytes::from_static(b"\xff\xff\xff\xff\xff\xff\xff"),
                    end_stream: false,
                    end_headers: true,
                })
            },
            ErrorCode::COMPRESSION_ERROR,
        ),
        (
            |s| {
                let mut b = BytesMut::new();
                b.extend_from_slice(&FrameHead { len: 20_000, kind: kind::DATA, flags: 0, stream_id: 1 }.encode());
                s.conn.recv(&mut b)
            },
            ErrorCode::FRAME_SIZE_ERROR,
        ),
    ];
    for (case, code) in cases {
        let mut server = FakeServer::ready(Config::default(), &[]);
        server.open(false);
        assert_eq!(case(&mut server).unwrap_err().code(), code);
        assert!(has_goaway(&server.frames(), code));
    }
}

#[test]
fn unknown_frames_and_priority_are_ignored() {
    let mut server = FakeServer::ready(Config::default(), &[]);
    let (_stream, id) = server.open(true);
    server
        .feed(&Frame::Unknown { kind: 0xbe, flags: 0xff, stream_id: id, payload: Bytes::from_static(b"???") })
        .unwrap();
    server.feed(&Frame::Priority { stream_id: 11, dependency: 0, exclusive: false, weight: 1 }).unwrap();
    // A bad PRIORITY on a live stream is a stream error.
    let mut b = BytesMut::new();
    b.extend_from_slice(&FrameHead { len: 4, kind: kind::PRIORITY, flags: 0, stream_id: id }.encode());
    b.extend_from_slice(&[0; 4]);
    server.conn.recv(&mut b).unwrap();
    assert!(matches!(
        server.events()[..],
        [Event::Reset { code: ErrorCode::FRAME_SIZE_ERROR, .. }, Event::Closed { .. }]
    ));
}

#[test]
fn close_sends_goaway_and_refuses_new_streams() {
    let mut server = FakeServer::ready(Config::default(), &[(setting::MAX_CONCURRENT_STREAMS, 1)]);
    let (a, _) = server.open(false);
    let b = server.conn.open(&req(), true).unwrap();
    server.conn.close(ErrorCode::NO_ERROR);
    assert_eq!(
        server.frames(),
        vec![Frame::GoAway { last_stream_id: 0, code: ErrorCode::NO_ERROR, debug: Bytes::new() }]
    );
    assert_eq!(
        server.events(),
        vec![Event::Reset { stream: b, code: ErrorCode::REFUSED_STREAM, retryable: true }, Event::Closed { stream: b }]
    );
    assert_eq!(server.conn.open(&req(), true), Err(OpenError::Closing));
    assert_eq!(server.conn.active_streams(), 1);
    server.conn.send_end(a);
    assert!(matches!(server.frames()[..], [Frame::Data { end_stream: true, .. }]));
}

#[test]
fn zero_copy_in_and_out() {
    let mut server = FakeServer::ready(Config::default(), &[]);
    let (stream, id) = server.open(false);
    // Outgoing: the segment itself is in the iovecs, behind a 9-byte head.
    let segment = Bytes::from(vec![5u8; 1000]);
    let ptr = segment.as_ptr();
    server.conn.send_data(stream, segment.clone());
    let mut iov = [IoSlice::new(&[]); 4];
    let n = server.conn.fill_iovecs(&mut iov);
    assert!(iov[..n].iter().any(|s| s.as_ptr() == ptr && s.len() == 1000));
    assert!(iov[..n].iter().any(|s| s.len() == FRAME_HEAD_LEN));
    server.frames();
    // A segment split over two frames: both parts are slices of it.
    let big = Bytes::from(vec![6u8; 30_000]);
    let start = big.as_ptr() as usize;
    server.conn.send_data(stream, big);
    let mut iov = [IoSlice::new(&[]); 8];
    let n = server.conn.fill_iovecs(&mut iov);
    let inside = iov[..n]
        .iter()
        .filter(|s| (start..start + 30_000).contains(&(s.as_ptr() as usize)))
        .map(|s| s.len())
        .collect::<Vec<_>>();
    assert_eq!(inside, vec![16_384, 30_000 - 16_384]);
    server.frames();

    // Incoming: DATA events point into the buffer given to recv.
    server.headers(id, &ok_head(), false).unwrap();
    server.events();
    let mut buf = BytesMut::new();
    for body in [&b"first"[..], b"second"] {
        Frame::Data {
            stream_id: id,
            payload: Bytes::copy_from_slice(body),
            end_stream: false,
            flow_len: body.len() as u32 + 3,
        }
        .encode(&mut buf);
    }
    let range = buf.as_ptr() as usize..buf.as_ptr() as usize + buf.len();
    server.conn.recv(&mut buf).unwrap();
    let events = server.events();
    assert_eq!(events.len(), 2);
    for e in events {
        let Event::Data { data, .. } = e else { panic!() };
        assert!(range.contains(&(data.as_ptr() as usize)));
    }
}

#[test]
fn round_robin_between_streams_when_the_connection_window_opens() {
    let mut server = FakeServer::ready(Config::default(), &[(setting::INITIAL_WINDOW_SIZE, 1 << 20)]);
    let (a, id_a) = server.open(false);
    server.conn.send_data(a, Bytes::from(vec![1u8; 65_535]));
    assert_eq!(data_of(&server.frames(), id_a).0, 65_535);
    let (b, id_b) = server.open(false);
    let (c, id_c) = server.open(false);
    for s in [a, b, c] {
        server.conn.send_data(s, Bytes::from(vec![2u8; 100_000]));
    }
    assert!(server.frames().is_empty());
    server.window_update(0, 3 * 16_384).unwrap();
    let frames = server.frames();
    for id in [id_a, id_b, id_c] {
        assert_eq!(data_of(&frames, id).0, 16_384, "stream {id}");
    }
}

/// nghttp2 indexes and Huffman-codes its responses (docs/noslated-protocol.md §3.3): a block on a
/// stream we already dropped must still update the dynamic table that
/// later blocks refer to.
#[test]
fn header_blocks_on_dropped_streams_keep_hpack_in_sync() {
    let mut server = FakeServer::ready(Config::default(), &[]);
    let (a, id_a) = server.open(true);
    server.conn.reset(a, ErrorCode::CANCEL);
    server.frames();
    server.events();
    let (b, id_b) = server.open(true);
    // RFC 7541 C.6.1: four literals with incremental indexing, Huffman.
    let indexed_response = Bytes::from_static(
        b"\x48\x82\x64\x02\x58\x85\xae\xc3\x77\x1a\x4b\x61\x96\xd0\x7a\xbe\x94\x10\x54\xd4\x44\xa8\x20\x05\x95\x04\x0b\x81\x66\xe0\x82\xa6\x2d\x1b\xff\x6e\x91\x9d\x29\xad\x17\x18\x63\xc7\x8f\x0b\x97\xc8\xe9\xae\x82\xae\x43\xd3",
    );
    server
        .feed(&Frame::Headers { stream_id: id_a, block: indexed_response, end_stream: false, end_headers: true })
        .unwrap();
    assert!(server.events().is_empty(), "dropped stream: no event");
    // Dynamic entries 65 (:status 302) and 64 (cache-control private).
    server
        .feed(&Frame::Headers {
            stream_id: id_b,
            block: Bytes::from_static(b"\xc1\xc0"),
            end_stream: true,
            end_headers: true,
        })
        .unwrap();
    let events = server.events();
    let [Event::Headers { stream, fields, end_stream: true }, Event::Closed { .. }] = &events[..] else {
        panic!("{events:?}");
    };
    assert_eq!(*stream, b);
    assert_eq!(
        fields,
        &vec![
            (Bytes::from_static(b":status"), Bytes::from_static(b"302")),
            (Bytes::from_static(b"cache-control"), Bytes::from_static(b"private")),
        ]
    );
}

#[test]
fn stream_ids_run_out_at_2_pow_31() {
    let mut server = FakeServer::ready(Config::default(), &[(setting::MAX_CONCURRENT_STREAMS, 1)]);
    server.conn.next_stream_id = MAX_STREAM_ID - 2;
    let (_, id) = server.open(true);
    assert_eq!(id, MAX_STREAM_ID - 2);
    // The last id, 2^31-1, is taken by a stream still waiting for a slot.
    server.conn.open(&req(), true).unwrap();
    assert_eq!(server.conn.open(&req(), true), Err(OpenError::StreamIdsExhausted));
}

/// The same server script fed in two pieces split at every byte.
#[test]
fn recv_split_at_every_byte_boundary() {
    let mut script = BytesMut::new();
    let mut enc = hpack::Encoder::new();
    Frame::Settings { ack: false, params: vec![(setting::MAX_CONCURRENT_STREAMS, 10)] }.encode(&mut script);
    let mut block = Vec::new();
    enc.encode(ok_head().iter().map(|(n, v)| (n.as_bytes(), v.as_bytes())), &mut block);
    frame::encode_headers(&mut script, 1, &block, false, 16_384);
    Frame::Data { stream_id: 1, payload: Bytes::from_static(b"body"), end_stream: false, flow_len: 8 }
        .encode(&mut script);
    let mut block = Vec::new();
    enc.encode(trailers().iter().map(|(n, v)| (n.as_bytes(), v.as_bytes())), &mut block);
    frame::encode_headers(&mut script, 1, &block, true, 16_384);
    let script = script.freeze();

    let mut reference = None;
    for split in 0..=script.len() {
        let mut conn = ClientConnection::new(Config::default());
        let stream = conn.open(&req(), true).unwrap();
        let mut buf = BytesMut::new();
        for part in [&script[..split], &script[split..]] {
            buf.extend_from_slice(part);
            conn.recv(&mut buf).unwrap();
        }
        assert!(buf.is_empty());
        let events: Vec<Event> = std::iter::from_fn(|| conn.poll_event()).collect();
        assert_eq!(events.last(), Some(&Event::Closed { stream }));
        match &reference {
            None => reference = Some(events),
            Some(r) => assert_eq!(&events, r, "split at {split}"),
        }
    }
}

#[test]
fn partial_writes_keep_output_order() {
    let mut conn = ClientConnection::new(Config::default());
    let stream = conn.open(&req(), false).unwrap();
    conn.send_data(stream, Bytes::from_static(b"0123456789"));
    conn.send_end(stream);
    let total = conn.output_len();
    let mut wire = Vec::new();
    while conn.has_output() {
        let mut iov = [IoSlice::new(&[]); 3];
        let n = conn.fill_iovecs(&mut iov);
        // Write 7 bytes at a time across iovec boundaries.
        let mut take = 7;
        for s in &iov[..n] {
            let k = take.min(s.len());
            wire.extend_from_slice(&s[..k]);
            take -= k;
        }
        conn.advance_output(7 - take);
    }
    assert_eq!(wire.len(), total);
    let mut buf = BytesMut::from(&wire[PREFACE.len()..]);
    let mut kinds = Vec::new();
    while let Some(f) = decode_frame(&mut buf, BIG).unwrap() {
        kinds.push(match f {
            Frame::Data { payload, end_stream, .. } => {
                assert_eq!(&payload[..], if end_stream { &b""[..] } else { b"0123456789" });
                "DATA"
            }
            Frame::Headers { .. } => "HEADERS",
            Frame::Settings { .. } => "SETTINGS",
            Frame::WindowUpdate { .. } => "WINDOW_UPDATE",
            other => panic!("{other:?}"),
        });
    }
    assert_eq!(kinds, ["SETTINGS", "WINDOW_UPDATE", "HEADERS", "DATA", "DATA"]);
}

/// A handle kept past its stream's `Closed` (the caller's copy of an ended
/// stream) reaches nothing, also once a new `open` has taken the same slot:
/// no reset, no window credit, no data, no capacity for the new stream.
#[test]
fn a_stale_stream_handle_reaches_nothing() {
    let mut server = FakeServer::ready(Config::default(), &[]);
    let (old, old_id) = server.open(true);
    server.headers(old_id, &ok_head(), false).unwrap();
    server.data(old_id, b"abc", false).unwrap();
    server.headers(old_id, &trailers(), true).unwrap();
    let events = server.events();
    assert!(matches!(events.last(), Some(Event::Closed { stream }) if *stream == old), "{events:?}");
    let (new, new_id) = server.open(false);
    assert_eq!(new.key, old.key, "the test needs the slot reused");
    assert_ne!(new, old);
    server.headers(new_id, &ok_head(), false).unwrap();
    server.data(new_id, b"defg", false).unwrap();
    assert_eq!(server.events().len(), 2);
    server.frames();
    server.conn.reset(old, ErrorCode::CANCEL);
    server.conn.release(old, 4);
    server.conn.send_data(old, Bytes::from_static(b"stale"));
    server.conn.send_end(old);
    server.conn.want_capacity(old);
    assert_eq!(server.conn.send_capacity(old), 0);
    assert_eq!(server.conn.queued(old), 0);
    assert_eq!(server.frames(), vec![], "a stale handle wrote frames");
    assert_eq!(server.conn.streams[new.key].recv_window.unreleased(), 4, "a stale handle released");
    assert!(server.conn.send_capacity(new) > 0);
    server.conn.release(new, 4);
    assert_eq!(server.conn.streams[new.key].recv_window.unreleased(), 0);
    server.conn.send_data(new, Bytes::from_static(b"live"));
    assert_eq!(data_of(&server.frames(), new_id), (4, false));
}
