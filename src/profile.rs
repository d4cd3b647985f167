//! Function profiles and platform environment variables: user JSON →
//! validated → protobuf messages (docs/noslated-protocol.md §10, §11).
//!
//! The planes validate nothing (docs/noslated-protocol.md §10.3, §11), so this module applies the
//! Node SDK's JSON Schema (`function_profile_schema.json`) plus the extra
//! checks of docs/noslated-protocol.md §10.3 (URL scheme, exact runtime names, int32
//! integrality and range), and the SDK's platform-env rules. The first
//! failing rule is reported as one line, `<path>: <rule>`, and the whole
//! document is rejected, as the SDK does.
//!
//! Mapping keeps presence: a key present with `false`, `0` or `""` becomes
//! `Some(..)` so it is sent on the wire (docs/noslated-protocol.md §6.1); an absent key is `None`.
//! Keys the schema allows but the messages lack (extra keys in `worker`,
//! `resourceLimit`, `rateLimit`, environment items) are dropped, as
//! protobufjs drops them. This is the only module that uses `serde_json`.

use std::fmt;

use serde_json::{Map, Number, Value};

use crate::proto::{
    self, FunctionProfile, FunctionProfileWorker, KeyValuePair, RateLimit, ResourceLimit,
    SetPlatformEnvironmentVariablesRequest,
};

/// `SetFunctionProfileRequest.mode` to send; the planes ignore it (docs/noslated-protocol.md §6.3).
pub const SET_FUNCTION_PROFILE_MODE: &str = "IMMEDIATELY";

/// Prefixes reserved for the platform itself (docs/noslated-protocol.md §11).
const RESERVED_ENV_PREFIXES: [&str; 2] = ["NOSLATED_", "NOSLATE_"];

/// A rejected profile or platform-env document: where, and which rule.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ProfileError {
    path: String,
    message: String,
}

impl ProfileError {
    fn new(path: impl Into<String>, message: impl Into<String>) -> Self {
        ProfileError { path: path.into(), message: message.into() }
    }

    /// JSON path of the offending value, e.g. `profiles[1].worker.disposable`.
    pub fn path(&self) -> &str {
        &self.path
    }

    /// The rule it broke.
    pub fn message(&self) -> &str {
        &self.message
    }
}

impl fmt::Display for ProfileError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.path, self.message)
    }
}

impl std::error::Error for ProfileError {}

type Result<T> = std::result::Result<T, ProfileError>;

/// Parses JSON, reporting syntax errors at `root`.
fn parse_json(json: &[u8], root: &str) -> Result<Value> {
    serde_json::from_slice(json).map_err(|e| {
        // serde_json's Display ends with " at line L column C"; put the
        // position first and keep the bare reason.
        let full = e.to_string();
        let suffix = format!(" at line {} column {}", e.line(), e.column());
        let reason = full.strip_suffix(&suffix).unwrap_or(&full);
        ProfileError::new(root, format!("not valid JSON at line {} column {}: {reason}", e.line(), e.column()))
    })
}

// ---------------------------------------------------------------------------
// Function profiles
// ---------------------------------------------------------------------------

const NODEJS_REQUIRED: &[&str] = &["name", "runtime", "url", "signature", "handler"];
const NODEJS_OPTIONAL: &[&str] = &["initializer", "rateLimit", "resourceLimit", "worker", "environments", "namespace"];
const AWORKER_REQUIRED: &[&str] = &["name", "runtime", "url", "signature", "sourceFile"];
const AWORKER_OPTIONAL: &[&str] = &["rateLimit", "resourceLimit", "worker", "environments", "namespace"];

const SHRINK_STRATEGIES: &[&str] = &["FILO", "FIFO", "LCC"];
const DISPATCH_MODES: &[&str] = &["least-request-count", "round-robin"];
const CONCURRENCY_STATS_MODES: &[&str] = &["instant", "periodic_max", "periodic_avg"];

/// Parses and validates a `profiles.json` document (docs/noslated-protocol.md §10.3).
pub fn parse_profiles(json: &[u8]) -> Result<Vec<FunctionProfile>> {
    let root = "profiles";
    let doc = parse_json(json, root)?;
    let Value::Array(items) = &doc else {
        return Err(ProfileError::new(root, "must be an array"));
    };
    let mut profiles = Vec::with_capacity(items.len());
    for (i, item) in items.iter().enumerate() {
        profiles.push(parse_profile(item, &format!("{root}[{i}]"))?);
    }
    // uniqueItems: JSON Schema equality (numbers compare by value).
    for (i, item) in items.iter().enumerate() {
        if let Some(j) = items[..i].iter().position(|prev| json_equal(prev, item)) {
            return Err(ProfileError::new(
                format!("{root}[{i}]"),
                format!("identical to {root}[{j}] (items must be unique)"),
            ));
        }
    }
    Ok(profiles)
}

