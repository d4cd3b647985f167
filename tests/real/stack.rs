//! The real Noslate stack for tests: turfd, the Noslated data and control
//! planes and a Node.js worker per function, built from source by
//! `scripts/real-noslate.sh` (into a cache outside the clone) and run either
//! under noslate-fc as the ENTRYPOINT (`NOSLATE_BIN` set) or started on their
//! own (`NOSLATE_BIN` unset). Every process is killed by PID on drop, the
//! stack's whole process tree included (turf ignores SIGTERM; workers are its
//! children).
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::{Mutex, MutexGuard, OnceLock};
use std::time::{Duration, Instant};

use crate::support::{Fc, Proc};

/// The functions under tests/real/functions, one folder each.
pub const FUNCTIONS: &[&str] = &["echo", "inspect", "stream", "wait", "status", "throw", "crash", "drip", "seen"];

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// Build the stack once per test binary; a build failure fails the test.
pub fn noslate_bin() -> &'static Path {
    static BIN: OnceLock<PathBuf> = OnceLock::new();
    BIN.get_or_init(|| {
        let out = Command::new("bash")
            .arg(root().join("scripts/real-noslate.sh"))
            .arg("build")
            .stderr(Stdio::inherit())
            .output()
            .expect("run scripts/real-noslate.sh");
        assert!(out.status.success(), "the real Noslate stack could not be built (scripts/real-noslate.sh build)");
        PathBuf::from(String::from_utf8(out.stdout).unwrap().trim())
    })
}

/// Real-stack tests run one at a time: each stack is two Node planes plus
/// workers, and these machines have two cores.
pub fn serial() -> MutexGuard<'static, ()> {
    static LOCK: Mutex<()> = Mutex::new(());
    LOCK.lock().unwrap_or_else(|e| e.into_inner())
}

/// A run directory with the stack's environment (from `real-noslate.sh env`).
pub struct Run {
    pub dir: PathBuf,
    pub env: Vec<(String, String)>,
}

