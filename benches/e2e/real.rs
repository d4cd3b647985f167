//! Real-stack modes of the end-to-end benchmark: the REAL Noslate stack
//! (turfd, the Noslated v0.25 data and control planes and a Node.js echo
//! worker, built by `scripts/real-noslate.sh build` into a cache outside the
//! clone) behind the seed's gateway (benches/baseline/seed-sdk.js: express +
//! Noslated's own `NoslatedClient`) and behind noslate-fc, alternately.
//!
//! - `BENCH_REAL=1 cargo bench --bench e2e` (or `scripts/bench-e2e.sh --real`):
//!   turf and both planes started as `real-noslate.sh start` does (but by this
//!   harness, so each gets PR_SET_PDEATHSIG and is killed by PID); noslate-fc
//!   with `NOSLATE_BIN` unset over them (it pushes the profiles), the seed
//!   gateway over the same planes, and the floor (the same invoke straight to
//!   the data plane's socket, `floor.rs`). 64 B and 64 KiB echo at 1, 32 and
//!   256 connections, rounds alternating, order rotated.
//! - `BENCH_REAL=cold`: exec of an ENTRYPOINT → the 200 of ONE invoke sent
//!   on the first connection the port accepts (no retry, no `/initialize`;
//!   a non-200 fails the bench), noslate-fc supervising the stack
//!   (`NOSLATE_BIN` set) on the packed layout `real-noslate.sh build` makes
//!   and on the seed's layout (`bin-plain`), against the seed's way
//!   (benches/baseline/seed-entrypoint.sh: turf, both planes, then the seed
//!   gateway pushing the profiles with `setFunctionProfile`), plus warm-up
//!   runs (`/initialize` first) for the first request through a fresh worker.
//! - `BENCH_REAL=profile`: noslate-fc over the real planes at 1 and 32
//!   connections under `perf stat` (task-clock; /proc utime+stime beside it)
//!   and `strace -c -f` (syscalls per invoke).
//!
//! Outputs under target/e2e/: real-report.md, real-results.json,
//! cold-report.md, profile-report.md (`-quick` with BENCH_QUICK=1).

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use crate::load::{self, Request};

#[path = "../../tests/support/real_env.rs"]
mod real_env;
use crate::procs::{self, loopback, Proc};
use crate::stats::{median, percentile};
use crate::{baseline_dir, ensure_npm, fc_bin, first_success, floor, KIB, ROOT};

fn script() -> PathBuf {
    Path::new(ROOT).join("scripts/real-noslate.sh")
}

/// `real-noslate.sh build`: the stack's `$NOSLATE_BIN` (built once, cached).
fn build() -> Result<PathBuf, String> {
    let out = Command::new("bash").arg(script()).arg("build").output().map_err(|e| e.to_string())?;
    if !out.status.success() {
        return Err(format!("real-noslate.sh build failed: {}", String::from_utf8_lossy(&out.stderr)));
    }
    Ok(PathBuf::from(String::from_utf8_lossy(&out.stdout).trim()))
}

/// The built noslated's SDK entry (`NoslatedClient`), loaded by seed-sdk.js.
fn sdk_path(bin: &Path) -> PathBuf {
    bin.parent().unwrap_or(bin).join("src/noslated/build/sdk/index.js")
}

/// A run directory with the stack's environment (`real-noslate.sh env`).
struct RunDir {
    dir: PathBuf,
    env: Vec<(String, String)>,
}

