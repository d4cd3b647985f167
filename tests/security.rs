//! What an end user on the internet can reach (SECURITY.md), one test per
//! line of its table: HTTP invocations (`x-fc-control-path: /http-invoke`,
//! the end user's own request as FC forwards it) through the real binary to
//! the Noslated test fixture (tests/peer), which records every invoke it
//! receives — so "nothing reached the data plane" is checked where it counts.

mod support;

use std::time::Duration;

use support::{stack, Fc, Peer, Response, TempDir};

const HTTP: &str = "x-fc-control-path: /http-invoke\r\n";

/// A GET with `extra` header lines (each ending in CRLF) and a request id.
fn get(target: &str, id: &str, extra: &str) -> Vec<u8> {
    format!("GET {target} HTTP/1.1\r\nhost: x\r\nx-fc-request-id: {id}\r\n{extra}\r\n").into_bytes()
}

/// The invoke the fixture recorded for this request id.
fn invoke_seen(peer: &Peer, id: &str) -> Option<serde_json::Value> {
    peer.wait_event(Duration::from_secs(3), |e| e["ev"] == "invoke" && e["requestId"] == id)
}

/// No invoke with this request id reached the data plane. Checked after a
/// later request that did arrive, so a late event would have shown up.
fn never_invoked(peer: &Peer, fc: &Fc, id: &str) {
    let marker = format!("{id}-after");
    let r = fc.request(&get("/after", &marker, ""));
    assert_eq!(r.status, 200, "the follow-up is served: {}", r.text());
    assert!(invoke_seen(peer, &marker).is_some());
    let leaked: Vec<_> = peer.events().into_iter().filter(|e| e["requestId"] == id).collect();
    assert!(leaked.is_empty(), "{id} reached the data plane: {leaked:?}");
}

fn json(r: &Response) -> serde_json::Value {
    serde_json::from_slice(&r.body).unwrap_or_else(|_| panic!("not JSON ({}): {}", r.status, r.text()))
}

fn refused(r: &Response, status: u16, name: &str) {
    assert_eq!(r.status, status, "{}", r.text());
    assert_eq!(r.header("x-fc-status"), Some("404"));
    assert!(r.text().contains(name), "{name}: {}", r.text());
}

/// Table line: lifecycle hooks. An HTTP invocation whose path is a hook (or
/// `/invoke`) is the end user's path: it goes to the function as HTTP.
#[test]
fn hook_paths_in_http_invocations_reach_the_function_not_the_hooks() {
    let (_dir, peer, fc) = stack("sec-hooks", &[("NOSLATE_FUNCTION", "inspect")]);
    for (method, path) in [("GET", "/pre-stop"), ("GET", "/pre-freeze"), ("POST", "/initialize"), ("POST", "/invoke")] {
        let id = format!("hook{}", path.replace('/', "-"));
        let raw = format!("{method} {path} HTTP/1.1\r\n{HTTP}x-fc-request-id: {id}\r\ncontent-length: 0\r\n\r\n");
        let r = fc.request(raw.as_bytes());
        assert_eq!(r.status, 200, "{path}: {}", r.text());
        let v = json(&r);
        assert_eq!((v["name"].as_str(), v["url"].as_str()), (Some("inspect"), Some(path)));
        let seen = invoke_seen(&peer, &id).expect("reached the function");
        assert!(seen["baggage"].to_string().contains("\"http\""), "an HTTP invocation: {seen}");
    }
    let out = fc.stdout_text();
    for marker in ["PreStop Start", "PreFreeze Start", "Initialize Start RequestId: hook"] {
        assert!(!out.contains(marker), "a hook ran: {out}");
    }
    // Not draining: still serving.
    assert_eq!(fc.request(&get("/", "hooks-still-up", HTTP)).status, 200);
}

