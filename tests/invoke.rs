//! The invoke path end to end: real TCP clients → noslate-fc → the Noslated
//! test fixture (tests/peer, @grpc/grpc-js 1.8.8 as in Noslated) over a unix
//! socket, and back.

mod support;

use std::io::{Read, Write};
use std::time::{Duration, Instant};

use support::{pattern, read_response, stack, stack_kind, Fc, Peer, PeerKind, TempDir};

/// HTTP invocations that pick a fixture behaviour with x-noslate-function
/// need the operator's opt-in (the default believes events and local calls).
const HTTP_MAY_CHOOSE: (&str, &str) = ("NOSLATE_FC_FUNCTION_HEADER", "all");

fn echo_sizes(fc: &Fc) {
    for size in [0usize, 1, 64 * 1024, 1 << 20] {
        let body = pattern(size);
        let r = fc.invoke("echo", &body);
        assert_eq!(r.status, 200, "size {size}: {}", r.text());
        assert_eq!(r.header("x-fc-status"), Some("200"));
        assert!(r.complete, "size {size}");
        assert_eq!(r.body.len(), size);
        assert!(r.body == body, "size {size}: body differs");
    }
}

#[test]
fn echo_bodies_byte_exact() {
    let (_dir, _peer, fc) = stack("echo", &[]);
    echo_sizes(&fc);
}