impl RunDir {
    fn new(tag: &str) -> Result<RunDir, String> {
        // Short: unix socket paths are limited to 107 bytes.
        let dir = PathBuf::from(format!("/tmp/nfb-{}-{tag}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).map_err(|e| e.to_string())?;
        let out = Command::new("bash").arg(script()).arg("env").arg(&dir).output().map_err(|e| e.to_string())?;
        if !out.status.success() {
            return Err(format!("real-noslate.sh env: {}", String::from_utf8_lossy(&out.stderr)));
        }
        let env = real_env::exports(&String::from_utf8_lossy(&out.stdout));
        let run = RunDir { dir, env };
        // One echo function; a worker kept alive (reservationCount) and one
        // worker taking every request (no scale-out, no queueing at 256), so
        // no cold start falls inside a measurement.
        let profiles = format!(
            r#"[{{"name":"echo","runtime":"nodejs","url":"file://{}","signature":"md5:1","handler":"index.handler","worker":{{"reservationCount":1,"replicaCountLimit":1,"maxActivateRequests":512}}}}]"#,
            Path::new(ROOT).join("tests/real/functions/echo").display()
        );
        std::fs::write(run.profiles(), profiles).map_err(|e| e.to_string())?;
        Ok(run)
    }

    fn var(&self, name: &str) -> String {
        self.env.iter().find(|(k, _)| k == name).map(|(_, v)| v.clone()).unwrap_or_default()
    }

    fn profiles(&self) -> PathBuf {
        self.dir.join("profiles.json")
    }

    fn sock(&self, name: &str) -> PathBuf {
        Path::new(&self.var("NOSLATED_WORKDIR")).join("socks").join(name)
    }

    fn turf_sock(&self) -> PathBuf {
        Path::new(&self.var("TURF_WORKDIR")).join("turf.sock")
    }

    fn log(&self, name: &str) -> PathBuf {
        self.dir.join("logs").join(name)
    }

    /// A command with only PATH, HOME and the stack's environment (less
    /// `NOSLATE_BIN` unless `with_bin`).
    fn command(&self, program: impl AsRef<std::ffi::OsStr>, with_bin: bool) -> Command {
        let mut c = Command::new(program);
        c.env_clear()
            .env("PATH", std::env::var("PATH").unwrap_or_default())
            .env("HOME", std::env::var("HOME").unwrap_or_default());
        for (k, v) in &self.env {
            if with_bin || k != "NOSLATE_BIN" {
                c.env(k, v);
            }
        }
        c
    }
}

impl Drop for RunDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn wait_path(path: &Path, limit: Duration) -> Result<(), String> {
    let t = Instant::now();
    while !path.exists() {
        if t.elapsed() > limit {
            return Err(format!("{} did not appear within {limit:?}", path.display()));
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    Ok(())
}

/// turf and both planes, started as `real-noslate.sh start` starts them.
struct Planes {
    // Field order is drop order: the planes, then turf (and its workers).
    // Held only to be killed on drop.
    #[allow(dead_code)]
    cp: Proc,
    dp: Proc,
    turf: Proc,
}

impl Planes {
    fn start(run: &RunDir) -> Result<Planes, String> {
        let bin = PathBuf::from(run.var("NOSLATE_BIN"));
        let turf = Proc::spawn(
            "turf",
            {
                let mut c = run.command(bin.join("turf"), true);
                c.args(["-D", "-f"]);
                c
            },
            &run.log("turf.log"),
            None,
        )?;
        wait_path(&run.turf_sock(), Duration::from_secs(10))?;
        let plane = |name: &str| {
            let mut c = run.command(bin.join("node"), true);
            c.arg(bin.join(name));
            Proc::spawn(name, c, &run.log(&format!("{name}_out.log")), None)
        };
        let dp = plane("data_plane")?;
        let cp = plane("control_plane")?;
        wait_path(&run.sock("dp-0.sock"), Duration::from_secs(30))?;
        wait_path(&run.sock("cp-0.sock"), Duration::from_secs(30))?;
        Ok(Planes { cp, dp, turf })
    }

    /// The worker processes (turf's descendants).
    fn workers(&self) -> Vec<u32> {
        procs::descendants(self.turf.pid())
    }

    fn workers_cpu_s(&self) -> f64 {
        self.workers().into_iter().map(procs::cpu_seconds).sum()
    }
}

impl Drop for Planes {
    fn drop(&mut self) {
        procs::kill_descendants(self.turf.pid());
    }
}

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Who {
    Seed,
    Fc,
    /// The Rust baseline gateway (hyper + h2, benches/e2e/rust_gateway.rs).
    Rust,
    Floor,
}

impl Who {
    fn key(self) -> &'static str {
        match self {
            Who::Seed => "seed",
            Who::Fc => "noslate-fc",
            Who::Rust => "rust",
            Who::Floor => "floor",
        }
    }
}

struct Gw {
    proc: Proc,
    port: u16,
}

fn fc_command(run: &RunDir, port: u16, supervise: bool) -> Command {
    let mut c = run.command(fc_bin(), supervise);
    c.env("SERVER_PORT", port.to_string())
        .env("NOSLATE_FC_LISTEN", "127.0.0.1")
        .env("NOSLATE_FC_TRUSTED_PEERS", "any")
        .env("NOSLATE_FUNCTION", "echo")
        .env("NOSLATE_FUNCTION_PROFILES", run.profiles());
    c
}

fn seed_command(run: &RunDir, port: u16, push_profiles: bool) -> Command {
    let mut c = run.command("node", true);
    c.arg(baseline_dir().join("seed-sdk.js"))
        .env("NOSLATED_SDK", sdk_path(Path::new(&run.var("NOSLATE_BIN"))))
        .env("SERVER_PORT", port.to_string())
        .env("NOSLATE_FC_LISTEN", "127.0.0.1")
        .env("NOSLATE_FC_TRUSTED_PEERS", "any")
        .env("NOSLATE_FUNCTION", "echo");
    if push_profiles {
        c.env("NOSLATE_FUNCTION_PROFILES", run.profiles());
    }
    c
}

/// The Rust baseline gateway over the same planes (it pushes no profiles).
fn rust_command(run: &RunDir, port: u16) -> Command {
    let mut c = run.command(std::env::current_exe().unwrap_or_else(|_| PathBuf::from("e2e")), false);
    c.arg(crate::RUST_GATEWAY_ARG)
        .env("SERVER_PORT", port.to_string())
        .env("NOSLATE_FC_LISTEN", "127.0.0.1")
        .env("NOSLATE_FC_TRUSTED_PEERS", "any")
        .env("NOSLATE_FC_SOCK_DIR", run.sock(""))
        .env("NOSLATE_FUNCTION", "echo");
    c
}

fn start(who: Who, run: &RunDir) -> Result<Gw, String> {
    let port = procs::free_port()?;
    let cmd = match who {
        Who::Fc => fc_command(run, port, false),
        Who::Rust => rust_command(run, port),
        _ => seed_command(run, port, false),
    };
    let t0 = Instant::now();
    let proc = Proc::spawn(who.key(), cmd, &run.log(&format!("{}.log", who.key())), None)?;
    first_success(port, t0, Duration::from_secs(90)).map_err(|e| format!("{}: {e}\n{}", who.key(), proc.log_tail()))?;
    Ok(Gw { proc, port })
}

// ------------------------------------------------------------ throughput

const RUNS: [(&str, usize, usize); 6] = [
    ("c1_64", 1, 64),
    ("c32_64", 32, 64),
    ("c256_64", 256, 64),
    ("c1_64k", 1, 64 * KIB),
    ("c32_64k", 32, 64 * KIB),
    ("c256_64k", 256, 64 * KIB),
];

#[derive(Default)]
struct Book {
    values: BTreeMap<String, Vec<f64>>,
    first_errors: BTreeMap<String, String>,
}

impl Book {
    fn add(&mut self, who: Who, metric: &str, v: f64) {
        self.values.entry(format!("{}/{metric}", who.key())).or_default().push(v);
    }
    fn get(&self, who: Who, metric: &str) -> &[f64] {
        self.values.get(&format!("{}/{metric}", who.key())).map(Vec::as_slice).unwrap_or(&[])
    }
    fn med(&self, who: Who, metric: &str) -> f64 {
        median(self.get(who, metric))
    }
    fn sum(&self, who: Who, metric: &str) -> f64 {
        self.get(who, metric).iter().sum()
    }
}

fn loadavg() -> String {
    std::fs::read_to_string("/proc/loadavg").unwrap_or_default().trim().to_string()
}

fn utc_now() -> String {
    let out = Command::new("date").args(["-u", "+%Y-%m-%d %H:%M:%S UTC"]).output();
    out.map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string()).unwrap_or_default()
}

fn machine() -> String {
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .unwrap_or_default()
        .lines()
        .find(|l| l.starts_with("model name"))
        .and_then(|l| l.split_once(':'))
        .map(|(_, v)| v.trim().to_string())
        .unwrap_or_default();
    let nproc = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(0);
    format!("nproc {nproc}, {cpu}")
}

struct Ctx<'a> {
    planes: &'a Planes,
    fc: &'a Gw,
    seed: &'a Gw,
    rust: &'a Gw,
    dp_sock: PathBuf,
}

fn measure(book: &mut Book, ctx: &Ctx, who: Who, metric: &str, conns: usize, body: usize, win: (Duration, Duration)) {
    let gw = match who {
        Who::Fc => Some(ctx.fc),
        Who::Seed => Some(ctx.seed),
        Who::Rust => Some(ctx.rust),
        Who::Floor => None,
    };
    let cpu = |g: Option<&Gw>| g.map(|g| g.proc.cpu_s()).unwrap_or(f64::NAN);
    let (g0, d0, w0, me0) = (cpu(gw), ctx.planes.dp.cpu_s(), ctx.planes.workers_cpu_s(), procs::self_cpu_s());
    let out = match gw {
        Some(g) => load::run(&load::Spec {
            addr: loopback(g.port),
            conns,
            request: Request::invoke(g.port, &load::pattern(body)),
            warmup: win.0,
            duration: win.1,
            max_requests: u64::MAX,
            timeout: Duration::from_secs(10),
        }),
        None => {
            let spec = floor::Spec { function: "echo".into(), host: format!("127.0.0.1:{}", ctx.fc.port), conns };
            floor::run_spec(&spec, &ctx.dp_sock, &load::pattern(body), win.0, win.1, u64::MAX)
        }
    };
    let (g1, d1, w1, me1) = (cpu(gw), ctx.planes.dp.cpu_s(), ctx.planes.workers_cpu_s(), procs::self_cpu_s());
    let per = |d: f64| if out.all_ok > 0 { d / out.all_ok as f64 * 1e6 } else { f64::NAN };
    let mut sorted = out.lat_ns.clone();
    sorted.sort_unstable();
    let (p50, p99) = (percentile(&sorted, 50.0) / 1e3, percentile(&sorted, 99.0) / 1e3);
    book.add(who, &format!("{metric}.rps"), out.rps());
    book.add(who, &format!("{metric}.p50_us"), p50);
    book.add(who, &format!("{metric}.p99_us"), p99);
    book.add(who, &format!("{metric}.errors"), out.errors as f64);
    book.add(who, &format!("{metric}.cpu_us"), per(g1 - g0));
    book.add(who, &format!("{metric}.dp_cpu_us"), per(d1 - d0));
    book.add(who, &format!("{metric}.worker_cpu_us"), per(w1 - w0));
    book.add(who, &format!("{metric}.client_cpu_us"), per(me1 - me0));
    if let Some(e) = &out.first_error {
        book.first_errors.entry(format!("{}/{metric}", who.key())).or_insert_with(|| e.clone());
    }
    eprintln!(
        "e2e-real: {:<10} {:<9} {:>8.0} req/s  p50 {:>8.1} µs  p99 {:>9.1} µs  gw cpu {:>7.1} µs/inv  dp {:>6.1}  worker {:>6.1}  errors {}  load {}",
        who.key(),
        metric,
        out.rps(),
        p50,
        p99,
        per(g1 - g0),
        per(d1 - d0),
        per(w1 - w0),
        out.errors,
        loadavg()
    );
}

fn order(round: usize) -> Vec<Who> {
    let all = [Who::Seed, Who::Fc, Who::Rust, Who::Floor];
    (0..all.len()).map(|i| all[(i + round) % all.len()]).collect()
}

pub fn bench(quick: bool) -> Result<(), String> {
    let ms = Duration::from_millis;
    let (rounds, win) = if quick { (1, (ms(300), ms(1500))) } else { (3, (ms(500), ms(3000))) };
    let started = utc_now();
    let load_start = loadavg();
    let bin = build()?;
    ensure_npm(&baseline_dir(), "express")?;
    eprintln!("e2e-real: stack {}", bin.display());
    let run = RunDir::new("real")?;
    let planes = Planes::start(&run)?;
    // noslate-fc first: it pushes the profiles (the seed gateway here does
    // not, so the worker is never re-profiled under load).
    let fc = start(Who::Fc, &run)?;
    let seed = start(Who::Seed, &run)?;
    let rust = start(Who::Rust, &run)?;
    let ctx = Ctx { planes: &planes, fc: &fc, seed: &seed, rust: &rust, dp_sock: run.sock("dp-0.sock") };
    let mut book = Book::default();
    // Warm-up (not recorded): JITs, buffers, the worker's own warm-up.
    let mut scratch = Book::default();
    for who in [Who::Seed, Who::Fc, Who::Rust, Who::Floor] {
        for (conns, body) in [(32, 64), (256, 64 * KIB), (1, 64)] {
            measure(
                &mut scratch,
                &ctx,
                who,
                "warmup",
                conns,
                body,
                (Duration::ZERO, ms(if quick { 500 } else { 1500 })),
            );
        }
    }
    for (who, g) in [(Who::Seed, &seed), (Who::Fc, &fc), (Who::Rust, &rust)] {
        book.add(who, "rss_warm_kib", g.proc.rss_kib() as f64);
    }
    for (metric, conns, body) in RUNS {
        for round in 0..rounds {
            for who in order(round) {
                measure(&mut book, &ctx, who, metric, conns, body, win);
            }
        }
    }
    for (who, g) in [(Who::Seed, &seed), (Who::Fc, &fc), (Who::Rust, &rust)] {
        book.add(who, "rss_end_kib", g.proc.rss_kib() as f64);
        book.add(who, "rss_peak_kib", g.proc.hwm_kib() as f64);
    }
    book.add(Who::Floor, "dp_rss_peak_kib", planes.dp.hwm_kib() as f64);
    let workers = planes.workers();
    let load_end = loadavg();
    let ended = utc_now();
    drop(ctx);
    drop(seed);
    drop(rust);
    drop(fc);
    drop(planes);

    let mut r = String::new();
    let _ = writeln!(
        r,
        "Run of {started} – {ended}; {}; load average at the start {load_start}, at the end {load_end}. \
         Rounds: {rounds} (seed gateway / noslate-fc / Rust baseline / floor alternating, order rotated each round), \
         {:?} warm-up + {:?} measured per run; figures are medians over rounds. Stack: turfd + Noslated v0.25 \
         planes + one Node.js echo worker (reservationCount 1, replicaCountLimit 1, maxActivateRequests 512; \
         {} worker process at the end). noslate-fc runs with NOSLATE_BIN unset over the planes; the seed gateway \
         and the Rust baseline (hyper + h2, benches/e2e/rust_gateway.rs) over the same planes.\n",
        machine(),
        win.0,
        win.1,
        workers.len()
    );
    r.push_str(&report(&book));
    write_out(if quick { "real-report-quick.md" } else { "real-report.md" }, &r)?;
    let json = serde_json::json!({ "values": book.values, "first_errors": book.first_errors });
    write_out(
        if quick { "real-results-quick.json" } else { "real-results.json" },
        &serde_json::to_string_pretty(&json).unwrap_or_default(),
    )?;
    println!("{r}");
    Ok(())
}

fn write_out(name: &str, text: &str) -> Result<(), String> {
    let dir = Path::new(ROOT).join("target/e2e");
    std::fs::create_dir_all(&dir).map_err(|e| e.to_string())?;
    std::fs::write(dir.join(name), text).map_err(|e| e.to_string())?;
    eprintln!("e2e-real: wrote {}", dir.join(name).display());
    Ok(())
}

fn us(v: f64) -> String {
    if !v.is_finite() {
        "–".into()
    } else if v >= 10_000.0 {
        format!("{:.1} ms", v / 1000.0)
    } else if v >= 100.0 {
        format!("{v:.0} µs")
    } else {
        format!("{v:.1} µs")
    }
}

fn signed_us(v: f64) -> String {
    if v < 0.0 {
        format!("−{}", us(-v))
    } else {
        format!("+{}", us(v))
    }
}

fn num(v: f64) -> String {
    if !v.is_finite() {
        return "–".into();
    }
    let s = format!("{v:.0}");
    let mut out = String::new();
    for (i, c) in s.chars().enumerate() {
        if i > 0 && (s.len() - i) % 3 == 0 {
            out.push(',');
        }
        out.push(c);
    }
    out
}

fn mib(kib: f64) -> String {
    format!("{:.1} MiB", kib / 1024.0)
}

fn report(b: &Book) -> String {
    let mut r = String::new();
    let _ = writeln!(
        r,
        "| Run | Figure | seed gateway (express + NoslatedClient) | noslate-fc | Rust baseline (hyper + h2) | floor (h2 straight to the data plane) | noslate-fc vs seed | noslate-fc vs Rust | noslate-fc vs floor |"
    );
    let _ = writeln!(r, "|---|---|---:|---:|---:|---:|---:|---:|---:|");
    for (metric, _, _) in RUNS {
        let m = |k: &str| format!("{metric}.{k}");
        let (s, f, fl) = (b.med(Who::Seed, &m("rps")), b.med(Who::Fc, &m("rps")), b.med(Who::Floor, &m("rps")));
        let ru = b.med(Who::Rust, &m("rps"));
        let _ = writeln!(
            r,
            "| {metric} | invokes/s | {} | {} | {} | {} | {:.1}× | {:.2}× | {:.1} % |",
            num(s),
            num(f),
            num(ru),
            num(fl),
            f / s,
            f / ru,
            f / fl * 100.0
        );
        for (k, label) in [("p50_us", "p50"), ("p99_us", "p99")] {
            let (s, f, fl) = (b.med(Who::Seed, &m(k)), b.med(Who::Fc, &m(k)), b.med(Who::Floor, &m(k)));
            let ru = b.med(Who::Rust, &m(k));
            let _ = writeln!(
                r,
                "| | {label} | {} | {} | {} | {} | {:.1}× lower | {:.2}× lower | {} |",
                us(s),
                us(f),
                us(ru),
                us(fl),
                s / f,
                ru / f,
                signed_us(f - fl)
            );
        }
        let _ = writeln!(
            r,
            "| | failed invokes (all rounds) | {:.0} | {:.0} | {:.0} | {:.0} | | | |",
            b.sum(Who::Seed, &m("errors")),
            b.sum(Who::Fc, &m("errors")),
            b.sum(Who::Rust, &m("errors")),
            b.sum(Who::Floor, &m("errors"))
        );
        let (s, f, ru) = (b.med(Who::Seed, &m("cpu_us")), b.med(Who::Fc, &m("cpu_us")), b.med(Who::Rust, &m("cpu_us")));
        let _ = writeln!(
            r,
            "| | gateway CPU / invoke | {} | {} | {} | – | {:.1}× lower | {:.2}× lower | |",
            us(s),
            us(f),
            us(ru),
            s / f,
            ru / f
        );
        let _ = writeln!(
            r,
            "| | data plane CPU / invoke | {} | {} | {} | {} | | | |",
            us(b.med(Who::Seed, &m("dp_cpu_us"))),
            us(b.med(Who::Fc, &m("dp_cpu_us"))),
            us(b.med(Who::Rust, &m("dp_cpu_us"))),
            us(b.med(Who::Floor, &m("dp_cpu_us")))
        );
        let _ = writeln!(
            r,
            "| | worker CPU / invoke | {} | {} | {} | {} | | | |",
            us(b.med(Who::Seed, &m("worker_cpu_us"))),
            us(b.med(Who::Fc, &m("worker_cpu_us"))),
            us(b.med(Who::Rust, &m("worker_cpu_us"))),
            us(b.med(Who::Floor, &m("worker_cpu_us")))
        );
        let _ = writeln!(
            r,
            "| | client CPU / invoke (load generator; the floor's h2 client) | {} | {} | {} | {} | | | |",
            us(b.med(Who::Seed, &m("client_cpu_us"))),
            us(b.med(Who::Fc, &m("client_cpu_us"))),
            us(b.med(Who::Rust, &m("client_cpu_us"))),
            us(b.med(Who::Floor, &m("client_cpu_us")))
        );
    }
    for (k, label) in [
        ("rss_warm_kib", "RSS after warm-up"),
        ("rss_end_kib", "RSS at the end"),
        ("rss_peak_kib", "RSS peak (VmHWM, whole run)"),
    ] {
        let (s, f, ru) = (b.med(Who::Seed, k), b.med(Who::Fc, k), b.med(Who::Rust, k));
        let _ = writeln!(
            r,
            "| all | {label} | {} | {} | {} | – | {:.0}× lower | {:.2}× lower | |",
            mib(s),
            mib(f),
            mib(ru),
            s / f,
            ru / f
        );
    }
    let _ = writeln!(r, "\nData plane peak RSS (VmHWM): {}.\n", mib(b.med(Who::Floor, "dp_rss_peak_kib")));
    for (k, e) in &b.first_errors {
        let _ = writeln!(r, "- first error, {k}: {e}");
    }
    r.push_str(&targets(b));
    r
}

fn targets(b: &Book) -> String {
    let mut r = String::from("\n#### Targets (issue 10)\n\n| Target | Measured | |\n|---|---|---|\n");
    let mut line = |what: &str, measured: String, met: bool| {
        let _ = writeln!(r, "| {what} | {measured} | {} |", if met { "met" } else { "**missed**" });
    };
    let errs: Vec<String> =
        RUNS.iter().map(|(m, _, _)| format!("{m}: {:.0}", b.sum(Who::Fc, &format!("{m}.errors")))).collect();
    let total: f64 = RUNS.iter().map(|(m, _, _)| b.sum(Who::Fc, &format!("{m}.errors"))).sum();
    line("0 failed invokes at 1, 32 and 256 connections (noslate-fc)", errs.join(", "), total == 0.0);
    let (f, fl) = (b.med(Who::Fc, "c32_64.rps"), b.med(Who::Floor, "c32_64.rps"));
    line(
        "≥ 97 % of the floor's invokes/s at 32 connections (64 B)",
        format!("{} vs {}: {:.1} %", num(f), num(fl), f / fl * 100.0),
        f >= 0.97 * fl,
    );
    let (p, pf) = (b.med(Who::Fc, "c1_64.p50_us"), b.med(Who::Floor, "c1_64.p50_us"));
    line(
        "p50 at 1 connection within 50 µs of the floor's (64 B)",
        format!("{} vs {}: {}", us(p), us(pf), signed_us(p - pf)),
        p - pf <= 50.0,
    );
    let c1 = b.med(Who::Fc, "c1_64.cpu_us");
    line("CPU per invoke ≤ 30 µs at 1 connection (64 B)", us(c1), c1 <= 30.0);
    let c32 = b.med(Who::Fc, "c32_64.cpu_us");
    line("CPU per invoke ≤ 12 µs at 32 connections (64 B)", us(c32), c32 <= 12.0);
    let (rf, rs) = (b.med(Who::Fc, "rss_peak_kib"), b.med(Who::Seed, "rss_peak_kib"));
    line(
        "RSS ≤ 1/50 of the seed gateway's (peak)",
        format!("{} vs {}: 1/{:.0}", mib(rf), mib(rs), rs / rf),
        rf * 50.0 <= rs,
    );
    r
}

// ------------------------------------------------------------ cold start

/// Milestones of one cold start, ms after the exec.
#[derive(Default, Debug, Clone)]
struct Cold {
    turf_sock: f64,
    dp_sock: f64,
    cp_sock: f64,
    profiles_set: f64,
    worker_spawned: f64,
    worker_ready: f64,
    port: f64,
    /// Warm-up runs only: `POST /initialize` answered 200.
    initialized: f64,
    /// The one invoke's 200 (cold runs: sent on the first accepted
    /// connection; warm-up runs: the first after `/initialize`).
    first_200: f64,
    /// Warm-up runs only: p50 of the invokes after the first, µs.
    warm_p50_us: f64,
}

/// The ways of starting an instance the cold bench compares.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Way {
    /// benches/baseline/seed-entrypoint.sh on Noslated's own layout.
    Seed,
    /// noslate-fc on Noslated's own layout (`bin-plain`): before #19.
    FcPlain,
    /// noslate-fc on the packed layout `real-noslate.sh build` makes.
    Fc,
    /// The same with NOSLATE_FC_WARM_UP=echo and a `POST /initialize` first.
    FcWarmUp,
    /// Warm-up on the plain layout (the first request's before/after).
    FcPlainWarmUp,
    /// Packed warm-up plus NOSLATE_FC_WARM_UP_EVENT: the worker's and the
    /// data plane's first request is the configured event.
    FcWarmUpEvent,
}

