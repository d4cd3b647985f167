//! End-to-end tests against the **real** Noslate stack: turfd, the Noslated
//! v0.25 data and control planes and real Node.js workers running the
//! functions in tests/real/functions, built from source by
//! `scripts/real-noslate.sh` (a build failure fails these tests; they are
//! never skipped). noslate-fc runs as the ENTRYPOINT (`NOSLATE_BIN` set) and,
//! for the same functional suite, over planes started apart.

#[path = "real/stack.rs"]
mod stack;
mod support;

use std::io::Write;
use std::net::TcpStream;
use std::time::{Duration, Instant};

use stack::{alive, Planes, RealFc, Run};
use support::{read_response, Fc, Response};

/// Byte i of the `stream` function's output.
fn stream_pattern(n: usize) -> Vec<u8> {
    (0..n).map(|i| ((i * 7 + 3) & 0xff) as u8).collect()
}

fn body_of(n: usize, seed: u8) -> Vec<u8> {
    (0..n).map(|i| (i as u8).wrapping_mul(31).wrapping_add(seed)).collect()
}

fn invoke_on(s: &mut TcpStream, function: &str, extra: &str, body: &[u8]) -> Response {
    let head = format!(
        "POST /invoke HTTP/1.1\r\nhost: x\r\nx-noslate-function: {function}\r\n{extra}content-length: {}\r\n\r\n",
        body.len()
    );
    s.write_all(head.as_bytes()).unwrap();
    s.write_all(body).unwrap();
    read_response(s).expect("a response")
}

fn invoke(fc: &Fc, function: &str, extra: &str, body: &[u8]) -> Response {
    invoke_on(&mut fc.connect(), function, extra, body)
}

fn invoke_chunked(fc: &Fc, function: &str, body: &[u8], piece: usize) -> Response {
    let mut s = fc.connect();
    let head = format!(
        "POST /invoke HTTP/1.1\r\nhost: x\r\nx-noslate-function: {function}\r\ntransfer-encoding: chunked\r\n\r\n"
    );
    s.write_all(head.as_bytes()).unwrap();
    let writer = {
        let mut s = s.try_clone().unwrap();
        let body = body.to_vec();
        std::thread::spawn(move || {
            for part in body.chunks(piece.max(1)) {
                s.write_all(format!("{:x}\r\n", part.len()).as_bytes()).unwrap();
                s.write_all(part).unwrap();
                s.write_all(b"\r\n").unwrap();
            }
            s.write_all(b"0\r\n\r\n").unwrap();
        })
    };
    let r = read_response(&mut s).expect("a response");
    writer.join().unwrap();
    r
}

/// HTTP invocations reach functions by path (an end user's x-noslate-function
/// is ignored by default): these routes serve the suite's HTTP invocations.
const ROUTES: (&str, &str) = ("NOSLATE_FC_ROUTES", "/a=inspect,/status=status,/t=throw,/c=crash");

