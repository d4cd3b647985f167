//! The ENTRYPOINT duties end to end, through the real binary: supervising
//! stand-in children (tests/fixtures: a fake turfd and a wrapper that runs the
//! Noslated fixture tests/peer/noslated-peer.js as a plane), draining on
//! SIGTERM and `/pre-stop`, `/initialize` with function profiles and platform
//! environment variables, and re-pushing them when the control plane
//! reconnects.
//!
//! Every process is killed by PID when a test ends (`Proc` for noslate-fc and
//! the test's own peers, `Children` for what noslate-fc started), and the
//! tests check through /proc that no child outlives noslate-fc.

mod support;

use std::io::Write;
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use support::{read_response, Fc, Peer, Response, TempDir};

fn fixture(name: &str) -> String {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures").join(name).display().to_string()
}

/// Is the process running? A zombie (state Z) has finished: it only waits
/// for its (new) parent to reap it.
fn alive(pid: u32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(stat) => stat.rsplit(')').next().and_then(|rest| rest.split_whitespace().next()) != Some("Z"),
        Err(_) => false,
    }
}

/// How long a test waits for an event that should come promptly (a child
/// dying, an exit): generous, because 2 loaded cores can stall a process for
/// seconds. Tests wait for the event; they never assert a tight time.
const PROMPTLY: Duration = Duration::from_secs(10);

