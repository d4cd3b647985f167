//! The HTTP/1.1 front end through the real binary over loopback TCP, with no
//! data plane running: hooks, limits, smuggling defences, pipelining,
//! keep-alive, 100-continue, and a third-party client (curl).

mod support;

use std::io::{Read, Write};
use std::time::Duration;

use support::{read_response, status_of, Fc, TempDir};

fn fc(dir: &TempDir) -> Fc {
    Fc::start(dir, &[("NOSLATE_FC_READY_WAIT_MS", "200"), ("NOSLATE_FC_HEADER_TIMEOUT_MS", "800")])
}

#[test]
fn hooks_answer_and_keep_alive() {
    let dir = TempDir::new("hooks");
    let fc = fc(&dir);
    let r = fc.request(b"GET /pre-freeze HTTP/1.1\r\nx-fc-request-id: r1\r\n\r\n");
    assert_eq!(r.status, 200);
    assert_eq!(r.header("x-fc-status"), Some("200"));
    assert!(fc.stdout_until("RequestId: r1").contains("FC PreFreeze Start RequestId: r1"));
    // Wrong method on a hook path.
    let r = fc.request(b"POST /pre-freeze HTTP/1.1\r\ncontent-length: 0\r\n\r\n");
    assert_eq!(r.status, 405);
    assert_eq!(r.header("allow"), Some("GET"));
}

#[test]
fn invoke_without_data_plane_is_503_for_http_and_404_for_events() {
    let dir = TempDir::new("noplane");
    let fc = fc(&dir);
    let r = fc.request(
        b"POST /invoke HTTP/1.1\r\nx-noslate-function: f\r\nx-fc-request-id: abc\r\ncontent-length: 2\r\n\r\nhi",
    );
    assert_eq!(r.status, 404, "{}", r.text());
    assert_eq!(r.header("x-fc-status"), Some("404"));
    assert!(r.text().contains("no data plane connected"), "{}", r.text());
    let out = fc.stdout_until("FC Invoke End RequestId: abc");
    assert!(out.contains("FC Invoke Start RequestId: abc") && out.contains("FC Invoke End RequestId: abc"), "{out}");
    // A local HTTP request (no control path) may choose; an end user's may not.
    let r = fc.request(b"GET /users?id=1 HTTP/1.1\r\nx-noslate-function: f\r\n\r\n");
    assert_eq!(r.status, 503);
    let r = fc.request(b"GET /users?id=1 HTTP/1.1\r\nx-fc-control-path: /http-invoke\r\nx-noslate-function: f\r\n\r\n");
    assert_eq!(r.status, 400, "{}", r.text());
    assert!(r.text().contains("NoFunction"), "{}", r.text());
    // No function configured and none chosen.
    let r = fc.request(b"POST /invoke HTTP/1.1\r\ncontent-length: 0\r\n\r\n");
    assert_eq!(r.status, 400);
    assert!(r.text().contains("NOSLATE_FUNCTION"), "{}", r.text());
}

/// Each smuggling / malformed case: the expected status, then the connection
/// is closed by the server.
const BAD: &[(&str, &[u8], u16)] = &[
    ("CL and TE", b"POST /x HTTP/1.1\r\ncontent-length: 3\r\ntransfer-encoding: chunked\r\n\r\n0\r\n\r\n", 400),
    ("differing CL", b"POST /x HTTP/1.1\r\ncontent-length: 3\r\ncontent-length: 4\r\n\r\nabcd", 400),
    ("signed CL", b"POST /x HTTP/1.1\r\ncontent-length: +3\r\n\r\nabc", 400),
    ("negative CL", b"POST /x HTTP/1.1\r\ncontent-length: -1\r\n\r\n", 400),
    ("hex CL", b"POST /x HTTP/1.1\r\ncontent-length: 0x10\r\n\r\n", 400),
    ("CL overflow", b"POST /x HTTP/1.1\r\ncontent-length: 99999999999999999999999\r\n\r\n", 400),
    ("TE not last", b"POST /x HTTP/1.1\r\ntransfer-encoding: chunked, gzip\r\n\r\n", 400),
    ("TE gzip", b"POST /x HTTP/1.1\r\ntransfer-encoding: gzip\r\n\r\n", 501),
    ("obs-fold", b"POST /x HTTP/1.1\r\nx-a: 1\r\n  continued\r\ncontent-length: 0\r\n\r\n", 400),
    ("space before colon", b"POST /x HTTP/1.1\r\ncontent-length : 0\r\n\r\n", 400),
    ("garbage request line", b"HELLO\r\n\r\n", 400),
    ("bad version", b"GET / HTTP/2.0\r\n\r\n", 400),
    ("control char in value", b"GET / HTTP/1.1\r\nx-a: a\x01b\r\n\r\n", 400),
];

