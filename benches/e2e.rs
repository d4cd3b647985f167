//! End-to-end benchmark: the release `noslate-fc` binary between a loopback
//! HTTP/1.1 load and a Noslated data-plane stub, against the Node.js gateway
//! it replaces (benches/baseline, "what the seed's Node gateway does"), on
//! the same stub, in the same run, alternating.
//!
//! Two stubs: the grpc-js fixture (tests/peer/noslated-peer.js, what
//! production runs: grpc-js 1.8.8 on Node's HTTP/2) and a fast stub on the
//! `h2` crate (benches/e2e/stub.rs) so the proxy's own cost shows. The floor
//! is the same invoke made straight to the stub with `h2` (benches/e2e/floor.rs).
//!
//! `cargo bench --bench e2e` runs it (about 6 minutes; `BENCH_QUICK=1` for
//! about one minute). It installs the Node packages it needs (`npm ci`),
//! writes target/e2e/report.md and results.json, and the latency plot to
//! docs/latency.png (quick runs: target/e2e/*-quick.*). `NOSLATE_FC_BIN=<path>`
//! measures another noslate-fc build the same way (outputs *-candidate.*,
//! never docs/). Run without `--bench` (as `cargo test --all-targets` does)
//! it is a short smoke test of the Rust parts only. Every process it starts
//! is killed by PID on drop and gets PR_SET_PDEATHSIG, so none outlives the
//! harness.
//!
//! Three gateways on each stub: noslate-fc, the Node gateway (benches/baseline,
//! key "baseline") and the Rust baseline of issue #14 (benches/e2e/rust_gateway.rs,
//! key "rust": hyper 1 + the h2 crate on a current-thread tokio runtime, what a
//! good Rust developer would write with the ecosystem's crates).
//!
//! Hidden modes (first argument): `__e2e-stub <socket>` is the fast stub;
//! `__e2e-rust-gateway` is the Rust baseline gateway (configured by the same
//! environment as the others: SERVER_PORT, NOSLATE_FC_SOCK_DIR, ...);
//! `__e2e-load <port> <connections> <body bytes> <seconds>` is a bare load
//! run against a gateway that is already running, for profiling by hand.

#[path = "e2e/floor.rs"]
mod floor;
#[path = "e2e/load.rs"]
mod load;
#[path = "e2e/plot.rs"]
mod plot;
#[path = "e2e/procs.rs"]
mod procs;
#[path = "e2e/real.rs"]
mod real;
#[path = "e2e/rust_gateway.rs"]
mod rust_gateway;
#[path = "e2e/stats.rs"]
mod stats;
#[path = "e2e/stub.rs"]
mod stub;
#[path = "e2e/wire.rs"]
mod wire;

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::time::{Duration, Instant};

use load::{Outcome, Request};
use plotters::style::RGBColor;
use procs::{loopback, Proc, TempDir};
use stats::{median, percentile};

/// First argument that makes this binary the fast stub instead.
const STUB_ARG: &str = "__e2e-stub";
/// First argument that makes this binary the Rust baseline gateway.
pub(crate) const RUST_GATEWAY_ARG: &str = "__e2e-rust-gateway";
/// First argument for a bare load run against a running gateway (for
/// profiling by hand): `e2e __e2e-load <port> <connections> <body bytes> <seconds>`.
const LOAD_ARG: &str = "__e2e-load";
const FC_BIN: &str = env!("CARGO_BIN_EXE_noslate-fc");
const ROOT: &str = env!("CARGO_MANIFEST_DIR");

const KIB: usize = 1024;
const MIB: usize = 1024 * 1024;

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if args.len() >= 3 && args[1] == STUB_ARG {
        std::process::exit(stub::run(Path::new(&args[2])));
    }
    if args.len() >= 2 && args[1] == RUST_GATEWAY_ARG {
        std::process::exit(rust_gateway::run());
    }
    wire::self_check();
    let result = if args.len() >= 2 && args[1] == LOAD_ARG {
        load_only(&args[2..])
    } else if args.iter().any(|a| a == "--bench") {
        let quick = std::env::var("BENCH_QUICK").is_ok_and(|v| !v.is_empty() && v != "0");
        match std::env::var("BENCH_REAL").unwrap_or_default().as_str() {
            "" | "0" => bench(),
            "cold" => real::cold(quick),
            "profile" => real::profile(quick),
            _ => real::bench(quick),
        }
    } else {
        smoke()
    };
    if let Err(e) = result {
        eprintln!("e2e: {e}");
        std::process::exit(1);
    }
}

// ------------------------------------------------------------------ plan

struct Plan {
    quick: bool,
    /// `BENCH_ONLY=rss`: only the 256 × 64 KiB memory phase (for iterating
    /// on memory; the report has gaps for everything else).
    only_rss: bool,
    rounds: usize,
    lat: (Duration, Duration),
    rps: (Duration, Duration),
    t64k: (Duration, Duration),
    t32m: (Duration, Duration),
    rss: (Duration, Duration),
    exec_starts: usize,
}

impl Plan {
    fn new(quick: bool) -> Plan {
        let ms = Duration::from_millis;
        if quick {
            Plan {
                quick,
                only_rss: false,
                rounds: 1,
                lat: (ms(200), ms(1500)),
                rps: (ms(300), ms(1500)),
                t64k: (ms(200), ms(1000)),
                t32m: (ms(200), ms(1500)),
                rss: (ms(300), ms(1500)),
                exec_starts: 3,
            }
        } else {
            Plan {
                quick,
                only_rss: false,
                rounds: 3,
                lat: (ms(500), ms(4000)),
                rps: (ms(1000), ms(4000)),
                t64k: (ms(500), ms(3000)),
                t32m: (ms(300), ms(4000)),
                rss: (ms(500), ms(4000)),
                exec_starts: 10,
            }
        }
    }
}

// ------------------------------------------------------------ who is who

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Who {
    Fc,
    Base,
    Rust,
    Floor,
}

