//! Configuration: environment variables with command-line overrides.
//!
//! One table (`OPTIONS`) names every setting once: its variable, its flag,
//! its default and its help text; `--help` and the README table come from it.
//! A bad value is a one-line error naming the variable (exit code 2).

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use crate::fc::dispatch::TrustedPeers;
use crate::route::{function_name, FunctionHeader, Policy, Routes, MAX_FUNCTION_NAME};

/// Longest time any `*_MS` setting may give (a day, FC's longest function
/// timeout): `Instant::now() + Duration` cannot overflow below it, and no
/// plausible deployment waits longer.
pub const MAX_SETTING_MS: u64 = 86_400_000;
/// Largest `NOSLATE_FC_MAX_HEAD` (FC itself refuses heads over 8 KB).
pub const MAX_HEAD_LIMIT: usize = 1 << 20;
/// Largest `NOSLATE_FC_MAX_BODY` (FC refuses bodies over 32 MB).
pub const MAX_BODY_LIMIT: u64 = 1 << 30;
/// Largest `NOSLATE_FC_MAX_CONNECTIONS` (FC sends at most 200 at once).
pub const MAX_CONNECTIONS_LIMIT: usize = 1 << 20;

/// One configurable setting.
pub struct Opt {
    pub env: &'static str,
    pub flag: &'static str,
    pub default: &'static str,
    pub help: &'static str,
}

macro_rules! opts {
    ($($env:literal, $flag:literal, $default:literal, $help:literal;)*) => {
        pub const OPTIONS: &[Opt] = &[$(Opt { env: $env, flag: $flag, default: $default, help: $help }),*];
    };
}

opts! {
    "SERVER_PORT", "--port", "9000", "HTTP port FC sends requests to (the function's CAPort)";
    "NOSLATE_FC_LISTEN", "--listen", "0.0.0.0", "address to listen on";
    "NOSLATE_FC_TRUSTED_PEERS", "--trusted-peers", "remote", "who may speak for FC (run /initialize, /pre-freeze, /pre-stop, send events, choose the function or deadline by header): remote (every peer that is not an address of this container: FC's gateway), not-loopback (every peer but loopback: for a gateway inside the container's network namespace), any (processes in the container too: development and tests only). Requests from peers not trusted are HTTP invocations of an end user";
    "NOSLATED_WORKDIR", "--workdir", "", "Noslated work directory; sockets are $NOSLATED_WORKDIR/socks/dp-<i>.sock and cp-<i>.sock";
    "NOSLATE_FC_SOCK_DIR", "--sock-dir", "", "explicit Noslated socket directory (overrides NOSLATED_WORKDIR/socks)";
    "NOSLATE_FC_DATA_PLANES", "--data-planes", "1", "number of data planes (dp-0 … dp-N-1); above 1, Noslated's config file must set plane.dataPlaneCount to the same N, or its control plane feeds only dp-0";
    "NOSLATE_FC_CONTROL_PLANES", "--control-planes", "1", "number of control planes (0 = none)";
    "NOSLATE_FUNCTION", "--function", "", "default Noslate function for invokes (else the only profile in NOSLATE_FUNCTION_PROFILES)";
    "NOSLATE_FC_FUNCTION_HEADER", "--function-header", "event", "whose x-noslate-function / x-noslate-service chooses the function: event (event invocations and local requests; ignored on HTTP invocations), all (end users too: unsafe on a public trigger), off. Legacy true = event with a warning, false = off";
    "NOSLATE_FC_FUNCTIONS", "--functions", "", "comma-separated names that may be invoked at all (any other: 404); NOSLATE_FUNCTION and route targets must be among them";
    "NOSLATE_FC_ROUTES", "--routes", "", "HTTP invocation routes by path, e.g. /api/users=users,/=web: longest prefix wins, on path-segment boundaries, after the x-fc-base-path rewrite";
    "NOSLATE_FC_ROUTES_STRIP", "--routes-strip", "false", "the function sees its path without the matched route prefix (/api/users/1 -> /1)";
    "NOSLATE_FC_BASE_PATH", "--base-path", "", "an x-fc-base-path value to believe besides FC's own default-domain form /2016-08-15/proxy/<service>/<function>/ (any other is ignored: with a custom domain FC sends none, so it is an end user's)";
    "NOSLATE_FC_TIMEOUT_MS", "--timeout-ms", "10000", "function timeout: invoke deadline = now + this (x-fc-function-timeout overrides it, except on HTTP invocations)";
    "NOSLATE_FC_FORWARD_CREDENTIALS", "--forward-credentials", "false", "forward FC's x-fc-access-key-* / x-fc-security-token headers to the function";
    "NOSLATE_FC_EXPOSE_STACK", "--expose-stack", "false", "include Noslated error stacks in error bodies";
    "NOSLATE_FC_MAX_HEAD", "--max-head", "32768", "largest request head in bytes (431 above)";
    "NOSLATE_FC_MAX_BODY", "--max-body", "33554432", "largest request body in bytes (413 above)";
    "NOSLATE_FC_HEADER_TIMEOUT_MS", "--header-timeout-ms", "10000", "time allowed to send a request head (408 after)";
    "NOSLATE_FC_IDLE_TIMEOUT_MS", "--idle-timeout-ms", "600000", "idle keep-alive connections are closed after this";
    "NOSLATE_FC_MAX_CONNECTIONS", "--max-connections", "4096", "client connections held at once (503 and close beyond)";
    "NOSLATE_FC_LINGER_MS", "--linger-ms", "30000", "lingering close (nginx's lingering_time): after an answer sent before the request was read, keep reading and dropping input this long at most, however many bytes come (0 = close at once)";
    "NOSLATE_FC_LINGER_TIMEOUT_MS", "--linger-timeout-ms", "5000", "lingering close (nginx's lingering_timeout): stop when no input arrives for this long";
    "NOSLATE_FC_READY_WAIT_MS", "--ready-wait-ms", "10000", "how long an invoke waits for a data plane (and, for a profile's function, the profiles in force) before 503";
    "NOSLATE_FC_INIT_TIMEOUT_MS", "--init-timeout-ms", "60000", "/initialize readiness wait unless x-fc-initialization-timeout is given";
    "NOSLATE_FC_DRAIN_MS", "--drain-ms", "10000", "on /pre-stop or SIGTERM, how long in-flight invokes may finish";
    "NOSLATE_FC_KILL_GRACE_MS", "--kill-grace-ms", "3000", "after SIGTERM to the planes, wait this long before SIGKILL (turfd ignores SIGTERM: it is SIGKILLed once they are gone)";
    "NOSLATE_BIN", "--noslate-bin", "", "Noslate binaries; when set, noslate-fc starts turfd and the planes itself";
    "NOSLATE_LOGDIR", "--log-dir", "", "children's log files (turf.log, data_plane_out.log, control_plane_out.log)";
    "NOSLATE_FC_TURF_CMD", "--turf-cmd", "", "turfd command line (default \"$NOSLATE_BIN/turf -D -f\"; \"off\" disables)";
    "NOSLATE_FC_DATA_PLANE_CMD", "--data-plane-cmd", "", "data plane command (default \"$NOSLATE_BIN/node $NOSLATE_BIN/data_plane\"; \"off\" disables)";
    "NOSLATE_FC_CONTROL_PLANE_CMD", "--control-plane-cmd", "", "control plane command (default \"$NOSLATE_BIN/node $NOSLATE_BIN/control_plane\"; \"off\" disables)";
    "NOSLATE_FUNCTION_PROFILES", "--profiles", "", "function profiles JSON file (Noslate's profiles.json shape), pushed to the control plane";
    "NOSLATE_PLATFORM_ENV", "--platform-env", "", "platform environment variables JSON file ({\"K\":\"v\"} or [{\"key\",\"value\"}])";
    "NOSLATE_FC_WARM_UP", "--warm-up", "", "functions (comma-separated) whose worker must be running before /initialize answers; pushed with worker.reservationCount ≥ 1";
    "NOSLATE_FC_WARM_UP_EVENT", "--warm-up-event", "", "body of one event invocation sent to each NOSLATE_FC_WARM_UP function once its worker is ready, before /initialize answers (request id noslate-fc-warm-up-<function>), so that no end user's request is the first through the worker and the data plane; unset: nothing is sent. At most 64 KiB";
}