/// Every scenario that needs only a running noslate-fc over a real stack
/// started with [`ROUTES`].
fn functional_suite(fc: &Fc, run: &Run) {
    let logs = || run.logs();

    // Byte-exact echo, Content-Length and chunked, across the 10 MiB message
    // limit of Noslated.
    for n in [0usize, 1, 1 << 20, 32 << 20] {
        let body = body_of(n, n as u8);
        let r = invoke(fc, "echo", "", &body);
        assert_eq!(r.status, 200, "echo {n} B: {}\n{}", r.text(), logs());
        assert!(r.complete && r.body == body, "echo {n} B (content-length): {} bytes back", r.body.len());
        let r = invoke_chunked(fc, "echo", &body, 100_000);
        assert_eq!(r.status, 200, "chunked echo {n} B: {}", r.text());
        assert!(r.complete && r.body == body, "echo {n} B (chunked): {} bytes back", r.body.len());
    }

    // What the function sees matches the request.
    let raw = b"PUT /a/b%20c?x=1&y=two HTTP/1.1\r\nhost: example.test\r\nx-fc-control-path: /http-invoke\r\n\
x-noslate-function: echo\r\nx-one: 1\r\nx-dup: first\r\nX-Mixed-Case: Yes\r\nx-dup: second\r\n\
x-fc-request-id: req-inspect-1\r\nx-fc-region: cn-test\r\nx-fc-account-id: 1234\r\nx-fc-function-name: fn\r\n\
x-fc-service-name: svc\r\nx-fc-qualifier: LATEST\r\nx-fc-access-key-secret: hush\r\nconnection: keep-alive\r\n\
content-length: 5\r\n\r\nhello";
    let r = fc.request(raw);
    assert_eq!(r.status, 200, "inspect: {}\n{}", r.text(), logs());
    let seen: serde_json::Value = serde_json::from_slice(&r.body).expect("inspect answers JSON");
    assert_eq!(seen["method"], "PUT");
    assert_eq!(seen["url"], "/a/b%20c?x=1&y=two");
    assert_eq!(seen["body"], "hello");
    let raw_headers: Vec<String> =
        seen["rawHeaders"].as_array().unwrap().iter().map(|v| v.as_str().unwrap().to_string()).collect();
    let pairs: Vec<(String, String)> =
        raw_headers.chunks(2).map(|kv| (kv[0].clone(), kv[1].clone())).filter(|(k, _)| k.starts_with("x-")).collect();
    let names: Vec<&str> = pairs.iter().map(|(k, _)| k.as_str()).collect();
    let one = names.iter().position(|n| *n == "x-one").expect("x-one forwarded");
    assert_eq!(
        &pairs[one..one + 4],
        &[
            ("x-one".into(), "1".into()),
            ("x-dup".into(), "first".into()),
            ("x-mixed-case".into(), "Yes".into()),
            ("x-dup".into(), "second".into())
        ],
        "headers in order, duplicates kept: {raw_headers:?}"
    );
    assert!(!names.contains(&"x-fc-access-key-secret"), "credentials are not forwarded: {raw_headers:?}");
    assert!(!raw_headers.iter().any(|h| h == "connection"), "hop-by-hop headers dropped: {raw_headers:?}");
    assert_eq!(seen["baggage"]["fc-region"], "cn-test", "baggage: {}", seen["baggage"]);
    assert_eq!(seen["baggage"]["fc-account-id"], "1234");
    assert_eq!(seen["baggage"]["fc-function-name"], "fn");
    assert_eq!(seen["baggage"]["fc-service-name"], "svc");
    assert_eq!(seen["baggage"]["fc-qualifier"], "LATEST");
    // The request id is FC's (Noslated's Node.js worker API does not show
    // it to the function; FC's log markers carry it).
    let out = fc.stdout_until("FC Invoke End RequestId: req-inspect-1");
    assert!(out.contains("FC Invoke Start RequestId: req-inspect-1"), "stdout: {out}");
    assert!(out.contains("FC Invoke End RequestId: req-inspect-1"), "stdout: {out}");

    // Status and headers come back as the function set them.
    // Headers FC manages are dropped (docs/fc-contract.md §8.2), among them
    // `content-disposition: attachment`; an `inline` one passes.
    let want = br#"{"status":201,"headers":[["x-a","1"],["set-cookie","a=1"],["set-cookie","b=2"],["content-type","text/x-test"],["server","fn"],["x-fc-request-id","forged"],["content-disposition","attachment; filename=a.csv"]],"body":"made"}"#;
    let head = format!(
        "POST /status HTTP/1.1\r\nhost: x\r\nx-fc-control-path: /http-invoke\r\ncontent-length: {}\r\n\r\n",
        want.len()
    );
    let r = fc.request(&[head.as_bytes(), want].concat());
    assert_eq!(r.status, 201, "status: {}", r.text());
    assert_eq!(r.header("x-a"), Some("1"));
    assert_eq!(r.headers_named("set-cookie"), vec!["a=1", "b=2"]);
    assert_eq!(r.header("content-type"), Some("text/x-test"));
    assert_eq!(r.header("x-fc-status"), Some("200"));
    for dropped in ["server", "x-fc-request-id", "content-disposition"] {
        assert_eq!(r.header(dropped), None, "{dropped} reached FC");
    }
    assert_eq!(r.text(), "made");
    let inline = br#"{"headers":[["content-disposition","inline"]]}"#;
    let head = format!(
        "POST /status HTTP/1.1\r\nhost: x\r\nx-fc-control-path: /http-invoke\r\ncontent-length: {}\r\n\r\n",
        inline.len()
    );
    let r = fc.request(&[head.as_bytes(), inline].concat());
    assert_eq!((r.status, r.header("content-disposition")), (200, Some("inline")));

    // Responses streamed in many pieces, in 9 MiB pieces, and in one-byte
    // pieces (each its own message: slow on the real stack, hence the timeout).
    for (bytes, chunk) in [(8usize << 20, 1usize << 20), (18 << 20, 9 << 20), (20_000, 1)] {
        let mut s = fc.connect();
        let req = format!(
            "GET /s?bytes={bytes}&chunk={chunk} HTTP/1.1\r\nhost: x\r\nx-noslate-function: stream\r\nx-fc-function-timeout: 60\r\n\r\n"
        );
        s.write_all(req.as_bytes()).unwrap();
        let r = read_response(&mut s).unwrap();
        assert_eq!(r.status, 200, "stream {bytes}/{chunk}: {}", r.text());
        assert!(
            r.complete && r.body == stream_pattern(bytes),
            "stream {bytes}/{chunk}: {} bytes\n{}",
            r.body.len(),
            fc.proc.stderr_text()
        );
    }

    // One write above Noslated's 10 MiB message limit: the data plane cannot
    // send it and fails the call after the head, so the response is cut.
    let mut s = fc.connect();
    s.write_all(b"GET /s?bytes=12582912&chunk=12582912 HTTP/1.1\r\nhost: x\r\nx-noslate-function: stream\r\n\r\n")
        .unwrap();
    let r = read_response(&mut s).unwrap();
    assert_eq!(r.status, 200, "12 MiB write: {}", r.text());
    assert!(!r.complete, "a 12 MiB message cannot pass Noslated; the cut must show ({} bytes)", r.body.len());
    let start = Instant::now();
    while !fc.proc.stderr_text().contains("larger than max") {
        assert!(start.elapsed() < Duration::from_secs(5), "the cause is logged: {}", fc.proc.stderr_text());
        std::thread::sleep(Duration::from_millis(20));
    }

    // Chunks written over time arrive as they are written, in order: the
    // first one long before the end (the function writes them 1 s apart),
    // which a gateway that buffers the whole response cannot do.
    let mut s = fc.connect();
    s.write_all(b"GET /d?n=3&ms=1000 HTTP/1.1\r\nhost: x\r\nx-noslate-function: drip\r\n\r\n").unwrap();
    let mut timed = TimedReader { inner: &mut s, first: None, needle: b"chunk 0\n", seen: Vec::new() };
    let r = read_response(&mut timed).unwrap();
    let ended = Instant::now();
    assert_eq!((r.status, r.complete), (200, true));
    assert_eq!(r.text(), "chunk 0\nchunk 1\nchunk 2\n");
    let first = timed.first.expect("chunk 0 was read");
    // The function wrote chunk 2 two seconds after chunk 0: half of that
    // is room for a loaded machine delaying chunk 0.
    assert!(
        ended.duration_since(first) >= Duration::from_secs(1),
        "chunk 0 came only {:?} before the end: the response was buffered",
        ended.duration_since(first)
    );

    // An unknown function: Noslated says code 5 and never ends the call.
    let mut s = fc.connect();
    let r = invoke_on(&mut s, "no-such-function", "", b"x");
    assert_eq!(r.status, 404, "unknown function: {}", r.text());
    assert_eq!(r.header("x-fc-status"), Some("404"));
    assert!(r.text().contains("no-such-function"), "names the function: {}", r.text());
    // ... and the same connection goes on.
    let r = invoke_on(&mut s, "echo", "", b"after 404");
    assert_eq!((r.status, r.text().as_str()), (200, "after 404"));

    // A function that throws, synchronously and after reading the body.
    for query in ["", "?async=1"] {
        let mut s = fc.connect();
        let req = format!(
            "POST /t{query} HTTP/1.1\r\nhost: x\r\nx-fc-control-path: /http-invoke\r\ncontent-length: 3\r\n\r\nabc"
        );
        s.write_all(req.as_bytes()).unwrap();
        let r = read_response(&mut s).unwrap();
        assert_eq!(r.status, 502, "throw{query}: {}\n{}", r.text(), logs());
        assert_eq!(r.header("x-fc-status"), Some("404"));
        assert!(r.text().contains("thrown"), "the function's message: {}", r.text());
        let r = invoke_on(&mut s, "echo", "", b"after throw");
        assert_eq!((r.status, r.text().as_str()), (200, "after throw"), "next invoke after throw{query}");
    }

    // A worker that exits before its head: a clear error, then a new worker.
    let mut s = fc.connect();
    let started = Instant::now();
    s.write_all(
        b"POST /c?when=before HTTP/1.1\r\nhost: x\r\nx-fc-control-path: /http-invoke\r\ncontent-length: 0\r\n\r\n",
    )
    .unwrap();
    let r = read_response(&mut s).unwrap();
    let took = started.elapsed();
    // The worker's exit is reported, not waited out: not the 504 of the
    // 10 s deadline, and well before it (generous for a loaded machine).
    assert!(matches!(r.status, 502 | 503), "crash before the head: {} {}\n{}", r.status, r.text(), logs());
    assert!(
        took < Duration::from_secs(8),
        "crash before the head answered after {took:?}: the deadline, not the crash"
    );
    assert_eq!(r.header("x-fc-status"), Some("404"));
    assert!(r.text().contains("errorMessage"), "a JSON error: {}", r.text());
    // A worker that exits mid-response: the response is cut, never completed.
    let mut s = fc.connect();
    s.write_all(b"POST /c HTTP/1.1\r\nhost: x\r\nx-noslate-function: crash\r\ncontent-length: 0\r\n\r\n").unwrap();
    let r = read_response(&mut s).unwrap();
    assert_eq!(r.status, 200, "crash mid-response: {}", r.text());
    assert!(!r.complete, "a response cut by a crash must not look complete ({} bytes)", r.body.len());
    let r = invoke(fc, "echo", "", b"after crash");
    assert_eq!((r.status, r.text().as_str()), (200, "after crash"), "next invoke after crashes\n{}", logs());

    // A passed deadline (x-fc-function-timeout, seconds; believed from local
    // requests and events only) gets 504; the next invoke works.
    let mut s = fc.connect();
    let started = Instant::now();
    s.write_all(b"POST /w?ms=8000 HTTP/1.1\r\nhost: x\r\nx-noslate-function: wait\r\nx-fc-function-timeout: 1\r\ncontent-length: 0\r\n\r\n").unwrap();
    let r = read_response(&mut s).unwrap();
    assert_eq!(r.status, 504, "deadline: {}", r.text());
    // By the 1 s deadline, not the function's 8 s end (room for a loaded machine).
    assert!(started.elapsed() < Duration::from_secs(7), "answered by the deadline, not by the function's end");
    let r = invoke(fc, "wait", "", b"");
    assert_eq!(r.status, 200, "after deadline: {}", r.text());
    // `wait` with no query waits 1 s: the default 10 s deadline holds.
    assert_eq!(r.text(), "waited 1000");
}