impl Who {
    fn key(self) -> &'static str {
        match self {
            Who::Fc => "noslate-fc",
            Who::Base => "baseline",
            Who::Rust => "rust",
            Who::Floor => "floor",
        }
    }
}

struct Gateway {
    who: Who,
    proc: Proc,
    port: u16,
}

struct Stub {
    key: &'static str,
    title: &'static str,
    socks: PathBuf,
    proc: Proc,
}

/// The noslate-fc binary under test: the one cargo built for this bench, or
/// `NOSLATE_FC_BIN` (to measure another build the same way).
fn fc_bin() -> PathBuf {
    std::env::var_os("NOSLATE_FC_BIN").map(PathBuf::from).unwrap_or_else(|| PathBuf::from(FC_BIN))
}

fn baseline_dir() -> PathBuf {
    Path::new(ROOT).join("benches/baseline")
}

fn peer_dir() -> PathBuf {
    Path::new(ROOT).join("tests/peer")
}

fn gateway_command(who: Who, socks: &Path, port: u16) -> Command {
    let mut c = match who {
        Who::Base => {
            let mut c = Command::new("node");
            c.arg(baseline_dir().join("server.js"));
            c
        }
        Who::Rust => {
            let mut c = Command::new(std::env::current_exe().unwrap_or_else(|_| PathBuf::from("e2e")));
            c.arg(RUST_GATEWAY_ARG);
            c
        }
        _ => Command::new(fc_bin()),
    };
    c.env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("SERVER_PORT", port.to_string())
        .env("NOSLATE_FC_LISTEN", "127.0.0.1")
        .env("NOSLATE_FC_TRUSTED_PEERS", "any")
        .env("NOSLATE_FC_SOCK_DIR", socks)
        .env("NOSLATE_FC_CONTROL_PLANES", "0")
        .env("NOSLATE_FUNCTION", "echo");
    c
}

/// As FC does: connect until the port accepts (a refused connect is the
/// only thing retried), then send ONE 64 B invoke, which must be a 200 —
/// any other answer fails the run. Returns the time from `t0` to the first
/// accepted connection and to that answer.
fn first_success(port: u16, t0: Instant, limit: Duration) -> Result<(Duration, Duration), String> {
    let req = Request::invoke(port, &load::pattern(64));
    let s = loop {
        match std::net::TcpStream::connect(loopback(port)) {
            Ok(s) => break s,
            Err(e) if t0.elapsed() > limit => return Err(format!("the port did not accept within {limit:?}: {e}")),
            Err(_) => std::thread::sleep(Duration::from_micros(100)),
        }
    };
    let listening = t0.elapsed();
    match load::request_on(s, &req, Duration::from_secs(10)) {
        Ok(200) => Ok((listening, t0.elapsed())),
        Ok(status) => Err(format!("the first invoke, sent when the port accepted, got {status}")),
        Err(e) => Err(format!("the first invoke, sent when the port accepted: {e}")),
    }
}

fn start_gateway(who: Who, stub: &Stub, dir: &Path) -> Result<Gateway, String> {
    let port = procs::free_port()?;
    let log = dir.join(format!("{}-{}-{port}.log", who.key(), stub.key));
    let t0 = Instant::now();
    let proc = Proc::spawn(who.key(), gateway_command(who, &stub.socks, port), &log, None)?;
    first_success(port, t0, Duration::from_secs(30)).map_err(|e| format!("{}: {e}\n{}", who.key(), proc.log_tail()))?;
    Ok(Gateway { who, proc, port })
}

fn ensure_npm(dir: &Path, marker: &str) -> Result<(), String> {
    if dir.join("node_modules").join(marker).exists() {
        return Ok(());
    }
    eprintln!("e2e: npm ci in {}", dir.display());
    let status = Command::new("npm")
        .args(["ci", "--no-audit", "--no-fund", "--loglevel=error"])
        .current_dir(dir)
        .status()
        .map_err(|e| format!("npm: {e}"))?;
    if !status.success() {
        return Err(format!("npm ci failed in {}", dir.display()));
    }
    Ok(())
}

fn start_fast_stub(dir: &Path) -> Result<Stub, String> {
    let socks = dir.join("fast");
    std::fs::create_dir_all(&socks).map_err(|e| e.to_string())?;
    let exe = std::env::current_exe().map_err(|e| e.to_string())?;
    let mut cmd = Command::new(exe);
    cmd.arg(STUB_ARG).arg(socks.join("dp-0.sock"));
    let proc = Proc::spawn("fast-stub", cmd, &dir.join("fast-stub.log"), Some(("READY", Duration::from_secs(10))))?;
    Ok(Stub { key: "fast", title: "fast stub (h2 crate)", socks, proc })
}

fn start_grpcjs_peer(dir: &Path) -> Result<Stub, String> {
    let socks = dir.join("grpcjs");
    std::fs::create_dir_all(&socks).map_err(|e| e.to_string())?;
    let mut cmd = Command::new("node");
    // The fixture serves only functions it was told of, as Noslated does;
    // no control plane runs here, so it is told on the command line.
    cmd.arg(peer_dir().join("noslated-peer.js")).arg("--dp").arg(socks.join("dp-0.sock")).arg("--known").arg("echo");
    let proc =
        Proc::spawn("grpc-js peer", cmd, &dir.join("grpcjs-peer.log"), Some(("READY", Duration::from_secs(30))))?;
    Ok(Stub { key: "grpcjs", title: "grpc-js fixture (grpc-js 1.8.8, Node HTTP/2)", socks, proc })
}

// ------------------------------------------------------------------ book

/// Everything measured, keyed by (stub, who, metric).
#[derive(Default)]
struct Book {
    values: BTreeMap<(String, String, String), Vec<f64>>,
    lat: BTreeMap<(String, String), Vec<u64>>,
    errors: BTreeMap<(String, String), (u64, Vec<String>)>,
}

impl Book {
    fn add(&mut self, stub: &str, who: &str, metric: &str, v: f64) {
        self.values.entry((stub.into(), who.into(), metric.into())).or_default().push(v);
    }