/// Most functions `NOSLATE_FC_WARM_UP` may name.
pub const MAX_WARM_UP: usize = 64;
/// Largest `NOSLATE_FC_WARM_UP_EVENT`: an event, not an upload.
pub const MAX_WARM_UP_EVENT: usize = 64 * 1024;

/// A child the supervisor runs.
#[derive(Clone, Debug)]
pub struct ChildSpec {
    pub name: &'static str,
    pub argv: Vec<String>,
    pub log_file: Option<PathBuf>,
    pub plane_id: Option<usize>,
    /// Whether SIGTERM stops it, so a grace period is of use. Not turfd's:
    /// its SIGTERM handler calls `tf_exit_all()`, which only returns ENOTSUP.
    pub stops_on_sigterm: bool,
}

#[derive(Clone, Debug)]
pub struct Config {
    pub listen: SocketAddr,
    /// Who may speak for FC (`NOSLATE_FC_TRUSTED_PEERS`).
    pub trusted_peers: TrustedPeers,
    pub sock_dir: PathBuf,
    pub data_planes: usize,
    pub control_planes: usize,
    pub function: Option<String>,
    /// Function header mode, allowlist and path routes.
    pub routing: Policy,
    /// Said once on stderr at start (legacy spellings).
    pub warnings: Vec<String>,
    pub timeout: Duration,
    pub forward_credentials: bool,
    pub expose_stack: bool,
    pub max_head: usize,
    pub max_body: u64,
    pub header_timeout: Duration,
    pub idle_timeout: Duration,
    pub max_connections: usize,
    /// Lingering close: total time (zero = off) and wait per read. Time, not
    /// bytes, bounds it (nginx's model): dropping input costs no memory.
    pub linger: Duration,
    pub linger_timeout: Duration,
    pub ready_wait: Duration,
    pub init_timeout: Duration,
    pub drain: Duration,
    pub kill_grace: Duration,
    pub children: Vec<ChildSpec>,
    pub profiles_file: Option<PathBuf>,
    pub platform_env_file: Option<PathBuf>,
    /// Functions whose worker must be ready before `/initialize` answers.
    pub warm_up: Vec<String>,
    /// The body of the event sent to each of them once (`server::warm_up`).
    pub warm_up_event: Option<Vec<u8>>,
}

/// What the command line asked for.
pub enum Command {
    Run(Box<Config>),
    Help,
    Version,
}

/// A configuration error: names the variable and what is wrong with it.
#[derive(Debug)]
pub struct ConfigError(pub String);

impl std::fmt::Display for ConfigError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

pub fn help_text() -> String {
    let mut s = String::from(
        "noslate-fc — the Function Compute front door of a Noslate instance\n\n\
         Usage: noslate-fc [--flag value]...\n\n\
         Every setting is an environment variable; the flag overrides it.\n\n",
    );
    for o in OPTIONS {
        let default = if o.default.is_empty() { String::new() } else { format!(" [default {}]", o.default) };
        s.push_str(&format!("  {:<24} {:<32} {}{}\n", o.flag, o.env, o.help, default));
    }
    s.push_str("  --help, --version\n");
    s
}

