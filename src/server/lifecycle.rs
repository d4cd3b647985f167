//! The ENTRYPOINT's duties: start and supervise turfd and the planes, load and
//! push function profiles and platform environment variables, answer
//! `/initialize` once the stack is ready, and shut everything down in order.
//!
//! Shutdown (`/pre-stop`, SIGTERM, SIGINT): stop taking invokes (503), let
//! in-flight ones finish up to the drain period, answer `/pre-stop`, SIGTERM
//! the planes, SIGKILL whatever is left after their grace period, exit 0 once
//! every child is reaped. turfd ignores SIGTERM, so it gets no grace: it is
//! SIGKILLed as soon as the planes are gone (they may still stop workers
//! through it while closing), and its workers die with it (PDEATHSIG). A second signal exits at once. A child that dies on
//! its own stops everything with exit code 1, as the seed's start.sh intends.

use std::collections::HashSet;
use std::fs::OpenOptions;
use std::process::{Command, Stdio};

use super::plane::{Gap, PlaneKind, Wants};
use super::{Server, Timer};
use crate::answers::{Answer, Readiness};
use crate::config::{ChildSpec, Config};
use crate::fc::InvokeError;
use crate::logsafe::Escaped;
use crate::sys::{self, ExitStatus};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Stage {
    Running,
    /// No new invokes; waiting for in-flight ones (until the drain timer).
    Draining,
    /// Children were sent SIGTERM; waiting for them to exit.
    Stopping,
}

pub struct Child {
    pub spec: ChildSpec,
    pub pid: i32,
    pub exited: Option<ExitStatus>,
}

pub struct Lifecycle {
    stage: Stage,
    pub default_function: Option<String>,
    pub profiles_message: Option<Vec<u8>>,
    pub env_message: Option<Vec<u8>>,
    pub profile_count: usize,
    /// The names in NOSLATE_FUNCTION_PROFILES: invokes of these wait for the
    /// profiles to be in force (`Server::profiles_in_force`).
    profile_names: HashSet<Box<str>>,
    pub env_count: usize,
    pub config_error: Option<String>,
    pub children: Vec<Child>,
    /// Why we are stopping, and with which exit code.
    exit_code: i32,
    signals_seen: u32,
}

impl Lifecycle {
    pub fn new(cfg: &Config) -> Lifecycle {
        Lifecycle {
            stage: Stage::Running,
            default_function: cfg.function.clone(),
            profiles_message: None,
            env_message: None,
            profile_count: 0,
            profile_names: HashSet::new(),
            env_count: 0,
            config_error: None,
            children: Vec::new(),
            exit_code: 0,
            signals_seen: 0,
        }
    }

    pub fn draining(&self) -> bool {
        self.stage != Stage::Running
    }

    pub fn stopping(&self) -> bool {
        self.stage == Stage::Stopping
    }

    /// Whether `name` is a function of NOSLATE_FUNCTION_PROFILES.
    pub fn in_profiles(&self, name: &str) -> bool {
        !self.profile_names.is_empty() && self.profile_names.contains(name)
    }
}

impl Server {
    /// Everything that happens once at start: files, children, planes.
    pub(super) fn start(&mut self) -> std::io::Result<()> {
        self.load_profile_files();
        let specs = self.cfg.children.clone();
        let pool = memory_pool(&specs);
        for spec in specs {
            match spawn(&spec, &self.cfg, pool.as_deref()) {
                Ok(pid) => {
                    eprintln!("noslate-fc: started {} (pid {pid}): {}", spec.name, spec.argv.join(" "));
                    self.life.children.push(Child { spec, pid, exited: None });
                }
                Err(e) => {
                    eprintln!("noslate-fc: cannot start {}: {}", spec.name, Escaped(&e));
                    self.kill_children(libc::SIGKILL);
                    return Err(e);
                }
            }
        }
        self.connect_all_planes();
        Ok(())
    }