impl Run {
    pub fn new(tag: &str) -> Run {
        noslate_bin();
        use std::sync::atomic::{AtomicU32, Ordering};
        static N: AtomicU32 = AtomicU32::new(0);
        let n = N.fetch_add(1, Ordering::Relaxed);
        // Short: unix socket paths are limited to 107 bytes.
        let dir = PathBuf::from(format!("/tmp/nfr-{}-{tag}-{n}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let out = Command::new("bash")
            .arg(root().join("scripts/real-noslate.sh"))
            .arg("env")
            .arg(&dir)
            .output()
            .expect("real-noslate.sh env");
        assert!(out.status.success(), "real-noslate.sh env: {}", String::from_utf8_lossy(&out.stderr));
        let env = crate::support::real_env::exports(&String::from_utf8(out.stdout).unwrap());
        let run = Run { dir, env };
        run.write_profiles(&[]);
        run
    }

    pub fn var(&self, name: &str) -> &str {
        self.env.iter().find(|(k, _)| k == name).map(|(_, v)| v.as_str()).unwrap()
    }

    pub fn profiles_path(&self) -> PathBuf {
        self.dir.join("profiles.json")
    }

    /// Every function of tests/real/functions, plus `extra` profile fields
    /// (e.g. `("echo", r#""worker":{"reservationCount":1}"#)`).
    pub fn write_profiles(&self, extra: &[(&str, &str)]) {
        let functions = root().join("tests/real/functions");
        let profiles: Vec<String> = FUNCTIONS
            .iter()
            .map(|name| {
                let more = extra.iter().find(|(n, _)| n == name).map(|(_, e)| format!(",{e}")).unwrap_or_default();
                format!(
                    r#"{{"name":"{name}","runtime":"nodejs","url":"file://{}","signature":"md5:1","handler":"index.handler"{more}}}"#,
                    functions.join(name).display()
                )
            })
            .collect();
        std::fs::write(self.profiles_path(), format!("[{}]", profiles.join(","))).unwrap();
    }

    /// Plane and worker logs, for a failure message.
    pub fn logs(&self) -> String {
        let mut out = String::new();
        for name in ["data_plane_out.log", "control_plane_out.log", "turf.log", "data_plane.log"] {
            if let Ok(text) = std::fs::read_to_string(self.dir.join("logs").join(name)) {
                let tail: Vec<&str> = text.lines().rev().take(15).collect();
                out.push_str(&format!("--- {name}\n"));
                for l in tail.into_iter().rev() {
                    out.push_str(l);
                    out.push('\n');
                }
            }
        }
        out
    }

    /// noslate-fc as the ENTRYPOINT over this run's stack (`NOSLATE_BIN`
    /// set), or over planes started apart (`supervise = false`).
    pub fn command(&self, supervise: bool, env: &[(&str, &str)]) -> Command {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_noslate-fc"));
        cmd.env_clear()
            .env("PATH", std::env::var("PATH").unwrap_or_default())
            .env("HOME", std::env::var("HOME").unwrap_or_default())
            .env("SERVER_PORT", "0")
            .env("NOSLATE_FC_LISTEN", "127.0.0.1")
            .env("NOSLATE_FC_TRUSTED_PEERS", "any")
            .env("NOSLATE_FUNCTION_PROFILES", self.profiles_path());
        for (k, v) in &self.env {
            if supervise || k != "NOSLATE_BIN" {
                cmd.env(k, v);
            }
        }
        for (k, v) in env {
            cmd.env(k, v);
        }
        cmd.stdout(Stdio::piped()).stderr(Stdio::piped()).stdin(Stdio::null());
        cmd
    }
}

impl Drop for Run {
    fn drop(&mut self) {
        if !std::thread::panicking() {
            let _ = std::fs::remove_dir_all(&self.dir);
        }
    }
}

/// noslate-fc supervising the real stack. Drop kills the whole tree by PID.
pub struct RealFc {
    pub fc: Fc,
    pub run: Run,
}

impl RealFc {
    pub fn start(tag: &str, env: &[(&str, &str)]) -> RealFc {
        let run = Run::new(tag);
        RealFc::start_in(run, env)
    }

    pub fn start_in(run: Run, env: &[(&str, &str)]) -> RealFc {
        let fc = Fc::spawn(run.command(true, env));
        RealFc { fc, run }
    }

    /// /initialize answers 200: planes up, profiles accepted.
    pub fn wait_initialized(&self) {
        let r = self.fc.request(
            b"POST /initialize HTTP/1.1\r\nhost: x\r\nx-fc-initialization-timeout: 60\r\ncontent-length: 0\r\n\r\n",
        );
        assert_eq!(r.status, 200, "/initialize: {}\n{}", r.text(), self.run.logs());
    }

    pub fn pids(&self) -> Vec<u32> {
        let mut all = vec![self.fc.proc.pid()];
        all.extend(descendants(self.fc.proc.pid()));
        all
    }
}

impl Drop for RealFc {
    fn drop(&mut self) {
        kill_tree(self.fc.proc.pid());
    }
}

/// Turf, the planes and their workers started apart from noslate-fc
/// (`real-noslate.sh start`), for runs with `NOSLATE_BIN` unset.
pub struct Planes {
    pub turf: Proc,
    pub dp: Proc,
    pub cp: Proc,
}

fn spawn_logged(run: &Run, argv: &[&str], log: &str) -> Proc {
    let file = std::fs::OpenOptions::new().create(true).append(true).open(run.dir.join("logs").join(log)).unwrap();
    let mut cmd = Command::new(argv[0]);
    cmd.args(&argv[1..]).env_clear().env("PATH", std::env::var("PATH").unwrap_or_default());
    for (k, v) in &run.env {
        cmd.env(k, v);
    }
    cmd.stdout(file.try_clone().unwrap()).stderr(file).stdin(Stdio::null());
    let child = cmd.spawn().expect(argv[0]);
    Proc { child, stderr: Default::default() }
}

fn wait_socket(path: &Path, limit: Duration, run: &Run) {
    let start = Instant::now();
    while !path.exists() {
        assert!(start.elapsed() < limit, "{} did not appear\n{}", path.display(), run.logs());
        // Short: a test may time its next step from the socket's appearance.
        std::thread::sleep(Duration::from_millis(2));
    }
}

impl Planes {
    pub fn start(run: &Run) -> Planes {
        let bin = run.var("NOSLATE_BIN").to_string();
        let turf_sock = Path::new(run.var("TURF_WORKDIR")).join("turf.sock");
        let _ = std::fs::remove_file(&turf_sock);
        let turf = spawn_logged(run, &[&format!("{bin}/turf"), "-D", "-f"], "turf.log");
        wait_socket(&turf_sock, Duration::from_secs(10), run);
        let dp = Planes::start_data_plane(run);
        let cp = Planes::start_control_plane(run);
        Planes { turf, dp, cp }
    }

    pub fn start_control_plane(run: &Run) -> Proc {
        let bin = run.var("NOSLATE_BIN");
        let sock = Path::new(run.var("NOSLATED_WORKDIR")).join("socks/cp-0.sock");
        let _ = std::fs::remove_file(&sock);
        let cp = spawn_logged(run, &[&format!("{bin}/node"), &format!("{bin}/control_plane")], "control_plane_out.log");
        wait_socket(&sock, Duration::from_secs(30), run);
        cp
    }

    pub fn start_data_plane(run: &Run) -> Proc {
        let bin = run.var("NOSLATE_BIN");
        let sock = Path::new(run.var("NOSLATED_WORKDIR")).join("socks/dp-0.sock");
        let _ = std::fs::remove_file(&sock);
        let dp = spawn_logged(run, &[&format!("{bin}/node"), &format!("{bin}/data_plane")], "data_plane_out.log");
        wait_socket(&sock, Duration::from_secs(30), run);
        dp
    }
}

impl Drop for Planes {
    fn drop(&mut self) {
        for p in [&self.cp, &self.dp, &self.turf] {
            kill_tree(p.pid());
        }
    }
}

pub use crate::support::proc_tree::descendants;

pub fn alive(pid: u32) -> bool {
    // A zombie is dead for our purposes: it holds nothing but its exit code.
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(stat) => !stat.rsplit(')').next().unwrap_or("").trim_start().starts_with('Z'),
        Err(_) => false,
    }
}

/// SIGKILL `pid` and everything below it, deepest first, by PID.
pub fn kill_tree(pid: u32) {
    let mut all = descendants(pid);
    all.reverse();
    all.push(pid);
    for p in all {
        let _ = Command::new("kill").arg("-KILL").arg(p.to_string()).stderr(Stdio::null()).status();
    }
}
