//! Processes the harness starts (killed by PID on drop, and by the kernel if
//! the harness dies: PR_SET_PDEATHSIG), a temporary directory, and readings
//! from /proc.

use std::io::{BufRead, BufReader};
use std::net::{SocketAddr, TcpListener};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

/// A started process; SIGKILL and reap on drop.
pub struct Proc {
    pub name: String,
    child: Child,
    pub log: PathBuf,
}

impl Proc {
    /// Start `cmd` with stdout to /dev/null (or piped when `wait_line` is
    /// given, then wait for that line), stderr to `log`. The child gets
    /// PR_SET_PDEATHSIG(SIGKILL) so it dies with the harness even on SIGKILL.
    pub fn spawn(name: &str, cmd: Command, log: &Path, wait_line: Option<(&str, Duration)>) -> Result<Proc, String> {
        Proc::spawn_with(name, cmd, log, wait_line, true)
    }

    /// `spawn`; with `pdeathsig` false the child is started by posix_spawn
    /// (a `pre_exec` hook forces fork, whose cost grows with the harness's
    /// memory), for timing exec itself. Drop still kills it.
    pub fn spawn_with(
        name: &str,
        mut cmd: Command,
        log: &Path,
        wait_line: Option<(&str, Duration)>,
        pdeathsig: bool,
    ) -> Result<Proc, String> {
        let err = std::fs::File::create(log).map_err(|e| format!("{}: {e}", log.display()))?;
        cmd.stdin(Stdio::null()).stderr(err);
        cmd.stdout(if wait_line.is_some() { Stdio::piped() } else { Stdio::null() });
        if pdeathsig {
            // SAFETY: prctl is async-signal-safe; nothing else runs between fork and exec.
            unsafe {
                cmd.pre_exec(|| {
                    libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
                    Ok(())
                });
            }
        }
        let child = cmd.spawn().map_err(|e| format!("start {name}: {e}"))?;
        let mut proc = Proc { name: name.to_string(), child, log: log.to_path_buf() };
        if let Some((line, limit)) = wait_line {
            let Some(stdout) = proc.child.stdout.take() else { return Err(format!("{name}: no stdout")) };
            let (tx, rx) = mpsc::channel();
            let want = line.to_string();
            std::thread::spawn(move || {
                let mut tx = Some(tx);
                for l in BufReader::new(stdout).lines() {
                    let Ok(l) = l else { break };
                    if l.trim() == want {
                        if let Some(tx) = tx.take() {
                            let _ = tx.send(());
                        }
                    }
                }
            });
            if rx.recv_timeout(limit).is_err() {
                return Err(format!("{name} did not print {line}: {}", proc.log_tail()));
            }
        }
        Ok(proc)
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    pub fn alive(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }

    pub fn log_tail(&self) -> String {
        let text = std::fs::read_to_string(&self.log).unwrap_or_default();
        let start = text.len().saturating_sub(2000);
        let start = (start..=text.len()).find(|i| text.is_char_boundary(*i)).unwrap_or(text.len());
        format!("[{} log]\n{}", self.name, &text[start..])
    }

    pub fn rss_kib(&self) -> u64 {
        status_field(self.pid(), "VmRSS:")
    }

    pub fn hwm_kib(&self) -> u64 {
        status_field(self.pid(), "VmHWM:")
    }

    /// CPU time used so far (user + system, all threads), in seconds.
    pub fn cpu_s(&self) -> f64 {
        cpu_seconds(self.pid())
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub fn status_field(pid: u32, key: &str) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap_or_default()
        .lines()
        .find(|l| l.starts_with(key))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

pub fn cpu_seconds(pid: u32) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    // Fields after the parenthesised command name; utime and stime are the
    // 14th and 15th fields of the line.
    let Some(rest) = stat.rfind(')').map(|i| &stat[i + 2..]) else { return 0.0 };
    let f: Vec<&str> = rest.split_whitespace().collect();
    let ticks: u64 = f.get(11).and_then(|v| v.parse::<u64>().ok()).unwrap_or(0)
        + f.get(12).and_then(|v| v.parse::<u64>().ok()).unwrap_or(0);
    // SAFETY: sysconf has no preconditions.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) }.max(1) as f64;
    ticks as f64 / hz
}

pub fn self_cpu_s() -> f64 {
    cpu_seconds(std::process::id())
}

/// A loopback port that was free a moment ago.
pub fn free_port() -> Result<u16, String> {
    let l = TcpListener::bind("127.0.0.1:0").map_err(|e| e.to_string())?;
    l.local_addr().map(|a| a.port()).map_err(|e| e.to_string())
}

pub fn loopback(port: u16) -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], port))
}

/// A directory under /tmp (short: unix socket paths are limited to 107
/// bytes), removed on drop.
pub struct TempDir(pub PathBuf);

impl TempDir {
    pub fn new(tag: &str) -> Result<TempDir, String> {
        let dir = PathBuf::from(format!("/tmp/nfc-e2e-{}-{tag}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).map_err(|e| format!("{}: {e}", dir.display()))?;
        Ok(TempDir(dir))
    }

    pub fn sub(&self, name: &str) -> Result<PathBuf, String> {
        let d = self.0.join(name);
        std::fs::create_dir_all(&d).map_err(|e| format!("{}: {e}", d.display()))?;
        Ok(d)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

#[path = "../../tests/support/proc_tree.rs"]
mod proc_tree;
pub use proc_tree::descendants;

/// SIGKILL every process below `pid`, deepest first, by PID (not `pid`
/// itself: its `Proc` does that and reaps it).
pub fn kill_descendants(pid: u32) {
    let mut all = descendants(pid);
    all.reverse();
    for p in all {
        // SAFETY: kill(2) on a PID read from /proc; no memory is involved.
        unsafe {
            libc::kill(p as i32, libc::SIGKILL);
        }
    }
}

/// The process's command name (/proc/<pid>/comm).
pub fn comm(pid: u32) -> String {
    std::fs::read_to_string(format!("/proc/{pid}/comm")).unwrap_or_default().trim().to_string()
}