/// Encodes a `SetFunctionProfileRequest` carrying `profiles` with mode
/// `IMMEDIATELY` (docs/noslated-protocol.md §6.3).
pub fn encode_set_function_profile(profiles: &[FunctionProfile], dst: &mut Vec<u8>) {
    proto::encode_set_function_profile_request(profiles, Some(SET_FUNCTION_PROFILE_MODE), dst);
}

fn parse_profile(item: &Value, path: &str) -> Result<FunctionProfile> {
    let obj = as_object(item, path)?;
    let runtime = match obj.get("runtime") {
        None => return Err(ProfileError::new(path, "missing required key \"runtime\"")),
        Some(v) => string(v, &format!("{path}.runtime"))?,
    };
    let (required, optional) = match runtime.as_str() {
        "nodejs" => (NODEJS_REQUIRED, NODEJS_OPTIONAL),
        "aworker" => (AWORKER_REQUIRED, AWORKER_OPTIONAL),
        _ => return Err(ProfileError::new(format!("{path}.runtime"), "must be \"nodejs\" or \"aworker\"")),
    };
    for key in required {
        if !obj.contains_key(*key) {
            return Err(ProfileError::new(path, format!("missing required key \"{key}\" for runtime \"{runtime}\"")));
        }
    }
    for key in obj.keys() {
        if !required.contains(&key.as_str()) && !optional.contains(&key.as_str()) {
            return Err(ProfileError::new(path, format!("unknown key {key:?} for runtime \"{runtime}\"")));
        }
    }

    let m = Members { obj, path };
    Ok(FunctionProfile {
        name: m.get("name", string)?,
        runtime: Some(runtime),
        url: m.get("url", url)?,
        signature: m.get("signature", string)?,
        handler: m.get("handler", export)?,
        initializer: m.get("initializer", export)?,
        source_file: m.get("sourceFile", string)?,
        resource_limit: m.get("resourceLimit", parse_resource_limit)?,
        worker: m.get("worker", parse_worker)?,
        environments: m.get("environments", parse_environments)?.unwrap_or_default(),
        rate_limit: m.get("rateLimit", parse_rate_limit)?,
        namespace: m.get("namespace", string)?,
    })
}

/// `url` must name a code location the control plane can fetch (docs/noslated-protocol.md §10.3):
/// an absolute `file:///` directory, or an `http(s)://` zip.
fn url(v: &Value, path: &str) -> Result<String> {
    let url = string(v, path)?;
    let ok =
        ["file:///", "http://", "https://"].iter().any(|scheme| url.len() > scheme.len() && url.starts_with(scheme));
    if ok {
        Ok(url)
    } else {
        Err(ProfileError::new(path, "must start with file:/// (absolute path), http:// or https://"))
    }
}

/// `handler` / `initializer`: `^[^.]+\.[^.]+$`, i.e. `file.export`.
fn export(v: &Value, path: &str) -> Result<String> {
    let s = string(v, path)?;
    match s.split_once('.') {
        Some((file, export)) if !file.is_empty() && !export.is_empty() && !export.contains('.') => Ok(s),
        _ => Err(ProfileError::new(path, "must match ^[^.]+\\.[^.]+$")),
    }
}

fn parse_resource_limit(v: &Value, path: &str) -> Result<ResourceLimit> {
    let m = Members::of(v, path)?;
    Ok(ResourceLimit { memory: m.get("memory", int32)?, cpu: m.get("cpu", float)? })
}

fn parse_rate_limit(v: &Value, path: &str) -> Result<RateLimit> {
    let m = Members::of(v, path)?;
    Ok(RateLimit {
        max_token_count: m.get("maxTokenCount", int32)?,
        tokens_per_fill: m.get("tokensPerFill", int32)?,
        fill_interval: m.get("fillInterval", int32)?,
    })
}