fn wait_dead(pid: u32, limit: Duration) -> bool {
    let start = Instant::now();
    while start.elapsed() < limit {
        if !alive(pid) {
            return true;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    !alive(pid)
}

fn kill(pid: u32, sig: &str) {
    let _ = Command::new("kill").arg(format!("-{sig}")).arg(pid.to_string()).status();
}

/// The children noslate-fc reported starting (`started <name> (pid <pid>)`),
/// in start order. SIGKILLed by PID on drop, should a test fail half-way.
struct Children(Vec<(String, u32)>);

impl Children {
    fn of(fc: &Fc) -> Children {
        let text = fc.proc.stderr_text();
        let list = text
            .lines()
            .filter_map(|l| l.strip_prefix("noslate-fc: started "))
            .filter_map(|rest| {
                let (name, rest) = rest.split_once(" (pid ")?;
                let pid = rest.split_once(')')?.0.parse().ok()?;
                Some((name.to_string(), pid))
            })
            .collect();
        Children(list)
    }

    fn names(&self) -> Vec<&str> {
        self.0.iter().map(|(n, _)| n.as_str()).collect()
    }

    fn pid(&self, name: &str) -> u32 {
        self.0.iter().find(|(n, _)| n == name).map(|(_, p)| *p).unwrap_or_else(|| panic!("no child {name}"))
    }

    fn assert_all_dead(&self, limit: Duration) {
        for (name, pid) in &self.0 {
            assert!(wait_dead(*pid, limit), "{name} (pid {pid}) outlived noslate-fc");
        }
    }
}

impl Drop for Children {
    fn drop(&mut self) {
        for (_, pid) in &self.0 {
            if alive(*pid) {
                kill(*pid, "KILL");
            }
        }
    }
}

/// A temporary stack: fake turfd and both planes as children of noslate-fc.
struct Stack {
    dir: TempDir,
    fc: Fc,
    children: Children,
}

impl Stack {
    fn start(tag: &str, extra: &[(&str, &str)]) -> Stack {
        let dir = TempDir::new(tag);
        std::fs::create_dir_all(dir.path().join("logs")).unwrap();
        let logs = dir.path().join("logs").display().to_string();
        let events = dir.path().join("events.jsonl").display().to_string();
        let turf = format!("{} -D -f", fixture("fake-turf.sh"));
        let dp = format!("{} dp", fixture("plane.sh"));
        let cp = format!("{} cp", fixture("plane.sh"));
        let mut env: Vec<(&str, &str)> = vec![
            ("NOSLATE_LOGDIR", &logs),
            ("NOSLATE_FC_TURF_CMD", &turf),
            ("NOSLATE_FC_DATA_PLANE_CMD", &dp),
            ("NOSLATE_FC_CONTROL_PLANE_CMD", &cp),
            ("NOSLATE_TEST_EVENTS", &events),
        ];
        env.extend_from_slice(extra);
        let fc = Fc::start(&dir, &env);
        let children = Children::of(&fc);
        Stack { dir, fc, children }
    }

    fn log(&self, name: &str) -> String {
        std::fs::read_to_string(self.dir.path().join("logs").join(name)).unwrap_or_default()
    }

    fn events(&self) -> Vec<Value> {
        read_events(&self.dir.path().join("events.jsonl"))
    }

    fn wait_event(&self, limit: Duration, pred: impl Fn(&Value) -> bool) -> Option<Value> {
        wait_for(limit, || self.events().into_iter().find(|e| pred(e)))
    }
}

fn read_events(path: &Path) -> Vec<Value> {
    std::fs::read_to_string(path).unwrap_or_default().lines().filter_map(|l| serde_json::from_str(l).ok()).collect()
}

fn wait_for<T>(limit: Duration, mut f: impl FnMut() -> Option<T>) -> Option<T> {
    let start = Instant::now();
    loop {
        if let Some(v) = f() {
            return Some(v);
        }
        if start.elapsed() > limit {
            return None;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// One request on a fresh connection to `port` (usable from any thread).
fn request_at(port: u16, raw: &[u8]) -> Option<Response> {
    let mut s = TcpStream::connect(("127.0.0.1", port)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(15))).unwrap();
    s.write_all(raw).ok()?;
    read_response(&mut s)
}

fn invoke_at(port: u16, function: &str, body: &[u8]) -> Option<Response> {
    invoke_keep_alive(port, function, body).map(|(r, _)| r)
}

/// An invoke on a keep-alive connection, returned open as FC keeps it: the
/// end of the exchange, not the end of the connection, must end a drain.
fn invoke_keep_alive(port: u16, function: &str, body: &[u8]) -> Option<(Response, TcpStream)> {
    let mut raw = format!(
        "POST /invoke HTTP/1.1\r\nhost: x\r\nx-noslate-function: {function}\r\ncontent-length: {}\r\n\r\n",
        body.len()
    )
    .into_bytes();
    raw.extend_from_slice(body);
    let mut s = TcpStream::connect(("127.0.0.1", port)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(15))).unwrap();
    s.write_all(&raw).ok()?;
    read_response(&mut s).map(|r| (r, s))
}

fn initialize(fc: &Fc, timeout_s: u32) -> (Response, Duration) {
    let start = Instant::now();
    let raw = format!(
        "POST /initialize HTTP/1.1\r\nhost: x\r\nx-fc-request-id: init-1\r\n\
         x-fc-initialization-timeout: {timeout_s}\r\ncontent-length: 0\r\n\r\n"
    );
    let r = fc.request(raw.as_bytes());
    (r, start.elapsed())
}

fn reason(r: &Response) -> String {
    let v: Value = serde_json::from_slice(&r.body).unwrap_or_else(|_| panic!("not JSON: {}", r.text()));
    assert_eq!(v["initialized"], false, "{}", r.text());
    v["reason"].as_str().unwrap_or_else(|| panic!("no reason: {}", r.text())).to_string()
}

// ------------------------------------------------------------- supervision

#[test]
fn children_start_in_order_and_log_to_logdir() {
    let stack = Stack::start("order", &[]);
    assert_eq!(stack.children.names(), ["turfd", "data_plane", "control_plane"]);
    stack.fc.wait_ready();
    let r = stack.fc.invoke("echo", b"through the children");
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.text(), "through the children");

    let turf = stack.log("turf.log");
    assert!(turf.contains("fake turfd started") && turf.contains("args -D -f"), "turf stdout: {turf:?}");
    assert!(turf.contains("fake turfd stderr line"), "turf stderr: {turf:?}");
    let dp = stack.log("data_plane_out.log");
    assert!(dp.contains("plane dp-0 stderr line") && dp.contains("READY"), "data plane log: {dp:?}");
    let cp = stack.log("control_plane_out.log");
    assert!(cp.contains("plane cp-0 stderr line") && cp.contains("READY"), "control plane log: {cp:?}");

    let mut fc = stack.fc;
    fc.proc.signal(15);
    let status = fc.proc.wait_exit(Duration::from_secs(10)).expect("exit after SIGTERM");
    assert_eq!(status.code(), Some(0), "{}", fc.proc.stderr_text());
    stack.children.assert_all_dead(PROMPTLY);
}

/// The defaults: `$NOSLATE_BIN/turf -D -f`, `$NOSLATE_BIN/node $NOSLATE_BIN/data_plane`
/// and `... control_plane`, with a fake NOSLATE_BIN.
#[test]
fn default_commands_from_noslate_bin() {
    let dir = TempDir::new("bin");
    let bin = dir.path().join("bin");
    let logs = dir.path().join("logs");
    std::fs::create_dir_all(&bin).unwrap();
    std::fs::create_dir_all(&logs).unwrap();
    std::os::unix::fs::symlink(fixture("fake-turf.sh"), bin.join("turf")).unwrap();
    let node = String::from_utf8(Command::new("sh").args(["-c", "command -v node"]).output().unwrap().stdout).unwrap();
    std::os::unix::fs::symlink(node.trim(), bin.join("node")).unwrap();
    let peer = support::peer_dir().join("noslated-peer.js");
    for (script, kind) in [("data_plane", "dp"), ("control_plane", "cp")] {
        let js = format!(
            "const socks = process.env.NOSLATED_WORKDIR + '/socks/';\n\
             const sock = socks + '{kind}-' + process.env.NOSLATED_PLANE_ID + '.sock';\n\
             process.argv.splice(2, 0, '--{kind}', sock);\n\
             if ('{kind}' === 'cp') process.argv.push('--forward-dp', socks + 'dp-' + process.env.NOSLATED_PLANE_ID + '.sock');\n\
             require({peer:?});\n",
            peer = peer.display().to_string()
        );
        std::fs::write(bin.join(script), js).unwrap();
    }
    let fc = Fc::start(&dir, &[("NOSLATE_BIN", bin.to_str().unwrap()), ("NOSLATE_LOGDIR", logs.to_str().unwrap())]);
    let children = Children::of(&fc);
    assert_eq!(children.names(), ["turfd", "data_plane", "control_plane"]);
    let stderr = fc.proc.stderr_text();
    assert!(stderr.contains(&format!("{}/turf -D -f", bin.display())), "{stderr}");
    assert!(stderr.contains(&format!("{b}/node {b}/data_plane", b = bin.display())), "{stderr}");
    fc.wait_ready();
    assert_eq!(fc.invoke("echo", b"defaults").text(), "defaults");
    assert!(std::fs::read_to_string(logs.join("turf.log")).unwrap().contains("args -D -f"));
    assert!(std::fs::read_to_string(logs.join("control_plane_out.log")).unwrap().contains("READY"));
    drop(fc);
    // noslate-fc was SIGKILLed: PR_SET_PDEATHSIG takes its children with it.
    children.assert_all_dead(PROMPTLY);
}

#[test]
fn a_child_that_exits_stops_the_others() {
    let stack = Stack::start("crash", &[]);
    stack.fc.wait_ready();
    let dp = stack.children.pid("data_plane");
    let mut fc = stack.fc;
    let start = Instant::now();
    kill(dp, "KILL");
    let status = fc.proc.wait_exit(PROMPTLY).expect("noslate-fc still running 10 s after a child died");
    eprintln!("exited {:?} after the data plane died", start.elapsed());
    assert_ne!(status.code(), Some(0), "must exit non-zero");
    let stderr = fc.proc.stderr_text();
    assert!(stderr.contains(&format!("data_plane (pid {dp}) exited unexpectedly: signal 9")), "{stderr}");
    stack.children.assert_all_dead(PROMPTLY);
}

#[test]
fn turfd_exiting_on_its_own_is_reported_with_its_code() {
    let stack = Stack::start("turf-exit", &[("FAKE_TURF_EXIT_MS", "300"), ("FAKE_TURF_EXIT_CODE", "7")]);
    let mut fc = stack.fc;
    let status = fc.proc.wait_exit(Duration::from_secs(10)).expect("noslate-fc did not exit");
    assert_eq!(status.code(), Some(1));
    let stderr = fc.proc.stderr_text();
    assert!(stderr.contains("turfd (pid") && stderr.contains("exited unexpectedly: exit code 7"), "{stderr}");
    stack.children.assert_all_dead(PROMPTLY);
}

#[test]
fn planes_ignoring_sigterm_are_killed_after_the_grace_period() {
    let stack = Stack::start("grace", &[("NOSLATED_PEER_IGNORE_TERM", "1"), ("NOSLATE_FC_KILL_GRACE_MS", "300")]);
    stack.fc.wait_ready();
    let mut fc = stack.fc;
    let start = Instant::now();
    fc.proc.signal(15);
    let status = fc.proc.wait_exit(PROMPTLY).expect("no exit after the kill grace");
    let took = start.elapsed();
    assert_eq!(status.code(), Some(0), "{}", fc.proc.stderr_text());
    assert!(took >= Duration::from_millis(250), "exited after {took:?}: the planes ignore SIGTERM");
    for name in ["data_plane", "control_plane"] {
        let pid = stack.children.pid(name);
        let line = format!("{name} (pid {pid}) stopped: signal 9");
        let seen = wait_for(PROMPTLY, || Some(fc.proc.stderr_text()).filter(|t| t.contains(&line)));
        assert!(seen.is_some(), "{}", fc.proc.stderr_text());
    }
    stack.children.assert_all_dead(PROMPTLY);
}

/// turfd's SIGTERM handler does nothing, so the grace period would only delay
/// the stop (3.5 s per `podman stop` in the image): it is SIGKILLed as soon as
/// the planes have exited. With a 60 s grace, waiting it out fails the test.
#[test]
fn turfd_is_killed_once_the_planes_are_gone_without_the_grace_period() {
    let stack = Stack::start("turf-kill", &[("FAKE_TURF_IGNORE_TERM", "1"), ("NOSLATE_FC_KILL_GRACE_MS", "60000")]);
    stack.fc.wait_ready();
    let mut fc = stack.fc;
    fc.proc.signal(15);
    let status = fc.proc.wait_exit(Duration::from_secs(20)).expect("turfd was left to the 60 s grace period");
    assert_eq!(status.code(), Some(0), "{}", fc.proc.stderr_text());
    let stderr = fc.proc.stderr_text();
    let turf = stack.children.pid("turfd");
    assert!(stderr.contains(&format!("turfd (pid {turf}) stopped: signal 9")), "{stderr}");
    for name in ["data_plane", "control_plane"] {
        let pid = stack.children.pid(name);
        assert!(stderr.contains(&format!("{name} (pid {pid}) stopped: exit code 0")), "{stderr}");
    }
    // The planes went first: turfd's kill is logged after both.
    let turf_at = stderr.find(&format!("turfd (pid {turf}) stopped")).unwrap();
    assert_eq!(
        stderr[..turf_at].matches("stopped: exit code 0").count(),
        2,
        "turfd killed before the planes: {stderr}"
    );
    stack.children.assert_all_dead(PROMPTLY);
}

/// A plane that dies stops the instance at once: the other plane gets
/// SIGTERM, turfd SIGKILL when it is gone; no grace period is waited out.
#[test]
fn a_dead_plane_stops_turfd_without_the_grace_period() {
    let stack = Stack::start("plane-dies", &[("FAKE_TURF_IGNORE_TERM", "1"), ("NOSLATE_FC_KILL_GRACE_MS", "60000")]);
    stack.fc.wait_ready();
    let mut fc = stack.fc;
    kill(stack.children.pid("data_plane"), "KILL");
    let status = fc.proc.wait_exit(Duration::from_secs(20)).expect("turfd was left to the 60 s grace period");
    assert_eq!(status.code(), Some(1), "{}", fc.proc.stderr_text());
    let turf = stack.children.pid("turfd");
    assert!(
        fc.proc.stderr_text().contains(&format!("turfd (pid {turf}) stopped: signal 9")),
        "{}",
        fc.proc.stderr_text()
    );
    stack.children.assert_all_dead(PROMPTLY);
}

#[test]
fn a_missing_log_dir_is_created() {
    let dir = TempDir::new("logdir");
    let logs = dir.path().join("deep/logs");
    let turf = format!("{} -D -f", fixture("fake-turf.sh"));
    let fc = Fc::start(
        &dir,
        &[
            ("NOSLATE_LOGDIR", logs.to_str().unwrap()),
            ("NOSLATE_FC_TURF_CMD", &turf),
            ("NOSLATE_FC_DATA_PLANE_CMD", "off"),
            ("NOSLATE_FC_CONTROL_PLANE_CMD", "off"),
        ],
    );
    let children = Children::of(&fc);
    assert_eq!(children.names(), ["turfd"]);
    let log = wait_for(Duration::from_secs(5), || {
        std::fs::read_to_string(logs.join("turf.log")).ok().filter(|t| t.contains("fake turfd started"))
    });
    assert!(log.is_some(), "turf.log not written: {}", fc.proc.stderr_text());
}

/// The children of `pid` in the host's /proc, with their states.
fn children_of(pid: u32) -> Vec<(u32, String)> {
    let mut out = Vec::new();
    let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) else { return out };
    for task in tasks.flatten() {
        let list = std::fs::read_to_string(task.path().join("children")).unwrap_or_default();
        for child in list.split_whitespace().filter_map(|c| c.parse::<u32>().ok()) {
            let stat = std::fs::read_to_string(format!("/proc/{child}/stat")).unwrap_or_default();
            let state = stat.rsplit(')').next().and_then(|r| r.split_whitespace().next()).unwrap_or("?");
            out.push((child, state.to_string()));
        }
    }
    out
}

/// As PID 1 of a PID namespace (the container's ENTRYPOINT): SIGTERM is
/// handled (the kernel drops unhandled ones for init) and orphans that get
/// re-parented to us are reaped. Needs `unshare -pf` (root, as `.ci/run`
/// is on its VM): where it is not allowed the test fails, saying so.
#[test]
fn as_pid_1_it_handles_sigterm_and_reaps_orphans() {
    let probe = Command::new("unshare").args(["-pf", "true"]).output();
    assert!(
        probe.as_ref().is_ok_and(|o| o.status.success()),
        "cannot create a PID namespace here (`unshare -pf true`: {probe:?}); this test needs root (CAP_SYS_ADMIN)"
    );
    let dir = TempDir::new("pid1");
    let turf = format!("{} -D -f", fixture("fake-turf.sh"));
    let mut cmd = Command::new("unshare");
    cmd.args(["-pf", env!("CARGO_BIN_EXE_noslate-fc")])
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("SERVER_PORT", "0")
        .env("NOSLATE_FC_LISTEN", "127.0.0.1")
        .env("NOSLATE_FC_TRUSTED_PEERS", "any")
        .env("NOSLATE_FC_SOCK_DIR", dir.socks())
        .env("NOSLATE_FC_TURF_CMD", &turf)
        .env("FAKE_TURF_ORPHAN", "1")
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .stdin(std::process::Stdio::null());
    let mut fc = Fc::spawn(cmd);
    // unshare -f forks noslate-fc as PID 1 of the new namespace.
    let init =
        wait_for(PROMPTLY, || children_of(fc.proc.pid()).first().map(|c| c.0)).expect("no noslate-fc under unshare");
    assert!(fc.proc.stderr_text().contains("started turfd (pid 2)"), "{}", fc.proc.stderr_text());
    // The orphan (a 0.3 s sleep) exits re-parented to us: it must not stay
    // a zombie. Wait (generously) until only turfd is left, and at least
    // until the orphan was seen or its 0.3 s are surely over; a zombie would
    // stay a child for ever.
    let started = Instant::now();
    let mut seen = std::collections::BTreeSet::new();
    let kids = wait_for(PROMPTLY, || {
        let kids = children_of(init);
        seen.extend(kids.iter().map(|k| k.0));
        let orphan_done = seen.len() > 1 || started.elapsed() > Duration::from_secs(1);
        (orphan_done && kids.len() == 1 && kids[0].1 != "Z").then_some(kids)
    })
    .unwrap_or_else(|| children_of(init));
    assert_eq!(kids.len(), 1, "only turfd should be left: {kids:?} (seen {seen:?})");
    assert!(kids.iter().all(|(_, s)| s != "Z"), "zombies: {kids:?}");
    let turfd = kids[0].0;
    kill(init, "TERM");
    let status = fc.proc.wait_exit(PROMPTLY).expect("PID 1 ignored SIGTERM");
    assert_eq!(status.code(), Some(0), "{}", fc.proc.stderr_text());
    assert!(wait_dead(turfd, PROMPTLY), "turfd outlived noslate-fc");
}

// ---------------------------------------------------------------- draining

#[test]
fn sigterm_lets_an_in_flight_invoke_finish_then_exits_0() {
    let stack = Stack::start("sigterm", &[]);
    stack.fc.wait_ready();
    let port = stack.fc.port;
    let slow = std::thread::spawn(move || invoke_keep_alive(port, "slow-500", b"in flight"));
    assert!(
        stack.wait_event(Duration::from_secs(5), |e| e["ev"] == "invoke" && e["name"] == "slow-500").is_some(),
        "the slow invoke never reached the data plane"
    );
    let mut fc = stack.fc;
    fc.proc.signal(15);
    std::thread::sleep(Duration::from_millis(100));
    let refused = invoke_at(port, "echo", b"late").expect("an answer while draining");
    assert_eq!(refused.status, 503, "{}", refused.text());
    let (r, _open) = slow.join().unwrap().expect("the in-flight invoke got no answer");
    assert_eq!(r.status, 200, "{}", r.text());
    assert!(r.complete);
    assert_eq!(r.text(), "in flight");
    // The drain period (10 s by default) is not what ends the drain.
    let status = fc.proc.wait_exit(Duration::from_secs(3)).expect("no exit after the in-flight invoke finished");
    assert_eq!(status.code(), Some(0), "{}", fc.proc.stderr_text());
    stack.children.assert_all_dead(PROMPTLY);
}

#[test]
fn a_second_sigterm_exits_at_once() {
    let stack = Stack::start("sigterm2", &[("NOSLATE_FC_DRAIN_MS", "30000")]);
    stack.fc.wait_ready();
    let port = stack.fc.port;
    let _stuck = std::thread::spawn(move || invoke_at(port, "never", b"x"));
    assert!(stack.wait_event(Duration::from_secs(5), |e| e["ev"] == "invoke" && e["name"] == "never").is_some());
    let mut fc = stack.fc;
    fc.proc.signal(15);
    assert!(fc.proc.wait_exit(Duration::from_millis(300)).is_none(), "the first SIGTERM must drain, not exit");
    let start = Instant::now();
    fc.proc.signal(15);
    // The drain is 30 s: an exit well before it is the second SIGTERM's.
    fc.proc.wait_exit(PROMPTLY).expect("the second SIGTERM did not exit before the 30 s drain");
    eprintln!("second SIGTERM: exited after {:?}", start.elapsed());
    stack.children.assert_all_dead(PROMPTLY);
}

#[test]
fn the_drain_period_bounds_a_stuck_invoke() {
    let stack = Stack::start("drain-deadline", &[("NOSLATE_FC_DRAIN_MS", "500")]);
    stack.fc.wait_ready();
    let port = stack.fc.port;
    let stuck = std::thread::spawn(move || invoke_at(port, "never", b"x"));
    assert!(stack.wait_event(Duration::from_secs(5), |e| e["ev"] == "invoke" && e["name"] == "never").is_some());
    let pre_stop = std::thread::spawn(move || request_at(port, b"GET /pre-stop HTTP/1.1\r\nhost: x\r\n\r\n"));
    let start = Instant::now();
    let p = pre_stop.join().unwrap().expect("/pre-stop got no answer");
    assert_eq!(p.status, 200, "{}", p.text());
    let took = start.elapsed();
    // Not before the 500 ms drain; and not never (a stuck invoke holds it).
    assert!(took >= Duration::from_millis(400) && took < PROMPTLY, "/pre-stop after {took:?}");
    let mut fc = stack.fc;
    let status = fc.proc.wait_exit(Duration::from_secs(5)).expect("no exit after the drain period");
    assert_eq!(status.code(), Some(0), "{}", fc.proc.stderr_text());
    if let Some(r) = stuck.join().unwrap() {
        assert!(!r.complete || r.status != 200, "the stuck invoke cannot have succeeded: {r:?}");
    }
    stack.children.assert_all_dead(PROMPTLY);
}

#[test]
fn a_child_dying_during_the_drain_still_answers_pre_stop() {
    let stack = Stack::start("drain-crash", &[("NOSLATE_FC_DRAIN_MS", "30000")]);
    stack.fc.wait_ready();
    let port = stack.fc.port;
    let _stuck = std::thread::spawn(move || invoke_at(port, "never", b"x"));
    assert!(stack.wait_event(Duration::from_secs(5), |e| e["ev"] == "invoke" && e["name"] == "never").is_some());
    let pre_stop = std::thread::spawn(move || request_at(port, b"GET /pre-stop HTTP/1.1\r\nhost: x\r\n\r\n"));
    std::thread::sleep(Duration::from_millis(200));
    kill(stack.children.pid("turfd"), "KILL");
    let mut fc = stack.fc;
    let status = fc.proc.wait_exit(PROMPTLY).expect("no exit after a child died");
    assert_eq!(status.code(), Some(1), "{}", fc.proc.stderr_text());
    let p = pre_stop.join().unwrap().expect("/pre-stop got no answer");
    assert_eq!(p.status, 200, "{}", p.text());
    stack.children.assert_all_dead(PROMPTLY);
}

#[test]
fn pre_stop_drains_answers_200_then_exits_0() {
    let stack = Stack::start("prestop", &[]);
    stack.fc.wait_ready();
    let port = stack.fc.port;
    let slow = std::thread::spawn(move || {
        let r = invoke_keep_alive(port, "slow-500", b"finish me");
        (r, Instant::now())
    });
    assert!(stack.wait_event(Duration::from_secs(5), |e| e["ev"] == "invoke" && e["name"] == "slow-500").is_some());
    let pre_stop = std::thread::spawn(move || {
        let r = request_at(port, b"GET /pre-stop HTTP/1.1\r\nhost: x\r\nx-fc-request-id: ps-1\r\n\r\n");
        (r, Instant::now())
    });
    std::thread::sleep(Duration::from_millis(100));
    let refused = invoke_at(port, "echo", b"late").expect("an answer while draining");
    assert_eq!(refused.status, 503, "{}", refused.text());

    let (r, invoke_done) = slow.join().unwrap();
    let (r, _open) = r.expect("the in-flight invoke got no answer");
    assert_eq!((r.status, r.text().as_str()), (200, "finish me"));
    let (p, pre_stop_done) = pre_stop.join().unwrap();
    let p = p.expect("/pre-stop got no answer");
    assert_eq!(p.status, 200, "{}", p.text());
    // The two answers leave in the same loop turn, so the test threads'
    // clocks cannot order them; the log markers can.
    let gap = pre_stop_done.max(invoke_done) - pre_stop_done.min(invoke_done);
    // Well under the 10 s default drain: /pre-stop does not wait for the
    // keep-alive connection to close.
    assert!(
        gap < Duration::from_secs(5),
        "/pre-stop came {gap:?} apart from the last invoke's end (the keep-alive connection is still open)"
    );

    let mut fc = stack.fc;
    let status = fc.proc.wait_exit(Duration::from_secs(5)).expect("no exit after /pre-stop");
    assert_eq!(status.code(), Some(0), "{}", fc.proc.stderr_text());
    let out = fc.stdout_until("FC PreStop End RequestId: ps-1");
    let end = out.find("FC PreStop End RequestId: ps-1").unwrap_or_else(|| panic!("no PreStop End: {out}"));
    assert!(out.contains("FC PreStop Start RequestId: ps-1"), "{out}");
    assert_eq!(out.matches("FC Invoke End").count(), 2, "{out}");
    assert!(out.rfind("FC Invoke End").unwrap() < end, "/pre-stop answered before the in-flight invoke ended: {out}");
    stack.children.assert_all_dead(PROMPTLY);
}

// -------------------------------------------------------------- /initialize

/// Every field kind, with explicit `false` / `0` / `""` values that must
/// reach the control plane as given. No floats: the fixture widens float32.
const PROFILES: &str = r#"[
  {
    "name": "hello",
    "runtime": "aworker",
    "url": "file:///code/hello",
    "signature": "md5:234",
    "sourceFile": "index.js",
    "namespace": "",
    "resourceLimit": { "memory": 268435456 },
    "worker": {
      "fastFailRequestsOnStarting": false,
      "initializationTimeout": 5000,
      "maxActivateRequests": 10,
      "reservationCount": 0,
      "replicaCountLimit": 3,
      "shrinkCooldownOnStartup": false,
      "v8Options": ["--max-heap-size=64"]
    },
    "environments": [{ "key": "GREETING", "value": "hi" }]
  },
  {
    "name": "node-fn",
    "runtime": "nodejs",
    "url": "file:///code/node",
    "signature": "md5:567",
    "handler": "index.handler",
    "worker": { "disposable": false }
  }
]"#;