/// Table line: `x-fc-control-path` twice (and every other routing header
/// that must be single): 400, nothing runs — not the hook, not the function.
#[test]
fn repeated_routing_headers_are_refused_and_nothing_runs() {
    let (_dir, peer, mut fc) = stack("sec-dup", &[("NOSLATE_FUNCTION", "inspect")]);
    let cases = [
        ("dup-prestop", "GET /pre-stop", "x-fc-control-path: /pre-stop\r\nx-fc-control-path: /http-invoke\r\n"),
        ("dup-http", "GET /pre-stop", "x-fc-control-path: /http-invoke\r\nX-FC-Control-Path: /pre-stop\r\n"),
        ("dup-invoke", "POST /invoke", "x-fc-control-path: /invoke\r\nx-fc-control-path: /invoke\r\n"),
        (
            "dup-function",
            "GET /x",
            "x-fc-control-path: /http-invoke\r\nx-noslate-function: a\r\nx-noslate-function: b\r\n",
        ),
        ("dup-service", "POST /invoke", "x-noslate-service: a\r\nx-noslate-service: a\r\n"),
        ("dup-base", "GET /b/x", "x-fc-control-path: /http-invoke\r\nx-fc-base-path: /a\r\nx-fc-base-path: /b\r\n"),
    ];
    for (id, line, headers) in cases {
        let raw = format!("{line} HTTP/1.1\r\nx-fc-request-id: {id}\r\n{headers}content-length: 0\r\n\r\n");
        let r = fc.request(raw.as_bytes());
        refused(&r, 400, "must appear at most once");
        assert_eq!(r.header("connection"), Some("close"), "{id}");
        never_invoked(&peer, &fc, id);
    }
    let out = fc.stdout_text();
    let ran = |id: &str| out.lines().any(|l| l.ends_with(&format!("RequestId: {id}")));
    assert!(!out.contains("PreStop") && !cases.iter().any(|(id, ..)| ran(id)), "something ran: {out}");
    assert!(fc.proc.wait_exit(Duration::from_millis(200)).is_none(), "the process exited");
}

/// Table line: choosing the function. By default an end user's
/// `x-noslate-function` / `x-noslate-service` is ignored (and forwarded as
/// any header); events and local requests still choose.
#[test]
fn end_users_cannot_choose_the_function_by_default() {
    let (_dir, peer, fc) = stack("sec-choose", &[("NOSLATE_FUNCTION", "inspect")]);
    let r = fc.request(&get("/x", "choose-fn", &format!("{HTTP}x-noslate-function: echo\r\n")));
    assert_eq!(json(&r)["name"], "inspect");
    let r = fc.request(&get("/x", "choose-svc", &format!("{HTTP}x-noslate-service: echo\r\n")));
    assert_eq!(json(&r)["name"], "inspect");
    let seen = invoke_seen(&peer, "choose-svc").unwrap();
    assert_eq!(seen["rpc"], "invoke", "not invokeService: {seen}");
    assert!(seen["headers"].to_string().contains("x-noslate-service"), "forwarded as a plain header");
    assert!(invoke_seen(&peer, "choose-fn").is_some());
    assert!(!peer.events().iter().any(|e| e["name"] == "echo"), "echo was reached");
    // An event (FC API caller) and a local request do choose.
    let r = fc.request(b"POST /invoke HTTP/1.1\r\nx-fc-control-path: /invoke\r\nx-noslate-function: echo\r\ncontent-length: 2\r\n\r\nhi");
    assert_eq!((r.status, r.text().as_str()), (200, "hi"));
    let r = fc.request(b"GET /local HTTP/1.1\r\nx-noslate-function: status-201\r\n\r\n");
    assert_eq!(r.status, 201);
}

/// Table line: the allowlist. Even with `NOSLATE_FC_FUNCTION_HEADER=all`, a
/// name outside `NOSLATE_FC_FUNCTIONS` is a 404 and never reaches the data
/// plane — from an end user or from an event.
#[test]
fn allowlist_refuses_other_names_with_404() {
    let env = [("NOSLATE_FC_FUNCTION_HEADER", "all"), ("NOSLATE_FC_FUNCTIONS", "inspect,echo")];
    let (_dir, peer, fc) = stack("sec-allow", &[("NOSLATE_FUNCTION", "inspect"), env[0], env[1]]);
    let r = fc.request(&get("/x", "allow-ok", &format!("{HTTP}x-noslate-function: echo\r\n")));
    assert_eq!(r.status, 200, "{}", r.text());
    for (id, extra) in [
        ("allow-http", format!("{HTTP}x-noslate-function: status-201\r\n")),
        ("allow-svc", format!("{HTTP}x-noslate-service: status-201\r\n")),
        ("allow-event", "x-fc-control-path: /invoke\r\nx-noslate-function: status-201\r\n".to_string()),
    ] {
        let r = fc.request(&get("/x", id, &extra));
        refused(&r, 404, "FunctionNotFound");
        never_invoked(&peer, &fc, id);
    }
    assert!(!peer.events().iter().any(|e| e["name"] == "status-201"));
}