#[test]
fn real_stack_under_noslate_fc_as_entrypoint() {
    let _one = stack::serial();
    let real = RealFc::start("entry", &[ROUTES]);
    real.wait_initialized();
    functional_suite(&real.fc, &real.run);
}

#[test]
fn real_stack_with_planes_started_apart_survives_a_data_plane_restart() {
    let _one = stack::serial();
    let run = Run::new("apart");
    let mut planes = Planes::start(&run);
    let fc = Fc::spawn(run.command(false, &[("NOSLATE_FC_READY_WAIT_MS", "30000"), ROUTES]));
    let r = fc.request(
        b"POST /initialize HTTP/1.1\r\nhost: x\r\nx-fc-initialization-timeout: 60\r\ncontent-length: 0\r\n\r\n",
    );
    assert_eq!(r.status, 200, "/initialize: {}\n{}", r.text(), run.logs());
    functional_suite(&fc, &run);

    // The data plane dies and a new one starts on the same socket path. It
    // has no profiles until the control plane reconnects to it and pushes
    // them; the control plane is stopped (SIGSTOP) meanwhile, so that takes
    // a known second. noslate-fc's connection to the control plane stays, so
    // only the NOT_FOUND fallback (#19) keeps the first invoke from
    // Noslated's "No function named echo registered": it must be served.
    // The invoke is sent while no data plane runs, so it waits and reads its
    // body meanwhile: the whole body rides in its first message, which is
    // what lets a refused stream be retried.
    planes.cp.signal(19);
    stack::kill_tree(planes.dp.pid());
    let _ = planes.dp.child.wait();
    let r = std::thread::scope(|scope| {
        let first = scope.spawn(|| invoke(&fc, "echo", "", b"after restart"));
        planes.dp = Planes::start_data_plane(&run);
        std::thread::sleep(Duration::from_secs(1));
        planes.cp.signal(18);
        first.join().unwrap()
    });
    assert_eq!(
        (r.status, r.text().as_str()),
        (200, "after restart"),
        "first invoke after the restart\n{}\n{}",
        fc.proc.stderr_text(),
        run.logs()
    );
    let body = body_of(3 << 20, 9);
    let r = invoke(&fc, "echo", "", &body);
    assert!(r.status == 200 && r.body == body, "echo after restart: {}", r.status);
    drop(fc);
    drop(planes);
}