    fn get(&self, stub: &str, who: &str, metric: &str) -> &[f64] {
        self.values.get(&(stub.into(), who.into(), metric.into())).map(Vec::as_slice).unwrap_or(&[])
    }

    fn med(&self, stub: &str, who: &str, metric: &str) -> f64 {
        median(self.get(stub, who, metric))
    }

    /// Count a run's errors; keep the first message of each kind of run.
    fn outcome(&mut self, stub: &str, who: &str, what: &str, o: &Outcome) {
        let e = self.errors.entry((stub.into(), who.into())).or_default();
        e.0 += o.errors;
        if let Some(first) = &o.first_error {
            let tag = format!("{what}: ");
            if !e.1.iter().any(|m| m.starts_with(&tag)) {
                e.1.push(format!("{tag}{first}"));
            }
        }
    }

    fn latencies(&self, stub: &str, who: &str) -> Vec<u64> {
        let mut v = self.lat.get(&(stub.into(), who.into())).cloned().unwrap_or_default();
        v.sort_unstable();
        v
    }
}

/// One load run against a gateway, with CPU accounting of everyone involved.
struct Run<'a> {
    metric: &'a str,
    conns: usize,
    body: usize,
    window: (Duration, Duration),
    timeout: Duration,
}

fn measure(book: &mut Book, stub: &Stub, gw: &Gateway, run: &Run, bodies: &mut BodyCache) -> Outcome {
    let request = bodies.request(gw.port, run.body);
    let spec = load::Spec {
        addr: loopback(gw.port),
        conns: run.conns,
        request,
        warmup: run.window.0,
        duration: run.window.1,
        max_requests: u64::MAX,
        timeout: run.timeout,
    };
    let (g0, s0, me0) = (gw.proc.cpu_s(), stub.proc.cpu_s(), procs::self_cpu_s());
    let out = load::run(&spec);
    let (g1, s1, me1) = (gw.proc.cpu_s(), stub.proc.cpu_s(), procs::self_cpu_s());
    let who = gw.who.key();
    let per = |d: f64| if out.all_ok > 0 { d / out.all_ok as f64 * 1e6 } else { f64::NAN };
    book.add(stub.key, who, &format!("{}.cpu_us", run.metric), per(g1 - g0));
    book.add(stub.key, who, &format!("{}.stub_cpu_us", run.metric), per(s1 - s0));
    book.add(stub.key, who, &format!("{}.loadgen_cpu_us", run.metric), per(me1 - me0));
    book.add(stub.key, who, &format!("{}.rps", run.metric), out.rps());
    book.add(stub.key, who, &format!("{}.mib_s", run.metric), out.mib_per_s(run.conns));
    book.add(stub.key, who, &format!("{}.count", run.metric), out.ok as f64);
    book.add(stub.key, who, &format!("{}.errors", run.metric), out.errors as f64);
    book.outcome(stub.key, who, run.metric, &out);
    let mut sorted = out.lat_ns.clone();
    sorted.sort_unstable();
    book.add(stub.key, who, &format!("{}.p50_us", run.metric), percentile(&sorted, 50.0) / 1e3);
    book.add(stub.key, who, &format!("{}.p99_us", run.metric), percentile(&sorted, 99.0) / 1e3);
    eprintln!(
        "e2e:   {:<8} {:<10} {:<14} {:>9.0} req/s {:>9.1} MiB/s  p50 {:>8.1} µs  p99 {:>8.1} µs  cpu {:>6.1} µs/inv  errors {}",
        stub.key,
        who,
        run.metric,
        out.rps(),
        if run.body >= 64 * KIB { out.mib_per_s(run.conns) } else { f64::NAN },
        percentile(&sorted, 50.0) / 1e3,
        percentile(&sorted, 99.0) / 1e3,
        per(g1 - g0),
        out.errors
    );
    out
}

/// Request buffers (a 32 MiB body is built once per port).
#[derive(Default)]
struct BodyCache(BTreeMap<(u16, usize), Arc<Request>>);

impl BodyCache {
    fn request(&mut self, port: u16, body: usize) -> Arc<Request> {
        self.0.entry((port, body)).or_insert_with(|| Request::invoke(port, &load::pattern(body))).clone()
    }
}

/// Rotate the order of participants by round, so none is always first.
fn order<T: Copy>(items: &[T], round: usize) -> Vec<T> {
    let n = items.len();
    (0..n).map(|i| items[(i + round) % n]).collect()
}

fn check_alive(gws: &mut [&mut Gateway], stub: &mut Stub) -> Result<(), String> {
    for g in gws.iter_mut() {
        if !g.proc.alive() {
            return Err(format!("{} exited: {}", g.who.key(), g.proc.log_tail()));
        }
    }
    if !stub.proc.alive() {
        return Err(format!("{} exited: {}", stub.key, stub.proc.log_tail()));
    }
    Ok(())
}