/// Table line: routes. The path chooses among the configured routes only
/// (longest prefix, whole segments, after the x-fc-base-path rewrite); the
/// full path is kept unless NOSLATE_FC_ROUTES_STRIP; no route and no default
/// is a 404.
#[test]
fn routes_choose_by_path() {
    let routes = ("NOSLATE_FC_ROUTES", "/api/users=inspect,/api=echo");
    let (_dir, peer, fc) = stack("sec-routes", &[routes]);
    let base = "x-fc-base-path: /2016-08-15/proxy/svc/fn/\r\n";
    let r = fc.request(&get("/2016-08-15/proxy/svc/fn/api/users/7?x=1", "route-users", &format!("{HTTP}{base}")));
    let v = json(&r);
    assert_eq!((v["name"].as_str(), v["url"].as_str()), (Some("inspect"), Some("/api/users/7?x=1")));
    // `/api/usersX` is not under `/api/users`: the `/api` route (echo).
    let r = fc.request(&get("/api/usersX", "route-api", HTTP));
    assert_eq!(r.status, 200);
    assert_eq!(invoke_seen(&peer, "route-api").unwrap()["name"], "echo");
    // The header does not override a route for end users.
    let r = fc.request(&get("/api/users", "route-hdr", &format!("{HTTP}x-noslate-function: echo\r\n")));
    assert_eq!(json(&r)["name"], "inspect");
    // No route, no default: 404, nothing invoked.
    let r = fc.request(&get("/web", "route-none", HTTP));
    refused(&r, 404, "NoRoute");
    let r = fc.request(&get("/after", "route-none-after", &format!("{HTTP}x-fc-base-path: /after\r\n")));
    assert_eq!(r.status, 404, "the bare base is `/`, which no route covers");
    assert!(!peer.events().iter().any(|e| e["requestId"] == "route-none"));

    let (_dir, _peer, fc) = stack("sec-strip", &[routes, ("NOSLATE_FC_ROUTES_STRIP", "true")]);
    let v = json(&fc.request(&get("/api/users/7?x=1", "strip-1", HTTP)));
    assert_eq!(v["url"], "/7?x=1");
    let v = json(&fc.request(&get("/api/users?x=1", "strip-2", HTTP)));
    assert_eq!(v["url"], "/?x=1");
}

/// Table line: odd function names. Ignored on HTTP invocations by default;
/// where the header is believed, anything but 1-128 of `A-Za-z0-9-_.:@` is a
/// 400 (a 40 KB name is over the 32 KiB head limit first: 431; control bytes
/// are malformed HTTP: 400). None reaches the data plane.
#[test]
fn odd_function_names() {
    let (_dir, peer, fc) = stack("sec-names", &[("NOSLATE_FUNCTION", "inspect")]);
    let long = "a".repeat(40 * 1024);
    let mid = "a".repeat(129);
    let names: [&[u8]; 6] = [b"../etc/passwd", b"a/b", b"a\tb", b"caf\xc3\xa9", b"\xff\xfe", mid.as_bytes()];
    for (i, name) in names.iter().enumerate() {
        // An end user's: ignored, the default serves.
        let id = format!("odd-http-{i}");
        let mut raw = format!("GET /x HTTP/1.1\r\n{HTTP}x-fc-request-id: {id}\r\nx-noslate-function: ").into_bytes();
        raw.extend_from_slice(name);
        raw.extend_from_slice(b"\r\n\r\n");
        let r = fc.request(&raw);
        assert_eq!(json(&r)["name"], "inspect", "{id}");
        // Believed (an event): 400 BadFunctionName, nothing invoked.
        let id = format!("odd-event-{i}");
        let mut raw =
            format!("POST /invoke HTTP/1.1\r\nx-fc-request-id: {id}\r\ncontent-length: 0\r\nx-noslate-function: ")
                .into_bytes();
        raw.extend_from_slice(name);
        raw.extend_from_slice(b"\r\n\r\n");
        refused(&fc.request(&raw), 400, "BadFunctionName");
        never_invoked(&peer, &fc, &id);
    }
    let r = fc.request(&get("/x", "odd-long", &format!("x-noslate-function: {long}\r\n")));
    assert_eq!(r.status, 431, "{}", r.text());
    let r = fc.request(&get("/x", "odd-ctl", &format!("{HTTP}x-noslate-function: a\x01b\r\n")));
    assert_eq!(r.status, 400, "{}", r.text());
    never_invoked(&peer, &fc, "odd-long");
    never_invoked(&peer, &fc, "odd-ctl");
}

