//! The image users deploy, run as Function Compute runs it: the repository's
//! Dockerfile built by `scripts/image.sh build` (local Debian bases passed as
//! build arguments), started with podman with port 9000 published on
//! loopback only and a 512 MiB memory limit, noslate-fc as PID 1 over the real
//! turfd, Noslated planes and Node.js worker running the example `echo`.
//!
//! If podman cannot run or the image cannot be built, these tests fail; they
//! never skip. Every container is removed by name when a test ends.
//!
//! The time bounds (stop and failure each under 1 s) are the product
//! requirements for FC; the measured figures are printed with the results.

mod support;

use std::io::Write;
use std::net::TcpStream;
use std::path::PathBuf;
use std::process::{Command, Output};
use std::sync::OnceLock;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use support::{read_response, Response};

/// FC's own bound for stop and for failing: the requirement.
const FC_BOUND: Duration = Duration::from_secs(1);
/// Idle timeout inside the container: the freeze lasts longer than this.
const IDLE_MS: u64 = 1500;

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// `scripts/image.sh build` once per test binary: (image name, containers.conf).
fn image() -> &'static (String, String) {
    static IMAGE: OnceLock<(String, String)> = OnceLock::new();
    IMAGE.get_or_init(|| {
        let script = root().join("scripts/image.sh");
        let out = Command::new("bash").arg(&script).arg("build").output().expect("bash scripts/image.sh");
        let stderr = String::from_utf8_lossy(&out.stderr);
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(out.status.success(), "scripts/image.sh build failed ({}):\n{stderr}\n{stdout}", out.status);
        let name = stdout.lines().last().expect("image name on the last line").trim().to_string();
        let conf = Command::new("bash").arg(&script).arg("conf").output().expect("image.sh conf");
        assert!(conf.status.success(), "scripts/image.sh conf failed");
        (name, String::from_utf8_lossy(&conf.stdout).trim().to_string())
    })
}

fn podman(args: &[&str]) -> Output {
    let (_, conf) = image();
    Command::new("podman").args(args).env("CONTAINERS_CONF", conf).output().expect("podman runs")
}

