//! Issue #20: hardening of a process that is PID 1 of a container serving
//! the internet. One test per item, through the real binary and the
//! Noslated test fixture (tests/peer/noslated-peer.js, with the behaviours
//! of tests/peer/hardening-behaviours.js); RELIABILITY.md and SECURITY.md
//! name each test.

mod support;

use std::io::{Read, Write};
use std::time::{Duration, Instant};

use support::{read_response, stack, Fc, Response};

fn json(r: &Response) -> serde_json::Value {
    serde_json::from_slice(&r.body).unwrap_or_else(|_| panic!("not JSON ({}): {}", r.status, r.text()))
}

/// An HTTP invocation as FC forwards it.
fn http_get(target: &str, extra: &str) -> Vec<u8> {
    format!("GET {target} HTTP/1.1\r\nhost: x\r\nx-fc-control-path: /http-invoke\r\n{extra}\r\n").into_bytes()
}

fn alive(fc: &mut Fc) {
    assert!(fc.proc.child.try_wait().unwrap().is_none(), "noslate-fc exited: {}", fc.proc.stderr_text());
}

/// Item 1: numbers from headers are bounded and checked. main panicked on
/// `Instant + Duration` overflow for `x-fc-initialization-timeout:
/// 18446744073709551615` and the process (PID 1) aborted: no answer.
#[test]
fn huge_numbers_in_headers_do_not_kill_the_process() {
    let (_dir, _peer, mut fc) = stack("hard-numbers", &[]);
    for value in ["18446744073709551615", "18446744073709551616", "99999999999999999999999999", "86401", "-1", "+5"] {
        let raw = format!(
            "POST /initialize HTTP/1.1\r\nhost: x\r\nx-fc-initialization-timeout: {value}\r\ncontent-length: 0\r\n\r\n"
        );
        let r = fc.request(raw.as_bytes());
        assert_eq!(r.status, 200, "{value}: {}", r.text());
        let raw = format!(
            "POST /invoke HTTP/1.1\r\nhost: x\r\nconnection: close\r\nx-noslate-function: echo\r\n\
             x-fc-function-timeout: {value}\r\ncontent-length: 2\r\n\r\nok"
        );
        let r = fc.request(raw.as_bytes());
        assert_eq!((r.status, r.text().as_str()), (200, "ok"), "x-fc-function-timeout: {value}");
        if value.len() > 19 {
            let raw = format!(
                "POST /invoke HTTP/1.1\r\nhost: x\r\nx-noslate-function: echo\r\ncontent-length: {value}\r\n\r\n"
            );
            let r = fc.request(raw.as_bytes());
            assert!(r.status == 400 || r.status == 413, "content-length: {value}: {}", r.status);
        }
        alive(&mut fc);
    }
    let r = fc.invoke("echo", b"still here");
    assert_eq!((r.status, r.body.as_slice()), (200, &b"still here"[..]));
}

/// Item 2: a function's 1xx or 600+ status never goes out as the final
/// answer. main wrote `HTTP/1.1 101 Switching Protocols` with the function's
/// headers, no body, and kept the connection (the next request got another
/// 101).
#[test]
fn interim_and_out_of_range_statuses_are_502() {
    let (_dir, _peer, fc) = stack("hard-status", &[("NOSLATE_FC_FUNCTION_HEADER", "all")]);
    let mut s = fc.connect();
    for status in [101, 100, 103, 199, 600, 999] {
        s.write_all(&http_get("/", &format!("x-noslate-function: status-{status}\r\n"))).unwrap();
        let r = read_response(&mut s).expect("an answer");
        assert_eq!(r.status, 502, "status-{status}: {}", r.text());
        assert_eq!(json(&r)["errorName"], "BadStatus", "status-{status}");
        assert_eq!(r.header("x-custom"), None, "none of the function's head went out");
    }
    // The connection is still in step: a good request on it is served.
    s.write_all(&http_get("/", "x-noslate-function: status-201\r\n")).unwrap();
    let r = read_response(&mut s).expect("201");
    assert_eq!((r.status, r.text().as_str()), (201, "status 201"));
    for status in [200, 204, 404, 599] {
        let r = fc.request(&http_get("/", &format!("x-noslate-function: status-{status}\r\n")));
        assert_eq!(r.status, status);
    }
}