impl Config {
    /// Parse from `args` (without argv[0]) and an environment lookup.
    pub fn from_args<I, F>(args: I, env: F) -> Result<Command, ConfigError>
    where
        I: IntoIterator<Item = String>,
        F: Fn(&str) -> Option<String>,
    {
        let mut values: Vec<Option<String>> = OPTIONS.iter().map(|o| env(o.env).filter(|v| !v.is_empty())).collect();
        let mut args = args.into_iter();
        while let Some(arg) = args.next() {
            match arg.as_str() {
                "--help" | "-h" => return Ok(Command::Help),
                "--version" | "-V" => return Ok(Command::Version),
                _ => {}
            }
            let (flag, inline) = match arg.split_once('=') {
                Some((f, v)) => (f.to_string(), Some(v.to_string())),
                None => (arg.clone(), None),
            };
            let Some(i) = OPTIONS.iter().position(|o| o.flag == flag) else {
                return Err(ConfigError(format!("unknown argument {arg:?} (see --help)")));
            };
            let value = match inline.or_else(|| args.next()) {
                Some(v) => v,
                None => return Err(ConfigError(format!("{flag} needs a value"))),
            };
            values[i] = Some(value);
        }
        let values = &values;
        let get: &Get<'_> = &move |env: &str| lookup(values, env);
        Config::build(get).map(|c| Command::Run(Box::new(c)))
    }

    fn build(get: &Get<'_>) -> Result<Config, ConfigError> {
        let port: u16 = parse(get, "SERVER_PORT")?;
        let host = get("NOSLATE_FC_LISTEN").unwrap_or("0.0.0.0");
        let ip: std::net::IpAddr =
            host.parse().map_err(|_| ConfigError(format!("NOSLATE_FC_LISTEN: {host:?} is not an IP address")))?;
        let sock_dir = match (get("NOSLATE_FC_SOCK_DIR"), get("NOSLATED_WORKDIR")) {
            (Some(dir), _) => PathBuf::from(dir),
            (None, Some(work)) => PathBuf::from(work).join("socks"),
            (None, None) => PathBuf::from("/.noslate/noslated/socks"),
        };
        let data_planes: usize = parse(get, "NOSLATE_FC_DATA_PLANES")?;
        if data_planes == 0 || data_planes > 64 {
            return Err(ConfigError("NOSLATE_FC_DATA_PLANES: must be between 1 and 64".into()));
        }
        let control_planes: usize = parse(get, "NOSLATE_FC_CONTROL_PLANES")?;
        if control_planes > 64 {
            return Err(ConfigError("NOSLATE_FC_CONTROL_PLANES: must be at most 64".into()));
        }
        let longest = sock_dir.join(format!("dp-{}.sock", data_planes.max(control_planes)));
        if longest.as_os_str().len() > 107 {
            return Err(ConfigError(format!(
                "NOSLATED_WORKDIR: socket path {} is longer than the 107-byte unix socket limit",
                longest.display()
            )));
        }
        let max_head: usize = parse(get, "NOSLATE_FC_MAX_HEAD")?;
        if !(256..=MAX_HEAD_LIMIT).contains(&max_head) {
            return Err(ConfigError(format!("NOSLATE_FC_MAX_HEAD: must be between 256 and {MAX_HEAD_LIMIT}")));
        }
        let max_body: u64 = parse(get, "NOSLATE_FC_MAX_BODY")?;
        if max_body > MAX_BODY_LIMIT {
            return Err(ConfigError(format!("NOSLATE_FC_MAX_BODY: must be at most {MAX_BODY_LIMIT}")));
        }
        let max_connections: usize = parse(get, "NOSLATE_FC_MAX_CONNECTIONS")?;
        if !(1..=MAX_CONNECTIONS_LIMIT).contains(&max_connections) {
            return Err(ConfigError(format!(
                "NOSLATE_FC_MAX_CONNECTIONS: must be between 1 and {MAX_CONNECTIONS_LIMIT}"
            )));
        }
        let children = children(get, data_planes, control_planes)?;
        let warm_up = warm_up(get, control_planes)?;
        let mut warnings = Vec::new();
        let (function, routing) = routing(get, &mut warnings)?;
        let warm_up_event = warm_up_event(get, &warm_up, &routing)?;
        let linger = Duration::from_millis(bounded_ms(get, "NOSLATE_FC_LINGER_MS")?);
        let linger_timeout = millis(get, "NOSLATE_FC_LINGER_TIMEOUT_MS")?;
        if !linger.is_zero() && linger_timeout > linger {
            return Err(ConfigError("NOSLATE_FC_LINGER_TIMEOUT_MS: must not exceed NOSLATE_FC_LINGER_MS".into()));
        }
        Ok(Config {
            listen: SocketAddr::new(ip, port),
            trusted_peers: TrustedPeers::parse(get("NOSLATE_FC_TRUSTED_PEERS").unwrap_or("remote"))
                .map_err(|e| ConfigError(format!("NOSLATE_FC_TRUSTED_PEERS: {e}")))?,
            sock_dir,
            data_planes,
            control_planes,
            function,
            routing,
            warnings,
            timeout: millis(get, "NOSLATE_FC_TIMEOUT_MS")?,
            forward_credentials: parse_bool(get, "NOSLATE_FC_FORWARD_CREDENTIALS")?,
            expose_stack: parse_bool(get, "NOSLATE_FC_EXPOSE_STACK")?,
            max_head,
            max_body,
            header_timeout: millis(get, "NOSLATE_FC_HEADER_TIMEOUT_MS")?,
            idle_timeout: millis(get, "NOSLATE_FC_IDLE_TIMEOUT_MS")?,
            max_connections,
            linger,
            linger_timeout,
            ready_wait: millis(get, "NOSLATE_FC_READY_WAIT_MS")?,
            init_timeout: millis(get, "NOSLATE_FC_INIT_TIMEOUT_MS")?,
            drain: millis(get, "NOSLATE_FC_DRAIN_MS")?,
            kill_grace: millis(get, "NOSLATE_FC_KILL_GRACE_MS")?,
            children,
            profiles_file: get("NOSLATE_FUNCTION_PROFILES").map(PathBuf::from),
            platform_env_file: get("NOSLATE_PLATFORM_ENV").map(PathBuf::from),
            warm_up,
            warm_up_event,
        })
    }
}