    /// Read and validate NOSLATE_FUNCTION_PROFILES and NOSLATE_PLATFORM_ENV.
    /// A bad file does not stop the process (FC would only see a crash loop):
    /// `/initialize` reports it with 404 and the reason.
    fn load_profile_files(&mut self) {
        if let Some(path) = self.cfg.profiles_file.clone() {
            let parsed = std::fs::read(&path)
                .map_err(|e| format!("NOSLATE_FUNCTION_PROFILES: cannot read {}: {e}", path.display()))
                .and_then(|json| {
                    crate::profile::parse_profiles(&json).map_err(|e| format!("NOSLATE_FUNCTION_PROFILES: {e}"))
                });
            let parsed = parsed.and_then(|mut profiles| {
                warm_up_profiles(&mut profiles, &self.cfg.warm_up)?;
                Ok(profiles)
            });
            match parsed {
                Ok(profiles) => {
                    if self.life.default_function.is_none() && profiles.len() == 1 {
                        self.life.default_function = profiles[0].name.clone();
                    }
                    let mut msg = Vec::new();
                    crate::profile::encode_set_function_profile(&profiles, &mut msg);
                    self.life.profile_count = profiles.len();
                    self.life.profile_names =
                        profiles.iter().filter_map(|p| p.name.as_deref()).map(Into::into).collect();
                    self.life.profiles_message = Some(msg);
                }
                Err(e) => {
                    eprintln!("noslate-fc: {}", Escaped(&e));
                    self.life.config_error = Some(e);
                }
            }
        }
        if let Some(path) = self.cfg.platform_env_file.clone() {
            let parsed = std::fs::read(&path)
                .map_err(|e| format!("NOSLATE_PLATFORM_ENV: cannot read {}: {e}", path.display()))
                .and_then(|json| {
                    crate::profile::parse_platform_env(&json).map_err(|e| format!("NOSLATE_PLATFORM_ENV: {e}"))
                });
            match parsed {
                Ok(envs) => {
                    let mut msg = Vec::new();
                    crate::proto::SetPlatformEnvironmentVariablesRequest::encode_pairs(&envs, &mut msg);
                    self.life.env_count = envs.len();
                    self.life.env_message = Some(msg);
                }
                Err(e) => {
                    eprintln!("noslate-fc: {}", Escaped(&e));
                    self.life.config_error.get_or_insert(e);
                }
            }
        }
    }

    /// Whether the functions of NOSLATE_FUNCTION_PROFILES can be served: every
    /// control plane accepted the profile and environment pushes on its
    /// current connection. That `set: true` is a data plane's too: the
    /// control plane listens only once its first data-plane client is ready,
    /// and answers `setFunctionProfile` after pushing the profiles to every
    /// data plane it is connected to (LIFECYCLE.md, "Function readiness").
    pub(super) fn profiles_in_force(&self) -> bool {
        let wants = Wants { warm_up: false, ..self.readiness_wants() };
        self.planes.iter().filter(|p| p.kind == PlaneKind::Control).all(|p| p.gap(wants).is_none())
    }

    /// What readiness asks of the control planes (`Plane::gap`).
    fn readiness_wants(&self) -> Wants {
        Wants {
            profiles: self.life.profiles_message.is_some(),
            env: self.life.env_message.is_some(),
            warm_up: !self.cfg.warm_up.is_empty(),
        }
    }

    /// What still stands between us and readiness (None = ready).
    pub(super) fn readiness_gap(&self) -> Option<String> {
        self.planes_gap().or_else(|| self.warm_up.gap(self.cfg.warm_up_event.is_some()))
    }

    /// What the configuration and the planes still lack for readiness.
    fn planes_gap(&self) -> Option<String> {
        if let Some(e) = &self.life.config_error {
            return Some(e.clone());
        }
        let wants = self.readiness_wants();
        let (p, gap) = self.planes.iter().find_map(|p| p.gap(wants).map(|gap| (p, gap)))?;
        let name = p.path.display();
        let why = p.last_error.as_deref().unwrap_or("not connected yet");
        Some(match gap {
            Gap::NotReady => format!("{name} not ready: {why}"),
            Gap::Profiles => format!("{name}: function profiles not accepted yet ({why})"),
            Gap::Env => format!("{name}: platform environment not accepted yet ({why})"),
            Gap::Workers => {
                let names = self.cfg.warm_up.join(", ");
                format!("{name}: waiting for the workers of {names} to be ready ({why})")
            }
        })
    }

    pub(super) fn readiness_problem(&self) -> String {
        self.readiness_gap().unwrap_or_else(|| "ready".into())
    }

    /// Answer every `/initialize` that waits, if we are ready (or cannot be).
    pub(super) fn check_initialize(&mut self) {
        if self.planes_gap().is_none() {
            // The warm-up workers are ready: their first requests are the
            // warm-up events, if configured (sent once).
            self.send_warm_up();
        }
        let gap = self.readiness_gap();
        // A configuration error will not heal by waiting.
        let decided = gap.is_none() || self.life.config_error.is_some();
        if !decided {
            return;
        }
        let answer = match &gap {
            None => Answer::initialized(&Readiness {
                data_planes: self.cfg.data_planes,
                control_planes: self.cfg.control_planes,
                profiles: self.life.profile_count,
                platform_env: self.life.env_count,
            }),
            Some(why) => Answer::not_initialized(why),
        };
        self.answer_initialize(&answer);
    }