fn write(dir: &TempDir, name: &str, text: &str) -> String {
    let path = dir.path().join(name);
    std::fs::write(&path, text).unwrap();
    path.display().to_string()
}

#[test]
fn initialize_pushes_the_profiles_and_platform_env() {
    let dir = TempDir::new("init-ok");
    let profiles = write(&dir, "profiles.json", PROFILES);
    let env = write(&dir, "env.json", r#"[{"key":"REGION","value":"cn-hangzhou"},{"key":"EMPTY","value":""}]"#);
    let peer = Peer::start(&dir, &[]);
    let fc = Fc::start(&dir, &[("NOSLATE_FUNCTION_PROFILES", &profiles), ("NOSLATE_PLATFORM_ENV", &env)]);
    let (r, _) = initialize(&fc, 10);
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.header("x-fc-status"), Some("200"));
    let summary: Value = serde_json::from_slice(&r.body).expect("JSON summary");
    assert_eq!(summary["initialized"], true, "{summary}");
    assert_eq!(summary["profiles"], 2, "{summary}");
    assert_eq!(summary["platformEnv"], 2, "{summary}");

    let pushed = peer.wait_event(Duration::from_secs(5), |e| e["ev"] == "setFunctionProfile").expect("no push");
    assert_eq!(pushed["plane"], "cp");
    let expected: Value = serde_json::from_str(PROFILES).unwrap();
    assert_eq!(pushed["profiles"], expected, "the control plane must get exactly the file's profiles");
    let envs = peer.wait_event(Duration::from_secs(5), |e| e["ev"] == "setPlatformEnvironmentVariables").unwrap();
    assert_eq!(envs["envs"], json!([{"key":"REGION","value":"cn-hangzhou"},{"key":"EMPTY","value":""}]));
    let out = fc.stdout_until("FC Initialize End RequestId: init-1");
    assert!(out.contains("FC Initialize Start RequestId: init-1"), "{out}");
}