fn podman_ok(args: &[&str]) -> String {
    let out = podman(args);
    assert!(
        out.status.success(),
        "podman {args:?} failed: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

/// One container of the image, removed by name on drop.
struct Container {
    name: String,
    port: u16,
}

impl Container {
    fn run(tag: &str, env: &[&str]) -> Container {
        let (image, _) = image();
        let name = format!("noslate-fc-test-{tag}-{}", std::process::id());
        let _ = podman(&["rm", "-f", "-t", "0", &name]);
        let mut args = vec!["run", "-d", "--name", &name, "--memory", "512m", "-p", "127.0.0.1::9000"];
        for e in env {
            args.extend(["-e", e]);
        }
        args.push(image);
        podman_ok(&args);
        let mut c = Container { name, port: 0 };
        let mapping = podman_ok(&["port", &c.name, "9000/tcp"]);
        let port = mapping.rsplit(':').next().and_then(|p| p.parse().ok());
        c.port = port.unwrap_or_else(|| panic!("podman port: {mapping:?}"));
        assert!(mapping.starts_with("127.0.0.1:"), "port 9000 published beyond loopback: {mapping}");
        c
    }

    fn logs(&self) -> String {
        let out = podman(&["logs", &self.name]);
        format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr))
    }

    fn inspect(&self, field: &str) -> String {
        podman_ok(&["inspect", "--format", &format!("{{{{{field}}}}}"), &self.name])
    }

    fn running(&self) -> bool {
        self.inspect(".State.Running") == "true"
    }

    /// When the container's PID 1 exited, by podman's clock (Unix ns).
    fn finished_at_ns(&self) -> u128 {
        self.inspect(".State.FinishedAt.UnixNano").parse().expect("FinishedAt")
    }

    fn exit_code(&self) -> i32 {
        self.inspect(".State.ExitCode").parse().expect("ExitCode")
    }

    fn connect(&self) -> TcpStream {
        let s = TcpStream::connect(("127.0.0.1", self.port)).expect("connect to the published port");
        s.set_nodelay(true).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(60))).unwrap();
        s
    }

    /// Wait for the port, then `/initialize` as FC sends it: 200 once the
    /// stack is ready. Connections refused or closed while noslate-fc is not
    /// listening yet are retried, up to two minutes.
    fn initialize(&self) -> Response {
        let start = Instant::now();
        let req = "POST /initialize HTTP/1.1\r\nhost: x\r\nx-fc-control-path: /initialize\r\n\
                   x-fc-request-id: init-1\r\nx-fc-initialization-timeout: 60\r\ncontent-length: 0\r\n\r\n";
        loop {
            assert!(self.running(), "container exited before /initialize:\n{}", self.logs());
            if let Ok(mut s) = TcpStream::connect(("127.0.0.1", self.port)) {
                s.set_read_timeout(Some(Duration::from_secs(90))).unwrap();
                if s.write_all(req.as_bytes()).is_ok() {
                    if let Some(r) = read_response(&mut s) {
                        return r;
                    }
                }
            }
            assert!(start.elapsed() < Duration::from_secs(120), "no answer to /initialize:\n{}", self.logs());
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

impl Drop for Container {
    fn drop(&mut self) {
        let _ = podman(&["rm", "-f", "-t", "0", &self.name]);
    }
}

fn now_ns() -> u128 {
    SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_nanos()
}

fn body_of(n: usize, seed: u8) -> Vec<u8> {
    (0..n).map(|i| (i as u8).wrapping_mul(31).wrapping_add(seed)).collect()
}

/// An event invocation (`POST /invoke`) or an HTTP invocation (the client's
/// own method and path) on a kept-alive connection.
fn invoke(s: &mut TcpStream, http: bool, id: &str, body: &[u8]) -> Option<Response> {
    let head = if http {
        format!(
            "POST /api/echo?x=1 HTTP/1.1\r\nhost: x\r\nx-fc-control-path: /http-invoke\r\nx-fc-request-id: {id}\r\n\
             content-type: application/octet-stream\r\ncontent-length: {}\r\n\r\n",
            body.len()
        )
    } else {
        format!(
            "POST /invoke HTTP/1.1\r\nhost: x\r\nx-fc-control-path: /invoke\r\nx-fc-request-id: {id}\r\n\
             content-type: application/octet-stream\r\ncontent-length: {}\r\n\r\n",
            body.len()
        )
    };
    s.write_all(head.as_bytes()).ok()?;
    s.write_all(body).ok()?;
    read_response(s)
}

fn hook(s: &mut TcpStream, path: &str, id: &str) -> Response {
    let req = format!("GET {path} HTTP/1.1\r\nhost: x\r\nx-fc-request-id: {id}\r\n\r\n");
    s.write_all(req.as_bytes()).unwrap();
    read_response(s).unwrap_or_else(|| panic!("no answer to {path}"))
}

fn assert_echo(r: Option<Response>, body: &[u8], what: &str) {
    let r = r.unwrap_or_else(|| panic!("{what}: no answer"));
    assert_eq!(r.status, 200, "{what}: {} {}", r.status, r.text());
    assert!(r.complete, "{what}: body cut short");
    assert!(r.body == body, "{what}: {} bytes back for {} sent, not byte-exact", r.body.len(), body.len());
}

/// 8 keep-alive connections, event and HTTP invokes mixed, bodies from 0 to
/// 1 MiB; bounded in count (40 per connection) and time (60 s).
fn soak(c: &Container) -> (usize, Vec<String>) {
    const SIZES: [usize; 8] = [0, 1, 1000, 16 * 1024, 64 * 1024, 300 * 1000, 1 << 20, 5];
    let deadline = Instant::now() + Duration::from_secs(60);
    let threads: Vec<_> = (0..8)
        .map(|t| {
            let mut s = c.connect();
            std::thread::spawn(move || {
                let mut ok = 0;
                let mut failed = Vec::new();
                for i in 0..40 {
                    if Instant::now() > deadline {
                        break;
                    }
                    let body = body_of(SIZES[(t + i) % SIZES.len()], (t * 40 + i) as u8);
                    let id = format!("soak-{t}-{i}");
                    match invoke(&mut s, (t + i) % 2 == 0, &id, &body) {
                        Some(r) if r.status == 200 && r.complete && r.body == body => ok += 1,
                        Some(r) => failed.push(format!(
                            "{id}: {} {}",
                            r.status,
                            String::from_utf8_lossy(&r.body[..r.body.len().min(300)])
                        )),
                        None => {
                            failed.push(format!("{id}: connection closed"));
                            break;
                        }
                    }
                }
                (ok, failed)
            })
        })
        .collect();
    let mut ok = 0;
    let mut failed = Vec::new();
    for t in threads {
        let (o, f) = t.join().unwrap();
        ok += o;
        failed.extend(f);
    }
    (ok, failed)
}

/// The FC sequence on one instance: /initialize, an event and an HTTP
/// invoke, a mixed soak, /pre-freeze, a freeze longer than the idle timeout
/// and a thaw with the next invoke on the same connection, /pre-stop and a
/// stop that exits 0 before FC's bound, with every child stopped and logs
/// that carry FC's markers and nothing of the planes.
#[test]
fn the_image_serves_fc_from_initialize_to_stop() {
    let idle = format!("NOSLATE_FC_IDLE_TIMEOUT_MS={IDLE_MS}");
    let c = Container::run("fc", &[&idle]);
    let init = c.initialize();
    assert_eq!(init.status, 200, "/initialize: {}\n{}", init.text(), c.logs());
    assert!(init.text().contains("\"initialized\":true"), "{}", init.text());
    // Noslated's worker pool is the container's memory limit.
    let logs = c.logs();
    assert!(logs.contains("NOSLATED_VIRTUAL_MEMORY_POOL_SIZE=536870912 "), "pool not sized to 512 MiB:\n{logs}");

    let mut s = c.connect();
    let event = body_of(100_000, 1);
    assert_echo(invoke(&mut s, false, "ev-1", &event), &event, "event invoke");
    let http = body_of(70_000, 2);
    assert_echo(invoke(&mut s, true, "http-1", &http), &http, "HTTP invoke");

    let (ok, failed) = soak(&c);
    println!("soak: {ok} byte-exact echoes, {} failed", failed.len());
    assert!(failed.is_empty(), "{} of {} echoes failed: {:?}\n{}", failed.len(), ok + failed.len(), failed, c.logs());
    assert!(ok >= 8 * 10, "only {ok} echoes in the soak's time");

    // Freeze the whole container (cgroup freezer) for longer than the idle
    // timeout, then thaw: the kept-alive connection still serves. (A fresh
    // one: the first has been idle through the soak, longer than the timeout.)
    let mut s = c.connect();
    let r = hook(&mut s, "/pre-freeze", "pf-1");
    assert_eq!(r.status, 200, "/pre-freeze: {}", r.text());
    podman_ok(&["pause", &c.name]);
    std::thread::sleep(Duration::from_millis(IDLE_MS * 2));
    podman_ok(&["unpause", &c.name]);
    let thawed = body_of(5000, 3);
    assert_echo(invoke(&mut s, false, "after-thaw", &thawed), &thawed, "invoke after the thaw on the same connection");

    // Stop with nothing in flight: /pre-stop, then SIGTERM from the runtime.
    let r = hook(&mut s, "/pre-stop", "ps-1");
    assert_eq!(r.status, 200, "/pre-stop: {}", r.text());
    let sent = now_ns();
    let wall = Instant::now();
    podman_ok(&["stop", "-t", "10", &c.name]);
    let wall = wall.elapsed();
    let took = Duration::from_nanos(c.finished_at_ns().saturating_sub(sent) as u64);
    println!("podman stop: PID 1 exited {took:?} after the stop command was issued ({wall:?} for the command)");
    let logs = c.logs();
    assert_eq!(c.exit_code(), 0, "stop did not exit 0:\n{logs}");
    assert!(took < FC_BOUND, "stop took {took:?} (FC's bound: {FC_BOUND:?}):\n{logs}");
    // Every child was stopped and reaped before PID 1 exited: the planes by
    // SIGTERM, turfd (and its workers with it) by SIGKILL.
    for line in ["data_plane (pid", "control_plane (pid", "turfd (pid"] {
        let stopped = logs.lines().any(|l| l.contains(line) && l.contains(") stopped: "));
        assert!(stopped, "{line}...) not reported stopped:\n{logs}");
    }
    assert!(!logs.contains("exited unexpectedly"), "{logs}");

    // What FC collects: its markers, and only noslate-fc's own lines.
    for marker in [
        "FC Initialize Start RequestId: init-1",
        "FC Initialize End RequestId: init-1",
        "FC Invoke Start RequestId: ev-1",
        "FC Invoke End RequestId: ev-1",
        "FC Invoke End RequestId: http-1",
        "FC PreFreeze End RequestId: pf-1",
        "FC Invoke End RequestId: after-thaw",
        "FC PreStop End RequestId: ps-1",
    ] {
        assert!(logs.contains(marker), "no {marker:?} in the container's output:\n{logs}");
    }
    let noise: Vec<&str> =
        logs.lines().filter(|l| !l.starts_with("FC ") && !l.starts_with("noslate-fc: ")).take(10).collect();
    assert!(noise.is_empty(), "lines other than noslate-fc's in the container's output: {noise:?}");
}

/// A plane killed inside the container ends it, non-zero, before FC's bound,
/// so FC replaces the instance.
#[test]
fn a_killed_plane_ends_the_container_at_once() {
    let c = Container::run("plane", &[]);
    let init = c.initialize();
    assert_eq!(init.status, 200, "/initialize: {}\n{}", init.text(), c.logs());
    let logs = c.logs();
    let pid: u32 = logs
        .lines()
        .find_map(|l| l.strip_prefix("noslate-fc: started data_plane (pid "))
        .and_then(|rest| rest.split(')').next())
        .and_then(|p| p.parse().ok())
        .unwrap_or_else(|| panic!("no data_plane pid in the logs:\n{logs}"));
    let sent = now_ns();
    podman_ok(&["exec", &c.name, "bash", "-c", &format!("kill -9 {pid}")]);
    let code = podman_ok(&["wait", &c.name]);
    let took = Duration::from_nanos(c.finished_at_ns().saturating_sub(sent) as u64);
    println!("data plane killed: PID 1 exited {took:?} after the kill was issued, code {code}");
    let logs = c.logs();
    assert_ne!(c.exit_code(), 0, "the container must exit non-zero:\n{logs}");
    assert!(logs.contains(&format!("data_plane (pid {pid}) exited unexpectedly: signal 9")), "{logs}");
    assert!(took < FC_BOUND, "the container exited {took:?} after the plane died (FC's bound: {FC_BOUND:?}):\n{logs}");
}

/// SIGTERM alone (no `/pre-stop` first), with a worker running: the planes
/// stop on it, turfd and the worker are killed at once, exit 0 before FC's
/// bound, so the runtime never needs its SIGKILL.
#[test]
fn sigterm_alone_stops_the_container_at_once() {
    let c = Container::run("term", &[]);
    let init = c.initialize();
    assert_eq!(init.status, 200, "/initialize: {}\n{}", init.text(), c.logs());
    let mut s = c.connect();
    let body = body_of(1000, 4);
    assert_echo(invoke(&mut s, false, "before-stop", &body), &body, "invoke");
    let sent = now_ns();
    podman_ok(&["stop", "-t", "10", &c.name]);
    let took = Duration::from_nanos(c.finished_at_ns().saturating_sub(sent) as u64);
    println!("SIGTERM: PID 1 exited {took:?} after the stop command was issued");
    let logs = c.logs();
    assert_eq!(c.exit_code(), 0, "stop did not exit 0:\n{logs}");
    assert!(logs.contains("SIGTERM: draining"), "{logs}");
    assert!(took < FC_BOUND, "stop took {took:?} (FC's bound: {FC_BOUND:?}):\n{logs}");
}