/// `NOSLATE_FC_WARM_UP_EVENT`: sent to the warm-up functions, each named by
/// `x-noslate-function`, which the function header setting must let choose.
fn warm_up_event(get: &Get<'_>, warm_up: &[String], routing: &Policy) -> Result<Option<Vec<u8>>, ConfigError> {
    let Some(body) = get("NOSLATE_FC_WARM_UP_EVENT") else { return Ok(None) };
    if warm_up.is_empty() {
        return Err(ConfigError("NOSLATE_FC_WARM_UP_EVENT: needs NOSLATE_FC_WARM_UP to name the functions".into()));
    }
    if body.len() > MAX_WARM_UP_EVENT {
        return Err(ConfigError(format!("NOSLATE_FC_WARM_UP_EVENT: longer than {MAX_WARM_UP_EVENT} bytes")));
    }
    if routing.header == FunctionHeader::Off {
        return Err(ConfigError(
            "NOSLATE_FC_WARM_UP_EVENT: needs NOSLATE_FC_FUNCTION_HEADER other than off to name the function".into(),
        ));
    }
    Ok(Some(body.as_bytes().to_vec()))
}

/// `NOSLATE_FC_WARM_UP`: function names; they must come with profiles (checked
/// when the profile file is read) and a control plane to start their workers.
fn warm_up(get: &Get<'_>, control_planes: usize) -> Result<Vec<String>, ConfigError> {
    let Some(raw) = get("NOSLATE_FC_WARM_UP") else { return Ok(Vec::new()) };
    let mut names = Vec::new();
    for name in raw.split(',').map(str::trim) {
        if function_name(name.as_bytes()).is_none() {
            return Err(ConfigError(format!("NOSLATE_FC_WARM_UP: {name:?} is not a function name")));
        }
        if !names.iter().any(|n| n == name) {
            names.push(name.to_string());
        }
    }
    if names.len() > MAX_WARM_UP {
        return Err(ConfigError(format!("NOSLATE_FC_WARM_UP: more than {MAX_WARM_UP} functions")));
    }
    if control_planes == 0 {
        return Err(ConfigError("NOSLATE_FC_WARM_UP: needs a control plane to start workers".into()));
    }
    if get("NOSLATE_FUNCTION_PROFILES").is_none() {
        return Err(ConfigError("NOSLATE_FC_WARM_UP: needs NOSLATE_FUNCTION_PROFILES to name the functions".into()));
    }
    Ok(names)
}

/// Looks a variable up in the merged environment + flags.
type Get<'v> = dyn Fn(&str) -> Option<&'v str> + 'v;

/// The value in force for `env`: given, else the default; empty = unset.
fn lookup<'a>(values: &'a [Option<String>], env: &str) -> Option<&'a str> {
    let i = OPTIONS.iter().position(|o| o.env == env)?;
    values[i].as_deref().or(Some(OPTIONS[i].default)).filter(|v| !v.is_empty())
}

fn parse<T: std::str::FromStr>(get: &Get<'_>, env: &str) -> Result<T, ConfigError> {
    let raw = get(env).unwrap_or("");
    raw.trim().parse().map_err(|_| ConfigError(format!("{env}: {raw:?} is not a valid non-negative number")))
}

/// Milliseconds, 0..=`MAX_SETTING_MS`.
fn bounded_ms(get: &Get<'_>, env: &str) -> Result<u64, ConfigError> {
    let ms: u64 = parse(get, env)?;
    if ms > MAX_SETTING_MS {
        return Err(ConfigError(format!("{env}: must be at most {MAX_SETTING_MS} (a day)")));
    }
    Ok(ms)
}

/// Milliseconds, 1..=`MAX_SETTING_MS`.
fn millis(get: &Get<'_>, env: &str) -> Result<Duration, ConfigError> {
    let ms = bounded_ms(get, env)?;
    if ms == 0 {
        return Err(ConfigError(format!("{env}: must be greater than 0")));
    }
    Ok(Duration::from_millis(ms))
}

fn parse_bool(get: &Get<'_>, env: &str) -> Result<bool, ConfigError> {
    match get(env).unwrap_or("false").to_ascii_lowercase().as_str() {
        "1" | "true" | "yes" | "on" => Ok(true),
        "0" | "false" | "no" | "off" => Ok(false),
        other => Err(ConfigError(format!("{env}: {other:?} is not a boolean (true/false)"))),
    }
}