/// Table lines: forwarded headers and credential headers. The end user's
/// headers reach the function in order, except hop-by-hop ones and FC's
/// credential headers (dropped even when an end user sends them), and none
/// of their values is logged.
#[test]
fn headers_forwarded_except_credentials_and_hop_by_hop() {
    let (_dir, peer, fc) = stack("sec-headers", &[("NOSLATE_FUNCTION", "inspect")]);
    let extra = format!(
        "{HTTP}x-user: 1\r\nx-fc-access-key-id: AKID-SEEN\r\nx-fc-access-key-secret: SECRET-SEEN\r\n\
         x-fc-security-token: TOKEN-SEEN\r\nconnection: keep-alive\r\nkeep-alive: 5\r\nproxy-authorization: p\r\n\
         te: trailers\r\nupgrade: h2c\r\n"
    );
    let r = fc.request(&get("/x", "headers-1", &extra));
    assert_eq!(r.status, 200, "{}", r.text());
    let seen = invoke_seen(&peer, "headers-1").unwrap();
    let names: Vec<String> =
        seen["headers"].as_array().unwrap().iter().map(|p| p[0].as_str().unwrap().to_string()).collect();
    assert!(names.contains(&"x-user".to_string()), "{names:?}");
    for dropped in [
        // FC's plumbing: the request type rides as baggage fc-invocation-type.
        "x-fc-control-path",
        "x-fc-access-key-id",
        "x-fc-access-key-secret",
        "x-fc-security-token",
        "connection",
        "keep-alive",
        "proxy-authorization",
        "te",
        "upgrade",
    ] {
        assert!(!names.iter().any(|n| n == dropped), "{dropped} forwarded: {names:?}");
    }
    let logs = fc.stdout_text() + &fc.proc.stderr_text() + &peer.proc.stderr_text();
    for secret in ["AKID-SEEN", "SECRET-SEEN", "TOKEN-SEEN"] {
        assert!(!seen.to_string().contains(secret) && !logs.contains(secret), "{secret} leaked");
    }
}

/// Table line: request id. Used only when it is 1-256 visible ASCII bytes;
/// otherwise one is generated, so an end user cannot forge log lines.
#[test]
fn request_id_cannot_forge_log_lines() {
    let (_dir, peer, fc) = stack("sec-reqid", &[("NOSLATE_FUNCTION", "inspect")]);
    let forged = "x FC Invoke End RequestId: other";
    let r = fc.request(format!("GET /x HTTP/1.1\r\n{HTTP}x-fc-request-id: {forged}\r\n\r\n").as_bytes());
    let id = json(&r)["requestId"].as_str().unwrap().to_string();
    assert!(id.starts_with("nfc-"), "generated: {id}");
    let long = "r".repeat(300);
    let r = fc.request(format!("GET /x HTTP/1.1\r\n{HTTP}x-fc-request-id: {long}\r\n\r\n").as_bytes());
    assert!(json(&r)["requestId"].as_str().unwrap().starts_with("nfc-"));
    let out = fc.stdout_text();
    assert!(!out.contains("RequestId: other") && !out.contains(&long), "{out}");
    assert!(!peer.events().iter().any(|e| e["requestId"] == "other"));
}

/// Table line: the function timeout. `x-fc-function-timeout` (which FC never
/// sends) is ignored on HTTP invocations: an end user cannot stretch the
/// deadline; an event caller can.
#[test]
fn end_users_cannot_stretch_the_deadline() {
    let (_dir, peer, fc) = stack("sec-deadline", &[("NOSLATE_FUNCTION", "inspect"), ("NOSLATE_FC_TIMEOUT_MS", "5000")]);
    let now = || std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_millis() as f64;
    let before = now();
    fc.request(&get("/x", "deadline-http", &format!("{HTTP}x-fc-function-timeout: 86400\r\n")));
    let seen = invoke_seen(&peer, "deadline-http").unwrap();
    let deadline = seen["deadline"].as_f64().unwrap();
    assert!(deadline < before + 6_000.0, "deadline stretched: {} ms ahead", deadline - before);
    let before = now();
    fc.request(b"POST /invoke HTTP/1.1\r\nx-fc-control-path: /invoke\r\nx-fc-request-id: deadline-event\r\nx-fc-function-timeout: 60\r\ncontent-length: 0\r\n\r\n");
    let deadline = invoke_seen(&peer, "deadline-event").unwrap()["deadline"].as_f64().unwrap();
    assert!(deadline > before + 50_000.0, "an event caller sets it");
}

