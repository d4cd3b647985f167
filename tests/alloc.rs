//! Heap allocations per invoke in steady state, through the real event loop.
//!
//! The server runs on a thread of this test process, whose global allocator
//! counts (`stats_alloc`); the data plane is the grpc-js TEST FIXTURE
//! (tests/peer) and the HTTP client a Python process, so neither allocates
//! here. After a warm-up, 1,000 keep-alive invokes are made per case and the
//! allocations made meanwhile are divided by 1,000: none are made (read
//! buffers, heads and per-stream storage are reused, see `crate::pool`).

mod support;

use std::alloc::System;
use std::io::{Read, Write};
use std::process::{Command, Stdio};
use std::time::Duration;

use noslate_fc::config::{Command as Cli, Config};
use noslate_fc::server::Server;
use stats_alloc::{Region, StatsAlloc, INSTRUMENTED_SYSTEM};
use support::{Peer, TempDir};

#[global_allocator]
static GLOBAL: &StatsAlloc<System> = &INSTRUMENTED_SYSTEM;

/// Allocations (+ reallocations) per invoke allowed, per case. The steady
/// state allocates nothing (issue #14: 0.00 in every case on 2026-12-02;
/// before: 48.7, 60.1, 51.4, 59.0 on 2026-12-01). The bound leaves room for
/// a pool miss now and then on a loaded machine (a read buffer still busy
/// when the next read comes), never for an allocation per invoke.
const PINNED: &[(&str, f64)] =
    &[("64 B content-length", 0.1), ("64 KiB content-length", 0.1), ("64 B chunked", 0.1), ("64 KiB chunked", 0.1)];

/// The client: warm up, say WARM, wait for a line, make `n` invokes on one
/// connection checking every echo, say DONE.
const CLIENT: &str = r#"
import http.client, sys
port, size, chunked, n = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3] == "1", int(sys.argv[4])
body = bytes((i * 31 + 7) % 251 for i in range(size))
conn = http.client.HTTPConnection("127.0.0.1", port)
def one():
    headers = {"x-noslate-function": "echo"}
    if chunked:
        conn.request("POST", "/invoke", body=iter([body[: size // 2], body[size // 2 :]]), headers=headers, encode_chunked=True)
    else:
        conn.request("POST", "/invoke", body=body, headers=headers)
    r = conn.getresponse()
    got = r.read()
    if r.status != 200 or got != body:
        print("BAD", r.status, len(got), flush=True)
        sys.exit(1)
for _ in range(200):
    one()
print("WARM", flush=True)
sys.stdin.readline()
for _ in range(n):
    one()
print("DONE", flush=True)
"#;

fn python() -> std::path::PathBuf {
    let venv = support::peer_dir().join("py/.venv/bin/python");
    if venv.exists() {
        venv
    } else {
        "python3".into()
    }
}

/// Read one line from the client without allocating (a fixed buffer).
fn read_word(out: &mut impl Read) -> [u8; 16] {
    let mut word = [0u8; 16];
    let mut i = 0;
    let mut byte = [0u8; 1];
    while out.read(&mut byte).unwrap_or(0) == 1 && byte[0] != b'\n' {
        if i < word.len() {
            word[i] = byte[0];
            i += 1;
        }
    }
    word
}

#[test]
fn steady_state_allocations_per_invoke_are_pinned() {
    let dir = TempDir::new("alloc");
    let _peer = Peer::start(&dir, &[]);
    let sock_dir = dir.socks().to_str().unwrap().to_string();
    // The fixture serves only registered functions, as Noslated does.
    let profiles = dir.path().join("profiles.json");
    std::fs::write(&profiles, support::profiles_json(&["echo"])).unwrap();
    let profiles = profiles.to_str().unwrap().to_string();
    let args = [
        "--port",
        "0",
        "--listen",
        "127.0.0.1",
        "--trusted-peers",
        "any",
        "--sock-dir",
        &sock_dir,
        "--profiles",
        &profiles,
    ];
    let Ok(Cli::Run(cfg)) = Config::from_args(args.iter().map(|s| s.to_string()), |_| None) else { panic!("config") };
    let mut server = Server::new(*cfg).expect("server");
    let port = server.local_addr().unwrap().port();
    std::thread::spawn(move || server.run());

    const N: usize = 1000;
    let mut report = Vec::new();
    for (case, limit) in PINNED {
        let size = if case.starts_with("64 KiB") { 64 * 1024 } else { 64 };
        let chunked = case.ends_with("chunked");
        let mut client = Command::new(python())
            .arg("-c")
            .arg(CLIENT)
            .args([port.to_string(), size.to_string(), (chunked as u8).to_string(), N.to_string()])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .expect("python client");
        let mut out = client.stdout.take().unwrap();
        let mut input = client.stdin.take().unwrap();
        assert!(read_word(&mut out).starts_with(b"WARM"), "{case}: warm-up failed");
        // Let the warm-up's last exchange settle in the loop before counting.
        std::thread::sleep(Duration::from_millis(50));
        let region = Region::new(GLOBAL);
        input.write_all(b"go\n").unwrap();
        let done = read_word(&mut out);
        let stats = region.change();
        assert!(done.starts_with(b"DONE"), "{case}: the client failed");
        let _ = client.wait();
        let per_invoke = stats.allocations as f64 / N as f64;
        let reallocs = stats.reallocations as f64 / N as f64;
        let bytes = stats.bytes_allocated as f64 / N as f64;
        report.push(format!(
            "{case}: {per_invoke:.2} allocations + {reallocs:.2} reallocations per invoke, {bytes:.0} bytes"
        ));
        assert!(
            per_invoke + reallocs <= *limit,
            "{case}: {per_invoke:.2} allocations + {reallocs:.2} reallocations per invoke (pinned at {limit})"
        );
    }
    eprintln!("{}", report.join("\n"));
}