/// NOSLATE_FUNCTION, NOSLATE_FC_FUNCTION_HEADER, NOSLATE_FC_FUNCTIONS and
/// NOSLATE_FC_ROUTES(_STRIP), checked against each other: every name that can
/// be configured must be a valid name, and in the allowlist when there is one.
fn routing(get: &Get<'_>, warnings: &mut Vec<String>) -> Result<(Option<String>, Policy), ConfigError> {
    let name_rule = format!("1-{MAX_FUNCTION_NAME} of A-Z a-z 0-9 - _ . : @");
    let function = get("NOSLATE_FUNCTION").map(str::trim).map(str::to_string);
    if let Some(f) = &function {
        if function_name(f.as_bytes()).is_none() {
            return Err(ConfigError(format!("NOSLATE_FUNCTION: {f:?} is not a function name ({name_rule})")));
        }
    }
    let (header, warning) = FunctionHeader::parse(get("NOSLATE_FC_FUNCTION_HEADER").unwrap_or("event"))
        .map_err(|e| ConfigError(format!("NOSLATE_FC_FUNCTION_HEADER: {e}")))?;
    warnings.extend(warning.map(str::to_string));
    let allowlist = match get("NOSLATE_FC_FUNCTIONS") {
        None => None,
        Some(raw) => {
            let mut names: Vec<String> = Vec::new();
            for name in raw.split(',').map(str::trim) {
                if function_name(name.as_bytes()).is_none() {
                    return Err(ConfigError(format!(
                        "NOSLATE_FC_FUNCTIONS: {name:?} is not a function name ({name_rule})"
                    )));
                }
                if names.iter().any(|n| n == name) {
                    return Err(ConfigError(format!("NOSLATE_FC_FUNCTIONS: {name:?} is listed twice")));
                }
                names.push(name.to_string());
            }
            Some(names)
        }
    };
    let strip = parse_bool(get, "NOSLATE_FC_ROUTES_STRIP")?;
    let routes = match get("NOSLATE_FC_ROUTES") {
        None => Routes::default(),
        Some(raw) => Routes::parse(raw, strip).map_err(|e| ConfigError(format!("NOSLATE_FC_ROUTES: {e}")))?,
    };
    let base_path = match get("NOSLATE_FC_BASE_PATH").map(str::trim) {
        None => None,
        Some(raw) => {
            let trimmed = if raw.len() > 1 { raw.strip_suffix('/').unwrap_or(raw) } else { raw };
            if trimmed == "/" || Routes::parse(&format!("{trimmed}=x"), false).is_err() {
                return Err(ConfigError(format!(
                    "NOSLATE_FC_BASE_PATH: {raw:?} is not a path prefix (starts with /, not just /, no empty, . or .. \
                     segments, no ? # or spaces)"
                )));
            }
            Some(trimmed.to_string())
        }
    };
    let policy = Policy { header, allowlist, routes, base_path };
    if let Some(f) = function.as_deref().filter(|f| !policy.allows(f)) {
        return Err(ConfigError(format!("NOSLATE_FUNCTION: {f:?} is not in NOSLATE_FC_FUNCTIONS")));
    }
    if let Some(r) = policy.routes.iter().find(|r| !policy.allows(&r.function)) {
        return Err(ConfigError(format!(
            "NOSLATE_FC_ROUTES: {} routes to {:?}, which is not in NOSLATE_FC_FUNCTIONS",
            r.prefix, r.function
        )));
    }
    Ok((function, policy))
}