fn parse_worker(v: &Value, path: &str) -> Result<FunctionProfileWorker> {
    let m = Members::of(v, path)?;
    let enumerated = |key: &str, allowed: &'static [&'static str]| m.get(key, |v, p| one_of(v, p, allowed));
    Ok(FunctionProfileWorker {
        initialization_timeout: m.get("initializationTimeout", int32)?,
        max_activate_requests: m.get("maxActivateRequests", int32)?,
        reservation_count: m.get("reservationCount", int32)?,
        fast_fail_requests_on_starting: m.get("fastFailRequestsOnStarting", boolean)?,
        replica_count_limit: m.get("replicaCountLimit", int32)?,
        v8_options: m.get("v8Options", strings)?.unwrap_or_default(),
        shrink_strategy: enumerated("shrinkStrategy", SHRINK_STRATEGIES)?,
        exec_argv: m.get("execArgv", strings)?.unwrap_or_default(),
        disposable: m.get("disposable", boolean)?,
        disable_seed: m.get("disableSeed", boolean)?,
        disable_request_queue: m.get("disableRequestQueue", boolean)?,
        dispatch_mode: enumerated("dispatchMode", DISPATCH_MODES)?,
        concurrency_sliding_window_size: m.get("concurrencySlidingWindowSize", int32)?,
        concurrency_sliding_bucket_count: m.get("concurrencySlidingBucketCount", int32)?,
        ema_concurrency_alpha: m.get("emaConcurrencyAlpha", float)?,
        concurrency_expand_threshold: m.get("concurrencyExpandThreshold", float)?,
        concurrency_shrink_threshold: m.get("concurrencyShrinkThreshold", float)?,
        expand_cooldown: m.get("expandCooldown", int32)?,
        shrink_cooldown: m.get("shrinkCooldown", int32)?,
        scale_factor: m.get("scaleFactor", float)?,
        precision_zero_threshold: m.get("precisionZeroThreshold", float)?,
        concurrency_stats_mode: enumerated("concurrencyStatsMode", CONCURRENCY_STATS_MODES)?,
        shrink_cooldown_on_startup: m.get("shrinkCooldownOnStartup", boolean)?,
    })
}

fn parse_environments(v: &Value, path: &str) -> Result<Vec<KeyValuePair>> {
    let Value::Array(items) = v else {
        return Err(ProfileError::new(path, "must be an array"));
    };
    items
        .iter()
        .enumerate()
        .map(|(i, item)| {
            let p = format!("{path}[{i}]");
            let obj = as_object(item, &p)?;
            let get = |key: &str| match obj.get(key) {
                None => Err(ProfileError::new(&p, format!("missing required key \"{key}\""))),
                Some(v) => string(v, &format!("{p}.{key}")),
            };
            Ok(KeyValuePair { key: get("key")?, value: get("value")? })
        })
        .collect()
}

// ---------------------------------------------------------------------------
// Typed members
// ---------------------------------------------------------------------------

/// The members of one JSON object, converted with their path for errors.
#[derive(Clone, Copy)]
struct Members<'v> {
    obj: &'v Map<String, Value>,
    path: &'v str,
}

impl<'v> Members<'v> {
    fn of(v: &'v Value, path: &'v str) -> Result<Self> {
        Ok(Members { obj: as_object(v, path)?, path })
    }

    /// `None` when `key` is absent, else the converted value: presence is
    /// kept, so an explicit `false`/`0`/`""` is `Some`.
    fn get<T>(&self, key: &str, conv: impl Fn(&Value, &str) -> Result<T>) -> Result<Option<T>> {
        self.obj.get(key).map(|v| conv(v, &format!("{}.{key}", self.path))).transpose()
    }
}

fn as_object<'v>(v: &'v Value, path: &str) -> Result<&'v Map<String, Value>> {
    match v {
        Value::Object(m) => Ok(m),
        _ => Err(ProfileError::new(path, "must be an object")),
    }
}

fn string(v: &Value, path: &str) -> Result<String> {
    match v {
        Value::String(s) => Ok(s.clone()),
        _ => Err(ProfileError::new(path, "must be a string")),
    }
}

fn boolean(v: &Value, path: &str) -> Result<bool> {
    match v {
        Value::Bool(b) => Ok(*b),
        _ => Err(ProfileError::new(path, "must be a boolean")),
    }
}

fn number<'v>(v: &'v Value, path: &str) -> Result<&'v Number> {
    match v {
        Value::Number(n) => Ok(n),
        _ => Err(ProfileError::new(path, "must be a number")),
    }
}

/// An `int32` field: an integral JSON number within int32 range (the Node
/// side would silently truncate or wrap, docs/noslated-protocol.md §10.3).
fn int32(v: &Value, path: &str) -> Result<i32> {
    let n = number(v, path)?;
    let range = || ProfileError::new(path, "must be within int32 range (-2147483648..=2147483647)");
    if let Some(i) = n.as_i64() {
        return i32::try_from(i).map_err(|_| range());
    }
    if n.is_u64() {
        return Err(range());
    }
    let f = n.as_f64().unwrap_or(f64::NAN);
    if f.fract() != 0.0 {
        return Err(ProfileError::new(path, "must be an integer"));
    }
    if !(f64::from(i32::MIN)..=f64::from(i32::MAX)).contains(&f) {
        return Err(range());
    }
    Ok(f as i32)
}

/// A `float` field: the JSON number rounded to single precision, which must
/// stay finite.
fn float(v: &Value, path: &str) -> Result<f32> {
    let f = number(v, path)?.as_f64().unwrap_or(f64::NAN) as f32;
    if f.is_finite() {
        Ok(f)
    } else {
        Err(ProfileError::new(path, "must be within float range"))
    }
}

