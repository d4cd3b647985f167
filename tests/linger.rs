//! Early answers and clients that upload first.
//!
//! noslate-fc answers some requests before reading their body (413 over the
//! body limit, an unknown function, no data plane, draining). A client that
//! writes its whole body before it reads (Python's `urllib` does) must get
//! that answer, not a reset: the connection closes *lingering* (our side shut
//! down after the answer, the rest read and dropped, within time bounds, not
//! byte bounds: nginx's `lingering_time` / `lingering_timeout`). A small rest
//! of known length is dropped and the connection kept. A client that keeps
//! sending past the time bounds is cut.

mod support;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use support::{read_response, Fc, Peer, TempDir};

const BIG: usize = 8 * 1024 * 1024;

fn connect(port: u16) -> TcpStream {
    let s = TcpStream::connect(("127.0.0.1", port)).unwrap();
    s.set_nodelay(true).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
    s
}

fn head(function: &str, len: usize) -> Vec<u8> {
    format!("POST /invoke HTTP/1.1\r\nhost: x\r\nx-noslate-function: {function}\r\ncontent-length: {len}\r\n\r\n")
        .into_bytes()
}

/// Write head and body completely, then read: what `urllib` does.
fn upload_then_read(port: u16, function: &str, len: usize) -> Result<(u16, Option<String>), String> {
    let mut s = connect(port);
    s.write_all(&head(function, len)).map_err(|e| format!("head: {e}"))?;
    let body = vec![b'u'; len];
    s.write_all(&body).map_err(|e| format!("body write failed: {e}"))?;
    let r = read_response(&mut s).ok_or("no response")?;
    Ok((r.status, r.header("connection").map(str::to_string)))
}

