//! Hostile HTTP/1.1 input, table-driven: request smuggling variants, absurd
//! numbers, oversized heads and targets, broken chunked framing, control
//! characters, slowloris heads and slow bodies, pipelining floods, half-closed
//! sockets, requests after `Connection: close`, HTTP/1.0.
//!
//! Every case runs on its own connection against one noslate-fc in front of
//! the grpc-js test fixture (function `echo`, so bodies are really decoded
//! and forwarded), and asserts the exact outcome: the statuses (and bodies)
//! of the responses, then the server's close — or a close without a byte.
//! Meanwhile a *witness* connection keeps doing correct echo invokes, each
//! with a unique id; every one of them must succeed with its own bytes.
//!
//! Outcomes that follow from the code, not from a standard:
//! * a refusal (400/413/414/431/501/408) is answered once and the connection
//!   closed; nothing pipelined behind it is answered;
//! * EOF from the client while a head is partial closes silently (there is
//!   nobody left to answer);
//! * EOF from the client (`shutdown(Write)`) while an invoke is in flight is
//!   an abort, as in nginx (499): the stream is cancelled upstream and the
//!   connection closed without a response. A local answer (a hook) that is
//!   already complete is still delivered before the close.

mod support;

use std::io::{Cursor, Read, Write};
use std::net::{Shutdown, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use support::{read_response, Fc, Peer, TempDir};

/// Head timeout for this suite: short, so slowloris cases finish fast.
const HEADER_TIMEOUT_MS: u64 = 500;
/// Every case must be over (server closed) within this.
const CASE_LIMIT: Duration = Duration::from_secs(20);
/// A valid request appended behind refused ones: it must never be answered.
const SMUGGLED: &[u8] = b"GET /pre-freeze HTTP/1.1\r\nx-fc-request-id: smuggled\r\n\r\n";

/// What the client does, in order.
#[derive(Clone)]
enum Step {
    Write(Vec<u8>),
    /// Write the bytes one at a time, this many ms apart.
    Drip(Vec<u8>, u64),
    Sleep(u64),
    ShutdownWrite,
}

/// What the server must do.
#[derive(Clone)]
enum Expect {
    /// Exactly these responses in order (status, and body when given), then
    /// the server closes the connection.
    Responses(Vec<(u16, Option<Vec<u8>>)>),
    /// The server closes without writing a byte.
    SilentClose,
}

struct Case {
    name: String,
    steps: Vec<Step>,
    expect: Expect,
    /// The fixture must record this request id as cancelled.
    cancelled: Option<String>,
    /// The raw interim (1xx) heads the first response must come after; every
    /// other response must come with none.
    interim: Vec<&'static [u8]>,
}

fn case(name: &str, steps: Vec<Step>, expect: Expect) -> Case {
    Case { name: name.to_string(), steps, expect, cancelled: None, interim: Vec::new() }
}

/// A refused request: one answer with `status`, then close; the valid
/// request smuggled behind it is never answered.
fn refused(name: &str, raw: &[u8], status: u16) -> Case {
    let mut bytes = raw.to_vec();
    bytes.extend_from_slice(SMUGGLED);
    case(name, vec![Step::Write(bytes)], Expect::Responses(vec![(status, None)]))
}

/// A request that is answered normally, then the connection closes (`raw`
/// says `Connection: close`, or the answer is a refusal that closes).
fn accepted(name: &str, raw: &[u8], status: u16, body: Option<&[u8]>) -> Case {
    case(name, vec![Step::Write(raw.to_vec())], Expect::Responses(vec![(status, body.map(<[u8]>::to_vec))]))
}

/// POST /invoke of `body` to `function` with extra head lines.
fn invoke(function: &str, extra: &str, body: &[u8]) -> Vec<u8> {
    let mut raw = format!(
        "POST /invoke HTTP/1.1\r\nhost: x\r\nx-noslate-function: {function}\r\n{extra}content-length: {}\r\n\r\n",
        body.len()
    )
    .into_bytes();
    raw.extend_from_slice(body);
    raw
}

/// Chunked POST /invoke to echo with `Connection: close`; `body` is the raw
/// chunked framing.
fn chunked(body: &[u8]) -> Vec<u8> {
    let mut raw =
        b"POST /invoke HTTP/1.1\r\nhost: x\r\nx-noslate-function: echo\r\nconnection: close\r\ntransfer-encoding: chunked\r\n\r\n"
            .to_vec();
    raw.extend_from_slice(body);
    raw
}

fn cat(parts: &[&[u8]]) -> Vec<u8> {
    parts.concat()
}

fn cases() -> Vec<Case> {
    let mut v = Vec::new();
    let cl_te = |te_line: &str| {
        format!("POST /invoke HTTP/1.1\r\nx-noslate-function: echo\r\ncontent-length: 5\r\n{te_line}\r\n\r\n0\r\n\r\n")
    };

    // ---- Smuggling: Content-Length / Transfer-Encoding combinations.
    v.push(refused("CL then TE chunked", cl_te("transfer-encoding: chunked").as_bytes(), 400));
    v.push(refused(
        "TE chunked then CL",
        b"POST /invoke HTTP/1.1\r\nx-noslate-function: echo\r\ntransfer-encoding: chunked\r\ncontent-length: 5\r\n\r\n0\r\n\r\n",
        400,
    ));
    v.push(refused("CL + TE odd casing", cl_te("TrAnSfEr-EnCoDiNg: ChUnKeD").as_bytes(), 400));
    v.push(refused("CL + TE leading tab in value", cl_te("transfer-encoding:\tchunked").as_bytes(), 400));
    v.push(refused("CL + TE trailing spaces in value", cl_te("transfer-encoding: chunked   ").as_bytes(), 400));
    v.push(refused("TE with space before colon", cl_te("transfer-encoding : chunked").as_bytes(), 400));
    v.push(refused("TE with tab before colon", cl_te("transfer-encoding\t: chunked").as_bytes(), 400));
    v.push(refused("TE name with leading space (obs-fold)", cl_te(" transfer-encoding: chunked").as_bytes(), 400));
    v.push(refused(
        "TE chunked, chunked",
        b"POST /invoke HTTP/1.1\r\ntransfer-encoding: chunked, chunked\r\n\r\n0\r\n\r\n",
        400,
    ));
    v.push(refused(
        "TE chunked on two lines",
        b"POST /invoke HTTP/1.1\r\ntransfer-encoding: chunked\r\ntransfer-encoding: chunked\r\n\r\n0\r\n\r\n",
        400,
    ));
    v.push(refused("TE chunked then gzip", b"POST /invoke HTTP/1.1\r\ntransfer-encoding: chunked, gzip\r\n\r\n", 400));
    v.push(refused("TE gzip then chunked", b"POST /invoke HTTP/1.1\r\ntransfer-encoding: gzip, chunked\r\n\r\n", 501));
    v.push(refused("TE identity", b"POST /invoke HTTP/1.1\r\ntransfer-encoding: identity\r\n\r\n", 501));
    v.push(refused("TE xchunked", b"POST /invoke HTTP/1.1\r\ntransfer-encoding: xchunked\r\n\r\n", 501));
    v.push(refused(
        "TE chunked with parameter",
        b"POST /invoke HTTP/1.1\r\ntransfer-encoding: chunked;q=1\r\n\r\n",
        501,
    ));
    v.push(refused("TE empty value", b"POST /invoke HTTP/1.1\r\ntransfer-encoding: \r\n\r\n", 400));
    v.push(refused("TE trailing comma", b"POST /invoke HTTP/1.1\r\ntransfer-encoding: chunked,\r\n\r\n", 400));
    v.push(refused(
        "TE in HTTP/1.0",
        b"POST /invoke HTTP/1.0\r\nx-noslate-function: echo\r\ntransfer-encoding: chunked\r\n\r\n0\r\n\r\n",
        400,
    ));
    v.push(refused(
        "TE with vertical tab",
        b"POST /invoke HTTP/1.1\r\ntransfer-encoding:\x0bchunked\r\n\r\n0\r\n\r\n",
        400,
    ));
    // A look-alike name is just another header: the body is not chunked, so
    // the chunk framing is read as the next request (garbage → 400).
    v.push(case(
        "Transfer_Encoding look-alike",
        vec![Step::Write(b"GET /pre-freeze HTTP/1.1\r\ntransfer_encoding: chunked\r\n\r\n0\r\n\r\n".to_vec())],
        Expect::Responses(vec![(200, None), (400, None)]),
    ));

    // ---- Content-Length values.
    let cl = |value: &str| {
        format!("POST /invoke HTTP/1.1\r\nx-noslate-function: echo\r\ncontent-length: {value}\r\n\r\nhello")
    };
    v.push(accepted(
        "duplicate identical CL lines",
        b"POST /invoke HTTP/1.1\r\nx-noslate-function: echo\r\nconnection: close\r\ncontent-length: 5\r\ncontent-length: 5\r\n\r\nhello",
        200,
        Some(b"hello"),
    ));
    v.push(accepted(
        "CL comma list of identical values",
        b"POST /invoke HTTP/1.1\r\nx-noslate-function: echo\r\nconnection: close\r\ncontent-length: 5, 5\r\n\r\nhello",
        200,
        Some(b"hello"),
    ));
    v.push(refused("CL comma list of different values", cl("5, 6").as_bytes(), 400));
    v.push(refused(
        "different CL lines",
        b"POST /invoke HTTP/1.1\r\ncontent-length: 5\r\ncontent-length: 6\r\n\r\nhello!",
        400,
    ));
    v.push(refused("CL empty", cl("").as_bytes(), 400));
    v.push(refused("CL two numbers", cl("5 5").as_bytes(), 400));
    v.push(refused("CL plus sign", cl("+5").as_bytes(), 400));
    v.push(refused("CL negative", cl("-5").as_bytes(), 400));
    v.push(refused("CL hex", cl("0x5").as_bytes(), 400));
    v.push(refused("CL decimal point", cl("5.0").as_bytes(), 400));
    v.push(refused("CL exponent", cl("5e0").as_bytes(), 400));
    v.push(refused("CL non-ASCII digit", "POST /invoke HTTP/1.1\r\ncontent-length: \u{0665}\r\n\r\n".as_bytes(), 400));
    v.push(refused("CL overflowing u64", cl("99999999999999999999999").as_bytes(), 400));
    v.push(refused("CL u64::MAX", cl("18446744073709551615").as_bytes(), 413));
    v.push(refused("CL one over the body limit", cl("33554433").as_bytes(), 413));
    v.push(refused("NUL before colon in CL name", b"POST /invoke HTTP/1.1\r\ncontent-length\x00: 5\r\n\r\nhello", 400));
    // A zero length with bytes behind it: those bytes are the start of the
    // next head, which never completes (408) — or is garbage (400).
    v.push(case(
        "CL 0 with a body behind it",
        vec![Step::Write(cl("0").into_bytes())],
        Expect::Responses(vec![(200, Some(Vec::new())), (408, None)]),
    ));
    v.push(case(
        "CL 0 with a body line behind it",
        vec![Step::Write(format!("{}\r\n\r\n", cl("0")).into_bytes())],
        Expect::Responses(vec![(200, Some(Vec::new())), (400, None)]),
    ));

    // ---- Heads and targets: sizes and syntax.
    v.push(refused(
        "head over 32 KiB",
        format!("GET / HTTP/1.1\r\nx-big: {}\r\n\r\n", "a".repeat(40_000)).as_bytes(),
        431,
    ));
    v.push(refused("200 header lines", format!("GET / HTTP/1.1\r\n{}\r\n", "a: b\r\n".repeat(200)).as_bytes(), 431));
    v.push(refused("target over 8 KiB", format!("GET /{} HTTP/1.1\r\n\r\n", "a".repeat(9000)).as_bytes(), 414));
    v.push(refused("method of 40000 bytes", format!("{} / HTTP/1.1\r\n\r\n", "A".repeat(40_000)).as_bytes(), 431));
    v.push(refused("endless request line", "G".repeat(40_000).as_bytes(), 431));
    v.push(refused("NUL in target", b"GET /a\x00b HTTP/1.1\r\n\r\n", 400));
    v.push(refused("NUL in header value", b"GET / HTTP/1.1\r\nx-a: a\x00b\r\n\r\n", 400));
    v.push(refused("DEL in header value", b"GET / HTTP/1.1\r\nx-a: a\x7fb\r\n\r\n", 400));
    v.push(refused("control char in header name", b"GET / HTTP/1.1\r\nx\x01a: b\r\n\r\n", 400));
    v.push(refused("bare CR in header value", b"GET / HTTP/1.1\r\nx-a: a\rb\r\n\r\n", 400));
    v.push(refused("bare LF line endings", b"GET / HTTP/1.1\nhost: x\n\n", 400));
    v.push(refused("bare LF in header section", b"GET / HTTP/1.1\r\nhost: x\n\r\n", 400));
    v.push(refused("obs-fold continuation", b"GET / HTTP/1.1\r\nx-a: 1\r\n  2\r\n\r\n", 400));
    v.push(refused("header line without colon", b"GET / HTTP/1.1\r\nno colon here\r\n\r\n", 400));
    v.push(refused("empty header name", b"GET / HTTP/1.1\r\n: value\r\n\r\n", 400));
    v.push(refused("missing HTTP version", b"GET /\r\n\r\n", 400));
    v.push(refused("HTTP/1.2", b"GET / HTTP/1.2\r\n\r\n", 400));
    v.push(refused("HTTP/2.0 request line", b"GET / HTTP/2.0\r\n\r\n", 400));
    v.push(refused("HTTP/2 connection preface", b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n", 400));
    v.push(refused("lower-case version", b"GET / http/1.1\r\n\r\n", 400));
    v.push(refused("two spaces after method", b"GET  / HTTP/1.1\r\n\r\n", 400));
    v.push(refused("TLS ClientHello", b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03\r\n\r\n", 400));
    v.push(refused("five empty lines before the request", b"\r\n\r\n\r\n\r\n\r\nGET / HTTP/1.1\r\n\r\n", 400));
    v.push(accepted(
        "four empty lines before the request",
        b"\r\n\r\n\r\n\r\nGET /pre-freeze HTTP/1.1\r\nconnection: close\r\n\r\n",
        200,
        None,
    ));
    v.push(accepted(
        "127 header lines",
        format!("GET /pre-freeze HTTP/1.1\r\nconnection: close\r\n{}\r\n", "a: b\r\n".repeat(126)).as_bytes(),
        200,
        None,
    ));
    v.push(refused("unknown control path", b"GET / HTTP/1.1\r\nx-fc-control-path: /nope\r\n\r\n", 400));

    // ---- Absurd or odd values in headers the proxy reads.
    v.push(accepted(
        "x-fc-function-timeout beyond u64",
        &invoke("echo", "connection: close\r\nx-fc-function-timeout: 18446744073709551616\r\n", b"t"),
        200,
        Some(b"t"),
    ));
    v.push(accepted(
        "x-fc-function-timeout zero",
        &invoke("echo", "connection: close\r\nx-fc-function-timeout: 0\r\n", b"z"),
        200,
        Some(b"z"),
    ));
    v.push(accepted(
        "x-fc-request-id of 300 bytes",
        &invoke("echo", &format!("connection: close\r\nx-fc-request-id: {}\r\n", "r".repeat(300)), b"id"),
        200,
        Some(b"id"),
    ));
    v.push(accepted(
        "empty function name",
        b"POST /invoke HTTP/1.1\r\nx-noslate-function: \r\nconnection: close\r\ncontent-length: 0\r\n\r\n",
        400,
        None,
    ));
    v.push(accepted(
        "function name not UTF-8",
        b"POST /invoke HTTP/1.1\r\nx-noslate-function: \xff\xfe\r\nconnection: close\r\ncontent-length: 0\r\n\r\n",
        400,
        None,
    ));
    v.push(accepted(
        "Upgrade: websocket is just forwarded",
        &invoke("echo", "connection: upgrade, close\r\nupgrade: websocket\r\n", b"ws"),
        200,
        Some(b"ws"),
    ));

    // ---- Chunked framing, decoded while the invoke is in flight.
    v.push(refused("chunk size line ends in bare LF", &chunked(b"3\nabc\r\n0\r\n\r\n"), 400));
    v.push(refused("chunk size not hex", &chunked(b"zz\r\nabc\r\n0\r\n\r\n"), 400));
    v.push(refused("chunk size overflow", &chunked(b"fffffffffffffffffffff\r\n"), 400));
    v.push(refused("chunk size with 0x prefix", &chunked(b"0x3\r\nabc\r\n0\r\n\r\n"), 400));
    v.push(refused("negative chunk size", &chunked(b"-3\r\nabc\r\n0\r\n\r\n"), 400));
    v.push(refused("chunk size with leading space", &chunked(b" 3\r\nabc\r\n0\r\n\r\n"), 400));
    v.push(refused("empty chunk size line", &chunked(b"\r\nabc\r\n0\r\n\r\n"), 400));
    v.push(refused("NUL in chunk size", &chunked(b"3\x00\r\nabc\r\n0\r\n\r\n"), 400));
    v.push(refused("chunk data longer than its size", &chunked(b"3\r\nabcdef\r\n0\r\n\r\n"), 400));
    v.push(refused("chunk data ends in bare LF", &chunked(b"3\r\nabc\n0\r\n\r\n"), 400));
    v.push(refused("empty chunk extension", &chunked(b"3;\r\nabc\r\n0\r\n\r\n"), 400));
    v.push(refused("control char in chunk extension", &chunked(b"3;a=\x01\r\nabc\r\n0\r\n\r\n"), 400));
    v.push(refused(
        "chunk size line over 4 KiB",
        &chunked(format!("{}3\r\nabc\r\n0\r\n\r\n", "0".repeat(5000)).as_bytes()),
        400,
    ));
    v.push(refused("malformed trailer", &chunked(b"3\r\nabc\r\n0\r\nno colon\r\n\r\n"), 400));
    v.push(refused(
        "trailer section over 8 KiB",
        &chunked(format!("0\r\nx-t: {}\r\n\r\n", "t".repeat(9000)).as_bytes()),
        400,
    ));
    v.push(refused("one chunk over the body limit", &chunked(b"2000001\r\n"), 413));
    let mut sum =
        b"POST /invoke HTTP/1.1\r\nx-noslate-function: echo-buffered\r\ntransfer-encoding: chunked\r\n\r\n1000000\r\n"
            .to_vec();
    sum.resize(sum.len() + (16 << 20), b's');
    sum.extend_from_slice(b"\r\n1000001\r\n");
    v.push(refused("chunk sizes summing over the body limit", &sum, 413));
    v.push(accepted(
        "valid chunked: extensions, upper-case hex, leading zeros, trailers",
        &chunked(b"5;name=value;flag\r\nhello\r\n000B\r\n 0123456789\r\n0\r\nx-trailer: yes\r\n\r\n"),
        200,
        Some(b"hello 0123456789"),
    ));
    v.push(case(
        "chunked body cut by EOF",
        vec![
            Step::Write(
                b"POST /invoke HTTP/1.1\r\nx-noslate-function: echo-buffered\r\nx-fc-request-id: hostile-cut-chunked\r\ntransfer-encoding: chunked\r\n\r\n3\r\nabc\r\n"
                    .to_vec(),
            ),
            Step::Sleep(100),
            Step::ShutdownWrite,
        ],
        Expect::SilentClose,
    ));
    v.last_mut().unwrap().cancelled = Some("hostile-cut-chunked".into());

    // ---- Slow clients.
    v.push(case(
        "slowloris: head dripped a byte every 100 ms",
        vec![Step::Drip(b"GET /pre-freeze HTTP/1.1\r\nx-a: aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa".to_vec(), 100)],
        Expect::Responses(vec![(408, None)]),
    ));
    v.push(case(
        "partial head, then silence",
        vec![Step::Write(b"GET /pre-freeze HTTP/1.1\r\nhost: x".to_vec())],
        Expect::Responses(vec![(408, None)]),
    ));
    v.push(case("connect and send nothing, then EOF", vec![Step::Sleep(50), Step::ShutdownWrite], Expect::SilentClose));
    v.push(case(
        "slow body: 20 bytes dripped 100 ms apart completes",
        vec![
            Step::Write(
                b"POST /invoke HTTP/1.1\r\nx-noslate-function: echo\r\nconnection: close\r\ncontent-length: 20\r\n\r\n"
                    .to_vec(),
            ),
            Step::Drip(b"abcdefghijklmnopqrst".to_vec(), 100),
        ],
        Expect::Responses(vec![(200, Some(b"abcdefghijklmnopqrst".to_vec()))]),
    ));
    v.push(case(
        "slow body past a 1 s function timeout gets 504",
        vec![
            Step::Write(
                b"POST /f HTTP/1.1\r\nx-noslate-function: echo-buffered\r\nx-fc-function-timeout: 1\r\ncontent-length: 30\r\n\r\n"
                    .to_vec(),
            ),
            Step::Drip(b"abcdefghijklmnopqrstuvwxyz0123".to_vec(), 100),
            // The rest of the body (small, known length) was read and
            // dropped after the 504: the connection serves the next request.
            Step::Write(b"GET /pre-freeze HTTP/1.1\r\nconnection: close\r\n\r\n".to_vec()),
        ],
        Expect::Responses(vec![(504, None), (200, None)]),
    ));

    // ---- Pipelining.
    let mut flood = Vec::new();
    let mut flood_expect = Vec::new();
    for i in 0..1000 {
        let body = format!("pipelined-{i}");
        let close = if i == 999 { "connection: close\r\n" } else { "" };
        flood.extend_from_slice(&invoke("echo", &format!("{close}x-fc-request-id: pipe-{i}\r\n"), body.as_bytes()));
        flood_expect.push((200, Some(body.into_bytes())));
    }
    v.push(case(
        "1,000 pipelined echo invokes in one write",
        vec![Step::Write(flood)],
        Expect::Responses(flood_expect),
    ));
    let mut flood = b"GET /pre-freeze HTTP/1.1\r\n\r\n".repeat(999);
    flood.extend_from_slice(b"GET /pre-freeze HTTP/1.1\r\nconnection: close\r\n\r\n");
    v.push(case(
        "1,000 pipelined hook requests in one write",
        vec![Step::Write(flood)],
        Expect::Responses(vec![(200, None); 1000]),
    ));
    v.push(case(
        "bad request in the middle of a pipeline",
        vec![Step::Write(cat(&[
            &invoke("echo", "", b"one"),
            &invoke("echo", "", b"two"),
            b"POST /invoke HTTP/1.1\r\ncontent-length: 1\r\ntransfer-encoding: chunked\r\n\r\n0\r\n\r\n",
            &invoke("echo", "", b"never"),
        ]))],
        Expect::Responses(vec![(200, Some(b"one".to_vec())), (200, Some(b"two".to_vec())), (400, None)]),
    ));

    // ---- Connection: close and HTTP/1.0.
    v.push(case(
        "request after Connection: close (hook)",
        vec![Step::Write(cat(&[b"GET /pre-freeze HTTP/1.1\r\nconnection: close\r\n\r\n", SMUGGLED]))],
        Expect::Responses(vec![(200, None)]),
    ));
    v.push(case(
        "request after Connection: close (invoke)",
        vec![Step::Write(cat(&[&invoke("echo", "connection: close\r\n", b"last"), &invoke("echo", "", b"ignored")]))],
        Expect::Responses(vec![(200, Some(b"last".to_vec()))]),
    ));
    v.push(case(
        "Connection: CLOSE in upper case and in a list",
        vec![Step::Write(cat(&[b"GET /pre-freeze HTTP/1.1\r\nconnection: foo, CLOSE\r\n\r\n", SMUGGLED]))],
        Expect::Responses(vec![(200, None)]),
    ));
    v.push(case(
        "HTTP/1.0 without keep-alive",
        vec![Step::Write(cat(&[b"GET /pre-freeze HTTP/1.0\r\n\r\n", SMUGGLED]))],
        Expect::Responses(vec![(200, None)]),
    ));
    v.push(case(
        "HTTP/1.0 keep-alive, then HTTP/1.0",
        vec![Step::Write(
            b"GET /pre-freeze HTTP/1.0\r\nconnection: keep-alive\r\n\r\nGET /pre-freeze HTTP/1.0\r\n\r\nGET /pre-freeze HTTP/1.0\r\n\r\n"
                .to_vec(),
        )],
        Expect::Responses(vec![(200, None), (200, None)]),
    ));
    v.push(case(
        "HTTP/1.0 invoke: body until close",
        vec![Step::Write(
            b"POST /invoke HTTP/1.0\r\nx-noslate-function: echo\r\nconnection: keep-alive\r\ncontent-length: 4\r\n\r\nten!"
                .to_vec(),
        )],
        Expect::Responses(vec![(200, Some(b"ten!".to_vec()))]),
    ));
    v.push(case(
        "Expect: 100-continue, body after the interim answer",
        vec![
            Step::Write(
                b"POST /invoke HTTP/1.1\r\nx-noslate-function: echo\r\nconnection: close\r\nexpect: 100-continue\r\ncontent-length: 4\r\n\r\n"
                    .to_vec(),
            ),
            Step::Sleep(100),
            Step::Write(b"body".to_vec()),
        ],
        Expect::Responses(vec![(200, Some(b"body".to_vec()))]),
    ));
    v.last_mut().unwrap().interim = vec![b"HTTP/1.1 100 Continue\r\n\r\n"];

    // ---- Half-closed sockets (shutdown(Write) from the client).
    v.push(case(
        "partial head, then EOF",
        vec![Step::Write(b"GET /pre-freeze HTTP/1.1\r\nhost:".to_vec()), Step::Sleep(50), Step::ShutdownWrite],
        Expect::SilentClose,
    ));
    v.push(case(
        "complete hook request, then EOF: answered, then closed",
        vec![Step::Write(b"GET /pre-freeze HTTP/1.1\r\n\r\n".to_vec()), Step::ShutdownWrite],
        Expect::Responses(vec![(200, None)]),
    ));
    v.push(case(
        "complete invoke, then EOF: aborted upstream, closed without answer",
        vec![Step::Write(invoke("slow-300", "x-fc-request-id: hostile-halfclose\r\n", b"abc")), Step::ShutdownWrite],
        Expect::SilentClose,
    ));
    v.last_mut().unwrap().cancelled = Some("hostile-halfclose".into());
    v.push(case(
        "half a body, then EOF: aborted upstream",
        vec![
            Step::Write(
                b"POST /invoke HTTP/1.1\r\nx-noslate-function: echo-buffered\r\nx-fc-request-id: hostile-halfbody\r\ncontent-length: 10\r\n\r\nabcde"
                    .to_vec(),
            ),
            Step::Sleep(100),
            Step::ShutdownWrite,
        ],
        Expect::SilentClose,
    ));
    v.last_mut().unwrap().cancelled = Some("hostile-halfbody".into());
    v.push(case(
        "keep-alive exchange, then EOF while idle",
        vec![Step::Write(invoke("echo", "", b"idle")), Step::Sleep(300), Step::ShutdownWrite],
        Expect::Responses(vec![(200, Some(b"idle".to_vec()))]),
    ));
    v
}

/// Run one case on its own connection; Err describes what went wrong.
fn run_case(port: u16, case: &Case) -> Result<(), String> {
    let sock = TcpStream::connect(("127.0.0.1", port)).map_err(|e| format!("connect: {e}"))?;
    sock.set_nodelay(true).unwrap();
    sock.set_read_timeout(Some(CASE_LIMIT)).unwrap();
    let mut writer_sock = sock.try_clone().unwrap();
    let steps = case.steps.clone();
    // Write in a thread: the server may answer (or close) while we still
    // write, and a flood must not deadlock on full socket buffers.
    let writer = std::thread::spawn(move || {
        for step in steps {
            let ok = match step {
                Step::Write(bytes) => writer_sock.write_all(&bytes).is_ok(),
                Step::Drip(bytes, ms) => bytes.iter().all(|b| {
                    std::thread::sleep(Duration::from_millis(ms));
                    writer_sock.write_all(&[*b]).is_ok()
                }),
                Step::Sleep(ms) => {
                    std::thread::sleep(Duration::from_millis(ms));
                    true
                }
                Step::ShutdownWrite => writer_sock.shutdown(Shutdown::Write).is_ok(),
            };
            if !ok {
                return; // the server closed: that is often the point
            }
        }
    });
    let start = Instant::now();
    let mut raw = Vec::new();
    let mut reader = &sock;
    let closed = loop {
        let mut buf = [0u8; 65536];
        match reader.read(&mut buf) {
            Ok(0) => break Ok(()),
            Ok(n) => raw.extend_from_slice(&buf[..n]),
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => break Ok(()),
            Err(e) => break Err(e),
        }
    };
    let elapsed = start.elapsed();
    drop(sock);
    let _ = writer.join();
    if let Err(e) = closed {
        return Err(format!("server did not close within {CASE_LIMIT:?} ({e}); got {} bytes", raw.len()));
    }
    let mut responses = Vec::new();
    let mut cursor = Cursor::new(&raw[..]);
    while (cursor.position() as usize) < raw.len() {
        match read_response(&mut cursor) {
            Some(r) => responses.push(r),
            None => {
                let at = cursor.position() as usize;
                return Err(format!(
                    "unparsable bytes after {} responses: {:?}",
                    responses.len(),
                    String::from_utf8_lossy(&raw[at.min(raw.len())..(at + 200).min(raw.len())])
                ));
            }
        }
    }
    match &case.expect {
        Expect::SilentClose => {
            if !raw.is_empty() {
                return Err(format!("expected a silent close, got {:?}", String::from_utf8_lossy(&raw)));
            }
        }
        Expect::Responses(want) => {
            let got: Vec<u16> = responses.iter().map(|r| r.status).collect();
            let want_statuses: Vec<u16> = want.iter().map(|(s, _)| *s).collect();
            if got != want_statuses {
                let shown: Vec<String> =
                    responses.iter().take(5).map(|r| format!("{} {}", r.status, r.text())).collect();
                return Err(format!("statuses {got:?} (first: {shown:?}), want {want_statuses:?}"));
            }
            for (i, r) in responses.iter().enumerate() {
                let want_interim: &[&[u8]] = if i == 0 { &case.interim } else { &[] };
                if r.interim.iter().map(Vec::as_slice).ne(want_interim.iter().copied()) {
                    let shown = |hs: &mut dyn Iterator<Item = &[u8]>| -> Vec<String> {
                        hs.map(|h| String::from_utf8_lossy(h).into_owned()).collect()
                    };
                    return Err(format!(
                        "response {i}: interim heads {:?}, want {:?}",
                        shown(&mut r.interim.iter().map(Vec::as_slice)),
                        shown(&mut want_interim.iter().copied())
                    ));
                }
            }
            for (i, (r, (_, body))) in responses.iter().zip(want).enumerate() {
                if let Some(body) = body {
                    if !r.complete || &r.body != body {
                        return Err(format!(
                            "response {i}: body {:?} (complete {}), want {:?}",
                            r.text(),
                            r.complete,
                            String::from_utf8_lossy(body)
                        ));
                    }
                }
            }
        }
    }
    eprintln!("  ok  {:<70} {:>6} ms", case.name, elapsed.as_millis());
    Ok(())
}

/// Correct echo invokes on one keep-alive connection until told to stop.
/// Returns how many succeeded, and every failure.
fn witness(port: u16, stop: Arc<AtomicBool>) -> std::thread::JoinHandle<(u64, Vec<String>)> {
    std::thread::spawn(move || {
        let mut ok = 0u64;
        let mut failures = Vec::new();
        let mut sock = TcpStream::connect(("127.0.0.1", port)).unwrap();
        sock.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        sock.set_nodelay(true).unwrap();
        let mut i = 0u64;
        while !stop.load(Ordering::Relaxed) {
            i += 1;
            let id = format!("witness-{i}");
            let body = format!("{id}:{}", "w".repeat((i as usize * 37) % 3000));
            let raw = invoke("echo", &format!("x-fc-request-id: {id}\r\n"), body.as_bytes());
            if let Err(e) = sock.write_all(&raw) {
                failures.push(format!("{id}: write: {e}"));
                break;
            }
            match read_response(&mut sock) {
                Some(r) if r.status == 200 && r.complete && r.body == body.as_bytes() => {
                    if r.header("x-request-id") != Some(id.as_str()) {
                        failures.push(format!("{id}: x-request-id {:?}", r.header("x-request-id")));
                    }
                    ok += 1;
                }
                Some(r) => {
                    failures.push(format!("{id}: status {} complete {} body {:?}", r.status, r.complete, r.text()))
                }
                None => {
                    failures.push(format!("{id}: no response"));
                    break;
                }
            }
            std::thread::sleep(Duration::from_millis(2));
        }
        (ok, failures)
    })
}

#[test]
fn hostile_inputs_table() {
    let dir = TempDir::new("hostile");
    let peer = Peer::start(&dir, &[]);
    let header_timeout = HEADER_TIMEOUT_MS.to_string();
    let mut fc = Fc::start(&dir, &[("NOSLATE_FC_HEADER_TIMEOUT_MS", &header_timeout)]);
    fc.wait_ready();
    let port = fc.port;
    let cases = cases();
    assert!(cases.len() >= 60, "only {} cases", cases.len());
    let idle_fds = fc.proc.open_fds();

    let stop = Arc::new(AtomicBool::new(false));
    let witness = witness(port, stop.clone());
    let start = Instant::now();
    // Cases run concurrently (a few at a time) so the slow ones overlap.
    let cases = Arc::new(cases);
    let next = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let workers: Vec<_> = (0..8)
        .map(|_| {
            let cases = cases.clone();
            let next = next.clone();
            std::thread::spawn(move || {
                let mut failures = Vec::new();
                loop {
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    let Some(case) = cases.get(i) else { break };
                    if let Err(e) = run_case(port, case) {
                        failures.push(format!("{}: {e}", case.name));
                    }
                }
                failures
            })
        })
        .collect();
    let mut failures: Vec<String> = workers.into_iter().flat_map(|w| w.join().unwrap()).collect();
    stop.store(true, Ordering::Relaxed);
    let (witness_ok, witness_failures) = witness.join().unwrap();
    let elapsed = start.elapsed();

    for case in cases.iter() {
        if let Some(id) = &case.cancelled {
            // When the cancel reaches the fixture together with the stream's
            // HEADERS, grpc-js may drop the stream before any handler runs:
            // then it must not have seen the invoke at all.
            let seen = peer.wait_event(Duration::from_secs(3), |e| e["ev"] == "cancelled" && e["requestId"] == *id);
            let started = peer.events().iter().any(|e| e["ev"] == "invoke" && e["requestId"] == *id);
            if seen.is_none() && started {
                failures.push(format!("{}: the fixture saw {id} start but never cancelled", case.name));
            }
        }
    }
    // Alive, and nothing held: every case's connection is gone.
    assert!(fc.proc.child.try_wait().unwrap().is_none(), "noslate-fc exited");
    let deadline = Instant::now() + Duration::from_secs(5);
    while fc.proc.open_fds() > idle_fds && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
    }
    let fds = fc.proc.open_fds();
    eprintln!(
        "hostile: {} cases in {:.1} s; witness: {witness_ok} invokes ok, {} failed; fds {idle_fds} idle → {fds} after; peak RSS {} KiB",
        cases.len(),
        elapsed.as_secs_f64(),
        witness_failures.len(),
        fc.proc.peak_rss_kib()
    );
    assert!(failures.is_empty(), "{} of {} cases failed:\n{}", failures.len(), cases.len(), failures.join("\n"));
    assert!(witness_failures.is_empty(), "witness failures: {witness_failures:?}");
    assert!(witness_ok >= 50, "witness did only {witness_ok} invokes");
    assert!(fds <= idle_fds, "fds {idle_fds} idle → {fds} after the suite");
    assert_eq!(fc.invoke("echo", b"still serving").text(), "still serving");
}