#[test]
fn initialize_reports_a_bad_json_file() {
    let dir = TempDir::new("init-json");
    let profiles = write(&dir, "profiles.json", "[{\"name\": \"hello\",");
    let _peer = Peer::start(&dir, &[]);
    let fc = Fc::start(&dir, &[("NOSLATE_FUNCTION_PROFILES", &profiles)]);
    let (r, took) = initialize(&fc, 10);
    assert_eq!(r.status, 404, "{}", r.text());
    assert_eq!(r.header("x-fc-status"), Some("404"));
    let why = reason(&r);
    assert!(why.contains("NOSLATE_FUNCTION_PROFILES") && why.contains("not valid JSON"), "{why}");
    assert!(took < Duration::from_secs(8), "a bad file must not wait for the 10 s timeout ({took:?})");
}

#[test]
fn initialize_names_the_field_with_a_wrong_type() {
    let dir = TempDir::new("init-type");
    let bad = PROFILES.replace("\"maxActivateRequests\": 10", "\"maxActivateRequests\": \"ten\"");
    let profiles = write(&dir, "profiles.json", &bad);
    let _peer = Peer::start(&dir, &[]);
    let fc = Fc::start(&dir, &[("NOSLATE_FUNCTION_PROFILES", &profiles)]);
    let (r, _) = initialize(&fc, 10);
    assert_eq!(r.status, 404, "{}", r.text());
    let why = reason(&r);
    assert!(why.contains("profiles[0].worker.maxActivateRequests"), "{why}");
    let missing = write(&dir, "missing.json", "");
    drop(fc);
    std::fs::remove_file(&missing).unwrap();
    let fc = Fc::start(&dir, &[("NOSLATE_FUNCTION_PROFILES", &missing)]);
    let why = reason(&initialize(&fc, 10).0);
    assert!(why.contains("cannot read") && why.contains("missing.json"), "{why}");
}