impl Way {
    const ALL: [Way; 6] = [Way::Seed, Way::FcPlain, Way::Fc, Way::FcWarmUp, Way::FcPlainWarmUp, Way::FcWarmUpEvent];

    fn key(self) -> &'static str {
        match self {
            Way::Seed => "seed way",
            Way::FcPlain => "noslate-fc, plain layout",
            Way::Fc => "noslate-fc, packed layout",
            Way::FcWarmUp => "noslate-fc, packed, warm-up",
            Way::FcPlainWarmUp => "noslate-fc, plain, warm-up",
            Way::FcWarmUpEvent => "noslate-fc, packed, warm-up + event",
        }
    }

    fn warm_up(self) -> bool {
        matches!(self, Way::FcWarmUp | Way::FcPlainWarmUp | Way::FcWarmUpEvent)
    }
}

fn epoch_ms() -> f64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_secs_f64() * 1000.0).unwrap_or(0.0)
}

/// "2026-12-01 22:59:18.433 ..." (the planes log in the machine's local
/// time; this machine's is UTC) → ms since the epoch.
fn log_time_ms(line: &str) -> Option<f64> {
    let (date, rest) = line.split_once(' ')?;
    let time = rest.get(..12)?;
    let d: Vec<i64> = date.split('-').map(|p| p.parse().ok()).collect::<Option<_>>()?;
    let (hms, frac) = time.split_once('.')?;
    let t: Vec<i64> = hms.split(':').map(|p| p.parse().ok()).collect::<Option<_>>()?;
    let (y, m, day) = (d[0], d[1], d[2]);
    // Days from civil (Howard Hinnant).
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    let secs = days * 86_400 + t[0] * 3600 + t[1] * 60 + t[2];
    Some(secs as f64 * 1000.0 + frac.parse::<f64>().ok()?)
}