#[test]
fn echo_against_grpcio_peer() {
    let (_dir, _peer, fc) = stack_kind(PeerKind::Python, "echo-py", &[HTTP_MAY_CHOOSE]);
    echo_sizes(&fc);
    let r = fc.invoke("error-before-head", b"x");
    assert_eq!(r.status, 404);
    assert!(r.text().contains("errorMessage"), "{}", r.text());
    let r = fc.invoke("error-after-head", b"x");
    assert_eq!((r.status, r.complete, r.text().as_str()), (200, false, "part1part2"));
    let body = pattern(32 << 20);
    let r = fc.invoke("echo", &body);
    assert!(r.complete && r.body == body, "32 MiB echo through grpcio differs");
    let r = fc.invoke("big-3000000", b"");
    assert!(r.complete && r.body == pattern(3_000_000));
    let r = fc.request(b"POST /p?q=1 HTTP/1.1\r\nx-fc-control-path: /http-invoke\r\nx-noslate-function: inspect\r\nx-rep: 1\r\nx-rep: 2\r\ncontent-length: 2\r\n\r\nab");
    let v: serde_json::Value = serde_json::from_slice(&r.body).unwrap();
    assert_eq!(
        (v["url"].as_str(), v["method"].as_str(), v["bodyLength"].as_u64()),
        (Some("/p?q=1"), Some("POST"), Some(2))
    );
    let port = fc.port;
    let threads: Vec<_> = (0..64)
        .map(|i| {
            std::thread::spawn(move || {
                let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
                s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
                let body = format!("grpcio-{i}");
                let raw = format!(
                    "POST /invoke HTTP/1.1\r\nx-noslate-function: echo\r\ncontent-length: {}\r\n\r\n{body}",
                    body.len()
                );
                s.write_all(raw.as_bytes()).unwrap();
                assert_eq!(read_response(&mut s).unwrap().text(), body);
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
}

#[test]
fn echo_32_mib_both_ways_with_bounded_rss() {
    let (_dir, _peer, fc) = stack("echo32", &[]);
    let body = pattern(32 << 20);
    let r = fc.invoke("echo", &body);
    assert_eq!(r.status, 200);
    assert!(r.complete);
    assert!(r.body == body, "32 MiB echo differs");
    let peak = fc.proc.peak_rss_kib();
    eprintln!("peak RSS after 32 MiB echo: {peak} KiB");
    assert!(peak < 8 * 1024, "peak RSS {peak} KiB (issue 4: under 8 MiB)");
}

#[test]
fn chunked_request_body() {
    let (_dir, _peer, fc) = stack("chunked", &[]);
    let mut s = fc.connect();
    s.write_all(b"POST /invoke HTTP/1.1\r\nx-noslate-function: echo\r\ntransfer-encoding: chunked\r\n\r\n").unwrap();
    s.write_all(b"5\r\nhello\r\n").unwrap();
    std::thread::sleep(Duration::from_millis(50));
    s.write_all(b"6;ext=1\r\n world\r\n0\r\nx-trailer: y\r\n\r\n").unwrap();
    let r = read_response(&mut s).unwrap();
    assert_eq!(r.status, 200);
    assert_eq!(r.text(), "hello world");
}

#[test]
fn metadata_reaches_the_function() {
    let (_dir, peer, fc) = stack("meta", &[HTTP_MAY_CHOOSE]);
    let raw = b"PUT /users/7?id=1&x=2 HTTP/1.1\r\nhost: example\r\nx-fc-control-path: /http-invoke\r\n\
x-noslate-function: inspect\r\nx-fc-request-id: req-42\r\nx-fc-region: cn-hangzhou\r\n\
x-fc-access-key-secret: SECRET\r\nconnection: keep-alive\r\nx-rep: a\r\nx-rep: b\r\ncontent-length: 3\r\n\r\nabc";
    let r = fc.request(raw);
    assert_eq!(r.status, 200, "{}", r.text());
    let v: serde_json::Value = serde_json::from_slice(&r.body).unwrap();
    assert_eq!(v["name"], "inspect");
    assert_eq!(v["url"], "/users/7?id=1&x=2");
    assert_eq!(v["method"], "PUT");
    assert_eq!(v["requestId"], "req-42");
    assert_eq!(v["bodyLength"], 3);
    let headers: Vec<(String, String)> = v["headers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| (p[0].as_str().unwrap().to_string(), p[1].as_str().unwrap().to_string()))
        .collect();
    let reps: Vec<&str> = headers.iter().filter(|(k, _)| k == "x-rep").map(|(_, v)| v.as_str()).collect();
    assert_eq!(reps, ["a", "b"], "repeated headers kept in order");
    assert!(!headers.iter().any(|(k, _)| k == "connection"), "hop-by-hop removed");
    assert!(!headers.iter().any(|(k, _)| k.starts_with("x-fc-access")), "credentials not forwarded");
    assert!(v["baggage"].to_string().contains("cn-hangzhou"));
    let deadline = v["deadline"].as_f64().unwrap();
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_millis() as f64;
    assert!(deadline > now && deadline < now + 11_000.0, "deadline {deadline} vs now {now}");
    assert!(!fc.stdout_text().contains("SECRET") && !fc.proc.stderr_text().contains("SECRET"));
    drop(peer);
}

#[test]
fn function_status_and_headers_pass_through() {
    let (_dir, _peer, fc) = stack("status", &[HTTP_MAY_CHOOSE]);
    let r = fc.request(b"GET /x HTTP/1.1\r\nx-fc-control-path: /http-invoke\r\nx-noslate-function: status-201\r\n\r\n");
    assert_eq!(r.status, 201);
    assert_eq!(r.header("x-custom"), Some("1"));
    assert_eq!(r.headers_named("set-cookie"), ["a=1", "b=2"]);
    assert_eq!(r.text(), "status 201");
}

#[test]
fn errors_map_to_statuses() {
    let (_dir, peer, fc) = stack("errors", &[("NOSLATE_FC_TIMEOUT_MS", "1500"), HTTP_MAY_CHOOSE]);
    // (function, event status, HTTP-trigger status, errorName, left open by the plane)
    let cases: &[(&str, u16, u16, &str, bool)] = &[
        ("not-found", 404, 404, "Error", true),
        ("rate-limit", 404, 429, "Error", true),
        ("no-worker", 404, 503, "Error", true),
        ("queue-timeout", 404, 504, "Error", true),
        ("error-before-head", 404, 502, "NoslatedError", true),
        ("head-timeout", 404, 504, "NoslatedError", true),
        ("circuit-breaker", 404, 503, "Error", true),
        ("grpc-error", 404, 503, "", false),
    ];
    let mut left_open = Vec::new();
    for (function, event_status, http_status, error_name, open) in cases {
        let id = format!("err-{function}-event");
        let raw = format!(
            "POST /invoke HTTP/1.1\r\nx-noslate-function: {function}\r\nx-fc-request-id: {id}\r\ncontent-length: 1\r\n\r\nx"
        );
        let r = fc.request(raw.as_bytes());
        assert_eq!(r.status, *event_status, "{function}: {}", r.text());
        assert_eq!(r.header("x-fc-status"), Some("404"));
        let body: serde_json::Value =
            serde_json::from_slice(&r.body).unwrap_or_else(|e| panic!("{function}: {e}: {}", r.text()));
        assert!(body["errorMessage"].as_str().is_some_and(|m| !m.is_empty()), "{function}: {body}");
        if !error_name.is_empty() {
            assert_eq!(body["errorName"], *error_name, "{function}: {body}");
        }
        assert!(!r.text().contains("stack"), "no stack by default");
        let http_id = format!("err-{function}-http");
        let raw = format!(
            "POST /f HTTP/1.1\r\nx-fc-control-path: /http-invoke\r\nx-noslate-function: {function}\r\nx-fc-request-id: {http_id}\r\ncontent-length: 1\r\n\r\nx"
        );
        let r = fc.request(raw.as_bytes());
        assert_eq!(r.status, *http_status, "{function} (http): {}", r.text());
        if *open {
            left_open.extend([id, http_id]);
        }
    }
    // An error before the head leaves the call open (the data plane never
    // ends it): each of those streams must be cancelled by us (RST_STREAM:
    // reason "cancelled"), not leaked until the gRPC deadline expires it
    // (reason "deadline"). (A retried attempt shows its id again: a set.)
    let cancelled = |events: &[serde_json::Value]| -> Vec<String> {
        let mut ids: Vec<String> = events
            .iter()
            .filter(|e| e["ev"] == "cancelled" && e["reason"] == "cancelled")
            .filter_map(|e| e["requestId"].as_str().map(str::to_string))
            .collect();
        ids.sort();
        ids.dedup();
        ids
    };
    left_open.sort();
    let start = Instant::now();
    while cancelled(&peer.events()) != left_open && start.elapsed() < Duration::from_secs(20) {
        std::thread::sleep(Duration::from_millis(50));
    }
    assert_eq!(cancelled(&peer.events()), left_open, "every stream left open is cancelled, and only those");
}

#[test]
fn error_after_head_cuts_the_response() {
    let (_dir, _peer, fc) = stack("cut", &[]);
    let r = fc.invoke("error-after-head", b"x");
    assert_eq!(r.status, 200);
    assert!(r.chunked);
    assert!(!r.complete, "a failed body must not end cleanly");
    assert_eq!(r.text(), "part1part2");
}

#[test]
fn deadline_gives_504_and_cancels_upstream() {
    let (_dir, peer, fc) = stack("deadline", &[("NOSLATE_FC_TIMEOUT_MS", "300"), HTTP_MAY_CHOOSE]);
    let start = Instant::now();
    let r = fc.request(b"GET /slow HTTP/1.1\r\nx-fc-control-path: /http-invoke\r\nx-noslate-function: never\r\n\r\n");
    assert_eq!(r.status, 504, "{}", r.text());
    // The 300 ms deadline, not the 10 s default (generous for a loaded machine).
    assert!(start.elapsed() < Duration::from_secs(8), "{:?}", start.elapsed());
    assert!(peer.wait_event(Duration::from_secs(5), |e| e["ev"] == "cancelled").is_some());
}

#[test]
fn keep_alive_and_pipelined_invokes() {
    let (_dir, _peer, fc) = stack("pipeinv", &[]);
    let mut s = fc.connect();
    let mut raw = Vec::new();
    for i in 0..20 {
        let body = format!("message-{i}");
        raw.extend_from_slice(
            format!(
                "POST /invoke HTTP/1.1\r\nx-noslate-function: echo\r\ncontent-length: {}\r\n\r\n{body}",
                body.len()
            )
            .as_bytes(),
        );
    }
    s.write_all(&raw).unwrap();
    for i in 0..20 {
        let r = read_response(&mut s).unwrap();
        assert_eq!(r.status, 200);
        assert_eq!(r.text(), format!("message-{i}"));
    }
    for i in 0..200 {
        let body = format!("ka-{i}");
        s.write_all(
            format!(
                "POST /invoke HTTP/1.1\r\nx-noslate-function: echo\r\ncontent-length: {}\r\n\r\n{body}",
                body.len()
            )
            .as_bytes(),
        )
        .unwrap();
        assert_eq!(read_response(&mut s).unwrap().text(), body);
    }
}

#[test]
fn concurrent_invokes() {
    let (_dir, _peer, fc) = stack("concurrent", &[]);
    let port = fc.port;
    let threads: Vec<_> = (0..256)
        .map(|i| {
            std::thread::spawn(move || {
                let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
                s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
                let body = format!("concurrent-{i}-{}", "x".repeat(i * 10));
                s.write_all(
                    format!(
                        "POST /invoke HTTP/1.1\r\nx-noslate-function: echo\r\ncontent-length: {}\r\n\r\n{body}",
                        body.len()
                    )
                    .as_bytes(),
                )
                .unwrap();
                let r = read_response(&mut s).unwrap();
                assert_eq!(r.status, 200);
                assert_eq!(r.text(), body);
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
}

#[test]
fn client_abort_mid_upload_cancels_upstream() {
    let (_dir, peer, fc) = stack("abortup", &[]);
    let mut s = fc.connect();
    s.write_all(b"POST /invoke HTTP/1.1\r\nx-noslate-function: echo\r\nx-fc-request-id: up-1\r\ncontent-length: 1000000\r\n\r\n")
        .unwrap();
    s.write_all(&[b'a'; 100_000]).unwrap();
    std::thread::sleep(Duration::from_millis(200));
    drop(s);
    assert!(peer.wait_event(Duration::from_secs(5), |e| e["ev"] == "cancelled" && e["requestId"] == "up-1").is_some());
    // Still serving.
    assert_eq!(fc.invoke("echo", b"after").text(), "after");
}

#[test]
fn client_abort_mid_download_cancels_upstream() {
    let (_dir, peer, fc) = stack("abortdown", &[]);
    let mut s = fc.connect();
    s.write_all(b"POST /invoke HTTP/1.1\r\nx-noslate-function: big-33554432\r\nx-fc-request-id: down-1\r\ncontent-length: 0\r\n\r\n")
        .unwrap();
    let mut buf = [0u8; 65536];
    let mut got = 0;
    while got < 1 << 20 {
        got += s.read(&mut buf).unwrap();
    }
    drop(s);
    assert!(peer
        .wait_event(Duration::from_secs(5), |e| e["ev"] == "cancelled" && e["requestId"] == "down-1")
        .is_some());
    assert_eq!(fc.invoke("echo", b"after").text(), "after");
}

#[test]
fn slow_client_big_response_keeps_rss_bounded() {
    let (_dir, _peer, fc) = stack("slowclient", &[]);
    let mut s = fc.connect();
    s.write_all(b"POST /invoke HTTP/1.1\r\nx-noslate-function: big-33554432\r\ncontent-length: 0\r\n\r\n").unwrap();
    // Read slowly at first, while other invokes run on the same data plane.
    let mut first = [0u8; 4096];
    s.read_exact(&mut first).unwrap();
    std::thread::sleep(Duration::from_millis(300));
    // The slow reader reads nothing more until these are done: an invoke
    // that waited for it would never be answered (the 30 s read timeout).
    for i in 0..20 {
        let r = fc.invoke("echo", format!("other-{i}").as_bytes());
        assert_eq!(r.text(), format!("other-{i}"));
    }
    let r = read_response_rest(&mut s, &first);
    assert!(r.complete);
    assert!(r.body == pattern(32 << 20), "big body differs");
    let peak = fc.proc.peak_rss_kib();
    eprintln!("peak RSS with slow 32 MiB reader: {peak} KiB");
    assert!(peak < 8 * 1024, "peak RSS {peak} KiB (issue 4: under 8 MiB)");
}

fn read_response_rest(s: &mut std::net::TcpStream, already: &[u8]) -> support::Response {
    let mut chain = std::io::Cursor::new(already.to_vec()).chain(s);
    read_response(&mut chain).unwrap()
}

#[test]
fn data_plane_killed_mid_stream_gives_502_then_recovers() {
    let dir = TempDir::new("kill");
    let peer = Peer::start(&dir, &[]);
    let fc = Fc::start(&dir, &[]);
    fc.wait_ready();
    let r = fc.invoke("crash", b"x");
    assert_eq!(r.status, 404, "{}", r.text());
    assert!(r.text().contains("DataPlaneLost") || r.text().contains("data plane"), "{}", r.text());
    // The crash took the data plane process down; a new one starts on the
    // same socket (the control plane lives on and re-sends the profiles).
    let mut peer = peer;
    peer.restart_dp();
    // Every answer until the first success must be "no data plane yet";
    // a stale, misrouted or other answer fails.
    support::until_served("after the data plane restart", Duration::from_secs(10), &["NoDataPlane"], |n| {
        support::echo_attempt(&fc, &format!("recover-{n}"))
    });
}

#[test]
fn head_request_gets_no_body() {
    let (_dir, _peer, fc) = stack("headreq", &[HTTP_MAY_CHOOSE]);
    let mut s = fc.connect();
    s.write_all(b"HEAD /x HTTP/1.1\r\nx-fc-control-path: /http-invoke\r\nx-noslate-function: status-200\r\n\r\n")
        .unwrap();
    let r = support::read_response_to(&mut s, Some(true)).unwrap();
    assert_eq!(r.status, 200);
    // The connection is still usable: nothing stray was written.
    s.write_all(b"GET /pre-freeze HTTP/1.1\r\n\r\n").unwrap();
    assert_eq!(read_response(&mut s).unwrap().status, 200);
}

#[test]
fn broken_chunked_framing_is_refused() {
    let (_dir, _peer, fc) = stack("badchunk", &[]);
    let cases: &[(&str, &[u8])] = &[
        ("bare LF in chunk size", b"3\nabc\r\n0\r\n\r\n"),
        ("chunk size junk", b"zz\r\n"),
        ("chunk size overflow", b"fffffffffffffffffffff\r\n"),
        ("missing CRLF after data", b"3\r\nabcX\r\n0\r\n\r\n"),
    ];
    for (name, body) in cases {
        let mut raw =
            b"POST /invoke HTTP/1.1\r\nx-noslate-function: echo\r\ntransfer-encoding: chunked\r\n\r\n".to_vec();
        raw.extend_from_slice(body);
        let out = fc.raw_exchange(&raw);
        assert_eq!(support::status_of(&out), Some(400), "{name}: {}", String::from_utf8_lossy(&out));
    }
    assert_eq!(fc.invoke("echo", b"still fine").text(), "still fine");
}

/// The data plane writes responses without waiting for flow control and
/// Node refuses new streams on a connection above 10 MB of queued data
/// (docs/noslated-protocol.md §3.2). A slow reader of a big response must not
/// starve everyone else sharing the data plane.
#[test]
fn slow_reader_does_not_block_others_when_plane_ignores_backpressure() {
    let (_dir, _peer, fc) = stack("slowfast", &[]);
    let mut s = fc.connect();
    s.write_all(b"POST /invoke HTTP/1.1\r\nx-noslate-function: big-fast-33554432\r\ncontent-length: 0\r\n\r\n")
        .unwrap();
    let mut first = [0u8; 4096];
    s.read_exact(&mut first).unwrap();
    std::thread::sleep(Duration::from_millis(500));
    // The slow reader reads nothing more until these are done: an invoke
    // that waited for it would never be answered (the 30 s read timeout).
    for i in 0..20 {
        let r = fc.invoke("echo", format!("other-{i}").as_bytes());
        assert_eq!(r.status, 200, "other invoke {i} failed: {}", r.text());
        assert_eq!(r.text(), format!("other-{i}"));
    }
    let r = read_response_rest(&mut s, &first);
    assert!(r.complete);
    assert!(r.body == pattern(32 << 20), "big body differs");
}

/// docs/noslated-protocol.md §3.4: Node 20 drops a connection after ~1,000 client
/// resets. 20,000 sequential invokes (no resets: finished streams are never
/// reset), then 5,000 of which every third fails before its head (each needs
/// a cancel) — all answered correctly, no failure.
#[test]
fn twenty_thousand_invokes_and_the_reset_budget() {
    let (_dir, _peer, fc) = stack("budget", &[]);
    let mut s = fc.connect();
    let send = |s: &mut std::net::TcpStream, function: &str, body: &str| {
        let raw = format!(
            "POST /invoke HTTP/1.1\r\nx-noslate-function: {function}\r\ncontent-length: {}\r\n\r\n{body}",
            body.len()
        );
        s.write_all(raw.as_bytes()).unwrap();
        read_response(s).unwrap()
    };
    for i in 0..20_000 {
        let body = format!("seq-{i}");
        let r = send(&mut s, "echo", &body);
        assert_eq!(r.status, 200, "invoke {i}: {}", r.text());
        assert_eq!(r.text(), body);
    }
    for i in 0..5_000 {
        if i % 3 == 0 {
            let r = send(&mut s, "error-before-head", "x");
            assert_eq!(r.status, 404, "invoke {i}: {}", r.text());
            assert!(r.text().contains("boom"), "{}", r.text());
        } else {
            let body = format!("mix-{i}");
            let r = send(&mut s, "echo", &body);
            assert_eq!(r.status, 200, "invoke {i}: {}", r.text());
            assert_eq!(r.text(), body);
        }
    }
    let stderr = fc.proc.stderr_text();
    assert!(!stderr.contains("GOAWAY"), "the data plane dropped us: {stderr}");
    // 1,667 cancels: the connection was rotated before Node's allowance ran out.
    assert!(stderr.contains("resets: moving new streams"), "{stderr}");
}

#[test]
fn fc_base_path_is_stripped_for_http_invocations() {
    // The end user's x-noslate-function is ignored (the default mode): the
    // default function serves.
    let (_dir, _peer, fc) = stack("basepath", &[("NOSLATE_FUNCTION", "inspect")]);
    let raw = b"GET /2016-08-15/proxy/svc/fn/users?id=1 HTTP/1.1\r\nx-fc-control-path: /http-invoke\r\n\
x-fc-base-path: /2016-08-15/proxy/svc/fn/\r\nx-noslate-function: inspect\r\n\r\n";
    let r = fc.request(raw);
    let v: serde_json::Value = serde_json::from_slice(&r.body).unwrap();
    assert_eq!(v["url"], "/users?id=1");
    let raw = b"GET /2016-08-15/proxy/svc/fn HTTP/1.1\r\nx-fc-control-path: /http-invoke\r\n\
x-fc-base-path: /2016-08-15/proxy/svc/fn/\r\nx-noslate-function: inspect\r\n\r\n";
    let v: serde_json::Value = serde_json::from_slice(&fc.request(raw).body).unwrap();
    assert_eq!(v["url"], "/");
    let raw = b"GET /2016-08-15/proxy/svc/fnx?a HTTP/1.1\r\nx-fc-control-path: /http-invoke\r\n\
x-fc-base-path: /2016-08-15/proxy/svc/fn/\r\nx-noslate-function: inspect\r\n\r\n";
    let v: serde_json::Value = serde_json::from_slice(&fc.request(raw).body).unwrap();
    assert_eq!(v["url"], "/2016-08-15/proxy/svc/fnx?a", "not under the base path: unchanged");
}

/// An invoke whose body arrives while no data plane is connected parks until
/// one appears. Once it is dispatched, the rest of the body — still in the
/// socket, since a parked invoke reads no more than a head's worth — must be
/// read and forwarded (found by the soak: the body stalled at the bytes
/// already buffered when a connection rotation parked the invoke, until the
/// deadline cut the response).
#[test]
fn body_larger_than_a_read_waits_for_the_plane_then_streams() {
    let dir = TempDir::new("parked");
    let fc = Fc::start(&dir, &[("NOSLATE_FC_READY_WAIT_MS", "10000"), ("NOSLATE_FC_TIMEOUT_MS", "8000")]);
    for (size, chunked) in [(200 * 1024, false), (200 * 1024, true), (20 * 1024, false)] {
        let body = pattern(size);
        let mut s = fc.connect();
        let framing =
            if chunked { "transfer-encoding: chunked".to_string() } else { format!("content-length: {size}") };
        let head = format!("POST /invoke HTTP/1.1\r\nhost: x\r\nx-noslate-function: echo\r\n{framing}\r\n\r\n");
        let mut wire = head.into_bytes();
        if chunked {
            wire.extend_from_slice(format!("{size:x}\r\n").as_bytes());
            wire.extend_from_slice(&body);
            wire.extend_from_slice(b"\r\n0\r\n\r\n");
        } else {
            wire.extend_from_slice(&body);
        }
        let writer = {
            let mut w = s.try_clone().unwrap();
            std::thread::spawn(move || w.write_all(&wire))
        };
        // Let noslate-fc read what it will of the body while it has no plane.
        std::thread::sleep(Duration::from_millis(300));
        let peer = Peer::start(&dir, &[]);
        let r = read_response(&mut s).expect("a response");
        writer.join().unwrap().unwrap();
        assert_eq!(r.status, 200, "size {size} chunked {chunked}: {}", r.text());
        assert!(r.complete, "size {size} chunked {chunked}: cut after {} bytes", r.body.len());
        assert!(r.body == body, "size {size} chunked {chunked}: body differs");
        // Next round starts without a plane again.
        drop(peer);
        let start = Instant::now();
        while fc.proc.stderr_text().matches("dp-0.sock").count() < 1 && start.elapsed() < Duration::from_secs(2) {
            std::thread::sleep(Duration::from_millis(20));
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// A body that trickles in is still forwarded as few, large messages: each
/// body message is announced for the rest of the Content-Length body (or of
/// the chunk), up to 64 KiB, and filled as bytes arrive — how much is read
/// at a time does not decide how many messages the data plane decodes.
#[test]
fn trickled_body_goes_as_few_large_messages() {
    let (_dir, peer, fc) = stack("trickle", &[]);
    let size = 200 * 1024;
    let body = pattern(size);
    for chunked in [false, true] {
        let id = format!("trickle-{chunked}");
        let mut s = fc.connect();
        let framing =
            if chunked { "transfer-encoding: chunked".to_string() } else { format!("content-length: {size}") };
        let head =
            format!("POST /invoke HTTP/1.1\r\nx-noslate-function: echo\r\nx-fc-request-id: {id}\r\n{framing}\r\n\r\n");
        s.write_all(head.as_bytes()).unwrap();
        // Chunked: two chunks of 100 KiB. Either way, 4 KiB at a time.
        let mut wire = Vec::new();
        if chunked {
            for half in body.chunks(size / 2) {
                wire.extend_from_slice(format!("{:x}\r\n", half.len()).as_bytes());
                wire.extend_from_slice(half);
                wire.extend_from_slice(b"\r\n");
            }
            wire.extend_from_slice(b"0\r\n\r\n");
        } else {
            wire.extend_from_slice(&body);
        }
        for piece in wire.chunks(4096) {
            s.write_all(piece).unwrap();
            std::thread::sleep(Duration::from_micros(500));
        }
        let r = read_response(&mut s).unwrap();
        assert_eq!(r.status, 200, "{}", r.text());
        assert!(r.body == body, "chunked {chunked}: body differs");
        let end = peer
            .wait_event(Duration::from_secs(5), |e| e["ev"] == "invoke-end" && e["requestId"] == id.as_str())
            .expect("invoke-end");
        assert_eq!(end["bytes"], size);
        // Head + 64 + 64 + 64 + 8 KiB; chunked: head + (64 + 36) × 2.
        assert_eq!(end["messages"], 5, "chunked {chunked}: {end}");
    }
}

/// `x-noslate-service` goes out as `invokeService`, which the data plane
/// resolves through its service profiles (the fixture's `--service`, as an
/// operator would have set them): the function's answer, or Noslated's
/// code 5 errors, named, for an unknown service or function.
#[test]
fn invoke_service_end_to_end() {
    let dir = TempDir::new("service");
    let peer = Peer::start(&dir, &["--service", "greet=echo", "--service", "ghost=no-such-function"]);
    let fc = Fc::start(&dir, &[]);
    fc.wait_ready();
    let call = |service: &str, id: &str, body: &str| {
        fc.request(
            format!(
                "POST /invoke HTTP/1.1\r\nhost: x\r\nx-noslate-service: {service}\r\nx-fc-request-id: {id}\r\ncontent-length: {}\r\n\r\n{body}",
                body.len()
            )
            .as_bytes(),
        )
    };
    let r = call("greet", "svc-1", "hello service");
    assert_eq!((r.status, r.text().as_str()), (200, "hello service"));
    assert_eq!(r.header("x-request-id"), Some("svc-1"));
    let ev = peer.wait_event(Duration::from_secs(5), |e| e["ev"] == "invoke" && e["requestId"] == "svc-1").unwrap();
    assert_eq!((ev["rpc"].as_str(), ev["name"].as_str()), (Some("invokeService"), Some("greet")));
    for (service, message) in
        [("ghost", "No function named no-such-function registered in this node."), ("nope", "Service not found.")]
    {
        let r = call(service, &format!("svc-{service}"), "x");
        assert_eq!(r.status, 404, "{service}: {}", r.text());
        let body: serde_json::Value = serde_json::from_slice(&r.body).unwrap();
        assert_eq!((body["errorMessage"].as_str(), body["errorCode"].as_i64()), (Some(message), Some(5)), "{body}");
    }
}

/// A data plane that answers and ends the call before the client has sent
/// its whole body (`early`): the answer is passed on complete, and the
/// gateway keeps serving.
#[test]
fn plane_answers_before_the_upload_ends() {
    let (_dir, _peer, fc) = stack("early", &[]);
    let mut s = fc.connect();
    s.write_all(b"POST /invoke HTTP/1.1\r\nx-noslate-function: early\r\ncontent-length: 1048576\r\n\r\n").unwrap();
    s.write_all(&[b'e'; 1000]).unwrap();
    let r = read_response(&mut s).expect("the early answer");
    assert_eq!((r.status, r.complete, r.text().as_str()), (200, true, "early"));
    assert_eq!(fc.invoke("echo", b"after early").text(), "after early");
}

/// A data plane whose checkHealth says unhealthy (Noslated's circuit
/// breaker): /initialize says it is not ready and why. Invokes still go to
/// it, and it decides: an open circuit breaker answers code 9
/// (`circuit-breaker`), which the gateway passes on as 503.
#[test]
fn unhealthy_data_plane_is_not_ready() {
    let dir = TempDir::new("unhealthy");
    let peer = Peer::start(&dir, &["--unhealthy"]);
    let fc = Fc::start(&dir, &[("NOSLATE_FC_READY_WAIT_MS", "1000"), HTTP_MAY_CHOOSE]);
    let r = fc.request(
        b"POST /initialize HTTP/1.1\r\nhost: x\r\nx-fc-initialization-timeout: 2\r\ncontent-length: 0\r\n\r\n",
    );
    assert_eq!(r.status, 404, "{}", r.text());
    // (The plane's own reason, "Circuit Breaker Enabled", is not passed on.)
    assert!(r.text().contains("dp-0.sock") && r.text().contains("unhealthy"), "names the cause: {}", r.text());
    assert!(peer.events().iter().any(|e| e["ev"] == "checkHealth" && e["plane"] == "dp"));
    let r = fc.request(
        b"POST /f HTTP/1.1\r\nx-fc-control-path: /http-invoke\r\nx-noslate-function: circuit-breaker\r\ncontent-length: 1\r\n\r\nx",
    );
    assert_eq!(r.status, 503, "{}", r.text());
    let body: serde_json::Value = serde_json::from_slice(&r.body).unwrap();
    assert_eq!(body["errorMessage"], "System circuit breaker opened.", "{body}");
}

/// A control plane whose first health checks say unhealthy (busy at start)
/// is asked again on the same connection, so the profiles are pushed and the
/// first invoke of a profile function is served. Before, one failed check
/// kept the connection not ready for its whole life: the profiles were never
/// pushed and every such invoke got 503 NotReady.
#[test]
fn a_failed_health_check_is_made_again() {
    let dir = TempDir::new("health-again");
    let peer = Peer::start_with(PeerKind::Node, &dir, &[], &["--unhealthy-checks", "2"]);
    let fc = Fc::start(&dir, &[("NOSLATE_FC_READY_WAIT_MS", "8000")]);
    let r = fc.invoke("echo", b"served");
    assert_eq!((r.status, r.text().as_str()), (200, "served"));
    let checks = peer.events().iter().filter(|e| e["ev"] == "checkHealth" && e["plane"] == "cp").count();
    assert!(checks >= 3, "{checks} control-plane health checks: the failed ones were not made again");
}

/// In the window where the control plane said `set: true` but the data
/// plane does not know the function yet (code 5), the first invoke, sent
/// right after /initialize, is still served: not one error comes back.
#[test]
fn first_invoke_in_the_profile_window_is_served() {
    let dir = TempDir::new("window");
    let peer = Peer::start_with(PeerKind::Node, &dir, &[], &["--profile-delay", "500"]);
    let fc = Fc::start(&dir, &[]);
    fc.wait_ready();
    let known = peer.events().iter().any(|e| e["ev"] == "profiles-applied" && e["forwarded"] == true);
    let served = support::until_served("first invoke in the window", Duration::from_secs(10), &[], |n| {
        support::echo_attempt(&fc, &format!("window-{n}"))
    });
    eprintln!("the data plane knew echo at /initialize: {known}; served after {:?}", served.took);
    assert!(peer.events().iter().any(|e| e["ev"] == "invoke" && e["name"] == "echo"));
}
