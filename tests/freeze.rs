//! Freeze and thaw, the way FC does it: every process of the instance stops
//! (here SIGSTOP of noslate-fc and of the grpc-js data-plane fixture) while
//! the clocks go on, then continues (SIGCONT) — often because a request just
//! arrived on a keep-alive connection opened before the freeze.
//!
//! The stop lasts three idle timeouts, so every idle timer is long overdue
//! when the loop runs again. Promised: every request is served (the ones
//! written during the stop, and the ones written on idle connections right
//! after it), nothing is reset, and the data plane sees no new connection.

mod support;

use std::io::Write;
use std::net::TcpStream;
use std::time::{Duration, Instant};

use support::{read_response, Fc, Peer, TempDir};

const SIGCONT: i32 = 18;
const SIGSTOP: i32 = 19;
/// Long enough that the test's own warm-up on 2 loaded cores never idles a
/// connection out before the freeze (500 ms did, at load 25).
const IDLE_MS: u64 = 2000;
const STOP_MS: u64 = 3 * IDLE_MS;
/// Connections that write a request while everything is stopped.
const DURING: usize = 4;
/// Connections that stay idle through the stop and write right after it.
const AFTER: usize = 4;

fn connect(port: u16) -> TcpStream {
    let s = TcpStream::connect(("127.0.0.1", port)).unwrap();
    s.set_nodelay(true).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(15))).unwrap();
    s
}

fn echo_request(id: &str) -> Vec<u8> {
    let body = format!("body of {id}");
    format!(
        "POST /invoke HTTP/1.1\r\nhost: x\r\nx-noslate-function: echo\r\nx-fc-request-id: {id}\r\ncontent-length: {}\r\n\r\n{body}",
        body.len()
    )
    .into_bytes()
}

/// One echo exchange on a kept-alive connection; Err says what went wrong.
fn echo(sock: &mut TcpStream, id: &str) -> Result<(), String> {
    sock.write_all(&echo_request(id)).map_err(|e| format!("{id}: write: {e}"))?;
    read_echo(sock, id)
}

fn read_echo(sock: &mut TcpStream, id: &str) -> Result<(), String> {
    match read_response(sock) {
        Some(r) if r.status == 200 && r.complete && r.body == format!("body of {id}").as_bytes() => Ok(()),
        Some(r) => Err(format!("{id}: status {} complete {} body {:?}", r.status, r.complete, r.text())),
        None => Err(format!("{id}: no response (connection closed or reset)")),
    }
}

fn dp_health_checks(peer: &Peer) -> usize {
    peer.events().iter().filter(|e| e["ev"] == "checkHealth" && e["plane"] == "dp").count()
}

/// One freeze/thaw cycle over fresh keep-alive connections.
fn cycle(fc: &Fc, peer: &Peer, tag: &str, pre_freeze: bool) -> Vec<String> {
    let mut failures = Vec::new();
    let mut during: Vec<TcpStream> = (0..DURING).map(|_| connect(fc.port)).collect();
    let mut after: Vec<TcpStream> = (0..AFTER).map(|_| connect(fc.port)).collect();
    for (i, s) in during.iter_mut().chain(after.iter_mut()).enumerate() {
        echo(s, &format!("{tag}-warm-{i}")).unwrap();
    }
    if pre_freeze {
        let mut s = connect(fc.port);
        s.write_all(b"GET /pre-freeze HTTP/1.1\r\nhost: x\r\n\r\n").unwrap();
        assert_eq!(read_response(&mut s).map(|r| r.status), Some(200));
        after.push(s);
    }
    let health_before = dp_health_checks(peer);
    // FC stops the whole instance: the data plane and us.
    peer.proc.signal(SIGSTOP);
    fc.proc.signal(SIGSTOP);
    let stopped = Instant::now();
    // Really stopped (state T in /proc), or the test would judge nothing.
    for (name, proc) in [("data plane", &peer.proc), ("noslate-fc", &fc.proc)] {
        let until = Instant::now() + Duration::from_secs(10);
        while proc.state() != Some('T') && Instant::now() < until {
            std::thread::sleep(Duration::from_millis(5));
        }
        assert_eq!(proc.state(), Some('T'), "{tag}: {name} not stopped by SIGSTOP");
    }
    std::thread::sleep(Duration::from_millis(STOP_MS / 3));
    for (i, s) in during.iter_mut().enumerate() {
        s.write_all(&echo_request(&format!("{tag}-during-{i}"))).unwrap();
    }
    std::thread::sleep(Duration::from_millis(STOP_MS).saturating_sub(stopped.elapsed()));
    // Still stopped for the whole freeze.
    assert_eq!((peer.proc.state(), fc.proc.state()), (Some('T'), Some('T')), "{tag}: woke up during the freeze");
    fc.proc.signal(SIGCONT);
    peer.proc.signal(SIGCONT);
    for (i, s) in during.iter_mut().enumerate() {
        if let Err(e) = read_echo(s, &format!("{tag}-during-{i}")) {
            failures.push(e);
        }
    }
    for (i, s) in after.iter_mut().enumerate() {
        if let Err(e) = echo(s, &format!("{tag}-after-{i}")) {
            failures.push(e);
        }
    }
    // The same plane connection served everything: no reconnect.
    let health_after = dp_health_checks(peer);
    if health_after != health_before {
        failures.push(format!("{tag}: data plane saw a new connection ({health_before} → {health_after} checkHealth)"));
    }
    // And the thaw did not switch the idle timeout off: unused connections
    // still close once it has passed (well, within a generous bound).
    let mut idle = connect(fc.port);
    let start = Instant::now();
    let mut buf = [0u8; 16];
    let closed = matches!(std::io::Read::read(&mut idle, &mut buf), Ok(0) | Err(_));
    if !closed || start.elapsed() > Duration::from_millis(IDLE_MS * 10) {
        failures.push(format!("{tag}: idle connection not closed after the idle timeout ({:?})", start.elapsed()));
    }
    failures
}

#[test]
fn freeze_longer_than_the_idle_timeout_loses_no_request() {
    let dir = TempDir::new("freeze");
    let peer = Peer::start(&dir, &[]);
    let idle = IDLE_MS.to_string();
    let fc = Fc::start(&dir, &[("NOSLATE_FC_IDLE_TIMEOUT_MS", &idle)]);
    fc.wait_ready();
    let mut failures = cycle(&fc, &peer, "sigstop", false);
    failures.extend(cycle(&fc, &peer, "pre-freeze", true));
    let stderr = fc.proc.stderr_text();
    assert!(!stderr.contains("connection lost"), "plane connection lost: {stderr}");
    assert!(failures.is_empty(), "{} failures:\n{}", failures.len(), failures.join("\n"));
}