/// The first line of the control plane's log containing `needle`, in ms
/// after `t0_epoch`.
fn cp_log_time(run: &RunDir, needle: &str, t0_epoch: f64) -> f64 {
    // control_plane.log and its dated twin (control_plane.log.<date>).
    let mut text = String::new();
    for e in std::fs::read_dir(run.dir.join("logs")).into_iter().flatten().flatten() {
        if e.file_name().to_string_lossy().starts_with("control_plane.log") {
            text.push_str(&std::fs::read_to_string(e.path()).unwrap_or_default());
        }
    }
    text.lines()
        .filter(|l| l.contains(needle))
        .filter_map(log_time_ms)
        .min_by(f64::total_cmp)
        .map(|t| t - t0_epoch)
        .unwrap_or(f64::NAN)
}

fn http(port: u16, req: &[u8], timeout: Duration) -> Result<u16, String> {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(loopback(port)).map_err(|e| e.to_string())?;
    s.set_read_timeout(Some(timeout)).map_err(|e| e.to_string())?;
    s.write_all(req).map_err(|e| e.to_string())?;
    let mut buf = [0u8; 1024];
    let n = s.read(&mut buf).map_err(|e| e.to_string())?;
    let text = String::from_utf8_lossy(&buf[..n]);
    text.split_whitespace().nth(1).and_then(|c| c.parse().ok()).ok_or_else(|| format!("bad answer: {text}"))
}