#[test]
fn real_stack_concurrent_and_five_thousand_sequential_invokes() {
    let _one = stack::serial();
    let real = RealFc::start("load", &[]);
    real.wait_initialized();
    let fc = &real.fc;

    // 64 at once, each with its own body, byte-exact.
    let port = fc.port;
    let threads: Vec<_> = (0..64u8)
        .map(|i| {
            std::thread::spawn(move || {
                let mut s = TcpStream::connect(("127.0.0.1", port)).unwrap();
                s.set_read_timeout(Some(Duration::from_secs(60))).unwrap();
                let body = body_of(4096 + i as usize * 1000, i);
                let r = invoke_on(&mut s, "echo", "", &body);
                (i, r.status, r.body == body)
            })
        })
        .collect();
    for t in threads {
        let (i, status, exact) = t.join().unwrap();
        assert!(status == 200 && exact, "concurrent invoke {i}: status {status}, exact {exact}\n{}", real.run.logs());
    }

    // 5,000 on one keep-alive connection: good, unknown-function (a stream
    // Noslated never ends, so noslate-fc resets it) and throwing, mixed —
    // past Node 20's limit of ~1,000 resets per connection.
    let mut s = fc.connect();
    let mut seen = [0usize; 3];
    for i in 0..5000usize {
        let kind = i % 3;
        let body = format!("n{i}");
        let r = match kind {
            0 => invoke_on(&mut s, "echo", "", body.as_bytes()),
            1 => invoke_on(&mut s, "no-such-function", "", body.as_bytes()),
            _ => invoke_on(&mut s, "throw", "", body.as_bytes()),
        };
        let error = serde_json::from_slice::<serde_json::Value>(&r.body).unwrap_or_default();
        let ok = match kind {
            0 => r.status == 200 && r.complete && r.body == body.as_bytes(),
            // Noslated's code 5, named, passed on as JSON.
            1 => {
                r.status == 404
                    && r.header("x-fc-status") == Some("404")
                    && r.complete
                    && error["errorName"] == "Error"
                    && error["errorMessage"] == "No function named no-such-function registered in this node."
                    && error["errorCode"] == 5
            }
            // The function's own error, with its message.
            _ => {
                r.status == 404
                    && r.header("x-fc-status") == Some("404")
                    && r.complete
                    && error["errorMessage"].as_str().is_some_and(|m| m.contains("thrown"))
            }
        };
        assert!(ok, "invoke {i} (kind {kind}): {} {}\n{}", r.status, r.text(), real.run.logs());
        seen[kind] += 1;
        assert!(
            r.header("connection").is_none_or(|c| !c.eq_ignore_ascii_case("close")),
            "invoke {i} closed: {r:?}\n{}",
            fc.proc.stderr_text()
        );
    }
    assert_eq!(seen, [1667, 1667, 1666]);
}

/// A reader that notes when `needle` has first been read in full.
struct TimedReader<'a> {
    inner: &'a mut TcpStream,
    first: Option<Instant>,
    needle: &'static [u8],
    seen: Vec<u8>,
}