fn run_stub(book: &mut Book, plan: &Plan, stub: &mut Stub, dir: &Path) -> Result<(), String> {
    eprintln!("e2e: == {} ==", stub.title);
    let mut fc = start_gateway(Who::Fc, stub, dir)?;
    let mut base = start_gateway(Who::Base, stub, dir)?;
    let mut rust = start_gateway(Who::Rust, stub, dir)?;
    std::thread::sleep(Duration::from_millis(500));
    for g in [&fc, &base, &rust] {
        book.add(stub.key, g.who.key(), "rss_idle_kib", g.proc.rss_kib() as f64);
    }
    let mut bodies = BodyCache::default();
    if plan.only_rss {
        drop(fc);
        drop(base);
        drop(rust);
        return rss_256x64k(book, plan, stub, dir, &mut bodies);
    }
    let sock = stub.socks.join("dp-0.sock");
    let t30 = Duration::from_secs(30);

    // 1. Latency of a 64 B echo at concurrency 1, with the floor.
    let run = Run { metric: "c1_64", conns: 1, body: 64, window: plan.lat, timeout: Duration::from_secs(10) };
    for round in 0..plan.rounds {
        for who in order(&[Who::Fc, Who::Base, Who::Rust, Who::Floor], round) {
            let out = match who {
                Who::Fc => measure(book, stub, &fc, &run, &mut bodies),
                Who::Base => measure(book, stub, &base, &run, &mut bodies),
                Who::Rust => measure(book, stub, &rust, &run, &mut bodies),
                Who::Floor => {
                    let s0 = stub.proc.cpu_s();
                    let out = floor::run(&sock, &load::pattern(64), plan.lat.0, plan.lat.1, u64::MAX);
                    let s1 = stub.proc.cpu_s();
                    let mut sorted = out.lat_ns.clone();
                    sorted.sort_unstable();
                    book.add(stub.key, "floor", "c1_64.p50_us", percentile(&sorted, 50.0) / 1e3);
                    book.add(stub.key, "floor", "c1_64.p99_us", percentile(&sorted, 99.0) / 1e3);
                    book.add(stub.key, "floor", "c1_64.rps", out.rps());
                    if out.all_ok > 0 {
                        book.add(stub.key, "floor", "c1_64.stub_cpu_us", (s1 - s0) / out.all_ok as f64 * 1e6);
                    }
                    book.outcome(stub.key, "floor", "c1_64", &out);
                    eprintln!(
                        "e2e:   {:<8} {:<10} {:<14} {:>9.0} req/s                  p50 {:>8.1} µs  p99 {:>8.1} µs  errors {}",
                        stub.key,
                        "floor",
                        "c1_64",
                        out.rps(),
                        percentile(&sorted, 50.0) / 1e3,
                        percentile(&sorted, 99.0) / 1e3,
                        out.errors
                    );
                    out
                }
            };
            book.lat.entry((stub.key.into(), who.key().into())).or_default().extend_from_slice(&out.lat_ns);
        }
    }
    check_alive(&mut [&mut fc, &mut base, &mut rust], stub)?;

    // 2–5. Requests/s at 32 and 256 connections; body throughput.
    let runs = [
        Run { metric: "c32_64", conns: 32, body: 64, window: plan.rps, timeout: t30 },
        Run { metric: "c256_64", conns: 256, body: 64, window: plan.rps, timeout: t30 },
        Run { metric: "c1_64k", conns: 1, body: 64 * KIB, window: plan.t64k, timeout: t30 },
        Run { metric: "c1_32m", conns: 1, body: 32 * MIB, window: plan.t32m, timeout: Duration::from_secs(60) },
    ];
    for run in &runs {
        for round in 0..plan.rounds {
            for who in order(&[Who::Fc, Who::Base, Who::Rust], round) {
                let gw = match who {
                    Who::Fc => &fc,
                    Who::Base => &base,
                    _ => &rust,
                };
                measure(book, stub, gw, run, &mut bodies);
            }
        }
        check_alive(&mut [&mut fc, &mut base, &mut rust], stub)?;
    }

    // Peak over phases 1–5 (VmHWM: the process's largest RSS so far).
    for g in [&fc, &base, &rust] {
        book.add(stub.key, g.who.key(), "rss_peak_kib", g.proc.hwm_kib() as f64);
        book.add(stub.key, g.who.key(), "rss_after_kib", g.proc.rss_kib() as f64);
    }
    drop(fc);
    drop(base);
    drop(rust);
    rss_256x64k(book, plan, stub, dir, &mut bodies)
}

/// Phase 6: memory at 256 concurrent connections with 64 KiB bodies, on fresh
/// gateways so that what earlier phases left behind does not count.
fn rss_256x64k(
    book: &mut Book,
    plan: &Plan,
    stub: &mut Stub,
    dir: &Path,
    bodies: &mut BodyCache,
) -> Result<(), String> {
    let mut fc = start_gateway(Who::Fc, stub, dir)?;
    let mut base = start_gateway(Who::Base, stub, dir)?;
    let mut rust = start_gateway(Who::Rust, stub, dir)?;
    std::thread::sleep(Duration::from_millis(300));
    let run =
        Run { metric: "c256_64k", conns: 256, body: 64 * KIB, window: plan.rss, timeout: Duration::from_secs(30) };
    for gw in [&fc, &base, &rust] {
        measure(book, stub, gw, &run, bodies);
        book.add(stub.key, gw.who.key(), "rss_256x64k_kib", gw.proc.hwm_kib() as f64);
    }
    check_alive(&mut [&mut fc, &mut base, &mut rust], stub)?;
    Ok(())
}

fn exec_to_ready(book: &mut Book, plan: &Plan, stub: &Stub, dir: &Path) -> Result<(), String> {
    for i in 0..plan.exec_starts {
        for who in order(&[Who::Fc, Who::Base, Who::Rust], i) {
            let port = procs::free_port()?;
            let log = dir.join(format!("exec-{}-{}-{i}.log", who.key(), stub.key));
            let t0 = Instant::now();
            let proc = Proc::spawn_with(who.key(), gateway_command(who, &stub.socks, port), &log, None, false)?;
            let (listen, ready) = first_success(port, t0, Duration::from_secs(30))
                .map_err(|e| format!("{}: {e}\n{}", who.key(), proc.log_tail()))?;
            drop(proc);
            book.add(stub.key, who.key(), "exec_listen_ms", listen.as_secs_f64() * 1e3);
            book.add(stub.key, who.key(), "exec_ready_ms", ready.as_secs_f64() * 1e3);
        }
    }
    eprintln!(
        "e2e:   {:<8} exec → first invoke: noslate-fc {:.2} ms, baseline {:.1} ms, rust {:.2} ms (medians of {})",
        stub.key,
        book.med(stub.key, "noslate-fc", "exec_ready_ms"),
        book.med(stub.key, "baseline", "exec_ready_ms"),
        book.med(stub.key, "rust", "exec_ready_ms"),
        plan.exec_starts
    );
    Ok(())
}