/// The invoke FC sends when no Initializer is configured: `POST /invoke`
/// with `x-fc-control-path: /invoke`, a 64 B body.
fn fc_invoke(port: u16) -> Request {
    let body = load::pattern(64);
    let head = format!(
        "POST /invoke HTTP/1.1\r\nhost: 127.0.0.1:{port}\r\nx-fc-control-path: /invoke\r\ncontent-length: {}\r\n\r\n",
        body.len()
    );
    let mut bytes = head.into_bytes();
    let body_at = bytes.len();
    bytes.extend_from_slice(&body);
    Request { bytes, body_at }
}

/// A process and everything below it, killed by PID on drop.
struct Tree(Proc);

impl Drop for Tree {
    fn drop(&mut self) {
        procs::kill_descendants(self.0.pid());
    }
}

/// One cold start of `way`. Cold runs send ONE invoke on the first connection
/// the port accepts (no retry, no `/initialize`): anything but a 200 fails the
/// bench, as it would fail FC's first request.
fn cold_once(way: Way, tag: &str, bins: &Bins) -> Result<Cold, String> {
    let run = RunDir::new(tag)?;
    let port = procs::free_port()?;
    let bin = if matches!(way, Way::Seed | Way::FcPlain | Way::FcPlainWarmUp) { &bins.plain } else { &bins.packed };
    let mut cmd = match way {
        Way::Fc | Way::FcPlain | Way::FcWarmUp | Way::FcPlainWarmUp | Way::FcWarmUpEvent => {
            fc_command(&run, port, true)
        }
        Way::Seed => {
            let mut c = run.command("bash", true);
            c.arg(baseline_dir().join("seed-entrypoint.sh"))
                .env("NOSLATED_SDK", sdk_path(bin))
                .env("SERVER_PORT", port.to_string())
                .env("NOSLATE_FC_LISTEN", "127.0.0.1")
                .env("NOSLATE_FC_TRUSTED_PEERS", "any")
                .env("NOSLATE_FUNCTION", "echo")
                .env("NOSLATE_FUNCTION_PROFILES", run.profiles());
            c
        }
    };
    cmd.env("NOSLATE_BIN", bin);
    if way.warm_up() {
        cmd.env("NOSLATE_FC_WARM_UP", "echo");
    }
    if way == Way::FcWarmUpEvent {
        cmd.env("NOSLATE_FC_WARM_UP_EVENT", "warm-up");
    }
    let mut cold = Cold { initialized: f64::NAN, warm_p50_us: f64::NAN, ..Cold::default() };
    let (t0, e0) = (Instant::now(), epoch_ms());
    let tree = Tree(Proc::spawn(way.key(), cmd, &run.log("entry.log"), None)?);
    let proc = &tree.0;
    let since = move |t: Instant| t.duration_since(t0).as_secs_f64() * 1000.0;
    let limit = Duration::from_secs(90);
    // A sampler thread notes when each socket and the first worker appear,
    // until the first successful invoke.
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let sampler = {
        let stop = stop.clone();
        let paths = [run.turf_sock(), run.sock("dp-0.sock"), run.sock("cp-0.sock")];
        let root = proc.pid();
        std::thread::spawn(move || {
            let mut seen = [f64::NAN; 4];
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                let now = Instant::now();
                for (i, p) in paths.iter().enumerate() {
                    if seen[i].is_nan() && p.exists() {
                        seen[i] = since(now);
                    }
                }
                if seen[3].is_nan() {
                    // A worker: a process below turf.
                    let turf = procs::descendants(root).into_iter().find(|p| procs::comm(*p) == "turf");
                    if turf.is_some_and(|t| !procs::descendants(t).is_empty()) {
                        seen[3] = since(now);
                    }
                }
                std::thread::sleep(Duration::from_micros(500));
            }
            seen
        })
    };
    let measured = (|| -> Result<(), String> {
        let first = loop {
            if let Ok(s) = std::net::TcpStream::connect(loopback(port)) {
                cold.port = since(Instant::now());
                break s;
            }
            if t0.elapsed() > limit {
                return Err("the port never accepted".into());
            }
            std::thread::sleep(Duration::from_micros(200));
        };
        let req = fc_invoke(port);
        if way.warm_up() {
            drop(first);
            let init = b"POST /initialize HTTP/1.1\r\nhost: x\r\nx-fc-control-path: /initialize\r\n\
                         x-fc-initialization-timeout: 60\r\ncontent-length: 0\r\n\r\n";
            match http(port, init, limit)? {
                200 => cold.initialized = since(Instant::now()),
                other => return Err(format!("/initialize answered {other}")),
            }
            let conn = std::net::TcpStream::connect(loopback(port)).map_err(|e| e.to_string())?;
            match load::request_on(conn, &req, limit)? {
                200 => cold.first_200 = since(Instant::now()),
                other => return Err(format!("the first invoke after /initialize answered {other}")),
            }
            // Warm invokes, each on its own connection as FC sends them.
            let mut us = Vec::new();
            for _ in 0..30 {
                let t = Instant::now();
                let conn = std::net::TcpStream::connect(loopback(port)).map_err(|e| e.to_string())?;
                match load::request_on(conn, &req, Duration::from_secs(10))? {
                    200 => us.push(t.elapsed().as_secs_f64() * 1e6),
                    other => return Err(format!("a warm invoke answered {other}")),
                }
            }
            cold.warm_p50_us = median(&us);
        } else {
            match load::request_on(first, &req, limit)? {
                200 => cold.first_200 = since(Instant::now()),
                other => return Err(format!("the one invoke sent when the port accepted answered {other}")),
            }
        }
        Ok(())
    })();
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    if let Ok(seen) = sampler.join() {
        [cold.turf_sock, cold.dp_sock, cold.cp_sock, cold.worker_spawned] = seen;
    }
    measured.map_err(|e| format!("{}: {e}\n{}", way.key(), proc.log_tail()))?;
    // The planes write their logs lazily: wait (at most 5 s) for the lines.
    let t = Instant::now();
    loop {
        cold.profiles_set = cp_log_time(&run, "Setting function profiles", e0);
        cold.worker_ready = cp_log_time(&run, ") ready, cost", e0);
        if (cold.profiles_set.is_finite() && cold.worker_ready.is_finite()) || t.elapsed() > Duration::from_secs(5) {
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    Ok(cold)
}

/// The two layouts `real-noslate.sh build` makes.
struct Bins {
    packed: PathBuf,
    plain: PathBuf,
}

pub fn cold(quick: bool) -> Result<(), String> {
    let n = if quick { 2 } else { 7 };
    let started = utc_now();
    let load_start = loadavg();
    let packed = build()?;
    let plain = packed.with_file_name("bin-plain");
    if !plain.join("data_plane").exists() {
        return Err(format!("{} is missing: rebuild with scripts/real-noslate.sh build", plain.display()));
    }
    let bins = Bins { packed, plain };
    ensure_npm(&baseline_dir(), "express")?;
    let mut all: BTreeMap<&str, Vec<Cold>> = BTreeMap::new();
    let mut loads = Vec::new();
    for i in 0..n {
        // Alternating, the order rotated each round.
        for j in 0..Way::ALL.len() {
            let way = Way::ALL[(i + j) % Way::ALL.len()];
            let c = cold_once(way, &format!("cold{i}{j}"), &bins)?;
            let load = loadavg();
            eprintln!("e2e-cold: {:<28} {c:?} load {load}", way.key());
            loads.push(load.split_whitespace().next().unwrap_or("").to_string());
            all.entry(way.key()).or_default().push(c);
        }
    }
    let mut r = String::new();
    let _ = writeln!(
        r,
        "Run of {started} – {}; {}; load average at the start {load_start}, at the end {}; 1-minute load after \
         each run: {}. {n} cold starts each, alternating (order rotated); medians, ms after the exec of the \
         ENTRYPOINT. Seed way: benches/baseline/seed-entrypoint.sh (turf, both planes, then `node seed-sdk.js`, \
         which calls agent.start() and setFunctionProfile before it listens) on Noslated's own layout (bin-plain). \
         noslate-fc: the binary with NOSLATE_BIN set (it starts turf and both planes and pushes \
         NOSLATE_FUNCTION_PROFILES), on bin-plain (before #19) and on the packed layout (after). One echo function \
         with reservationCount 1. Cold runs: ONE `POST /invoke` (x-fc-control-path: /invoke, 64 B) on the first \
         connection the port accepts, no /initialize, no retry; a non-200 fails the bench. Warm-up (on both \
         layouts): NOSLATE_FC_WARM_UP=echo, POST /initialize once the port accepts, then one invoke, then 30 warm \
         ones (one connection each); \"warm-up + event\" adds NOSLATE_FC_WARM_UP_EVENT=warm-up (noslate-fc sends \
         the echo function that event before /initialize answers).\n",
        utc_now(),
        machine(),
        loadavg(),
        loads.join(", ")
    );
    let _ = writeln!(r, "| Milestone (ms after exec, median of {n}) | {} |", Way::ALL.map(|w| w.key()).join(" | "));
    let _ = writeln!(r, "|---|{}", "---:|".repeat(Way::ALL.len()));
    type Get = fn(&Cold) -> f64;
    let rows: [(&str, Get); 11] = [
        ("turf socket", |c| c.turf_sock),
        ("data plane socket", |c| c.dp_sock),
        ("control plane socket", |c| c.cp_sock),
        ("both planes listen", |c| c.dp_sock.max(c.cp_sock)),
        ("gateway port accepts", |c| c.port),
        ("profiles accepted (control plane log)", |c| c.profiles_set),
        ("worker process spawned", |c| c.worker_spawned),
        ("worker ready (control plane log)", |c| c.worker_ready),
        ("POST /initialize answered 200 (warm-up)", |c| c.initialized),
        ("**first 200**", |c| c.first_200),
        ("first invoke after /initialize (its latency, warm-up)", |c| c.first_200 - c.initialized),
    ];
    let med =
        |k: &str, get: Get| median(&all.get(k).map(|v| v.iter().map(get).collect::<Vec<_>>()).unwrap_or_default());
    for (label, get) in rows {
        let cells: Vec<String> = Way::ALL
            .iter()
            .map(|w| {
                let v = med(w.key(), get);
                if v.is_finite() {
                    format!("{v:.1}")
                } else {
                    "–".into()
                }
            })
            .collect();
        let _ = writeln!(r, "| {label} | {} |", cells.join(" | "));
    }
    for way in [Way::FcWarmUp, Way::FcPlainWarmUp, Way::FcWarmUpEvent] {
        let first = med(way.key(), |c| c.first_200 - c.initialized) * 1000.0;
        let warm = med(way.key(), |c| c.warm_p50_us);
        let _ = writeln!(
            r,
            "\n{}: first invoke after /initialize {first:.0} µs against a warm invoke's p50 of {warm:.0} µs \
             ({:.2}×; the goal is ≤ 2×).",
            way.key(),
            first / warm
        );
    }
    let firsts = |k: &str| -> String {
        all.get(k)
            .map(|v| v.iter().map(|c| format!("{:.0}", c.first_200)).collect::<Vec<_>>().join(", "))
            .unwrap_or_default()
    };
    for w in Way::ALL {
        let _ = writeln!(r, "\nEvery run's exec → first 200 (ms), {}: {}.", w.key(), firsts(w.key()));
    }
    let goal = med(Way::Fc.key(), |c| c.first_200);
    let _ = writeln!(r, "\nGoal exec → first 200 ≤ 600 ms (packed, median): {goal:.0} ms.");
    write_out(if quick { "cold-report-quick.md" } else { "cold-report.md" }, &r)?;
    println!("{r}");
    Ok(())
}

// ------------------------------------------------------------ profile

fn strace_table(path: &Path, invokes: u64) -> (String, f64) {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let mut rows = Vec::new();
    let mut total = 0.0;
    for l in text.lines() {
        let f: Vec<&str> = l.split_whitespace().collect();
        // % time, seconds, usecs/call, calls, [errors], syscall
        if f.len() >= 5 && f[0].parse::<f64>().is_ok() {
            let name = f[f.len() - 1];
            let calls: f64 = f[3].parse().unwrap_or(0.0);
            let errors: f64 = if f.len() == 6 { f[4].parse().unwrap_or(0.0) } else { 0.0 };
            if name == "total" {
                total = calls;
                continue;
            }
            rows.push((name.to_string(), calls, errors));
        }
    }
    rows.sort_by(|a, b| b.1.total_cmp(&a.1));
    let mut r = String::from("| syscall | calls | per invoke | errors |\n|---|---:|---:|---:|\n");
    for (name, calls, errors) in &rows {
        let _ = writeln!(r, "| {name} | {calls:.0} | {:.2} | {errors:.0} |", calls / invokes as f64);
    }
    let _ = writeln!(r, "| **total** | {total:.0} | **{:.2}** | |", total / invokes as f64);
    (r, total / invokes as f64)
}

fn load_for(port: u16, conns: usize, secs: f64) -> load::Outcome {
    load::run(&load::Spec {
        addr: loopback(port),
        conns,
        request: Request::invoke(port, &load::pattern(64)),
        warmup: Duration::ZERO,
        duration: Duration::from_secs_f64(secs),
        max_requests: u64::MAX,
        timeout: Duration::from_secs(10),
    })
}

pub fn profile(quick: bool) -> Result<(), String> {
    let secs = if quick { 2.0 } else { 5.0 };
    let started = utc_now();
    let load_start = loadavg();
    build()?;
    let run = RunDir::new("prof")?;
    let planes = Planes::start(&run)?;
    let fc = start(Who::Fc, &run)?;
    let pid = fc.proc.pid();
    let _ = load_for(fc.port, 32, 2.0);
    let mut r = String::new();
    let _ = writeln!(
        r,
        "Run of {started}; {}; load average at the start {load_start}. noslate-fc (pid {pid}, NOSLATE_BIN unset) over \
         the real planes and one echo worker; 64 B echo, {secs} s of closed-loop load per figure.\n",
        machine()
    );
    let _ = writeln!(r, "| connections | invokes/s | perf task-clock / invoke | /proc utime+stime / invoke | context switches / invoke | invokes/s under strace | syscalls / invoke (strace -c -f) |");
    let _ = writeln!(r, "|---:|---:|---:|---:|---:|---:|---:|");
    let mut tables = String::new();
    for conns in [1usize, 32] {
        // perf stat over the load window (software counters: this VM has no PMU).
        let perf_out = run.dir.join(format!("perf-{conns}.csv"));
        let mut perf = Command::new("perf");
        perf.args(["stat", "-x,", "-e", "task-clock,context-switches", "-p", &pid.to_string(), "-o"])
            .arg(&perf_out)
            .args(["--", "sleep", &format!("{secs}")]);
        let c0 = fc.proc.cpu_s();
        let mut child = perf.spawn().map_err(|e| format!("perf: {e}"))?;
        let out = load_for(fc.port, conns, secs);
        let _ = child.wait();
        let c1 = fc.proc.cpu_s();
        let text = std::fs::read_to_string(&perf_out).unwrap_or_default();
        let field = |ev: &str| -> f64 {
            text.lines()
                .find(|l| l.contains(ev))
                .and_then(|l| l.split(',').next())
                .and_then(|v| v.parse().ok())
                .unwrap_or(f64::NAN)
        };
        let n = out.all_ok.max(1) as f64;
        let task_ms = field("task-clock");
        let cs = field("context-switches");
        // strace -c over a second window (it slows every syscall down).
        let st_out = run.dir.join(format!("strace-{conns}.txt"));
        let st = Proc::spawn(
            "strace",
            {
                let mut c = Command::new("strace");
                c.args(["-c", "-f", "-p", &pid.to_string(), "-o"]).arg(&st_out);
                c
            },
            &run.dir.join(format!("strace-{conns}.log")),
            None,
        )?;
        std::thread::sleep(Duration::from_millis(500));
        let sout = load_for(fc.port, conns, secs);
        // SAFETY: kill(2) on our own child's PID.
        unsafe {
            libc::kill(st.pid() as i32, libc::SIGINT);
        }
        let t = Instant::now();
        while std::fs::metadata(&st_out).map(|m| m.len() == 0).unwrap_or(true) && t.elapsed() < Duration::from_secs(10)
        {
            std::thread::sleep(Duration::from_millis(50));
        }
        std::thread::sleep(Duration::from_millis(300));
        drop(st);
        let (table, per) = strace_table(&st_out, sout.all_ok.max(1));
        let _ = writeln!(
            r,
            "| {conns} | {} | {} | {} | {:.2} | {} | {per:.2} |",
            num(out.rps()),
            us(task_ms * 1000.0 / n),
            us((c1 - c0) * 1e6 / n),
            cs / n,
            num(sout.rps()),
        );
        let _ = writeln!(
            tables,
            "\n##### strace -c -f, {conns} connection(s): {} invokes ({} errors) while traced\n\n{table}",
            sout.all_ok, sout.errors
        );
        eprintln!(
            "e2e-profile: {conns} conns: {} ok / {} errors; perf {task_ms} ms; strace {per:.2} syscalls/invoke",
            out.all_ok, out.errors
        );
    }
    r.push_str(&tables);
    drop(fc);
    drop(planes);
    write_out(if quick { "profile-report-quick.md" } else { "profile-report.md" }, &r)?;
    println!("{r}");
    Ok(())
}