#[test]
fn smuggling_matrix_is_refused_and_closed() {
    let dir = TempDir::new("smuggle");
    let fc = fc(&dir);
    for (name, raw, want) in BAD {
        let out = fc.raw_exchange(raw);
        assert_eq!(status_of(&out), Some(*want), "{name}: {}", String::from_utf8_lossy(&out));
        // Exactly one response: nothing smuggled behind it was answered.
        let text = String::from_utf8_lossy(&out);
        assert_eq!(text.matches("HTTP/1.1 ").count(), 1, "{name}: {text}");
    }
}

#[test]
fn limits() {
    let dir = TempDir::new("limits");
    let fc = fc(&dir);
    let big_head = format!("GET / HTTP/1.1\r\nx-big: {}\r\n\r\n", "a".repeat(40_000));
    assert_eq!(status_of(&fc.raw_exchange(big_head.as_bytes())), Some(431));
    let long_target = format!("GET /{} HTTP/1.1\r\n\r\n", "a".repeat(9000));
    assert_eq!(status_of(&fc.raw_exchange(long_target.as_bytes())), Some(414));
    let too_big = b"POST /invoke HTTP/1.1\r\ncontent-length: 33554433\r\n\r\n";
    assert_eq!(status_of(&fc.raw_exchange(too_big)), Some(413));
}

#[test]
fn slowloris_head_gets_408() {
    let dir = TempDir::new("slow");
    let fc = fc(&dir);
    let mut s = fc.connect();
    s.write_all(b"GET /pre-freeze HTTP/1.1\r\nx-a: ").unwrap();
    let mut out = Vec::new();
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let _ = s.read_to_end(&mut out);
    assert_eq!(status_of(&out), Some(408), "{}", String::from_utf8_lossy(&out));
}

#[test]
fn head_one_byte_at_a_time() {
    let dir = TempDir::new("bytewise");
    let fc = fc(&dir);
    let mut s = fc.connect();
    for b in b"GET /pre-freeze HTTP/1.1\r\nhost: x\r\n\r\n" {
        s.write_all(&[*b]).unwrap();
    }
    let r = read_response(&mut s).unwrap();
    assert_eq!(r.status, 200);
}

#[test]
fn pipelined_requests_answered_in_order() {
    let dir = TempDir::new("pipe");
    let fc = fc(&dir);
    let mut s = fc.connect();
    let mut raw = Vec::new();
    for i in 0..10 {
        raw.extend_from_slice(format!("GET /pre-freeze HTTP/1.1\r\nx-fc-request-id: p{i}\r\n\r\n").as_bytes());
    }
    raw.extend_from_slice(b"POST /pre-freeze HTTP/1.1\r\ncontent-length: 0\r\n\r\n");
    s.write_all(&raw).unwrap();
    for _ in 0..10 {
        assert_eq!(read_response(&mut s).unwrap().status, 200);
    }
    assert_eq!(read_response(&mut s).unwrap().status, 405);
    let out = fc.stdout_until("End RequestId: p9\n");
    let order: Vec<usize> = (0..10).map(|i| out.find(&format!("Start RequestId: p{i}\n")).unwrap()).collect();
    assert!(order.windows(2).all(|w| w[0] < w[1]));
}

#[test]
fn thousand_keep_alive_requests_on_one_connection() {
    let dir = TempDir::new("keepalive");
    let fc = fc(&dir);
    let mut s = fc.connect();
    for _ in 0..1000 {
        s.write_all(b"GET /pre-freeze HTTP/1.1\r\nhost: x\r\n\r\n").unwrap();
        let r = read_response(&mut s).unwrap();
        assert_eq!(r.status, 200);
        assert!(r.complete);
    }
}

#[test]
fn http10_closes_and_connection_close_is_honoured() {
    let dir = TempDir::new("close");
    let fc = fc(&dir);
    let out = fc.raw_exchange(b"GET /pre-freeze HTTP/1.0\r\n\r\n");
    assert_eq!(status_of(&out), Some(200));
    let out = fc.raw_exchange(b"GET /pre-freeze HTTP/1.1\r\nconnection: close\r\n\r\nGET /pre-freeze HTTP/1.1\r\n\r\n");
    let text = String::from_utf8_lossy(&out);
    assert_eq!(text.matches("HTTP/1.1 200").count(), 1, "{text}");
}