fn bench() -> Result<(), String> {
    let mut plan = Plan::new(std::env::var("BENCH_QUICK").is_ok_and(|v| !v.is_empty() && v != "0"));
    plan.only_rss = std::env::var("BENCH_ONLY").is_ok_and(|v| v == "rss");
    let quick = plan.quick;
    let started = Instant::now();
    let load_start = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
    ensure_npm(&baseline_dir(), "express")?;
    ensure_npm(&peer_dir(), "@grpc/grpc-js")?;
    let tmp = TempDir::new("bench")?;
    let dir = tmp.0.clone();
    let logs = tmp.sub("logs")?;
    let mut book = Book::default();
    let mut stubs = vec![start_fast_stub(&dir)?, start_grpcjs_peer(&dir)?];
    for stub in stubs.iter_mut() {
        run_stub(&mut book, &plan, stub, &logs)?;
    }
    for stub in stubs.iter().filter(|_| !plan.only_rss) {
        exec_to_ready(&mut book, &plan, stub, &logs)?;
    }
    let load_end = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
    drop(stubs);

    let out_dir = Path::new(ROOT).join("target/e2e");
    std::fs::create_dir_all(&out_dir).map_err(|e| e.to_string())?;
    // Only a full run of the binary cargo built goes to docs/.
    let candidate = std::env::var_os("NOSLATE_FC_BIN").is_some();
    let suffix = match (quick, candidate) {
        (true, true) => "-candidate-quick",
        (true, false) => "-quick",
        (false, true) => "-candidate",
        (false, false) => "",
    };
    let plot_path = if suffix.is_empty() {
        Path::new(ROOT).join("docs/latency.png")
    } else {
        out_dir.join(format!("latency{suffix}.png"))
    };
    if let Some(parent) = plot_path.parent() {
        std::fs::create_dir_all(parent).map_err(|e| e.to_string())?;
    }
    let plot_note = match plot(&book, &plot_path) {
        Ok(()) => format!("plot: {}", plot_path.display()),
        Err(e) => format!("plot not drawn: {e}"),
    };
    let mut report = report(&book, &plan);
    let _ = writeln!(
        report,
        "\nRun: {} mode, {:.0} s; noslate-fc binary {}; load average at start {}, at end {}; {plot_note}.",
        if quick { "quick (BENCH_QUICK=1)" } else { "full" },
        started.elapsed().as_secs_f64(),
        fc_bin().display(),
        load_start.split_whitespace().take(3).collect::<Vec<_>>().join(" "),
        load_end.split_whitespace().take(3).collect::<Vec<_>>().join(" "),
    );
    let report_path = out_dir.join(format!("report{suffix}.md"));
    std::fs::write(&report_path, &report).map_err(|e| e.to_string())?;
    std::fs::write(out_dir.join(format!("results{suffix}.json")), json(&book)).map_err(|e| e.to_string())?;
    println!("{report}");
    eprintln!("e2e: report {}", report_path.display());
    Ok(())
}

// ------------------------------------------------------------------ output

fn fmt_us(v: f64) -> String {
    if !v.is_finite() {
        "–".into()
    } else if v >= 10_000.0 {
        format!("{:.1} ms", v / 1e3)
    } else if v >= 100.0 {
        format!("{v:.0} µs")
    } else {
        format!("{v:.1} µs")
    }
}

fn fmt_num(v: f64) -> String {
    if !v.is_finite() {
        return "–".into();
    }
    let s = format!("{:.0}", v);
    let mut out = String::new();
    for (i, ch) in s.chars().enumerate() {
        if i > 0 && (s.len() - i) % 3 == 0 && ch.is_ascii_digit() {
            out.push(',');
        }
        out.push(ch);
    }
    out
}

fn fmt_kib(v: f64) -> String {
    if !v.is_finite() || v == 0.0 {
        "–".into()
    } else {
        format!("{:.2} MiB", v / 1024.0)
    }
}

fn fmt_ratio(r: f64) -> String {
    if r.is_finite() {
        format!("{r:.1}×")
    } else {
        "–".into()
    }
}

#[derive(Clone, Copy)]
enum Better {
    Lower,
    Higher,
}

struct Row {
    label: &'static str,
    metric: &'static str,
    better: Better,
    fmt: fn(f64) -> String,
}

fn rows() -> Vec<Row> {
    vec![
        Row {
            label: "p50 latency, 64 B echo, 1 connection",
            metric: "c1_64.p50_us",
            better: Better::Lower,
            fmt: fmt_us,
        },
        Row {
            label: "p99 latency, 64 B echo, 1 connection",
            metric: "c1_64.p99_us",
            better: Better::Lower,
            fmt: fmt_us,
        },
        Row { label: "requests/s, 64 B, 32 connections", metric: "c32_64.rps", better: Better::Higher, fmt: fmt_num },
        Row { label: "requests/s, 64 B, 256 connections", metric: "c256_64.rps", better: Better::Higher, fmt: fmt_num },
        Row { label: "p99 latency at 256 connections", metric: "c256_64.p99_us", better: Better::Lower, fmt: fmt_us },
        Row {
            label: "64 KiB echo throughput, MiB/s each way",
            metric: "c1_64k.mib_s",
            better: Better::Higher,
            fmt: |v| format!("{v:.0}"),
        },
        Row {
            label: "32 MiB echo throughput, MiB/s each way",
            metric: "c1_32m.mib_s",
            better: Better::Higher,
            fmt: |v| format!("{v:.0}"),
        },
        Row { label: "RSS idle (after first invoke)", metric: "rss_idle_kib", better: Better::Lower, fmt: fmt_kib },
        Row {
            label: "RSS peak under load, runs 1–5 (VmHWM)",
            metric: "rss_peak_kib",
            better: Better::Lower,
            fmt: fmt_kib,
        },
        Row { label: "RSS at the end of runs 1–5", metric: "rss_after_kib", better: Better::Lower, fmt: fmt_kib },
        Row {
            label: "RSS peak, 256 connections × 64 KiB bodies (fresh process)",
            metric: "rss_256x64k_kib",
            better: Better::Lower,
            fmt: fmt_kib,
        },
        Row {
            label: "exec → port accepts a connection (median)",
            metric: "exec_listen_ms",
            better: Better::Lower,
            fmt: |v| format!("{v:.2} ms"),
        },
        Row {
            label: "exec → first successful invoke (median)",
            metric: "exec_ready_ms",
            better: Better::Lower,
            fmt: |v| format!("{v:.2} ms"),
        },
        Row {
            label: "gateway CPU per invoke, 32 connections",
            metric: "c32_64.cpu_us",
            better: Better::Lower,
            fmt: fmt_us,
        },
        Row {
            label: "gateway CPU per invoke, 256 connections",
            metric: "c256_64.cpu_us",
            better: Better::Lower,
            fmt: fmt_us,
        },
    ]
}