impl std::io::Read for TimedReader<'_> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        if self.first.is_none() {
            self.seen.extend_from_slice(&buf[..n]);
            if self.seen.windows(self.needle.len()).any(|w| w == self.needle) {
                self.first = Some(Instant::now());
            }
        }
        Ok(n)
    }
}

/// Start a slow invoke on its own connection; its response, later.
fn slow_invoke(fc: &Fc, ms: u32) -> std::thread::JoinHandle<Response> {
    let mut s = fc.connect();
    let req = format!("POST /w?ms={ms} HTTP/1.1\r\nhost: x\r\nx-noslate-function: wait\r\ncontent-length: 0\r\n\r\n");
    s.write_all(req.as_bytes()).unwrap();
    std::thread::spawn(move || read_response(&mut s).expect("a response"))
}

fn wait_started(fc: &Fc, n: usize) {
    let start = Instant::now();
    while fc.stdout_text().matches("FC Invoke Start").count() < n {
        assert!(start.elapsed() < Duration::from_secs(10), "invokes never started");
        std::thread::sleep(Duration::from_millis(10));
    }
}

fn assert_all_gone(pids: &[u32]) {
    let start = Instant::now();
    loop {
        let left: Vec<u32> = pids.iter().copied().filter(|p| alive(*p)).collect();
        if left.is_empty() {
            return;
        }
        assert!(start.elapsed() < Duration::from_secs(10), "processes of the stack left behind: {left:?}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn real_stack_pre_stop_and_sigterm_drain_then_leave_nothing() {
    let _one = stack::serial();
    for how in ["pre-stop", "sigterm"] {
        let mut real = RealFc::start(how, &[("NOSLATE_FC_DRAIN_MS", "10000")]);
        real.wait_initialized();
        // Warm the worker so that the in-flight invokes are real work.
        assert_eq!(invoke(&real.fc, "wait", "", b"").status, 200);
        let inflight: Vec<_> = (0..3).map(|_| slow_invoke(&real.fc, 1500)).collect();
        wait_started(&real.fc, 4);
        let pids = real.pids();
        assert!(pids.len() >= 4, "noslate-fc, turf, two planes and a worker: {pids:?}");
        if how == "pre-stop" {
            let r = real.fc.request(b"GET /pre-stop HTTP/1.1\r\nhost: x\r\n\r\n");
            assert_eq!(r.status, 200, "/pre-stop: {}", r.text());
        } else {
            real.fc.proc.signal(15);
        }
        for t in inflight {
            let r = t.join().unwrap();
            assert_eq!((r.status, r.text().as_str()), (200, "waited 1500"), "{how}: in-flight invoke");
        }
        let status = real.fc.proc.wait_exit(Duration::from_secs(20)).unwrap_or_else(|| panic!("{how}: no exit"));
        assert_eq!(status.code(), Some(0), "{how}: exit status; stderr: {}", real.fc.proc.stderr_text());
        assert_all_gone(&pids);
    }
}

#[test]
fn real_stack_warm_up_makes_initialize_wait_for_the_worker() {
    let _one = stack::serial();
    let real = RealFc::start("warm", &[("NOSLATE_FC_WARM_UP", "echo,inspect")]);
    real.wait_initialized();
    // /initialize answered: the workers of both functions are running now
    // (turf's children), before any invoke asked for them.
    let turf = real.pids()[1..]
        .iter()
        .copied()
        .find(|p| std::fs::read_to_string(format!("/proc/{p}/cmdline")).is_ok_and(|c| c.contains("turf")))
        .expect("turf runs under noslate-fc");
    // One worker per named function: a process under turf whose command
    // line, working directory or environment names the function's code.
    let workers: Vec<(u32, String)> = stack::descendants(turf).into_iter().map(|p| (p, process_text(p))).collect();
    let code = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/real/functions");
    for name in ["echo", "inspect"] {
        let dir = code.join(name).display().to_string();
        let of_it =
            workers.iter().filter(|(_, t)| t.contains(&format!("{dir}\0")) || t.contains(&format!("{dir}/"))).count();
        assert!(of_it >= 1, "no warm worker of {name} under turf at /initialize: {workers:?}\n{}", real.run.logs());
    }
    let r = invoke(&real.fc, "echo", "", b"warm");
    assert_eq!((r.status, r.text().as_str()), (200, "warm"));

    // A warm-up function without a profile: /initialize says why.
    let bad = RealFc::start("warm-bad", &[("NOSLATE_FC_WARM_UP", "missing")]);
    let r = bad.fc.request(
        b"POST /initialize HTTP/1.1\r\nhost: x\r\nx-fc-initialization-timeout: 30\r\ncontent-length: 0\r\n\r\n",
    );
    assert_eq!(r.status, 404, "{}", r.text());
    assert!(r.text().contains("no profile named \\\"missing\\\""), "{}", r.text());
}

/// `NOSLATE_FC_WARM_UP_EVENT`: before `/initialize` answers, each warm-up
/// function's worker was sent the configured event, so its first request (and
/// the data plane's) is not an end user's. Without the setting nothing is sent.
#[test]
fn real_stack_warm_up_event_is_each_workers_first_request() {
    let _one = stack::serial();
    let event = r#"{"warm":1}"#;
    let real = RealFc::start("warm-event", &[("NOSLATE_FC_WARM_UP", "seen,echo"), ("NOSLATE_FC_WARM_UP_EVENT", event)]);
    real.wait_initialized();
    // Both events were answered before /initialize was.
    let out = real.fc.stdout_until("FC Initialize End");
    for f in ["seen", "echo"] {
        let end = format!("FC Invoke End RequestId: noslate-fc-warm-up-{f}");
        let at = out.find(&end).unwrap_or_else(|| panic!("no {end:?} before /initialize answered:\n{out}"));
        assert!(at < out.find("FC Initialize End").unwrap(), "{out}");
        let said = format!("noslate-fc: warm-up event to {f} answered 200");
        assert!(real.fc.proc.stderr_text().contains(&said), "{}", real.fc.proc.stderr_text());
    }
    let r = invoke(&real.fc, "seen", "", b"mine");
    assert_eq!((r.status, r.text().as_str()), (200, r#"["{\"warm\":1}","mine"]"#), "{}", real.run.logs());

    // An event the function fails is logged (with 404, FC's status for a
    // failed event invocation); /initialize still answers (the worker runs),
    // and later invokes are served.
    let failing =
        RealFc::start("warm-event-fails", &[("NOSLATE_FC_WARM_UP", "throw"), ("NOSLATE_FC_WARM_UP_EVENT", event)]);
    failing.wait_initialized();
    let said = failing.fc.proc.stderr_text();
    let line = said.lines().find(|l| l.contains("warm-up event to throw")).unwrap_or_default().to_string();
    assert_eq!(line, "noslate-fc: warm-up event to throw answered 404", "{said}");
    let r = invoke(&failing.fc, "echo", "", b"after");
    assert_eq!((r.status, r.text().as_str()), (200, "after"));
    drop(failing);

    let plain = RealFc::start("warm-no-event", &[("NOSLATE_FC_WARM_UP", "seen")]);
    plain.wait_initialized();
    let r = invoke(&plain.fc, "seen", "", b"mine");
    assert_eq!((r.status, r.text().as_str()), (200, r#"["mine"]"#), "{}", plain.run.logs());
    assert!(!plain.fc.stdout_text().contains("warm-up"), "{}", plain.fc.stdout_text());
}

/// A process's command line, working directory and environment, NUL-separated.
fn process_text(pid: u32) -> String {
    let read = |what: &str| std::fs::read(format!("/proc/{pid}/{what}")).unwrap_or_default();
    let cwd = std::fs::read_link(format!("/proc/{pid}/cwd")).map(|p| p.display().to_string()).unwrap_or_default();
    let mut text = String::from_utf8_lossy(&read("cmdline")).into_owned();
    text.push('\0');
    text.push_str(&cwd);
    text.push('\0');
    text.push_str(&String::from_utf8_lossy(&read("environ")));
    text
}

#[test]
fn real_stack_build_is_cached_outside_the_clone() {
    let bin = stack::noslate_bin();
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    assert!(!bin.starts_with(root), "the stack must be built outside the clone: {}", bin.display());
    for name in ["turf", "node", "data_plane", "control_plane"] {
        assert!(bin.join(name).exists(), "$NOSLATE_BIN/{name} missing in {}", bin.display());
    }
    // A second build reuses the cache: it prints the same NOSLATE_BIN.
    let out =
        std::process::Command::new("bash").arg(root.join("scripts/real-noslate.sh")).arg("build").output().unwrap();
    assert!(out.status.success());
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), bin.to_str().unwrap());
}

/// `real-noslate.sh build` lays out the packed planes by default (#19):
/// `$NOSLATE_BIN/data_plane` and `control_plane` are the loaders in
/// src/noslated/pack/, each beside the V8 code cache of the build's training
/// run, and V8 takes those caches when noslate-fc starts the planes with its
/// default commands (a plane's loader warns on its stderr when V8 rejects the
/// cache: another Node.js, or V8 flags other than the training run's).
#[test]
fn real_stack_planes_run_packed_with_their_code_cache() {
    let _one = stack::serial();
    let bin = stack::noslate_bin();
    for name in ["data_plane", "control_plane"] {
        let loader = std::fs::canonicalize(bin.join(name)).unwrap();
        assert!(
            loader.parent().is_some_and(|d| d.ends_with("src/noslated/pack")),
            "$NOSLATE_BIN/{name} is not the packed loader: {}",
            loader.display()
        );
        let cache = loader.with_file_name(format!("{name}.js.cache"));
        assert!(cache.metadata().is_ok_and(|m| m.len() > 0), "no code cache {}", cache.display());
    }
    // The message types whose codecs the data plane makes at start-up,
    // off the first request's path: those its training request used.
    let types = std::fs::canonicalize(bin.join("data_plane")).unwrap().with_file_name("data_plane.js.types");
    let types = std::fs::read_to_string(&types).unwrap_or_default();
    for used in [".noslated.data.InvokeRequest", ".noslated.data.InvokeResponse"] {
        assert!(types.contains(&format!("\"{used}\"")), "{used} is not among the types set up at start: {types}");
    }
    let real = RealFc::start("packed", &[]);
    real.wait_initialized();
    let r = invoke(&real.fc, "echo", "", b"packed");
    assert_eq!((r.status, r.text().as_str()), (200, "packed"), "{}", real.run.logs());
    for log in ["data_plane_out.log", "control_plane_out.log"] {
        let text = std::fs::read_to_string(real.run.dir.join("logs").join(log)).unwrap_or_default();
        assert!(!text.contains("was rejected"), "{log}: V8 rejected the code cache:\n{text}");
    }
}

/// A profiles file of `(name, folder of tests/real/functions)` pairs.
fn write_profiles_of(run: &Run, functions: &[(&str, &str)]) {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/real/functions");
    let profiles: Vec<String> = functions
        .iter()
        .map(|(name, folder)| {
            format!(
                r#"{{"name":"{name}","runtime":"nodejs","url":"file://{}","signature":"md5:1","handler":"index.handler"}}"#,
                root.join(folder).display()
            )
        })
        .collect();
    std::fs::write(run.profiles_path(), format!("[{}]", profiles.join(","))).unwrap();
}

/// #19: without an Initializer, FC sends the first request the moment the
/// port accepts. Each of 10 fresh instances gets exactly one invoke, sent
/// then (no `/initialize`, no retry), and must answer it with the echo.
#[test]
fn real_stack_first_invoke_the_instant_the_port_accepts() {
    let _one = stack::serial();
    let mut outcomes = Vec::new();
    for i in 0..10 {
        let run = Run::new("first");
        // The instance FC starts for one function.
        write_profiles_of(&run, &[("echo", "echo")]);
        let real = RealFc::start_in(run, &[]);
        let body = format!("first invoke {i}");
        let sent = Instant::now();
        let mut s = real.fc.connect();
        let head = format!(
            "POST /invoke HTTP/1.1\r\nhost: x\r\nx-fc-control-path: /invoke\r\nx-fc-request-id: first-{i}\r\ncontent-length: {}\r\n\r\n",
            body.len()
        );
        s.write_all(&[head.as_bytes(), body.as_bytes()].concat()).unwrap();
        let r = read_response(&mut s).expect("a response to the first invoke");
        let ok = r.status == 200 && r.complete && r.body == body.as_bytes();
        // For the record (cold start is measured by scripts/bench-e2e.sh).
        eprintln!("instance {i}: {} after {} ms", r.status, sent.elapsed().as_millis());
        outcomes.push((ok, format!("instance {i}: {} {}", r.status, r.text())));
        if !ok {
            eprintln!("instance {i} failed:\n{}\n{}", real.fc.proc.stderr_text(), real.run.logs());
        }
    }
    let failed: Vec<&String> = outcomes.iter().filter(|(ok, _)| !ok).map(|(_, why)| why).collect();
    assert!(
        failed.is_empty(),
        "{} of 10 first invokes failed:\n{}",
        failed.len(),
        failed.iter().map(|s| s.as_str()).collect::<Vec<_>>().join("\n")
    );
}

/// What one load client saw.
#[derive(Default)]
struct Tally {
    echoed: usize,
    unknown: usize,
    unexpected: Vec<String>,
}

/// #19: the control plane killed and restarted under load (planes started
/// apart). A new control plane first pushes its own, empty, profiles to the
/// data plane, and noslate-fc pushes them again only once it can reach it:
/// no invoke of a function in the profiles may see Noslated's "No function
/// named … registered" meanwhile. A function the data plane already served
/// keeps its broker through that window, so functions never invoked before
/// (`fresh-*`, the echo code under other names) are invoked right after the
/// new control plane listens, besides keep-alive clients invoking `echo`
/// throughout. A function outside the profiles still gets that 404 straight
/// away. Every answer is counted; any other fails the test.
#[test]
fn real_stack_control_plane_restart_under_load_loses_no_profiled_function() {
    use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
    use std::sync::Arc;
    const CLIENTS: usize = 4;
    const PER_CLIENT: usize = 3000;
    const LOAD_LIMIT: Duration = Duration::from_secs(120);
    const FRESH: [&str; 3] = ["fresh-0", "fresh-1", "fresh-2"];

    let _one = stack::serial();
    let run = Run::new("cprestart");
    let mut profiles = vec![("echo", "echo")];
    profiles.extend(FRESH.iter().map(|name| (*name, "echo")));
    write_profiles_of(&run, &profiles);
    let mut planes = Planes::start(&run);
    let fc = Fc::spawn(run.command(false, &[("NOSLATE_FC_READY_WAIT_MS", "30000")]));
    let initialize = || {
        let r = fc.request(
            b"POST /initialize HTTP/1.1\r\nhost: x\r\nx-fc-initialization-timeout: 60\r\ncontent-length: 0\r\n\r\n",
        );
        assert_eq!(r.status, 200, "/initialize: {}\n{}", r.text(), run.logs());
    };
    initialize();
    let r = invoke(&fc, "echo", "", b"warm");
    assert_eq!((r.status, r.text().as_str()), (200, "warm"), "{}", run.logs());

    let stop = Arc::new(AtomicBool::new(false));
    let answered = Arc::new(AtomicUsize::new(0));
    let port = fc.port;
    let clients: Vec<_> = (0..CLIENTS)
        .map(|c| {
            let (stop, answered) = (stop.clone(), answered.clone());
            std::thread::spawn(move || {
                let connect = || {
                    let s = TcpStream::connect(("127.0.0.1", port)).unwrap();
                    s.set_read_timeout(Some(Duration::from_secs(60))).unwrap();
                    s
                };
                let mut s = connect();
                let mut tally = Tally::default();
                let start = Instant::now();
                for i in 0..PER_CLIENT {
                    if stop.load(Ordering::Relaxed) || start.elapsed() > LOAD_LIMIT {
                        break;
                    }
                    // Client 0 mixes in a function outside the profiles.
                    let unknown = c == 0 && i % 4 == 3;
                    let function = if unknown { "no-such-function" } else { "echo" };
                    let body = format!("client {c} invoke {i}");
                    let head = format!(
                        "POST /invoke HTTP/1.1\r\nhost: x\r\nx-noslate-function: {function}\r\ncontent-length: {}\r\n\r\n",
                        body.len()
                    );
                    let sent = s.write_all(&[head.as_bytes(), body.as_bytes()].concat());
                    let r = sent.ok().and_then(|_| read_response(&mut s));
                    answered.fetch_add(1, Ordering::Relaxed);
                    let Some(r) = r else {
                        tally.unexpected.push(format!("{body} ({function}): no response"));
                        s = connect();
                        continue;
                    };
                    let expected = if unknown {
                        r.status == 404 && r.text().contains("No function named no-such-function")
                    } else {
                        r.status == 200 && r.complete && r.body == body.as_bytes()
                    };
                    match (expected, unknown) {
                        (true, true) => tally.unknown += 1,
                        (true, false) => tally.echoed += 1,
                        (false, _) => tally.unexpected.push(format!("{body} ({function}): {} {}", r.status, r.text())),
                    }
                    if !r.complete || r.header("connection").is_some_and(|v| v.eq_ignore_ascii_case("close")) {
                        s = connect();
                    }
                }
                tally
            })
        })
        .collect();

    let wait_answers = |n: usize, what: &str| {
        let start = Instant::now();
        while answered.load(Ordering::Relaxed) < n {
            assert!(start.elapsed() < Duration::from_secs(60), "load stalled {what}\n{}", fc.proc.stderr_text());
            std::thread::sleep(Duration::from_millis(10));
        }
    };
    wait_answers(200, "before the restart");
    stack::kill_tree(planes.cp.pid());
    let _ = planes.cp.child.wait();
    let at_kill = answered.load(Ordering::Relaxed);
    planes.cp = Planes::start_control_plane(&run);
    // The new control plane listens only after its push of no profiles to
    // the data plane; noslate-fc reconnects within its backoff (≤ 500 ms).
    // The first invokes of the fresh functions go out over that window.
    let listening = Instant::now();
    let fresh: Vec<_> = FRESH
        .iter()
        .zip([0u64, 20, 60])
        .map(|(name, after_ms)| {
            let at = listening + Duration::from_millis(after_ms);
            std::thread::sleep(at.saturating_duration_since(Instant::now()));
            let mut s = fc.connect();
            s.set_read_timeout(Some(Duration::from_secs(60))).unwrap();
            let body = format!("first invoke of {name}");
            let head = format!(
                "POST /invoke HTTP/1.1\r\nhost: x\r\nx-noslate-function: {name}\r\ncontent-length: {}\r\n\r\n",
                body.len()
            );
            s.write_all(&[head.as_bytes(), body.as_bytes()].concat()).unwrap();
            std::thread::spawn(move || {
                let r = read_response(&mut s);
                match r {
                    Some(r) if r.status == 200 && r.complete && r.body == body.as_bytes() => Ok(()),
                    Some(r) => Err(format!("{body}: {} {}", r.status, r.text())),
                    None => Err(format!("{body}: no response")),
                }
            })
        })
        .collect();
    // /initialize answers 200 again once the profiles are pushed again.
    initialize();
    let at_ready = answered.load(Ordering::Relaxed);
    wait_answers(at_ready + 400, "after the restart");
    stop.store(true, Ordering::Relaxed);

    let mut total = Tally::default();
    let mut fresh_ok = 0;
    let mut unexpected = Vec::new();
    for t in fresh {
        match t.join().unwrap() {
            Ok(()) => fresh_ok += 1,
            Err(why) => unexpected.push(why),
        }
    }
    for t in clients {
        let t = t.join().unwrap();
        total.echoed += t.echoed;
        total.unknown += t.unknown;
        total.unexpected.extend(t.unexpected);
    }
    eprintln!(
        "control-plane restart under load: {fresh_ok} fresh functions served, {} echoed, \
         {} unknown-function 404s, {} unexpected; {} answers between the kill and the profiles in force again",
        total.echoed,
        total.unknown,
        total.unexpected.len() + unexpected.len(),
        at_ready - at_kill
    );
    unexpected.extend(total.unexpected.iter().cloned());
    assert!(
        unexpected.is_empty(),
        "{} unexpected answers:\n{}\n{}",
        unexpected.len(),
        unexpected.iter().take(20).cloned().collect::<Vec<_>>().join("\n"),
        fc.proc.stderr_text()
    );
    let counted = total.echoed + total.unknown + total.unexpected.len();
    assert_eq!(counted, answered.load(Ordering::Relaxed), "every answer is counted");
    assert!(total.unknown > 0 && counted >= at_ready + 400, "the load ran: {counted} answers");
    drop(fc);
    drop(planes);
}