/// Table line: body and head limits. Over NOSLATE_FC_MAX_BODY: 413 before
/// any function runs; over the head or target limits: 431 / 414.
#[test]
fn limits_refuse_before_the_function() {
    let (_dir, peer, fc) = stack("sec-limits", &[("NOSLATE_FUNCTION", "inspect"), ("NOSLATE_FC_MAX_BODY", "1000")]);
    let raw = format!("POST /x HTTP/1.1\r\n{HTTP}x-fc-request-id: limit-body\r\ncontent-length: 1001\r\n\r\n");
    let r = fc.request(raw.as_bytes());
    assert_eq!(r.status, 413, "{}", r.text());
    never_invoked(&peer, &fc, "limit-body");
    let r = fc.request(&get("/x", "limit-head", &format!("{HTTP}x-big: {}\r\n", "b".repeat(40_000))));
    assert_eq!(r.status, 431);
    let r = fc.request(&get(&format!("/{}", "t".repeat(9000)), "limit-target", HTTP));
    assert_eq!(r.status, 414);
    // The largest request FC forwards is served: a 4 KB path and query, 8 KB
    // of the caller's headers, and FC's own fields with an STS token on top.
    let path = format!("/x?q={}", "p".repeat(4000));
    let mut fields = String::from(HTTP);
    for i in 0..8 {
        fields.push_str(&format!("x-caller-{i}: {}\r\n", "c".repeat(1000)));
    }
    for name in ["x-fc-access-key-id", "x-fc-access-key-secret", "x-fc-account-id", "x-fc-region"] {
        fields.push_str(&format!("{name}: {}\r\n", "k".repeat(40)));
    }
    fields.push_str(&format!("x-fc-security-token: {}\r\n", "s".repeat(1600)));
    let raw = get(&path, "limit-fc-max", &fields);
    assert!(raw.len() > 13_000, "a head as large as FC forwards: {}", raw.len());
    let r = fc.request(&raw);
    assert_eq!(r.status, 200, "{}", r.text());
    never_invoked(&peer, &fc, "limit-head");
    never_invoked(&peer, &fc, "limit-target");
}

/// The routing settings are checked at start like every other: exit code 2
/// and one line naming the variable; the legacy `true` warns and runs as
/// `event`.
#[test]
fn routing_settings_are_checked_at_start() {
    let run = |env: &[(&str, &str)]| {
        let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_noslate-fc"));
        cmd.env_clear().env("SERVER_PORT", "0").env("NOSLATE_FC_LISTEN", "127.0.0.1");
        cmd.envs(env.iter().copied()).output().unwrap()
    };
    for (env, variable) in [
        (&[("NOSLATE_FUNCTION", "web"), ("NOSLATE_FC_FUNCTIONS", "api")][..], "NOSLATE_FUNCTION:"),
        (&[("NOSLATE_FC_ROUTES", "/a=x,/a/=y")][..], "NOSLATE_FC_ROUTES:"),
        (&[("NOSLATE_FC_ROUTES", "/a=x"), ("NOSLATE_FC_FUNCTIONS", "y")][..], "NOSLATE_FC_ROUTES:"),
        (&[("NOSLATE_FC_FUNCTIONS", "a/b")][..], "NOSLATE_FC_FUNCTIONS:"),
        (&[("NOSLATE_FC_FUNCTION_HEADER", "yes please")][..], "NOSLATE_FC_FUNCTION_HEADER:"),
    ] {
        let out = run(env);
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{env:?}: {err}");
        assert_eq!(err.lines().count(), 1, "{err}");
        assert!(err.starts_with(&format!("noslate-fc: {variable}")), "{err}");
    }
    let dir = TempDir::new("sec-legacy");
    let fc = Fc::start(&dir, &[("NOSLATE_FC_FUNCTION_HEADER", "true")]);
    assert!(fc.proc.stderr_text().contains("warning: NOSLATE_FC_FUNCTION_HEADER=true is read as \"event\""));
}