/// Latency rows come from the pooled samples of every round, the others
/// are medians over rounds.
fn value(book: &Book, stub: &str, who: &str, metric: &str) -> f64 {
    match metric {
        "c1_64.p50_us" => percentile(&book.latencies(stub, who), 50.0) / 1e3,
        "c1_64.p99_us" => percentile(&book.latencies(stub, who), 99.0) / 1e3,
        _ => book.med(stub, who, metric),
    }
}

fn spread(book: &Book, stub: &str, who: &str, metric: &str) -> String {
    let v = book.get(stub, who, metric);
    if v.len() < 2 || metric.starts_with("c1_64.p") {
        return String::new();
    }
    let (lo, hi) = (stats::min(v), stats::max(v));
    if metric.ends_with("rps") {
        format!(" ({}–{})", fmt_num(lo), fmt_num(hi))
    } else {
        String::new()
    }
}

const STUBS: [(&str, &str); 2] =
    [("fast", "fast stub (h2 crate)"), ("grpcjs", "grpc-js fixture (grpc-js 1.8.8 on Node)")];

fn report(book: &Book, plan: &Plan) -> String {
    let mut r = String::new();
    let _ = writeln!(
        r,
        "Rounds: {} (alternating noslate-fc / Node gateway / Rust baseline / floor, order rotated each round); \
         latency percentiles pool every round's samples, other figures are medians over rounds (range in brackets). \
         Rust baseline = benches/e2e/rust_gateway.rs (hyper 1 + h2, tokio current-thread, one shared h2 \
         connection); Node gateway = benches/baseline/server.js (express + @grpc/grpc-js).\n",
        plan.rounds
    );
    for (stub, title) in STUBS {
        let _ = writeln!(r, "### Stub: {title}\n");
        let _ = writeln!(
            r,
            "| Figure | noslate-fc | Rust baseline (hyper + h2) | Node gateway | noslate-fc vs Rust | noslate-fc vs Node |"
        );
        let _ = writeln!(r, "|---|---:|---:|---:|---:|---:|");
        for row in rows() {
            let fc = value(book, stub, "noslate-fc", row.metric);
            let rust = value(book, stub, "rust", row.metric);
            let base = value(book, stub, "baseline", row.metric);
            let vs = |other: f64| match row.better {
                Better::Lower => format!("{} lower", fmt_ratio(other / fc)),
                Better::Higher => format!("{} higher", fmt_ratio(fc / other)),
            };
            let _ = writeln!(
                r,
                "| {} | {}{} | {}{} | {}{} | {} | {} |",
                row.label,
                (row.fmt)(fc),
                spread(book, stub, "noslate-fc", row.metric),
                (row.fmt)(rust),
                spread(book, stub, "rust", row.metric),
                (row.fmt)(base),
                spread(book, stub, "baseline", row.metric),
                vs(rust),
                vs(base)
            );
        }
        let f50 = value(book, stub, "floor", "c1_64.p50_us");
        let f99 = value(book, stub, "floor", "c1_64.p99_us");
        let p50 = value(book, stub, "noslate-fc", "c1_64.p50_us");
        let p99 = value(book, stub, "noslate-fc", "c1_64.p99_us");
        let b50 = value(book, stub, "baseline", "c1_64.p50_us");
        let r50 = value(book, stub, "rust", "c1_64.p50_us");
        let r99 = value(book, stub, "rust", "c1_64.p99_us");
        let _ = writeln!(
            r,
            "\nFloor (same invoke straight to the stub with the h2 crate, 1 stream at a time): p50 {}, p99 {}. \
             Added by noslate-fc: p50 **{}**, p99 {}; by the Rust baseline: p50 {}, p99 {}; by the Node gateway: \
             p50 {}.\n",
            fmt_us(f50),
            fmt_us(f99),
            fmt_us(p50 - f50),
            fmt_us(p99 - f99),
            fmt_us(r50 - f50),
            fmt_us(r99 - f99),
            fmt_us(b50 - f50)
        );
        let _ = writeln!(
            r,
            "CPU time per invoke of each process (user + system, from /proc/<pid>/stat; median over rounds). \
             Runs: c<connections>_<body>:\n"
        );
        let _ = writeln!(
            r,
            "| Run | noslate-fc | its stub | load generator | Rust baseline | its stub | load generator \
             | Node gateway | its stub | load generator |"
        );
        let _ = writeln!(r, "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|");
        for m in ["c1_64", "c32_64", "c256_64", "c1_64k", "c1_32m", "c256_64k"] {
            let g = |who: &str, k: &str| fmt_us(book.med(stub, who, &format!("{m}.{k}")));
            let _ = writeln!(
                r,
                "| {m} | {} | {} | {} | {} | {} | {} | {} | {} | {} |",
                g("noslate-fc", "cpu_us"),
                g("noslate-fc", "stub_cpu_us"),
                g("noslate-fc", "loadgen_cpu_us"),
                g("rust", "cpu_us"),
                g("rust", "stub_cpu_us"),
                g("rust", "loadgen_cpu_us"),
                g("baseline", "cpu_us"),
                g("baseline", "stub_cpu_us"),
                g("baseline", "loadgen_cpu_us"),
            );
        }
        let _ = writeln!(r);
        for who in ["noslate-fc", "rust", "baseline", "floor"] {
            if let Some((n, first)) = book.errors.get(&(stub.to_string(), who.to_string())) {
                if *n > 0 {
                    let runs: Vec<String> = ["c1_64", "c32_64", "c256_64", "c1_64k", "c1_32m", "c256_64k"]
                        .iter()
                        .map(|m| (m, book.get(stub, who, &format!("{m}.errors")).iter().sum::<f64>()))
                        .filter(|(_, n)| *n > 0.0)
                        .map(|(m, n)| format!("{m}: {n:.0}"))
                        .collect();
                    let _ = writeln!(r, "- errors, {who}: {n} in all ({})", runs.join(", "));
                    for m in first {
                        let _ = writeln!(r, "  - first in {m}");
                    }
                }
            }
        }
        let _ = writeln!(r);
    }
    r.push_str(&targets(book));
    r.push_str(&targets_14(book));
    r
}