/// Item 7: values from outside are escaped in the log. main wrote a
/// function's error message and a `grpc-message` raw to stderr, so
/// `x\nFC Invoke End RequestId: forged` printed a forged FC marker line.
#[test]
fn log_lines_cannot_be_forged() {
    let (_dir, _peer, fc) = stack("hard-log", &[]);
    for function in ["forged-error", "forged-grpc"] {
        let r = fc.invoke(function, b"");
        assert_eq!(r.status, 404, "{function}: {}", r.text());
        // The error body is JSON (escaped there already) and names the cause.
        assert!(json(&r)["errorMessage"].as_str().unwrap().contains("FC Invoke End RequestId: forged"));
    }
    let start = Instant::now();
    let stderr = loop {
        let text = fc.proc.stderr_text();
        if text.matches("forged\\r\\nnext").count() >= 2 || start.elapsed() > Duration::from_secs(5) {
            break text;
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    assert_eq!(stderr.matches("x\\nFC Invoke End RequestId: forged\\r\\nnext").count(), 2, "escaped: {stderr}");
    for line in stderr.lines().chain(fc.stdout_text().lines()) {
        assert!(!line.starts_with("FC Invoke End RequestId: forged"), "forged marker line: {line:?}");
        assert!(!line.starts_with("next"), "a value broke the line: {line:?}");
    }
}

/// Item 8: a function's response head is bounded. main passed heads up to
/// the 1 MiB message bound (FC answers 502 BadResponse above 8 KB).
#[test]
fn oversized_response_head_is_502() {
    let (_dir, _peer, fc) = stack("hard-head", &[("NOSLATE_FC_FUNCTION_HEADER", "all")]);
    let mut s = fc.connect();
    s.write_all(&http_get("/", "x-noslate-function: big-head\r\n")).unwrap();
    let r = read_response(&mut s).expect("an answer");
    assert_eq!(r.status, 502, "{}", r.text());
    assert_eq!(json(&r)["errorName"], "ResponseHeadTooLarge");
    assert_eq!(r.header("x-big-0"), None);
    s.write_all(&http_get("/", "x-noslate-function: echo\r\n")).unwrap();
    assert_eq!(read_response(&mut s).expect("next").status, 200);
    let mut rest = Vec::new();
    let _ = s.set_read_timeout(Some(Duration::from_millis(100)));
    let _ = s.read_to_end(&mut rest);
}

/// Item 3: an answer to `Expect: 100-continue` sent without our 100 closes
/// the connection (RFC 9110 §10.1.1: the client may send no body). main kept
/// it and dropped the next 64 bytes as the body: the client's next request
/// was eaten and misparsed (`400 malformed request line`), or with crafted
/// bytes became a request of the attacker's choosing.
#[test]
fn early_answer_to_expect_100_continue_closes() {
    let (_dir, peer, fc) = stack("hard-expect", &[("NOSLATE_FC_ROUTES", "/app=echo")]);
    let mut s = fc.connect();
    let first = "POST /nope HTTP/1.1\r\nhost: x\r\nx-fc-control-path: /http-invoke\r\n\
                 expect: 100-continue\r\ncontent-length: 64\r\n\r\n";
    s.write_all(first.as_bytes()).unwrap();
    let r = read_response(&mut s).expect("404");
    assert_eq!(r.status, 404, "{}", r.text());
    assert_eq!(r.header("connection"), Some("close"), "the connection cannot be reused");
    // The client, as RFC 9110 allows, sends no body and its next request:
    // 64 bytes of it, then a request with no control path.
    let next = format!(
        "GET /app/{} HTTP/1.1\r\nhost: x\r\nx-fc-control-path: /http-invoke\r\nx-fc-request-id: smuggle-1\r\n\r\n",
        "p".repeat(8)
    );
    let _ = s.write_all(next.as_bytes());
    let _ = s.set_read_timeout(Some(Duration::from_secs(15)));
    let mut rest = Vec::new();
    let _ = s.read_to_end(&mut rest);
    assert!(rest.is_empty(), "nothing more is answered on it: {}", String::from_utf8_lossy(&rest));
    // Nothing of the second request reached the data plane.
    let r = fc.request(&http_get("/app/after", "x-fc-request-id: after-1\r\n"));
    assert_eq!(r.status, 200);
    assert!(peer.wait_event(Duration::from_secs(3), |e| e["requestId"] == "after-1").is_some());
    assert!(peer.events().iter().all(|e| e["requestId"] != "smuggle-1"));
    // With our 100 sent (the stream took the body), the body comes and the
    // connection is kept.
    let mut s = fc.connect();
    let raw = "POST /app/x HTTP/1.1\r\nhost: x\r\nx-fc-control-path: /http-invoke\r\n\
               expect: 100-continue\r\ncontent-length: 2\r\n\r\n";
    s.write_all(raw.as_bytes()).unwrap();
    let mut interim = [0u8; 25];
    s.read_exact(&mut interim).unwrap();
    assert_eq!(&interim, b"HTTP/1.1 100 Continue\r\n\r\n");
    s.write_all(b"hi").unwrap();
    let r = read_response(&mut s).expect("200");
    assert_eq!((r.status, r.text().as_str(), r.header("connection")), (200, "hi", None));
}

/// Item 4: `x-fc-base-path` is believed only in FC's default-domain form
/// (or as configured). main believed `x-fc-base-path: /app`, so with routes
/// `/app=echo,/admin=inspect` the request `GET /app/admin/x` reached the
/// `/admin` route's function.
#[test]
fn spoofed_base_path_cannot_step_around_routes() {
    let (_dir, _peer, fc) = stack("hard-base", &[("NOSLATE_FC_ROUTES", "/app=echo,/admin=inspect")]);
    let r = fc.request(&http_get("/app/admin/x", "x-fc-base-path: /app\r\nx-fc-request-id: spoof-1\r\n"));
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.header("x-request-id"), Some("spoof-1"), "served by echo (/app), not inspect (/admin)");
    // FC's own form is stripped as before.
    let r =
        fc.request(&http_get("/2016-08-15/proxy/svc/fn/admin/x?q=1", "x-fc-base-path: /2016-08-15/proxy/svc/fn/\r\n"));
    assert_eq!(json(&r)["url"], "/admin/x?q=1");
}

/// Item 6: headers the function must not get. main forwarded headers named
/// in `Connection`, FC's `x-fc-control-path` / `x-fc-base-path`, and
/// refused repeats of only four headers it reads.
#[test]
fn hop_and_plumbing_headers_do_not_reach_the_function_and_repeats_are_refused() {
    let (_dir, peer, fc) = stack("hard-headers", &[("NOSLATE_FUNCTION", "inspect")]);
    let r = fc.request(&http_get(
        "/2016-08-15/proxy/svc/fn/x",
        "Connection: x-secret\r\nx-secret: s\r\nx-fc-base-path: /2016-08-15/proxy/svc/fn/\r\nx-fc-region: cn-x\r\nx-kept: k\r\n",
    ));
    let seen = json(&r);
    let names: Vec<String> =
        seen["headers"].as_array().unwrap().iter().map(|h| h[0].as_str().unwrap().to_string()).collect();
    for dropped in ["x-secret", "connection", "x-fc-control-path", "x-fc-base-path"] {
        assert!(!names.iter().any(|n| n == dropped), "{dropped} reached the function: {names:?}");
    }
    assert!(names.iter().any(|n| n == "x-kept"), "{names:?}");
    assert_eq!(seen["baggage"][0], serde_json::json!(["fc-region", "cn-x"]), "FC context rides in baggage: {seen}");
    for name in
        ["x-fc-request-id", "x-fc-function-timeout", "x-fc-initialization-timeout", "x-fc-region", "x-fc-qualifier"]
    {
        let id = format!("rep-{name}");
        let r = fc.request(&http_get("/x", &format!("x-fc-request-id: {id}\r\n{name}: 1\r\n{name}: 2\r\n")));
        assert_eq!(r.status, 400, "{name}: {}", r.text());
        assert!(r.text().contains(name), "names the header: {}", r.text());
        assert!(peer.events().iter().all(|e| e["requestId"] != id.as_str()), "{name}: nothing ran");
    }
}

/// Item 5: with the default `NOSLATE_FC_TRUSTED_PEERS=remote`, a process in
/// the container (here: loopback) gets what an end user gets: no hook runs,
/// no event is marked, the function and deadline headers are ignored, routes
/// apply. main took a request without `x-fc-control-path` as local and
/// trusted: anything in the container (a worker through an SSRF bug) could
/// run `/pre-stop`, `/initialize`, pick any function and hold it for a day.
#[test]
fn processes_in_the_container_cannot_stop_the_instance_or_choose() {
    let (_dir, peer, fc) =
        stack("hard-peers", &[("NOSLATE_FC_TRUSTED_PEERS", "remote"), ("NOSLATE_FUNCTION", "inspect")]);
    let requests: [(&str, &str, &str); 7] = [
        ("GET", "/pre-stop", ""),
        ("GET", "/pre-freeze", ""),
        ("POST", "/initialize", ""),
        ("GET", "/x", "x-fc-control-path: /pre-stop\r\n"),
        ("GET", "/x", "x-fc-control-path: /initialize\r\n"),
        ("POST", "/invoke", "x-noslate-function: echo\r\nx-fc-function-timeout: 86400\r\n"),
        ("POST", "/invoke", "x-fc-control-path: /invoke\r\nx-noslate-function: echo\r\n"),
    ];
    for (i, (method, path, extra)) in requests.iter().enumerate() {
        let id = format!("inside-{i}");
        let raw =
            format!("{method} {path} HTTP/1.1\r\nhost: x\r\nx-fc-request-id: {id}\r\ncontent-length: 0\r\n{extra}\r\n");
        let r = fc.request(raw.as_bytes());
        assert_eq!(r.status, 200, "{method} {path} {extra:?}: {}", r.text());
        let seen = json(&r);
        assert_eq!(seen["name"], "inspect", "the default function, not a header's choice: {seen}");
        assert_eq!(seen["url"], *path, "the path goes to the function as an end user's");
        assert_eq!(seen["baggage"][0], serde_json::json!(["fc-invocation-type", "http"]));
        let deadline = seen["deadline"].as_f64().unwrap();
        let now_ms = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_millis() as f64;
        assert!(deadline < now_ms + 60_000.0, "x-fc-function-timeout ignored: {deadline} vs {now_ms}");
        assert!(peer.wait_event(Duration::from_secs(3), |e| e["requestId"] == id.as_str()).is_some());
    }
    let stdout = fc.stdout_text();
    for hook in ["PreStop", "PreFreeze", "Initialize"] {
        assert!(!stdout.contains(&format!("FC {hook} Start RequestId: inside-")), "{hook} ran: {stdout}");
    }
    // Not draining: still served.
    let r = fc.request(b"GET /after HTTP/1.1\r\nhost: x\r\n\r\n");
    assert_eq!(r.status, 200, "{}", r.text());
    assert!(!fc.proc.stderr_text().contains("draining"), "{}", fc.proc.stderr_text());
}