    pub(super) fn on_signals(&mut self) {
        loop {
            match self.signals.read() {
                Ok(Some(libc::SIGCHLD)) => self.reap(),
                Ok(Some(sig)) => {
                    self.life.signals_seen += 1;
                    if self.life.signals_seen > 1 {
                        eprintln!("noslate-fc: second signal {sig}: exiting now");
                        self.kill_children(libc::SIGKILL);
                        self.exit_code = Some(self.life.exit_code);
                        return;
                    }
                    let name = match sig {
                        libc::SIGINT => "SIGINT",
                        libc::SIGHUP => "SIGHUP",
                        _ => "SIGTERM",
                    };
                    self.begin_shutdown(name);
                }
                Ok(None) => return,
                Err(e) => {
                    eprintln!("noslate-fc: signalfd: {e}");
                    return;
                }
            }
        }
    }

    /// Reap every exited process: our children and, as PID 1, orphans.
    fn reap(&mut self) {
        while let Some((pid, status)) = sys::reap_any() {
            let Some(child) = self.life.children.iter_mut().find(|c| c.pid == pid) else { continue };
            child.exited = Some(status);
            let name = child.spec.name;
            if self.life.stage == Stage::Stopping {
                eprintln!("noslate-fc: {name} (pid {pid}) stopped: {status}");
            } else {
                eprintln!("noslate-fc: {name} (pid {pid}) exited unexpectedly: {status}; stopping");
                self.life.exit_code = 1;
                self.stop_children();
            }
        }
        self.kill_the_deaf();
        self.maybe_exit();
    }

    /// `/pre-stop` or a signal: drain, then stop.
    pub(super) fn begin_shutdown(&mut self, why: &str) {
        if self.life.stage == Stage::Running {
            eprintln!("noslate-fc: {why}: draining in-flight invokes (up to {:?})", self.cfg.drain);
            self.life.stage = Stage::Draining;
            // Refuse invokes that were waiting for a data plane.
            for (key, gen) in self.planes.take_parked() {
                if self.clients.is_current(key, gen) {
                    self.fail_invoke(key, InvokeError::Draining);
                }
            }
            self.timers.add(self.now + self.cfg.drain, Timer::Drain);
        }
        self.after_client_closed();
    }

    /// Called whenever an exchange ends: the drain may be complete.
    pub(super) fn after_client_closed(&mut self) {
        if self.life.stage == Stage::Draining && self.invokes_in_flight() == 0 {
            self.drain_done();
        }
    }

    pub(super) fn drain_deadline(&mut self) {
        if self.life.stage == Stage::Draining {
            eprintln!("noslate-fc: drain period over with {} invokes in flight", self.invokes_in_flight());
            self.drain_done();
        }
    }

    fn drain_done(&mut self) {
        self.stop_children();
    }

    /// SIGTERM every child that stops on it, SIGKILL after the grace period;
    /// the others are SIGKILLed once those have exited.
    fn stop_children(&mut self) {
        if self.life.stage == Stage::Stopping {
            return;
        }
        self.life.stage = Stage::Stopping;
        self.answer_pre_stops();
        self.close_planes();
        for child in self.life.children.iter().filter(|c| c.exited.is_none() && c.spec.stops_on_sigterm) {
            sys::kill_group(child.pid, libc::SIGTERM);
        }
        self.timers.add(self.now + self.cfg.kill_grace, Timer::KillChildren);
        self.kill_the_deaf();
        self.maybe_exit();
    }

    /// Stopping, and every child that stops on SIGTERM has: SIGKILL the rest
    /// (turfd), which would only wait out the grace period.
    fn kill_the_deaf(&mut self) {
        let live = || self.life.children.iter().filter(|c| c.exited.is_none());
        if self.life.stage != Stage::Stopping || live().any(|c| c.spec.stops_on_sigterm) {
            return;
        }
        for child in live() {
            sys::kill_group(child.pid, libc::SIGKILL);
        }
    }

    /// The grace period is over: SIGKILL cannot be ignored, and the SIGCHLD
    /// that follows reaps the children and lets us exit.
    pub(super) fn kill_children_now(&mut self) {
        self.kill_children(libc::SIGKILL);
        self.maybe_exit();
    }

    fn kill_children(&mut self, sig: i32) {
        for child in self.life.children.iter().filter(|c| c.exited.is_none()) {
            sys::kill_group(child.pid, sig);
        }
    }

    /// Exit once stopping and every child has been reaped, after the last
    /// answers (the `/pre-stop` reply) are flushed.
    fn maybe_exit(&mut self) {
        if self.life.stage != Stage::Stopping || self.life.children.iter().any(|c| c.exited.is_none()) {
            return;
        }
        for key in self.clients.keys() {
            self.flush_client(key);
        }
        self.log.flush();
        self.exit_code = Some(self.life.exit_code);
    }
}