/// Issue #14's targets: noslate-fc against the Rust baseline.
fn targets_14(book: &Book) -> String {
    let mut r = String::from(
        "\n### Targets (issue 14): noslate-fc vs the Rust baseline (hyper + h2)\n\n| Target | Measured | |\n|---|---|---|\n",
    );
    let mut line = |what: &str, measured: String, met: bool| {
        let _ = writeln!(r, "| {what} | {measured} | {} |", if met { "met" } else { "**missed**" });
    };
    for (stub, _) in STUBS {
        let fc = |m| value(book, stub, "noslate-fc", m);
        let rust = |m| value(book, stub, "rust", m);
        let (c, rc) = (fc("c32_64.cpu_us"), rust("c32_64.cpu_us"));
        line(
            &format!("CPU per invoke at 32 connections ≤ 0.8× the Rust baseline's and ≤ 9 µs ({stub} stub)"),
            format!("{} vs {}: {:.2}×", fmt_us(c), fmt_us(rc), c / rc),
            c <= 0.8 * rc && c <= 9.0,
        );
        let (q, rq) = (fc("c32_64.rps"), rust("c32_64.rps"));
        line(
            &format!("requests/s at 32 connections ≥ 1.25× the Rust baseline's ({stub} stub)"),
            format!("{} vs {}: {:.2}×", fmt_num(q), fmt_num(rq), q / rq),
            q >= 1.25 * rq,
        );
        let (p, rp) = (fc("c1_64.p50_us"), rust("c1_64.p50_us"));
        line(
            &format!("p50 at 1 connection ≤ the Rust baseline's ({stub} stub)"),
            format!("{} vs {}", fmt_us(p), fmt_us(rp)),
            p <= rp,
        );
        let (m, rm) = (fc("rss_256x64k_kib"), rust("rss_256x64k_kib"));
        line(
            &format!("RSS at 256 × 64 KiB ≤ 0.5× the Rust baseline's ({stub} stub)"),
            format!("{} vs {}: {:.2}×", fmt_kib(m), fmt_kib(rm), m / rm),
            m <= 0.5 * rm,
        );
    }
    r
}

fn targets(book: &Book) -> String {
    let mut r = String::from("### Targets (issue 6)\n\n| Target | Measured | |\n|---|---|---|\n");
    let mut line = |what: &str, measured: String, met: bool| {
        let _ = writeln!(r, "| {what} | {measured} | {} |", if met { "met" } else { "**missed**" });
    };
    for (stub, _) in STUBS {
        let fc = |m| value(book, stub, "noslate-fc", m);
        let base = |m| value(book, stub, "baseline", m);
        for (m, label) in [("c1_64.p50_us", "p50"), ("c1_64.p99_us", "p99")] {
            let ratio = base(m) / fc(m);
            line(
                &format!("{label} latency ≥ 5× lower than the Node gateway ({stub} stub)"),
                format!("{} vs {}: {}", fmt_us(fc(m)), fmt_us(base(m)), fmt_ratio(ratio)),
                ratio >= 5.0,
            );
        }
        for (m, label) in [("c32_64.rps", "32"), ("c256_64.rps", "256")] {
            let ratio = fc(m) / base(m);
            line(
                &format!("requests/s ≥ 5× higher at {label} connections ({stub} stub)"),
                format!("{} vs {}: {}", fmt_num(fc(m)), fmt_num(base(m)), fmt_ratio(ratio)),
                ratio >= 5.0,
            );
        }
    }
    let idle = STUBS.iter().map(|(s, _)| value(book, s, "noslate-fc", "rss_idle_kib")).fold(0.0, f64::max);
    line("RSS idle ≤ 2 MiB", fmt_kib(idle), idle <= 2048.0);
    for (stub, _) in STUBS {
        let v = value(book, stub, "noslate-fc", "rss_256x64k_kib");
        line(&format!("RSS ≤ 8 MiB at 256 connections × 64 KiB ({stub} stub)"), fmt_kib(v), v <= 8192.0);
    }
    let added = value(book, "fast", "noslate-fc", "c1_64.p50_us") - value(book, "fast", "floor", "c1_64.p50_us");
    line("added latency over the floor ≤ 30 µs p50 (fast stub)", fmt_us(added), added <= 30.0);
    let cpu = book.med("fast", "noslate-fc", "c256_64.cpu_us").min(book.med("fast", "noslate-fc", "c32_64.cpu_us"));
    let per_core = 1e6 / cpu;
    line(
        "one core saturating at ≥ 50,000 invokes/s (fast stub)",
        format!(
            "{} invokes per CPU-second of noslate-fc ({} CPU per invoke); raw {} req/s at 256 connections on 2 shared cores",
            fmt_num(per_core),
            fmt_us(cpu),
            fmt_num(value(book, "fast", "noslate-fc", "c256_64.rps"))
        ),
        per_core >= 50_000.0,
    );
    for (stub, _) in STUBS {
        let v = value(book, stub, "noslate-fc", "exec_ready_ms");
        line(&format!("exec → first invoke ≤ 5 ms ({stub} stub)"), format!("{v:.2} ms (median)"), v <= 5.0);
    }
    r
}