#[test]
fn initialize_times_out_when_no_plane_comes_up() {
    let dir = TempDir::new("init-timeout");
    let fc = Fc::start(&dir, &[("NOSLATE_FC_INIT_TIMEOUT_MS", "60000")]);
    let (r, took) = initialize(&fc, 1);
    assert_eq!(r.status, 404, "{}", r.text());
    assert_eq!(r.header("x-fc-status"), Some("404"));
    assert!(took >= Duration::from_millis(900) && took < PROMPTLY, "x-fc-initialization-timeout: {took:?}");
    let why = reason(&r);
    assert!(why.contains("dp-0.sock") && why.contains("not ready"), "{why}");
}

#[test]
fn initialize_rejects_a_reserved_platform_env_key() {
    let dir = TempDir::new("init-env");
    let env = write(&dir, "env.json", r#"{"FOO":"1","NOSLATE_SECRET":"x"}"#);
    let peer = Peer::start(&dir, &[]);
    let fc = Fc::start(&dir, &[("NOSLATE_PLATFORM_ENV", &env)]);
    let (r, _) = initialize(&fc, 10);
    assert_eq!(r.status, 404, "{}", r.text());
    let why = reason(&r);
    assert!(why.contains("NOSLATE_PLATFORM_ENV") && why.contains("NOSLATE_SECRET"), "{why}");
    std::thread::sleep(Duration::from_millis(200));
    assert!(
        !peer.events().iter().any(|e| e["ev"] == "setPlatformEnvironmentVariables"),
        "a rejected document must not be pushed"
    );
}

#[test]
fn profiles_are_pushed_again_when_the_control_plane_restarts() {
    let dir = TempDir::new("repush");
    let profiles = write(&dir, "profiles.json", PROFILES);
    let env = write(&dir, "env.json", r#"{"REGION":"cn-shanghai"}"#);
    let peer = Peer::start(&dir, &[]);
    let fc = Fc::start(&dir, &[("NOSLATE_FUNCTION_PROFILES", &profiles), ("NOSLATE_PLATFORM_ENV", &env)]);
    // Pushed at start-up, without any /initialize.
    let events = peer.events.clone();
    let count = |ev: &str| read_events(&events).iter().filter(|e| e["ev"] == ev).count();
    assert!(wait_for(Duration::from_secs(5), || (count("setFunctionProfile") == 1).then_some(())).is_some());
    assert!(
        wait_for(Duration::from_secs(5), || (count("setPlatformEnvironmentVariables") == 1).then_some(())).is_some()
    );

    // The control plane alone dies (its socket file stays behind) and comes
    // back, knowing no profile; the data plane lives on.
    let mut peer = peer;
    let dp_pid = peer.proc.pid();
    peer.restart_cp();
    assert_eq!(peer.proc.pid(), dp_pid);
    assert!(peer.proc.state().is_some_and(|s| s != 'Z'), "the data plane must still run");
    let repushed = wait_for(Duration::from_secs(5), || {
        read_events(&events).into_iter().filter(|e| e["ev"] == "setFunctionProfile").nth(1)
    })
    .expect("profiles not pushed again after the control plane restarted");
    assert_eq!(repushed["profiles"], serde_json::from_str::<Value>(PROFILES).unwrap());
    assert!(
        wait_for(Duration::from_secs(5), || (count("setPlatformEnvironmentVariables") == 2).then_some(())).is_some()
    );
    let (r, _) = initialize(&fc, 10);
    assert_eq!(r.status, 200, "{}", r.text());
}

/// #19: an invoke of a function in NOSLATE_FUNCTION_PROFILES waits until
/// the control plane has accepted them (the data plane has them then); a
/// name outside the profiles goes straight through; when the ready wait
/// passes first, the answer says what is missing (NotReady).
#[test]
fn invokes_of_profile_functions_wait_for_the_profiles() {
    let dir = TempDir::new("gate");
    let profiles = write(
        &dir,
        "profiles.json",
        r#"[{"name":"echo","runtime":"nodejs","url":"file:///code/echo","signature":"md5:1","handler":"index.handler"}]"#,
    );
    // The fixture binds both planes in a directory of its own; noslate-fc's
    // socket directory gets the data plane now and the control plane later.
    let planes = TempDir::new("gate-planes");
    // The strict fixture's data plane knows the name outside the profiles
    // from its start (nothing forwards it before the control plane comes).
    let peer = Peer::start(&planes, &["--known", "echo-buffered"]);
    std::os::unix::fs::symlink(planes.socks().join("dp-0.sock"), dir.socks().join("dp-0.sock")).unwrap();
    let fc = Fc::start(&dir, &[("NOSLATE_FUNCTION_PROFILES", &profiles), ("NOSLATE_FC_READY_WAIT_MS", "1000")]);
    let invokes_of = |name: &str| peer.events().iter().filter(|e| e["ev"] == "invoke" && e["name"] == name).count();

    // Outside the profiles: served without a control plane.
    let r = invoke_at(fc.port, "echo-buffered", b"through").expect("a response");
    assert_eq!((r.status, r.text().as_str()), (200, "through"));

    // In the profiles: never sent while they are not in force (an event
    // invocation: FC's 404; an HTTP invocation would get 503).
    let r = invoke_at(fc.port, "echo", b"early").expect("a response");
    assert_eq!((r.status, r.header("x-fc-status")), (404, Some("404")), "{}", r.text());
    let v: Value = serde_json::from_slice(&r.body).expect("a JSON error");
    assert_eq!(v["errorName"], "NotReady", "{v}");
    assert!(v["errorMessage"].as_str().unwrap().contains("cp-0.sock"), "names what is missing: {v}");
    assert_eq!(invokes_of("echo"), 0, "the data plane saw an invoke before the profiles: {:?}", peer.events());

    // A waiting invoke goes out once the control plane accepted them. Its
    // body, sent after the head, is read while it waits and rides in the
    // first message (which is kept: a refused stream can be sent again).
    let mut s = fc.connect();
    s.write_all(b"POST /invoke HTTP/1.1\r\nhost: x\r\nx-noslate-function: echo\r\ncontent-length: 6\r\n\r\n").unwrap();
    std::thread::sleep(Duration::from_millis(100));
    s.write_all(b"served").unwrap();
    let waiting = std::thread::spawn(move || read_response(&mut s));
    std::thread::sleep(Duration::from_millis(100));
    std::os::unix::fs::symlink(planes.socks().join("cp-0.sock"), dir.socks().join("cp-0.sock")).unwrap();
    let r = waiting.join().unwrap().expect("a response");
    assert_eq!((r.status, r.text().as_str()), (200, "served"));
    let events = peer.events();
    let pushed = events.iter().position(|e| e["ev"] == "setFunctionProfile").expect("profiles pushed");
    let invoked = events.iter().position(|e| e["ev"] == "invoke" && e["name"] == "echo").expect("echo invoked");
    assert!(pushed < invoked, "the invoke reached the data plane before the profiles: {events:?}");
    assert_eq!(events[invoked]["firstBodyBytes"], 6, "the body in the first message: {}", events[invoked]);
}

/// #19, the fallback's bounds: a function of the profiles that the data
/// plane does not know (the fixture's `not-found` answers Noslated's
/// NOT_FOUND) is sent again after pauses, the same first message with its
/// body each time, until the ready wait is used up; then Noslated's 404 goes
/// to the caller. A name outside the profiles gets that 404 at once.
#[test]
fn a_profile_function_the_data_plane_does_not_know_is_retried_within_the_ready_wait() {
    let profile = |name: &str| {
        format!(
            r#"[{{"name":"{name}","runtime":"nodejs","url":"file:///code/x","signature":"md5:1","handler":"index.handler"}}]"#
        )
    };
    let attempts = |peer: &Peer| -> Vec<Value> {
        peer.events().into_iter().filter(|e| e["ev"] == "invoke" && e["name"] == "not-found").collect()
    };
    for in_profiles in [true, false] {
        let dir = TempDir::new("unknown");
        let profiles = write(&dir, "profiles.json", &profile(if in_profiles { "not-found" } else { "echo" }));
        let peer = Peer::start(&dir, &[]);
        let fc = Fc::start(&dir, &[("NOSLATE_FUNCTION_PROFILES", &profiles), ("NOSLATE_FC_READY_WAIT_MS", "1500")]);
        let (r, _) = initialize(&fc, 10);
        assert_eq!(r.status, 200, "{}", r.text());
        let r = invoke_at(fc.port, "not-found", b"again").expect("a response");
        assert_eq!(r.status, 404, "{}", r.text());
        let v: Value = serde_json::from_slice(&r.body).expect("a JSON error");
        assert_eq!((v["errorName"].as_str(), v["errorCode"].as_i64()), (Some("Error"), Some(5)), "{v}");
        let sent = attempts(&peer);
        if !in_profiles {
            assert_eq!(sent.len(), 1, "outside the profiles: not retried");
            continue;
        }
        // Pauses of 20, 40, 80, 160, then 250 ms within 1.5 s: a handful.
        assert!((3..=12).contains(&sent.len()), "retried a bounded few times: {} attempts", sent.len());
        let bodies: Vec<&Value> = sent.iter().map(|e| &e["firstBodyBytes"]).collect();
        assert!(bodies.iter().all(|b| **b == 5), "the body in every first message: {bodies:?}");
        assert!(
            fc.proc.stderr_text().matches("does not know not-found yet").count() == 1,
            "logged once: {}",
            fc.proc.stderr_text()
        );
    }
}