/// Noslated's worker pool sized to the instance (src/instance.rs), for the
/// planes we start, unless the user set NOSLATED_VIRTUAL_MEMORY_POOL_SIZE.
fn memory_pool(specs: &[ChildSpec]) -> Option<String> {
    if std::env::var_os(POOL_VAR).is_some() || !specs.iter().any(|s| s.plane_id.is_some()) {
        return None;
    }
    let (bytes, source) = crate::instance::memory_limit()?;
    eprintln!("noslate-fc: {POOL_VAR}={bytes} ({} MiB: the memory limit in {source})", bytes >> 20);
    Some(bytes.to_string())
}

const POOL_VAR: &str = "NOSLATED_VIRTUAL_MEMORY_POOL_SIZE";

/// Start one child: own process group, dies with us, output to its log file
/// (or our stderr when no log directory is configured).
fn spawn(spec: &ChildSpec, cfg: &Config, pool: Option<&str>) -> std::io::Result<i32> {
    let mut cmd = Command::new(&spec.argv[0]);
    cmd.args(&spec.argv[1..]).stdin(Stdio::null());
    if let Some(file) = &spec.log_file {
        // start.sh's `mkdir -p $NOSLATE_LOGDIR`; name the file on failure, or
        // ENOENT reads as "the command does not exist".
        let named = |e: std::io::Error| std::io::Error::new(e.kind(), format!("log file {}: {e}", file.display()));
        if let Some(dir) = file.parent() {
            std::fs::create_dir_all(dir).map_err(named)?;
        }
        let log = OpenOptions::new().create(true).append(true).open(file).map_err(named)?;
        cmd.stdout(log.try_clone()?).stderr(log);
    }
    if let Some(id) = spec.plane_id {
        cmd.env("NOSLATED_PLANE_ID", id.to_string());
    }
    if let Some(bytes) = pool {
        cmd.env(POOL_VAR, bytes);
    }
    // The planes must bind the sockets we connect to (docs/noslated-protocol.md §2.2).
    if std::env::var_os("NOSLATED_WORKDIR").is_none() && cfg.sock_dir.ends_with("socks") {
        if let Some(work) = cfg.sock_dir.parent() {
            cmd.env("NOSLATED_WORKDIR", work);
        }
    }
    sys::set_pre_exec(&mut cmd);
    Ok(cmd.spawn()?.id() as i32)
}

/// Warm-up (`NOSLATE_FC_WARM_UP`): each named function must have a profile,
/// and gets `worker.reservationCount` ≥ 1 so the control plane starts its
/// worker at once and keeps it (`/initialize` then waits for it).
fn warm_up_profiles(profiles: &mut [crate::proto::FunctionProfile], names: &[String]) -> Result<(), String> {
    for name in names {
        let Some(p) = profiles.iter_mut().rev().find(|p| p.name.as_deref() == Some(name.as_str())) else {
            return Err(format!("NOSLATE_FC_WARM_UP: no profile named {name:?} in NOSLATE_FUNCTION_PROFILES"));
        };
        let worker = p.worker.get_or_insert_with(Default::default);
        worker.reservation_count = Some(worker.reservation_count.unwrap_or(0).max(1));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::warm_up_profiles;
    use crate::proto::{FunctionProfile, FunctionProfileWorker};

    fn profile(name: &str, reservation: Option<i32>) -> FunctionProfile {
        FunctionProfile {
            name: Some(name.into()),
            worker: reservation.map(|n| FunctionProfileWorker { reservation_count: Some(n), ..Default::default() }),
            ..Default::default()
        }
    }

    #[test]
    fn warm_up_keeps_one_worker_of_each_named_function() {
        let mut profiles = vec![profile("a", None), profile("b", Some(0)), profile("c", Some(3)), profile("d", None)];
        warm_up_profiles(&mut profiles, &["a".into(), "b".into(), "c".into()]).unwrap();
        let counts: Vec<Option<i32>> =
            profiles.iter().map(|p| p.worker.as_ref().and_then(|w| w.reservation_count)).collect();
        assert_eq!(counts, [Some(1), Some(1), Some(3), None]);
    }

    #[test]
    fn warm_up_of_a_function_without_profile_is_a_configuration_error() {
        let mut profiles = vec![profile("a", None)];
        let err = warm_up_profiles(&mut profiles, &["nope".into()]).unwrap_err();
        assert_eq!(err, "NOSLATE_FC_WARM_UP: no profile named \"nope\" in NOSLATE_FUNCTION_PROFILES");
    }
}
