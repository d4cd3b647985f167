//! A matrix of real HTTP clients against noslate-fc and the grpc-js test
//! fixture: curl, Python `urllib` (and its engine `http.client`) and
//! `requests`, Node `http` and `fetch` (undici, built into Node 20), and wrk
//! for a short load.
//!
//! Every client checks: a byte-exact echo of a small body, of 1 MiB, and of a
//! chunked upload; keep-alive reuse; an 8 MiB upload answered early with 413
//! (body limit 4 MiB) and with 404 (unknown function, default limit) — the
//! client must get the status, not a reset; a streamed 3 MiB response. wrk
//! must report no socket errors and no non-2xx answer.
//!
//! The scripts live in `tests/clients/`; Python runs from the venv that
//! `.ci/run` builds (`tests/peer/py/.venv`, with `requests`). Set
//! `NOSLATE_FC_CLIENTS_BIN` to run the matrix against another binary (that is
//! how RELIABILITY.md's "before" column was taken).

mod support;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use support::{pattern, Fc, Peer, TempDir};

const CHECKS: &[&str] = &["echo-small", "echo-1MiB", "echo-chunked", "keep-alive", "413-8MiB", "404-8MiB", "streamed"];

fn start_fc(dir: &TempDir, env: &[(&str, &str)]) -> Fc {
    let bin = std::env::var("NOSLATE_FC_CLIENTS_BIN").unwrap_or_else(|_| env!("CARGO_BIN_EXE_noslate-fc").to_string());
    let mut cmd = Command::new(bin);
    cmd.env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("SERVER_PORT", "0")
        .env("NOSLATE_FC_LISTEN", "127.0.0.1")
        .env("NOSLATE_FC_TRUSTED_PEERS", "any")
        .env("NOSLATE_FC_SOCK_DIR", dir.socks());
    // The fixture serves only registered functions, as Noslated does: the
    // tests' ones and the clients' 3 MiB + 5 download.
    let profiles = dir.path().join("clients-profiles.json");
    let big = format!("big-{}", 3 * 1024 * 1024 + 5);
    let names: Vec<&str> = support::FIXTURE_FUNCTIONS.iter().copied().chain([big.as_str()]).collect();
    std::fs::write(&profiles, support::profiles_json(&names)).unwrap();
    cmd.env("NOSLATE_FUNCTION_PROFILES", &profiles);
    for (k, v) in env {
        cmd.env(k, v);
    }
    cmd.stdout(Stdio::piped()).stderr(Stdio::piped()).stdin(Stdio::null());
    Fc::spawn(cmd)
}

fn clients_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/clients")
}

/// Run a client script; its RESULT lines into `results`.
fn run_script(cmd: &mut Command, results: &mut BTreeMap<(String, String), String>) {
    let out = cmd.stdin(Stdio::null()).output().expect("start client script");
    let stdout = String::from_utf8_lossy(&out.stdout);
    for line in stdout.lines() {
        let mut f = line.splitn(5, ' ');
        if f.next() != Some("RESULT") {
            continue;
        }
        let (client, check, verdict) = (f.next().unwrap_or(""), f.next().unwrap_or(""), f.next().unwrap_or(""));
        let detail = f.next().unwrap_or("");
        let v = if verdict == "ok" { "ok".to_string() } else { format!("FAIL {detail}") };
        results.insert((client.to_string(), check.to_string()), v);
    }
    if !out.status.success() {
        eprintln!("client script exited {:?}: {}", out.status, String::from_utf8_lossy(&out.stderr));
    }
}

/// curl: exit code, status and the response body in a file.
fn curl(args: &[&str], body_out: &Path) -> Result<(u16, Vec<u8>, String), String> {
    let out = Command::new("curl")
        .args(["-sS", "-o"])
        .arg(body_out)
        .args(["-w", "%{http_code}", "--max-time", "30"])
        .args(args)
        .stdin(Stdio::null())
        .output()
        .map_err(|e| format!("curl: {e}"))?;
    let code = String::from_utf8_lossy(&out.stdout).trim().parse().unwrap_or(0);
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    if !out.status.success() {
        return Err(format!("curl exit {:?}, status {code}: {}", out.status.code(), stderr.trim()));
    }
    Ok((code, std::fs::read(body_out).unwrap_or_default(), stderr))
}