fn strings(v: &Value, path: &str) -> Result<Vec<String>> {
    let Value::Array(items) = v else {
        return Err(ProfileError::new(path, "must be an array of strings"));
    };
    items.iter().enumerate().map(|(i, item)| string(item, &format!("{path}[{i}]"))).collect()
}

fn one_of(v: &Value, path: &str, allowed: &[&str]) -> Result<String> {
    match v {
        Value::String(s) if allowed.contains(&s.as_str()) => Ok(s.clone()),
        _ => {
            let list = allowed.iter().map(|a| format!("\"{a}\"")).collect::<Vec<_>>().join(", ");
            Err(ProfileError::new(path, format!("must be one of {list}")))
        }
    }
}

/// JSON Schema instance equality: numbers by value, objects regardless of
/// key order (serde_json maps already compare that way).
fn json_equal(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::Number(x), Value::Number(y)) => match (x.as_i64(), y.as_i64()) {
            (Some(x), Some(y)) => x == y,
            _ => match (x.as_u64(), y.as_u64()) {
                (Some(x), Some(y)) => x == y,
                _ => x.as_f64() == y.as_f64(),
            },
        },
        (Value::Array(x), Value::Array(y)) => x.len() == y.len() && x.iter().zip(y).all(|(x, y)| json_equal(x, y)),
        (Value::Object(x), Value::Object(y)) => {
            x.len() == y.len() && x.iter().all(|(k, v)| y.get(k).is_some_and(|w| json_equal(v, w)))
        }
        _ => a == b,
    }
}

// ---------------------------------------------------------------------------
// Platform environment variables (docs/noslated-protocol.md §11)
// ---------------------------------------------------------------------------

/// Parses the platform environment: either `[{"key": .., "value": ..}, ..]`
/// or `{"KEY": "value", ..}`. Applies the SDK's rules (docs/noslated-protocol.md §11): keys must be
/// non-empty strings not starting with `NOSLATED_`/`NOSLATE_`; values must
/// be strings, with null or absent meaning `""`. Order is kept (object keys
/// come out sorted); the planes let the last duplicate win.
pub fn parse_platform_env(json: &[u8]) -> Result<Vec<(String, String)>> {
    let root = "envs";
    match parse_json(json, root)? {
        Value::Array(items) => items
            .iter()
            .enumerate()
            .map(|(i, item)| {
                let p = format!("{root}[{i}]");
                let obj = as_object(item, &p)?;
                let key = match obj.get("key") {
                    Some(Value::String(k)) => k.as_str(),
                    _ => return Err(ProfileError::new(format!("{p}.key"), "must be a non-empty string")),
                };
                env_pair(key, obj.get("value"), &format!("{p}.key"), &format!("{p}.value"))
            })
            .collect(),
        Value::Object(map) => map
            .iter()
            .map(|(key, value)| {
                let p = format!("{root}[{key:?}]");
                env_pair(key, Some(value), &p, &p)
            })
            .collect(),
        _ => Err(ProfileError::new(root, "must be an array of {\"key\", \"value\"} objects or an object of strings")),
    }
}

/// Encodes a `SetPlatformEnvironmentVariablesRequest` for `envs`.
pub fn encode_set_platform_env(envs: &[(String, String)], dst: &mut Vec<u8>) {
    SetPlatformEnvironmentVariablesRequest::encode_pairs(envs, dst);
}

fn env_pair(key: &str, value: Option<&Value>, key_path: &str, value_path: &str) -> Result<(String, String)> {
    if key.is_empty() {
        return Err(ProfileError::new(key_path, "must be a non-empty string"));
    }
    if RESERVED_ENV_PREFIXES.iter().any(|p| key.starts_with(p)) {
        return Err(ProfileError::new(
            key_path,
            format!(
                "Platform environment variables' key can't start with NOSLATED_ and NOSLATE_. (Failed: {})",
                one_line(key)
            ),
        ));
    }
    let value = match value {
        None | Some(Value::Null) => String::new(),
        Some(Value::String(s)) => s.clone(),
        Some(other) => {
            return Err(ProfileError::new(
                value_path,
                format!(
                    "Platform environment variables' value can't be out of string. (Failed: {}, {} ({}))",
                    one_line(key),
                    one_line(&js_to_string(other)),
                    js_typeof(other)
                ),
            ))
        }
    };
    Ok((key.to_owned(), value))
}

/// Escapes control characters so an error stays on one line.
fn one_line(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        if c.is_control() {
            out.extend(c.escape_default());
        } else {
            out.push(c);
        }
    }
    out
}