/// The supervised children: turfd, then every data plane, then every control
/// plane (docs/fc-contract.md §13). Without NOSLATE_BIN only explicit commands run.
fn children(get: &Get<'_>, data_planes: usize, control_planes: usize) -> Result<Vec<ChildSpec>, ConfigError> {
    let bin = get("NOSLATE_BIN");
    let log_dir = get("NOSLATE_LOGDIR").map(PathBuf::from);
    let command = |env: &str, default: Option<String>| -> Result<Option<Vec<String>>, ConfigError> {
        match get(env) {
            Some("off") => Ok(None),
            Some(cmd) => {
                let argv: Vec<String> = cmd.split_whitespace().map(str::to_string).collect();
                if argv.is_empty() {
                    return Err(ConfigError(format!("{env}: empty command")));
                }
                Ok(Some(argv))
            }
            None => Ok(default.map(|d| d.split_whitespace().map(str::to_string).collect())),
        }
    };
    let node = |script: &str| bin.map(|b| format!("{b}/node {b}/{script}"));
    let mut out = Vec::new();
    let log = |name: &str| log_dir.as_ref().map(|d| d.join(name));
    if let Some(argv) = command("NOSLATE_FC_TURF_CMD", bin.map(|b| format!("{b}/turf -D -f")))? {
        out.push(ChildSpec { name: "turfd", argv, log_file: log("turf.log"), plane_id: None, stops_on_sigterm: false });
    }
    if let Some(argv) = command("NOSLATE_FC_DATA_PLANE_CMD", node("data_plane"))? {
        for i in 0..data_planes {
            let file = if i == 0 { "data_plane_out.log".to_string() } else { format!("data_plane_{i}_out.log") };
            out.push(ChildSpec {
                name: "data_plane",
                argv: argv.clone(),
                log_file: log(&file),
                plane_id: Some(i),
                stops_on_sigterm: true,
            });
        }
    }
    if let Some(argv) = command("NOSLATE_FC_CONTROL_PLANE_CMD", node("control_plane"))? {
        for i in 0..control_planes {
            let file = if i == 0 { "control_plane_out.log".to_string() } else { format!("control_plane_{i}_out.log") };
            out.push(ChildSpec {
                name: "control_plane",
                argv: argv.clone(),
                log_file: log(&file),
                plane_id: Some(i),
                stops_on_sigterm: true,
            });
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// README's configuration table is `OPTIONS`, row for row: variable,
    /// flag, default (`—` for none) and meaning.
    #[test]
    fn readme_configuration_table_matches_options() {
        let readme = include_str!("../README.md");
        let section = readme.split("\n## Configuration\n").nth(1).expect("README has a Configuration section");
        let section = section.split("\n## ").next().unwrap_or_default();
        let unquote = |cell: &str| cell.trim().trim_matches('`').to_string();
        let rows: Vec<[String; 4]> = section
            .lines()
            .filter(|l| l.starts_with("| `"))
            .map(|l| {
                let cells: Vec<&str> = l.trim().trim_matches('|').split(" | ").collect();
                assert_eq!(cells.len(), 4, "README row {l:?}");
                let default = unquote(cells[2]);
                [
                    unquote(cells[0]),
                    unquote(cells[1]),
                    if default == "—" { String::new() } else { default },
                    cells[3].trim().to_string(),
                ]
            })
            .collect();
        let options: Vec<[String; 4]> =
            OPTIONS.iter().map(|o| [o.env, o.flag, o.default, o.help].map(str::to_string)).collect();
        for (row, opt) in rows.iter().zip(&options) {
            assert_eq!(row, opt, "README row differs from OPTIONS");
        }
        assert_eq!(rows.len(), options.len(), "README lists {} settings, OPTIONS {}", rows.len(), options.len());
    }

    fn run(args: &[&str], env: &[(&str, &str)]) -> Result<Config, String> {
        let env: Vec<(String, String)> = env.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        match Config::from_args(args.iter().map(|s| s.to_string()), |k| {
            env.iter().find(|(n, _)| n == k).map(|(_, v)| v.clone())
        }) {
            Ok(Command::Run(c)) => Ok(*c),
            Ok(_) => Err("not run".into()),
            Err(e) => Err(e.0),
        }
    }

    /// Every number a setting gives is bounded: the largest `u64`, one past
    /// it, and one past each bound are refused with the variable named, and
    /// the largest accepted durations can be added to `Instant::now()`.
    #[test]
    fn numeric_settings_are_bounded() {
        let numeric: Vec<&str> =
            OPTIONS.iter().map(|o| o.env).filter(|e| e.ends_with("_MS") || e.starts_with("NOSLATE_FC_MAX_")).collect();
        assert!(numeric.len() >= 12, "{numeric:?}");
        for env in &numeric {
            for huge in ["18446744073709551615", "18446744073709551616", "99999999999999999999999"] {
                let err = run(&[], &[(env, huge)]).expect_err(env);
                assert!(err.starts_with(env), "{env}={huge}: {err}");
            }
        }
        let ms = MAX_SETTING_MS.to_string();
        for env in numeric.iter().filter(|e| e.ends_with("_MS")) {
            let over = (MAX_SETTING_MS + 1).to_string();
            assert!(run(&[], &[(env, &over)]).is_err(), "{env}={over}");
            // At the bound: accepted (the lingering pair must stay ordered).
            let env_set = [(*env, ms.as_str()), ("NOSLATE_FC_LINGER_MS", ms.as_str())];
            let c = run(&[], &env_set).unwrap_or_else(|e| panic!("{env}={ms}: {e}"));
            for d in [c.timeout, c.header_timeout, c.idle_timeout, c.linger, c.linger_timeout, c.ready_wait] {
                assert!(std::time::Instant::now().checked_add(d).is_some());
            }
        }
        for (env, over) in [
            ("NOSLATE_FC_MAX_HEAD", MAX_HEAD_LIMIT as u64 + 1),
            ("NOSLATE_FC_MAX_BODY", MAX_BODY_LIMIT + 1),
            ("NOSLATE_FC_MAX_CONNECTIONS", MAX_CONNECTIONS_LIMIT as u64 + 1),
        ] {
            assert!(run(&[], &[(env, &over.to_string())]).is_err(), "{env}={over}");
        }
    }

    #[test]
    fn trusted_peers_setting() {
        assert_eq!(run(&[], &[]).unwrap().trusted_peers, TrustedPeers::Remote);
        assert_eq!(run(&["--trusted-peers", "any"], &[]).unwrap().trusted_peers, TrustedPeers::Any);
        let err = run(&[], &[("NOSLATE_FC_TRUSTED_PEERS", "loopback")]).unwrap_err();
        assert!(err.starts_with("NOSLATE_FC_TRUSTED_PEERS:"), "{err}");
    }

    #[test]
    fn base_path_setting() {
        assert_eq!(run(&[], &[]).unwrap().routing.base_path, None);
        let c = run(&["--base-path", "/app/"], &[]).unwrap();
        assert_eq!(c.routing.base_path.as_deref(), Some("/app"));
        for bad in ["/", "app", "/a//b", "/a b", "/a?x", "/../x"] {
            let err = run(&[], &[("NOSLATE_FC_BASE_PATH", bad)]).unwrap_err();
            assert!(err.starts_with("NOSLATE_FC_BASE_PATH:"), "{bad:?}: {err}");
        }
    }

    #[test]
    fn defaults() {
        let c = run(&[], &[]).unwrap();
        assert_eq!(c.listen.port(), 9000);
        assert_eq!(c.sock_dir, PathBuf::from("/.noslate/noslated/socks"));
        assert_eq!(c.max_body, 32 * 1024 * 1024);
        assert!(c.children.is_empty());
        assert_eq!(c.routing, Policy::default());
        assert_eq!(c.routing.header, FunctionHeader::Event);
        assert!(c.warnings.is_empty());
    }

    #[test]
    fn function_header_modes_and_legacy_booleans() {
        let mode =
            |v: &str| run(&[], &[("NOSLATE_FC_FUNCTION_HEADER", v)]).map(|c| (c.routing.header, c.warnings.len()));
        assert_eq!(mode("event"), Ok((FunctionHeader::Event, 0)));
        assert_eq!(mode("all"), Ok((FunctionHeader::All, 0)));
        assert_eq!(mode("off"), Ok((FunctionHeader::Off, 0)));
        assert_eq!(mode("false"), Ok((FunctionHeader::Off, 0)));
        // The old `true` would keep the hole open: it is `event`, with a warning.
        assert_eq!(mode("true"), Ok((FunctionHeader::Event, 1)));
        let c = run(&["--function-header", "all"], &[("NOSLATE_FC_FUNCTION_HEADER", "off")]).unwrap();
        assert_eq!(c.routing.header, FunctionHeader::All, "the flag overrides the variable");
    }

    #[test]
    fn allowlist_and_routes() {
        let c = run(
            &[],
            &[
                ("NOSLATE_FUNCTION", "web"),
                ("NOSLATE_FC_FUNCTIONS", "users, orders,web"),
                ("NOSLATE_FC_ROUTES", "/api/users=users,/api/orders=orders,/=web"),
                ("NOSLATE_FC_ROUTES_STRIP", "true"),
            ],
        )
        .unwrap();
        assert_eq!(c.function.as_deref(), Some("web"));
        assert_eq!(c.routing.allowlist, Some(vec!["users".into(), "orders".into(), "web".into()]));
        assert!(c.routing.routes.strip);
        assert_eq!(c.routing.routes.find(b"/api/users/1").map(|r| r.function.as_str()), Some("users"));
        assert_eq!(c.routing.routes.find(b"/api/usersX").map(|r| r.function.as_str()), Some("web"));
        // Routes without an allowlist, flags like the variables.
        let c = run(&["--routes", "/a=x", "--functions=x"], &[]).unwrap();
        assert_eq!(c.routing.routes.find(b"/a").map(|r| r.function.as_str()), Some("x"));
        assert!(!c.routing.routes.strip);
    }

    #[test]
    fn routing_errors_name_the_variable() {
        let err = |env: &[(&str, &str)]| run(&[], env).unwrap_err();
        let cases: &[(&[(&str, &str)], &str)] = &[
            (&[("NOSLATE_FUNCTION", "web"), ("NOSLATE_FC_FUNCTIONS", "a,b")], "NOSLATE_FUNCTION: \"web\" is not in"),
            (&[("NOSLATE_FUNCTION", "a/b")], "NOSLATE_FUNCTION: \"a/b\" is not a function name"),
            (&[("NOSLATE_FC_FUNCTIONS", "a,,b")], "NOSLATE_FC_FUNCTIONS: \"\" is not"),
            (&[("NOSLATE_FC_FUNCTIONS", "a,b,a")], "NOSLATE_FC_FUNCTIONS: \"a\" is listed twice"),
            (&[("NOSLATE_FC_FUNCTIONS", "a b")], "NOSLATE_FC_FUNCTIONS:"),
            (&[("NOSLATE_FC_ROUTES", "/a=x,/a/=y")], "NOSLATE_FC_ROUTES: \"/a\" is routed twice"),
            (&[("NOSLATE_FC_ROUTES", "/a")], "NOSLATE_FC_ROUTES: \"/a\" is not <path prefix>=<function>"),
            (&[("NOSLATE_FC_ROUTES", "a=x")], "NOSLATE_FC_ROUTES: \"a\" is not a path prefix"),
            (&[("NOSLATE_FC_ROUTES", "/a=x/y")], "NOSLATE_FC_ROUTES: \"x/y\" is not a function name"),
            (&[("NOSLATE_FC_ROUTES", "/a/../b=x")], "NOSLATE_FC_ROUTES:"),
            (
                &[("NOSLATE_FC_ROUTES", "/a=x,/b=y"), ("NOSLATE_FC_FUNCTIONS", "x")],
                "NOSLATE_FC_ROUTES: /b routes to \"y\"",
            ),
            (&[("NOSLATE_FC_ROUTES_STRIP", "sometimes")], "NOSLATE_FC_ROUTES_STRIP:"),
            (&[("NOSLATE_FC_FUNCTION_HEADER", "maybe")], "NOSLATE_FC_FUNCTION_HEADER: \"maybe\" is not one of"),
        ];
        for (env, want) in cases {
            let e = err(env);
            assert!(e.starts_with(want), "{env:?}: {e}");
            assert!(!e.contains('\n'), "one line: {e}");
        }
    }

    #[test]
    fn env_and_flags() {
        let c =
            run(&["--port", "8080", "--function=hello"], &[("SERVER_PORT", "1"), ("NOSLATED_WORKDIR", "/w")]).unwrap();
        assert_eq!(c.listen.port(), 8080);
        assert_eq!(c.function.as_deref(), Some("hello"));
        assert_eq!(c.sock_dir, PathBuf::from("/w/socks"));
    }

    #[test]
    fn warm_up_names_functions_of_the_profile_file() {
        let profiles = ("NOSLATE_FUNCTION_PROFILES", "/p.json");
        assert!(run(&[], &[profiles]).unwrap().warm_up.is_empty());
        let c = run(&["--warm-up", "a, b,a"], &[profiles]).unwrap();
        assert_eq!(c.warm_up, ["a", "b"]);
        let err = run(&[], &[("NOSLATE_FC_WARM_UP", "a,,b"), profiles]).unwrap_err();
        assert!(err.starts_with("NOSLATE_FC_WARM_UP:") && err.contains("\"\" is not a function name"), "{err}");
        let err = run(&[], &[("NOSLATE_FC_WARM_UP", "a\r\nx: y"), profiles]).unwrap_err();
        assert!(err.starts_with("NOSLATE_FC_WARM_UP:") && err.contains("not a function name"), "{err}");
        let many = (0..=crate::config::MAX_WARM_UP).map(|i| format!("f{i}")).collect::<Vec<_>>().join(",");
        let err = run(&[], &[("NOSLATE_FC_WARM_UP", &many), profiles]).unwrap_err();
        assert!(err.starts_with("NOSLATE_FC_WARM_UP:") && err.contains("more than 64"), "{err}");
        let err = run(&[], &[("NOSLATE_FC_WARM_UP", "a")]).unwrap_err();
        assert!(err.starts_with("NOSLATE_FC_WARM_UP:") && err.contains("NOSLATE_FUNCTION_PROFILES"), "{err}");
        let err = run(&[], &[("NOSLATE_FC_WARM_UP", "a"), ("NOSLATE_FC_CONTROL_PLANES", "0"), profiles]).unwrap_err();
        assert!(err.starts_with("NOSLATE_FC_WARM_UP:") && err.contains("control plane"), "{err}");
    }

    #[test]
    fn warm_up_event_goes_to_the_warm_up_functions() {
        let profiles = ("NOSLATE_FUNCTION_PROFILES", "/p.json");
        let warm = ("NOSLATE_FC_WARM_UP", "a");
        assert_eq!(run(&[], &[profiles, warm]).unwrap().warm_up_event, None);
        let c = run(&["--warm-up-event", "{\"warm\":1}"], &[profiles, warm]).unwrap();
        assert_eq!(c.warm_up_event.as_deref(), Some(&b"{\"warm\":1}"[..]));
        let cases = [
            (vec![profiles], "x", "needs NOSLATE_FC_WARM_UP"),
            (vec![profiles, warm, ("NOSLATE_FC_FUNCTION_HEADER", "off")], "x", "NOSLATE_FC_FUNCTION_HEADER"),
            (vec![profiles, warm], &*"x".repeat(MAX_WARM_UP_EVENT + 1), "longer than 65536 bytes"),
        ];
        for (mut env, body, why) in cases {
            env.push(("NOSLATE_FC_WARM_UP_EVENT", body));
            let err = run(&[], &env).unwrap_err();
            assert!(err.starts_with("NOSLATE_FC_WARM_UP_EVENT:") && err.contains(why), "{err}");
        }
        let c = run(&[], &[profiles, warm, ("NOSLATE_FC_WARM_UP_EVENT", &"x".repeat(MAX_WARM_UP_EVENT))]).unwrap();
        assert_eq!(c.warm_up_event.map(|b| b.len()), Some(MAX_WARM_UP_EVENT));
    }

    #[test]
    fn errors_name_the_variable() {
        assert!(run(&[], &[("SERVER_PORT", "x")]).unwrap_err().starts_with("SERVER_PORT:"));
        assert!(run(&[], &[("NOSLATE_FC_TIMEOUT_MS", "0")]).unwrap_err().starts_with("NOSLATE_FC_TIMEOUT_MS:"));
        assert!(run(&["--bogus"], &[]).unwrap_err().contains("--bogus"));
        assert!(run(&["--port"], &[]).unwrap_err().contains("--port"));
        assert!(run(&[], &[("NOSLATE_FC_FUNCTION_HEADER", "maybe")])
            .unwrap_err()
            .starts_with("NOSLATE_FC_FUNCTION_HEADER"));
    }

    #[test]
    fn lingering_close_settings() {
        let c = run(&[], &[]).unwrap();
        // nginx's lingering_time and lingering_timeout defaults.
        assert_eq!(c.linger, Duration::from_millis(30_000));
        assert_eq!(c.linger_timeout, Duration::from_millis(5000));
        let c = run(&["--linger-ms", "800", "--linger-timeout-ms=300"], &[]).unwrap();
        assert_eq!((c.linger, c.linger_timeout), (Duration::from_millis(800), Duration::from_millis(300)));
        // The byte bound is gone: its flag is unknown.
        assert!(run(&["--linger-bytes", "1024"], &[]).unwrap_err().contains("unknown argument"));
        // 0 switches lingering off; the per-read wait is then not checked against it.
        assert_eq!(run(&[], &[("NOSLATE_FC_LINGER_MS", "0")]).unwrap().linger, Duration::ZERO);
        let err = |env: &[(&str, &str)]| run(&[], env).unwrap_err();
        assert!(err(&[("NOSLATE_FC_LINGER_MS", "-1")]).starts_with("NOSLATE_FC_LINGER_MS:"));
        assert!(err(&[("NOSLATE_FC_LINGER_MS", "soon")]).starts_with("NOSLATE_FC_LINGER_MS:"));
        assert!(err(&[("NOSLATE_FC_LINGER_TIMEOUT_MS", "0")]).starts_with("NOSLATE_FC_LINGER_TIMEOUT_MS:"));
        assert!(err(&[("NOSLATE_FC_LINGER_MS", "100"), ("NOSLATE_FC_LINGER_TIMEOUT_MS", "200")])
            .starts_with("NOSLATE_FC_LINGER_TIMEOUT_MS:"));
    }

    #[test]
    fn children_from_noslate_bin() {
        let c = run(&[], &[("NOSLATE_BIN", "/b"), ("NOSLATE_LOGDIR", "/l"), ("NOSLATE_FC_TURF_CMD", "off")]).unwrap();
        let names: Vec<_> = c.children.iter().map(|c| c.name).collect();
        assert_eq!(names, ["data_plane", "control_plane"]);
        assert_eq!(c.children[0].argv, ["/b/node", "/b/data_plane"]);
        assert_eq!(c.children[0].log_file, Some(PathBuf::from("/l/data_plane_out.log")));
    }
}