#[test]
fn expect_continue_without_plane_gets_final_status() {
    let dir = TempDir::new("expect");
    let fc = fc(&dir);
    let mut s = fc.connect();
    s.write_all(b"POST /invoke HTTP/1.1\r\nx-noslate-function: f\r\ncontent-length: 5\r\nexpect: 100-continue\r\n\r\n")
        .unwrap();
    // No data plane: a final answer instead of 100 Continue (an interim
    // answer would invite a body that is never read).
    let r = read_response(&mut s).unwrap();
    assert!(
        r.interim.is_empty(),
        "interim answers: {:?}",
        r.interim.iter().map(|h| String::from_utf8_lossy(h)).collect::<Vec<_>>()
    );
    assert_eq!(r.status, 404, "{}", r.text());
    assert!(r.text().contains("NoDataPlane"), "{}", r.text());
}

#[test]
fn curl_talks_to_it() {
    let dir = TempDir::new("curl");
    let fc = fc(&dir);
    let out = std::process::Command::new("curl")
        .args(["-s", "-i", "--max-time", "10"])
        .arg(format!("http://127.0.0.1:{}/pre-freeze", fc.port))
        .output()
        .expect("curl is installed");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.starts_with("HTTP/1.1 200"), "{text}");
}

#[test]
fn bad_configuration_exits_2_naming_the_variable() {
    let out =
        std::process::Command::new(env!("CARGO_BIN_EXE_noslate-fc")).env("SERVER_PORT", "notaport").output().unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("SERVER_PORT"), "{err}");
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_noslate-fc")).arg("--help").output().unwrap();
    assert!(out.status.success());
    assert!(String::from_utf8_lossy(&out.stdout).contains("NOSLATED_WORKDIR"));
}

#[test]
fn pipelining_flood_from_a_client_that_does_not_read_is_bounded() {
    let dir = TempDir::new("flood");
    let fc = fc(&dir);
    let mut s = fc.connect();
    s.set_write_timeout(Some(Duration::from_secs(5))).unwrap();
    // Write 200,000 pipelined requests (5.8 MB) without reading a single
    // answer: the server must stop reading once its answers pile up (the
    // kernel buffers them for us up to our receive buffer and its send
    // buffer), so the rest stays unread in its socket's receive queue.
    let one = b"GET /pre-freeze HTTP/1.1\r\n\r\n";
    let batch = one.repeat(1000);
    let mut sent = 0usize;
    'flood: for _ in 0..200 {
        let mut off = 0;
        while off < batch.len() {
            match s.write(&batch[off..]) {
                Ok(n) => {
                    off += n;
                    sent += n;
                }
                Err(_) => break 'flood, // stalled for 5 s: fine, that is backpressure too
            }
        }
    }
    let written = sent / one.len();
    let ours = s.local_addr().unwrap().port();
    // The server stopped reading: its receive queue for this connection is
    // not empty, and does not drain while we wait (a server that kept
    // reading would empty it).
    let before = server_recv_queue(fc.port, ours).expect("the connection in /proc/net/tcp");
    std::thread::sleep(Duration::from_secs(1));
    let after = server_recv_queue(fc.port, ours).expect("the connection in /proc/net/tcp");
    assert!(before > 0 && after == before, "server receive queue {before} → {after} bytes: it kept reading");
    let rss = fc.proc.rss_kib();
    assert!(rss < 16 * 1024, "RSS {rss} KiB after {written} unread pipelined requests");
    // A well-behaved client is served meanwhile.
    assert_eq!(fc.request(b"GET /pre-freeze HTTP/1.1\r\n\r\n").status, 200);
    // And the flooder gets every answer once it reads (all alike: counted
    // in big reads, until 5 s of silence).
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let mut buf = vec![0u8; 1 << 20];
    let mut tail = Vec::new();
    let mut answered = 0;
    loop {
        match std::io::Read::read(&mut s, &mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => {
                tail.extend_from_slice(&buf[..n]);
                answered += tail.windows(9).filter(|w| *w == b"HTTP/1.1 ").count();
                let keep = tail.len().min(8);
                tail.drain(..tail.len() - keep);
            }
        }
        if answered >= written {
            break;
        }
    }
    eprintln!("flood: {written} requests written; server receive queue held {before} bytes; {answered} answers");
    assert_eq!(answered, written);
}

/// Bytes waiting unread in the server's receive queue of the loopback
/// connection server port → client port (/proc/net/tcp, IPv4).
fn server_recv_queue(server: u16, client: u16) -> Option<u64> {
    let table = std::fs::read_to_string("/proc/net/tcp").ok()?;
    let local = format!(":{server:04X}");
    let remote = format!(":{client:04X}");
    table.lines().skip(1).find_map(|line| {
        let f: Vec<&str> = line.split_whitespace().collect();
        if f.len() > 4 && f[1].ends_with(&local) && f[2].ends_with(&remote) {
            u64::from_str_radix(f[4].split(':').nth(1)?, 16).ok()
        } else {
            None
        }
    })
}