fn curl_checks(dir: &TempDir, port: u16, port_big: u16, results: &mut BTreeMap<(String, String), String>) {
    let url = format!("http://127.0.0.1:{port}/invoke");
    let url_big = format!("http://127.0.0.1:{port_big}/invoke");
    let file = |name: &str, data: &[u8]| {
        let p = dir.path().join(name);
        std::fs::write(&p, data).unwrap();
        format!("@{}", p.display())
    };
    let out = dir.path().join("curl-out");
    let small = file("small", b"hello curl");
    let mib: Vec<u8> = (0..1024 * 1024).map(|i| (i % 256) as u8).collect();
    let big = file("mib", &mib);
    let eight = file("eight", &vec![b'e'; 8 * 1024 * 1024]);
    let echo = ["-H", "x-noslate-function: echo", "-H", "content-type: application/octet-stream"];
    let mut check = |name: &str, r: Result<bool, String>| {
        let v = match r {
            Ok(true) => "ok".to_string(),
            Ok(false) => "FAIL wrong status or bytes".to_string(),
            Err(e) => format!("FAIL {e}"),
        };
        results.insert(("curl".to_string(), name.to_string()), v);
    };
    let args = |extra: &[&str], data: &str, u: &str| -> Vec<String> {
        let mut v: Vec<String> = echo.iter().map(|s| s.to_string()).collect();
        v.extend(extra.iter().map(|s| s.to_string()));
        v.extend(["--data-binary".to_string(), data.to_string(), u.to_string()]);
        v
    };
    let run = |a: Vec<String>| {
        let refs: Vec<&str> = a.iter().map(String::as_str).collect();
        curl(&refs, &out)
    };
    check("echo-small", run(args(&[], &small, &url)).map(|(c, b, _)| c == 200 && b == b"hello curl"));
    check("echo-1MiB", run(args(&[], &big, &url)).map(|(c, b, _)| c == 200 && b == mib));
    check(
        "echo-chunked",
        run(args(&["-H", "transfer-encoding: chunked"], &big, &url)).map(|(c, b, _)| c == 200 && b == mib),
    );
    // Two URLs in one run: curl reuses the connection and says so with -v.
    let reuse = Command::new("curl")
        .args(["-sS", "-v", "-o", "/dev/null", "-o", "/dev/null", "-w", "%{http_code} ", "--max-time", "30"])
        .args(["-H", "x-noslate-function: echo", "--data-binary", &small, &url, &url])
        .stdin(Stdio::null())
        .output();
    check(
        "keep-alive",
        reuse.map_err(|e| e.to_string()).map(|o| {
            let err = String::from_utf8_lossy(&o.stderr);
            o.status.success()
                && String::from_utf8_lossy(&o.stdout).trim() == "200 200"
                && (err.contains("e-using existing") || err.contains("Reusing existing"))
        }),
    );
    // `Expect:` off: curl uploads the body at once instead of waiting for 100.
    check("413-8MiB", run(args(&["-H", "expect:"], &eight, &url)).map(|(c, _, _)| c == 413));
    let unknown = ["-H", "expect:", "-H", "x-noslate-function: no-such-function", "--data-binary", &eight, &url_big];
    check("404-8MiB", curl(&unknown, &out).map(|(c, _, _)| c == 404));
    let n = 3 * 1024 * 1024 + 5;
    let function = format!("x-noslate-function: big-{n}");
    check(
        "streamed",
        curl(&["-H", &function, "--data-binary", "", &url], &out).map(|(c, b, _)| c == 200 && b == pattern(n)),
    );
}

/// wrk: a short bounded load; no socket errors, no non-2xx, some requests.
fn wrk_check(port: u16, results: &mut BTreeMap<(String, String), String>) {
    let out = Command::new("wrk")
        .args(["-t1", "-c8", "-d2s", "--timeout", "5s", "-s"])
        .arg(clients_dir().join("echo.lua"))
        .arg(format!("http://127.0.0.1:{port}/invoke"))
        .stdin(Stdio::null())
        .output();
    let v = match out {
        Err(e) => format!("FAIL wrk: {e}"),
        Ok(o) => {
            let text = String::from_utf8_lossy(&o.stdout).into_owned();
            let requests = text.lines().find(|l| l.contains("requests in")).unwrap_or("");
            let errors = text.lines().find(|l| l.contains("Socket errors") || l.contains("Non-2xx"));
            match errors {
                _ if !o.status.success() || !requests.trim().starts_with(|c: char| c.is_ascii_digit()) => {
                    format!("FAIL {}", text.replace('\n', " "))
                }
                Some(e) => format!("FAIL {}", e.trim()),
                None => format!("ok ({})", requests.trim()),
            }
        }
    };
    results.insert(("wrk".to_string(), "load".to_string()), v);
}

#[test]
fn real_http_clients() {
    for tool in ["curl", "wrk", "node"] {
        let found = Command::new("sh").args(["-c", &format!("command -v {tool}")]).output().unwrap();
        assert!(found.status.success(), "{tool} missing: .ci/run installs it");
    }
    let python = support::peer_dir().join("py/.venv/bin/python");
    assert!(python.exists(), "tests/peer/py/.venv missing: .ci/run creates it (with requests)");
    let dir = TempDir::new("clients");
    let _peer = Peer::start(&dir, &[]);
    let fc = start_fc(&dir, &[("NOSLATE_FC_MAX_BODY", "4194304")]);
    let fc_big = start_fc(&dir, &[]);
    fc.wait_ready();
    fc_big.wait_ready();
    let (port, port_big) = (fc.port.to_string(), fc_big.port.to_string());
    let mut results = BTreeMap::new();
    curl_checks(&dir, fc.port, fc_big.port, &mut results);
    for lib in ["urllib", "requests"] {
        run_script(
            Command::new(&python).arg(clients_dir().join("client.py")).args([lib, &port, &port_big]),
            &mut results,
        );
    }
    for api in ["http", "fetch"] {
        run_script(
            Command::new("node").arg(clients_dir().join("client.js")).args([api, &port, &port_big]),
            &mut results,
        );
    }
    wrk_check(fc.port, &mut results);
    // Every client ran every check (a script that died shows up as missing).
    for client in ["curl", "urllib", "requests", "http", "fetch"] {
        for check in CHECKS {
            results.entry((client.to_string(), check.to_string())).or_insert_with(|| "FAIL missing".to_string());
        }
    }
    let mut table = String::from("client    | check        | result\n");
    for ((client, check), v) in &results {
        table.push_str(&format!("{client:<9} | {check:<12} | {v}\n"));
    }
    eprintln!("{table}");
    let failed: Vec<_> = results.iter().filter(|(_, v)| v.starts_with("FAIL")).collect();
    assert!(failed.is_empty(), "{} of {} checks failed:\n{table}", failed.len(), results.len());
    // Both noslate-fc processes are still up and serving.
    std::thread::sleep(Duration::from_millis(10));
    let r = fc.invoke("echo", b"end");
    assert_eq!((r.status, r.body.as_slice()), (200, &b"end"[..]));
}