#[test]
fn early_answers_reach_clients_that_upload_first() {
    let dir = TempDir::new("linger");
    let _peer = Peer::start(&dir, &[]);
    let fc = Fc::start(&dir, &[("NOSLATE_FC_MAX_BODY", "1048576")]);
    fc.wait_ready();
    let mut failures = Vec::new();
    for round in 0..3 {
        // 413: refused from the head, 8 MiB behind it.
        match upload_then_read(fc.port, "echo", BIG) {
            Ok((413, _)) => {}
            other => failures.push(format!("round {round}: 8 MiB over the limit: {other:?}, want 413")),
        }
        // 404: the data plane does not know the function (answered before the
        // body is read), 1 MiB within the limit.
        match upload_then_read(fc.port, "no-such-function", 1024 * 1024) {
            Ok((404, Some(c))) if c.eq_ignore_ascii_case("close") => {}
            other => failures.push(format!("round {round}: unknown function: {other:?}, want 404 + close")),
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn unknown_function_over_max_body_8mib_gets_404() {
    // The same with the default body limit: 8 MiB to an unknown function.
    let dir = TempDir::new("linger404");
    let _peer = Peer::start(&dir, &[]);
    let fc = Fc::start(&dir, &[]);
    fc.wait_ready();
    for round in 0..3 {
        match upload_then_read(fc.port, "no-such-function", BIG) {
            Ok((404, _)) => {}
            other => panic!("round {round}: {other:?}, want 404"),
        }
    }
}

#[test]
fn small_unread_body_is_dropped_and_the_connection_kept() {
    let dir = TempDir::new("discard");
    let _peer = Peer::start(&dir, &[]);
    let fc = Fc::start(&dir, &[]);
    fc.wait_ready();
    let mut s = connect(fc.port);
    for i in 0..3 {
        // 404 before the body is read (1 KiB of 40 KiB sent); the rest,
        // sent after the answer, is dropped...
        let mut raw = head("no-such-function", 40 * 1024);
        raw.extend(std::iter::repeat_n(b'x', 1024));
        s.write_all(&raw).unwrap();
        let r = read_response(&mut s).expect("404");
        assert_eq!(r.status, 404, "{}", r.text());
        assert_eq!(r.header("connection"), None, "kept alive");
        s.write_all(&vec![b'x'; 39 * 1024]).unwrap();
        // ... and the next request on the same connection is served.
        let body = format!("after discard {i}");
        let mut raw = head("echo", body.len());
        raw.extend_from_slice(body.as_bytes());
        s.write_all(&raw).unwrap();
        let r = read_response(&mut s).expect("echo");
        assert_eq!((r.status, r.body.as_slice()), (200, body.as_bytes()));
    }
}

/// Read everything the server sends on `s` until EOF or reset, from a
/// thread, while the test writes.
fn read_all_along(s: &TcpStream) -> std::thread::JoinHandle<Vec<u8>> {
    let mut r = s.try_clone().unwrap();
    std::thread::spawn(move || {
        let mut out = Vec::new();
        let mut buf = [0u8; 4096];
        while let Ok(n) = r.read(&mut buf) {
            if n == 0 {
                break;
            }
            out.extend_from_slice(&buf[..n]);
        }
        out
    })
}

/// Exactly one answer, a 413 naming the cause, and nothing after it.
fn assert_413(answer: &[u8], what: &str) {
    let mut cursor = std::io::Cursor::new(answer);
    let r = read_response(&mut cursor)
        .unwrap_or_else(|| panic!("{what}: no answer: {:?}", String::from_utf8_lossy(answer)));
    assert_eq!(r.status, 413, "{what}: {}", r.text());
    assert!(r.complete && r.text().contains("request body too large"), "{what}: {}", r.text());
    assert!(r.interim.is_empty(), "{what}: interim heads before the 413");
    assert_eq!(cursor.position() as usize, answer.len(), "{what}: bytes after the 413");
}

/// Keep writing until the server cuts the connection; how much and how long.
fn write_until_cut(s: &mut TcpStream, chunk: usize, pause: Duration, give_up: Duration) -> (usize, Duration) {
    let start = Instant::now();
    let buf = vec![b'z'; chunk];
    let mut sent = 0;
    while start.elapsed() < give_up {
        match s.write(&buf) {
            Ok(n) => sent += n,
            Err(_) => return (sent, start.elapsed()),
        }
        std::thread::sleep(pause);
    }
    panic!("never cut: {sent} bytes in {:?}", start.elapsed());
}

/// Issue #20 item 9: a 413 reaches a client that uploads 40 MiB before it
/// reads, with the default settings (32 MiB body limit). main cut lingering
/// at 32 MiB (`NOSLATE_FC_LINGER_BYTES`), so the client's write failed with
/// EPIPE / ECONNRESET and the answer was lost.
#[test]
fn answer_reaches_a_40_mib_upload_first_client() {
    let dir = TempDir::new("linger40");
    let _peer = Peer::start(&dir, &[]);
    let fc = Fc::start(&dir, &[]);
    fc.wait_ready();
    match upload_then_read(fc.port, "echo", 40 * 1024 * 1024) {
        Ok((413, _)) => {}
        other => panic!("40 MiB over the 32 MiB limit: {other:?}, want 413"),
    }
    let r = fc.invoke("echo", b"next");
    assert_eq!((r.status, r.body.as_slice()), (200, &b"next"[..]));
}

#[test]
fn client_sending_past_the_bounds_is_cut() {
    let dir = TempDir::new("lingercut");
    let _peer = Peer::start(&dir, &[]);
    let fc = Fc::start(
        &dir,
        &[("NOSLATE_FC_MAX_BODY", "1024"), ("NOSLATE_FC_LINGER_MS", "1500"), ("NOSLATE_FC_LINGER_TIMEOUT_MS", "1000")],
    );
    fc.wait_ready();
    // An endless fast upload behind a 413 is cut by the total time, not
    // by how much it sent.
    let mut s = connect(fc.port);
    let answer = read_all_along(&s);
    s.write_all(&head("echo", 1 << 40)).unwrap();
    let (sent, took) = write_until_cut(&mut s, 64 * 1024, Duration::ZERO, Duration::from_secs(30));
    assert!(took >= Duration::from_millis(1500), "cut before the time bound: {took:?} ({sent} bytes)");
    assert_413(&answer.join().unwrap(), "fast upload");
    // Time bound: a slow but steady upload (each read well within the
    // per-read wait) is cut once the total time passes.
    let mut s = connect(fc.port);
    let answer = read_all_along(&s);
    s.write_all(&head("echo", 1 << 40)).unwrap();
    let (_, took) = write_until_cut(&mut s, 1024, Duration::from_millis(50), Duration::from_secs(30));
    assert!(took >= Duration::from_millis(1500), "cut before the time bound: {took:?}");
    assert_413(&answer.join().unwrap(), "slow upload");
    // The answer arrived before the cut, and the server still serves.
    let r = fc.invoke("echo", b"still here");
    assert_eq!((r.status, r.body.as_slice()), (200, &b"still here"[..]));
}