/// JavaScript's `${value}` for the SDK's error text.
fn js_to_string(v: &Value) -> String {
    match v {
        Value::Null => "null".into(),
        Value::Bool(b) => b.to_string(),
        Value::Number(n) => match n.as_f64() {
            Some(f) if n.is_f64() && f.fract() == 0.0 && f.abs() < 1e21 => format!("{f:.0}"),
            _ => n.to_string(),
        },
        Value::String(s) => s.clone(),
        Value::Array(items) => items
            .iter()
            .map(|i| match i {
                Value::Null => String::new(),
                other => js_to_string(other),
            })
            .collect::<Vec<_>>()
            .join(","),
        Value::Object(_) => "[object Object]".into(),
    }
}

/// JavaScript's `typeof value`.
fn js_typeof(v: &Value) -> &'static str {
    match v {
        Value::Bool(_) => "boolean",
        Value::Number(_) => "number",
        Value::String(_) => "string",
        Value::Null | Value::Array(_) | Value::Object(_) => "object",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proto::{Message, SetFunctionProfileRequest};

    /// A document with every kind of member (docs/noslated-protocol.md §10.3).
    const EXAMPLE: &str = r#"[
      {
        "name": "hello-json",
        "runtime": "aworker",
        "url": "file:///code/functions/hello-json",
        "sourceFile": "index.js",
        "signature": "md5:12345",
        "worker": { "disposable": true, "reservationCount": 0 },
        "resourceLimit": { "memory": 134217728 },
        "environments": [ { "key": "NODE_ENV", "value": "production" } ],
        "rateLimit": { "maxTokenCount": 100, "tokensPerFill": 10, "fillInterval": 1000 },
        "namespace": "shared-a"
      },
      {
        "name": "node-fn",
        "runtime": "nodejs",
        "url": "https://example.com/code.zip",
        "signature": "md5:abcd",
        "handler": "index.handler",
        "initializer": "index.initializer"
      }
    ]"#;

    #[test]
    fn doc_example_is_valid_and_maps() {
        let p = parse_profiles(EXAMPLE.as_bytes()).unwrap();
        assert_eq!(p.len(), 2);
        let a = &p[0];
        assert_eq!(a.name.as_deref(), Some("hello-json"));
        assert_eq!(a.runtime.as_deref(), Some("aworker"));
        assert_eq!(a.source_file.as_deref(), Some("index.js"));
        assert_eq!(a.handler, None);
        let w = a.worker.as_ref().unwrap();
        assert_eq!(w.disposable, Some(true));
        assert_eq!(w.reservation_count, Some(0));
        assert_eq!(w.shrink_cooldown_on_startup, None);
        assert_eq!(a.resource_limit, Some(ResourceLimit { memory: Some(134217728), cpu: None }));
        assert_eq!(a.environments, vec![KeyValuePair::new("NODE_ENV", "production")]);
        assert_eq!(
            a.rate_limit,
            Some(RateLimit { max_token_count: Some(100), tokens_per_fill: Some(10), fill_interval: Some(1000) })
        );
        assert_eq!(a.namespace.as_deref(), Some("shared-a"));
        let b = &p[1];
        assert_eq!(b.handler.as_deref(), Some("index.handler"));
        assert_eq!(b.initializer.as_deref(), Some("index.initializer"));
        assert_eq!(b.worker, None);
        assert!(b.environments.is_empty());

        let mut buf = Vec::new();
        encode_set_function_profile(&p, &mut buf);
        let req = SetFunctionProfileRequest::decode(&buf).unwrap();
        assert_eq!(req.profiles, p);
        assert_eq!(req.mode.as_deref(), Some("IMMEDIATELY"));
    }

    #[test]
    fn explicit_false_and_zero_are_kept() {
        let json = r#"[{"name":"f","runtime":"nodejs","url":"http://x/c.zip","signature":"",
            "handler":"a.b","worker":{"shrinkCooldownOnStartup":false,"disableSeed":false,
            "maxActivateRequests":0,"emaConcurrencyAlpha":0,"v8Options":[],"execArgv":["--x"],
            "shrinkStrategy":"FILO","dispatchMode":"round-robin","concurrencyStatsMode":"periodic_avg",
            "scaleFactor":0.1,"expandCooldown":1e3,"unknownKnob":{"any":1}},
            "resourceLimit":{"cpu":0.5,"memory":-1,"extra":true},"namespace":"",
            "rateLimit":{"maxTokenCount":0}}]"#;
        let p = parse_profiles(json.as_bytes()).unwrap();
        let w = p[0].worker.as_ref().unwrap();
        assert_eq!(w.shrink_cooldown_on_startup, Some(false));
        assert_eq!(w.disable_seed, Some(false));
        assert_eq!(w.max_activate_requests, Some(0));
        assert_eq!(w.ema_concurrency_alpha, Some(0.0));
        assert_eq!(w.exec_argv, vec!["--x".to_string()]);
        assert_eq!(w.shrink_strategy.as_deref(), Some("FILO"));
        assert_eq!(w.scale_factor, Some(0.1f32));
        assert_eq!(w.expand_cooldown, Some(1000));
        assert_eq!(p[0].signature.as_deref(), Some(""));
        assert_eq!(p[0].namespace.as_deref(), Some(""));
        assert_eq!(p[0].resource_limit.as_ref().unwrap().memory, Some(-1));
        assert_eq!(p[0].rate_limit.as_ref().unwrap().max_token_count, Some(0));
        // On the wire: worker field 23 = false is present.
        let bytes = w.to_vec();
        assert!(bytes.windows(3).any(|x| x == [0xb8, 0x01, 0x00]));
        assert_eq!(parse_profiles(b"[]").unwrap(), vec![]);
    }

    const NODE: &str = r#""name":"f","runtime":"nodejs","url":"file:///c","signature":"s","handler":"i.h""#;
    const AW: &str = r#""name":"f","runtime":"aworker","url":"file:///c","signature":"s","sourceFile":"i.js""#;

    #[test]
    fn invalid_documents() {
        let node = |extra: &str| format!("[{{{NODE}{extra}}}]");
        let aw = |extra: &str| format!("[{{{AW}{extra}}}]");
        let cases: Vec<(String, &str)> = vec![
            ("{}".into(), "profiles: must be an array"),
            ("[1".into(), "profiles: not valid JSON at line 1 column 2: EOF while parsing a list"),
            ("".into(), "profiles: not valid JSON at line 1 column 0: EOF while parsing a value"),
            ("[1]".into(), "profiles[0]: must be an object"),
            ("[{}]".into(), "profiles[0]: missing required key \"runtime\""),
            (r#"[{"runtime":1}]"#.into(), "profiles[0].runtime: must be a string"),
            (
                r#"[{"runtime":"nodejs-v16"}]"#.into(),
                "profiles[0].runtime: must be \"nodejs\" or \"aworker\"",
            ),
            (
                r#"[{"name":"f","runtime":"nodejs","url":"file:///c","signature":"s"}]"#.into(),
                "profiles[0]: missing required key \"handler\" for runtime \"nodejs\"",
            ),
            (
                r#"[{"name":"f","runtime":"aworker","url":"file:///c","signature":"s"}]"#.into(),
                "profiles[0]: missing required key \"sourceFile\" for runtime \"aworker\"",
            ),
            (
                node(r#","sourceFile":"i.js""#),
                "profiles[0]: unknown key \"sourceFile\" for runtime \"nodejs\"",
            ),
            (
                aw(r#","handler":"i.h""#),
                "profiles[0]: unknown key \"handler\" for runtime \"aworker\"",
            ),
            (
                aw(r#","initializer":"i.h""#),
                "profiles[0]: unknown key \"initializer\" for runtime \"aworker\"",
            ),
            (node(r#","bogus":1"#), "profiles[0]: unknown key \"bogus\" for runtime \"nodejs\""),
            (
                format!("[{{{}}}]", NODE.replace(r#""name":"f""#, r#""name":7"#)),
                "profiles[0].name: must be a string",
            ),
            (
                format!("[{{{}}}]", NODE.replace("file:///c", "ftp://x")),
                "profiles[0].url: must start with file:/// (absolute path), http:// or https://",
            ),
            (
                format!("[{{{}}}]", NODE.replace("file:///c", "file://rel")),
                "profiles[0].url: must start with file:/// (absolute path), http:// or https://",
            ),
            (
                format!("[{{{}}}]", NODE.replace("\"s\"", "null")),
                "profiles[0].signature: must be a string",
            ),
            (
                format!("[{{{}}}]", NODE.replace("i.h", "index")),
                "profiles[0].handler: must match ^[^.]+\\.[^.]+$",
            ),
            (
                format!("[{{{}}}]", NODE.replace("i.h", "a.b.c")),
                "profiles[0].handler: must match ^[^.]+\\.[^.]+$",
            ),
            (
                node(r#","initializer":".init""#),
                "profiles[0].initializer: must match ^[^.]+\\.[^.]+$",
            ),
            (
                format!("[{{{}}}]", AW.replace("\"i.js\"", "[]")),
                "profiles[0].sourceFile: must be a string",
            ),
            (node(r#","namespace":false"#), "profiles[0].namespace: must be a string"),
            (node(r#","resourceLimit":[]"#), "profiles[0].resourceLimit: must be an object"),
            (
                node(r#","resourceLimit":{"memory":"1"}"#),
                "profiles[0].resourceLimit.memory: must be a number",
            ),
            (
                node(r#","resourceLimit":{"memory":2147483648}"#),
                "profiles[0].resourceLimit.memory: must be within int32 range (-2147483648..=2147483647)",
            ),
            (
                node(r#","resourceLimit":{"memory":1.5}"#),
                "profiles[0].resourceLimit.memory: must be an integer",
            ),
            (
                node(r#","resourceLimit":{"cpu":true}"#),
                "profiles[0].resourceLimit.cpu: must be a number",
            ),
            (
                node(r#","resourceLimit":{"cpu":1e300}"#),
                "profiles[0].resourceLimit.cpu: must be within float range",
            ),
            (node(r#","worker":1"#), "profiles[0].worker: must be an object"),
            (
                node(r#","worker":{"shrinkStrategy":"LIFO"}"#),
                "profiles[0].worker.shrinkStrategy: must be one of \"FILO\", \"FIFO\", \"LCC\"",
            ),
            (
                node(r#","worker":{"dispatchMode":"random"}"#),
                "profiles[0].worker.dispatchMode: must be one of \"least-request-count\", \"round-robin\"",
            ),
            (
                node(r#","worker":{"concurrencyStatsMode":1}"#),
                "profiles[0].worker.concurrencyStatsMode: must be one of \"instant\", \"periodic_max\", \"periodic_avg\"",
            ),
            (
                node(r#","worker":{"disposable":"true"}"#),
                "profiles[0].worker.disposable: must be a boolean",
            ),
            (
                node(r#","worker":{"shrinkCooldownOnStartup":0}"#),
                "profiles[0].worker.shrinkCooldownOnStartup: must be a boolean",
            ),
            (
                node(r#","worker":{"maxActivateRequests":"10"}"#),
                "profiles[0].worker.maxActivateRequests: must be a number",
            ),
            (
                node(r#","worker":{"replicaCountLimit":2.5}"#),
                "profiles[0].worker.replicaCountLimit: must be an integer",
            ),
            (
                node(r#","worker":{"shrinkCooldown":-2147483649}"#),
                "profiles[0].worker.shrinkCooldown: must be within int32 range (-2147483648..=2147483647)",
            ),
            (
                node(r#","worker":{"expandCooldown":1e10}"#),
                "profiles[0].worker.expandCooldown: must be within int32 range (-2147483648..=2147483647)",
            ),
            (
                node(r#","worker":{"scaleFactor":"0.5"}"#),
                "profiles[0].worker.scaleFactor: must be a number",
            ),
            (
                node(r#","worker":{"v8Options":"--x"}"#),
                "profiles[0].worker.v8Options: must be an array of strings",
            ),
            (
                node(r#","worker":{"execArgv":["--a",2]}"#),
                "profiles[0].worker.execArgv[1]: must be a string",
            ),
            (node(r#","environments":{}"#), "profiles[0].environments: must be an array"),
            (
                node(r#","environments":[{"key":"A","value":"1"},"B=2"]"#),
                "profiles[0].environments[1]: must be an object",
            ),
            (
                node(r#","environments":[{"value":"1"}]"#),
                "profiles[0].environments[0]: missing required key \"key\"",
            ),
            (
                node(r#","environments":[{"key":"A"}]"#),
                "profiles[0].environments[0]: missing required key \"value\"",
            ),
            (
                node(r#","environments":[{"key":"A","value":1}]"#),
                "profiles[0].environments[0].value: must be a string",
            ),
            (node(r#","rateLimit":null"#), "profiles[0].rateLimit: must be an object"),
            (
                node(r#","rateLimit":{"fillInterval":"1s"}"#),
                "profiles[0].rateLimit.fillInterval: must be a number",
            ),
            (
                node(r#","rateLimit":{"tokensPerFill":0.5}"#),
                "profiles[0].rateLimit.tokensPerFill: must be an integer",
            ),
            (
                format!("[{{{NODE}}},{{{AW}}},{{{NODE}}}]"),
                "profiles[2]: identical to profiles[0] (items must be unique)",
            ),
            (
                format!(
                    "[{{{NODE},\"resourceLimit\":{{\"memory\":1}}}},{{{NODE},\"resourceLimit\":{{\"memory\":1.0}}}}]"
                ),
                "profiles[1]: identical to profiles[0] (items must be unique)",
            ),
            (
                format!("[{{{AW}}}, 5]"),
                "profiles[1]: must be an object",
            ),
        ];
        assert!(cases.len() >= 25);
        for (json, want) in &cases {
            match parse_profiles(json.as_bytes()) {
                Ok(_) => panic!("accepted: {json}"),
                Err(e) => assert_eq!(e.to_string(), *want, "{json}"),
            }
        }
        let e = parse_profiles(b"[\n1,\n\n    x]").unwrap_err();
        assert_eq!(e.path(), "profiles");
        assert!(e.message().starts_with("not valid JSON at line 4 column 5: "), "{e}");
    }

    #[test]
    fn same_name_different_content_is_allowed() {
        let json = format!("[{{{NODE}}},{{{NODE},\"namespace\":\"n\"}}]");
        assert_eq!(parse_profiles(json.as_bytes()).unwrap().len(), 2);
    }

    #[test]
    fn platform_env_forms() {
        let arr = br#"[{"key":"TZ","value":"UTC"},{"key":"EMPTY","value":null},{"key":"NONE"},{"key":"TZ","value":"X","extra":1}]"#;
        assert_eq!(
            parse_platform_env(arr).unwrap(),
            vec![
                ("TZ".to_string(), "UTC".to_string()),
                ("EMPTY".to_string(), String::new()),
                ("NONE".to_string(), String::new()),
                ("TZ".to_string(), "X".to_string()),
            ]
        );
        let obj = br#"{"B":"2","A":"1","N":null}"#;
        assert_eq!(
            parse_platform_env(obj).unwrap(),
            vec![
                ("A".to_string(), "1".to_string()),
                ("B".to_string(), "2".to_string()),
                ("N".to_string(), String::new()),
            ]
        );
        assert_eq!(parse_platform_env(b"[]").unwrap(), vec![]);
        assert_eq!(parse_platform_env(b"{}").unwrap(), vec![]);

        let envs = parse_platform_env(obj).unwrap();
        let mut buf = Vec::new();
        encode_set_platform_env(&envs, &mut buf);
        let req = SetPlatformEnvironmentVariablesRequest::decode(&buf).unwrap();
        assert_eq!(req.envs[2], KeyValuePair::new("N", ""));
    }

    #[test]
    fn platform_env_rules() {
        let cases: &[(&[u8], &str)] = &[
            (b"\"x\"", "envs: must be an array of {\"key\", \"value\"} objects or an object of strings"),
            (b"[1]", "envs[0]: must be an object"),
            (b"[{\"value\":\"v\"}]", "envs[0].key: must be a non-empty string"),
            (b"[{\"key\":\"\",\"value\":\"v\"}]", "envs[0].key: must be a non-empty string"),
            (b"[{\"key\":3}]", "envs[0].key: must be a non-empty string"),
            (b"{\"\":\"v\"}", "envs[\"\"]: must be a non-empty string"),
            (
                b"[{\"key\":\"NOSLATED_X\",\"value\":\"v\"}]",
                "envs[0].key: Platform environment variables' key can't start with NOSLATED_ and NOSLATE_. (Failed: NOSLATED_X)",
            ),
            (
                b"{\"NOSLATE_WORKER_ID\":\"v\"}",
                "envs[\"NOSLATE_WORKER_ID\"]: Platform environment variables' key can't start with NOSLATED_ and NOSLATE_. (Failed: NOSLATE_WORKER_ID)",
            ),
            (
                b"[{\"key\":\"A\",\"value\":1}]",
                "envs[0].value: Platform environment variables' value can't be out of string. (Failed: A, 1 (number))",
            ),
            (
                b"{\"A\":true}",
                "envs[\"A\"]: Platform environment variables' value can't be out of string. (Failed: A, true (boolean))",
            ),
            (
                b"{\"A\":{\"b\":1}}",
                "envs[\"A\"]: Platform environment variables' value can't be out of string. (Failed: A, [object Object] (object))",
            ),
            (
                b"{\"A\":[1,\"x\",null]}",
                "envs[\"A\"]: Platform environment variables' value can't be out of string. (Failed: A, 1,x, (object))",
            ),
            (
                b"{\"A\":2.0}",
                "envs[\"A\"]: Platform environment variables' value can't be out of string. (Failed: A, 2 (number))",
            ),
            (b"{\"A\":", "envs: not valid JSON at line 1 column 5: EOF while parsing a value"),
        ];
        for (json, want) in cases {
            let e = parse_platform_env(json).unwrap_err();
            assert_eq!(e.to_string(), *want, "{}", String::from_utf8_lossy(json));
        }
        let e = parse_platform_env(b"{\"NOSLATE_A\\nB\":\"v\"}").unwrap_err();
        assert!(e.to_string().ends_with("(Failed: NOSLATE_A\\nB)"), "{e}");
        // NOSLATE without the underscore is an ordinary name.
        assert!(parse_platform_env(b"{\"NOSLATEX\":\"1\"}").is_ok());
    }

    #[test]
    fn garbage_never_panics() {
        for input in [
            &b"\xff\xfe"[..],
            b"[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[",
            b"[1e999]",
            b"[{\"runtime\":\"nodejs\",\"worker\":{\"maxActivateRequests\":-0.0}}]",
            b"null",
        ] {
            let _ = parse_profiles(input);
            let _ = parse_platform_env(input);
        }
    }
}