fn json(book: &Book) -> String {
    let mut values = serde_json::Map::new();
    for ((stub, who, metric), v) in &book.values {
        values.insert(format!("{stub}/{who}/{metric}"), serde_json::json!(v));
    }
    let mut lat = serde_json::Map::new();
    for (stub, who) in book.lat.keys() {
        let s = book.latencies(stub, who);
        let pct: Vec<(f64, f64)> =
            [50.0, 90.0, 99.0, 99.9, 100.0].iter().map(|p| (*p, percentile(&s, *p) / 1e3)).collect();
        lat.insert(format!("{stub}/{who}"), serde_json::json!({ "samples": s.len(), "percentiles_us": pct }));
    }
    let mut errors = serde_json::Map::new();
    for ((stub, who), (n, first)) in &book.errors {
        errors.insert(format!("{stub}/{who}"), serde_json::json!({ "count": n, "first": first }));
    }
    serde_json::to_string_pretty(&serde_json::json!({ "values": values, "c1_64_latency": lat, "errors": errors }))
        .unwrap_or_default()
}

fn plot(book: &Book, path: &Path) -> Result<(), String> {
    const FC: RGBColor = RGBColor(0xd9, 0x48, 0x01);
    const BASE: RGBColor = RGBColor(0x21, 0x66, 0xac);
    const FLOOR: RGBColor = RGBColor(0x33, 0x99, 0x33);
    const RUST: RGBColor = RGBColor(0x76, 0x2a, 0x83);
    let panels: Vec<plot::Panel> = STUBS
        .iter()
        .map(|(stub, title)| plot::Panel {
            title: format!("on the {title}"),
            series: vec![
                plot::Series {
                    label: "floor (h2 direct)".into(),
                    sorted_ns: book.latencies(stub, "floor"),
                    color: FLOOR,
                },
                plot::Series { label: "noslate-fc".into(), sorted_ns: book.latencies(stub, "noslate-fc"), color: FC },
                plot::Series {
                    label: "Rust baseline (hyper + h2)".into(),
                    sorted_ns: book.latencies(stub, "rust"),
                    color: RUST,
                },
                plot::Series {
                    label: "Node gateway (baseline)".into(),
                    sorted_ns: book.latencies(stub, "baseline"),
                    color: BASE,
                },
            ],
        })
        .collect();
    plot::latency_cdf(
        path,
        "POST /invoke, 64 B echo, one connection: latency CDF (noslate-fc vs Rust and Node gateways vs no proxy)",
        &panels,
    )
}

/// A bare load run (see `LOAD_ARG`), for profiling a gateway by hand.
fn load_only(args: &[String]) -> Result<(), String> {
    let num = |i: usize| -> Result<u64, String> {
        args.get(i)
            .and_then(|v| v.parse().ok())
            .ok_or_else(|| format!("usage: {LOAD_ARG} <port> <connections> <body bytes> <seconds>"))
    };
    let (port, conns, body, secs) = (num(0)? as u16, num(1)? as usize, num(2)? as usize, num(3)?);
    let spec = load::Spec {
        addr: loopback(port),
        conns,
        request: Request::invoke(port, &load::pattern(body)),
        warmup: Duration::ZERO,
        duration: Duration::from_secs(secs),
        max_requests: u64::MAX,
        timeout: Duration::from_secs(30),
    };
    let out = load::run(&spec);
    let mut sorted = out.lat_ns.clone();
    sorted.sort_unstable();
    println!(
        "{} ok, {} errors, {:.0} req/s, p50 {:.1} µs, p99 {:.1} µs{}",
        out.ok,
        out.errors,
        out.rps(),
        percentile(&sorted, 50.0) / 1e3,
        percentile(&sorted, 99.0) / 1e3,
        out.first_error.map(|e| format!(" (first error: {e})")).unwrap_or_default()
    );
    Ok(())
}

// ------------------------------------------------------------------ smoke

/// `cargo test --all-targets` runs this binary without `--bench`: a few
/// seconds through the Rust parts (fast stub, noslate-fc, load generator,
/// floor) so the harness cannot rot unnoticed. No Node needed.
fn smoke() -> Result<(), String> {
    let tmp = TempDir::new("smoke")?;
    let mut stub = start_fast_stub(&tmp.0)?;
    let mut fc = start_gateway(Who::Fc, &stub, &tmp.0)?;
    let mut bodies = BodyCache::default();
    let mut book = Book::default();
    let ms = Duration::from_millis;
    for (conns, body) in [(1, 64), (8, 64), (2, 64 * KIB), (1, 3 * MIB + 17)] {
        let run = Run { metric: "smoke", conns, body, window: (ms(50), ms(300)), timeout: Duration::from_secs(10) };
        let out = measure(&mut book, &stub, &fc, &run, &mut bodies);
        if out.errors > 0 || out.ok == 0 {
            return Err(format!("smoke {conns}×{body} B: {} ok, {} errors: {:?}", out.ok, out.errors, out.first_error));
        }
    }
    let port = fc.port;
    match load::one_request(loopback(port), &bodies.request(port, MIB), Duration::from_secs(10)) {
        Ok(200) => {}
        other => return Err(format!("smoke 1 MiB request: {other:?}")),
    }
    let out = floor::run(&stub.socks.join("dp-0.sock"), &load::pattern(64), ms(20), ms(200), 1000);
    if out.errors > 0 || out.ok == 0 {
        return Err(format!("smoke floor: {} ok, {} errors: {:?}", out.ok, out.errors, out.first_error));
    }
    // The Rust baseline gateway: small and large bodies both ways.
    let mut rust = start_gateway(Who::Rust, &stub, &tmp.0)?;
    for (conns, body) in [(4, 64), (2, 64 * KIB + 3), (1, 3 * MIB + 17)] {
        let run = Run { metric: "smoke", conns, body, window: (ms(20), ms(200)), timeout: Duration::from_secs(10) };
        let out = measure(&mut book, &stub, &rust, &run, &mut bodies);
        if out.errors > 0 || out.ok == 0 {
            return Err(format!(
                "smoke rust {conns}×{body} B: {} ok, {} errors: {:?}",
                out.ok, out.errors, out.first_error
            ));
        }
    }
    check_alive(&mut [&mut fc, &mut rust], &mut stub)?;
    println!("e2e smoke: 2 passed, 0 failed");
    Ok(())
}
