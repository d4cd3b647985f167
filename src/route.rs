//! Which Noslate function an invocation goes to, and which URL it sees.
//!
//! A sans-IO policy: it is given what a request says about itself — who sent
//! it, its function headers, its target and `x-fc-base-path` — and the
//! operator's settings, and returns a function name or a refusal.
//!
//! Whom to believe (docs/fc-contract.md §4): FC marks its invocations with
//! `x-fc-control-path`. An event (`/invoke`) comes from an authenticated FC
//! API caller; a request without a control path from a peer that may speak
//! for FC is FC's own (its hooks carry none) or, with
//! `NOSLATE_FC_TRUSTED_PEERS=any`, a trusted local caller; an HTTP invocation
//! (`/http-invoke`) carries an end user's own headers, often from an anonymous
//! HTTP trigger, and so does anything from inside the container under the
//! default `remote` (`fc::dispatch::endpoint` makes it `FcHttp`). So `x-noslate-function` / `x-noslate-service` are believed
//! from the first two by default, and from end users only when the operator
//! says so (`NOSLATE_FC_FUNCTION_HEADER=all`). A header that is not believed
//! is ignored, as any other header of the end user's: the request is routed
//! by path (`NOSLATE_FC_ROUTES`) or to the default function.
//!
//! Invariants: every name that leaves `choose` passed `function_name` and the
//! allowlist (route targets were checked against both at start); nothing here
//! panics on any input.

use std::borrow::Cow;
use std::fmt;

/// Why no function could be chosen for an invocation. `fc::InvokeError`
/// carries it up to the answer; it names nothing above this module.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum RouteError {
    /// No function configured and none chosen by header.
    NoFunction,
    /// The function header names something unusable.
    BadFunctionName,
    /// The chosen name is not in NOSLATE_FC_FUNCTIONS.
    FunctionNotAllowed(String),
    /// NOSLATE_FC_ROUTES has no route for the path, and there is no default.
    NoRoute,
}

impl fmt::Display for RouteError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RouteError::NoFunction => f.write_str(
                "no function to invoke: set NOSLATE_FUNCTION, configure exactly one profile in \
                 NOSLATE_FUNCTION_PROFILES, or send x-noslate-function",
            ),
            RouteError::BadFunctionName => {
                f.write_str("x-noslate-function / x-noslate-service must be 1-128 of A-Z a-z 0-9 - _ . : @")
            }
            // The name passed `function_name`: short, plain ASCII.
            RouteError::FunctionNotAllowed(name) => write!(f, "no function named {name:?} can be invoked here"),
            RouteError::NoRoute => f.write_str("no function serves this path"),
        }
    }
}

impl std::error::Error for RouteError {}

/// Longest function name accepted, from a header or from configuration.
pub const MAX_FUNCTION_NAME: usize = 128;
/// Longest FC service (with its qualifier) or function name in FC's
/// default-domain base path (FC names are at most 64–128 characters).
const MAX_FC_NAME: usize = 256;

/// Request headers noslate-fc reads — where a request goes, its id, its
/// timeouts, the FC context it passes on as baggage: a second copy makes the
/// request ambiguous (which one did FC set?), so it is refused whole.
pub const SINGLE_HEADERS: &[&str] = &[
    "x-fc-control-path",
    "x-fc-base-path",
    "x-noslate-function",
    "x-noslate-service",
    "x-fc-request-id",
    "x-fc-function-timeout",
    "x-fc-initialization-timeout",
    "x-fc-region",
    "x-fc-account-id",
    "x-fc-qualifier",
    "x-fc-function-name",
    "x-fc-service-name",
];

/// `NOSLATE_FC_FUNCTION_HEADER`: whose `x-noslate-function` is believed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FunctionHeader {
    /// Events and local requests only; HTTP invocations' copy is ignored.
    Event,
    /// Every request, end users' HTTP invocations included (unsafe on a
    /// public trigger: any end user reaches any allowed function).
    All,
    /// Nobody: the function comes from the routes or the default.
    Off,
}

impl FunctionHeader {
    /// The mode, and a warning when a legacy boolean was given. The old
    /// `true` meant "any request may choose"; taking it as `all` would keep
    /// that hole open without anyone deciding it, so it becomes `event`.
    pub fn parse(raw: &str) -> Result<(FunctionHeader, Option<&'static str>), String> {
        match raw.trim().to_ascii_lowercase().as_str() {
            "event" => Ok((FunctionHeader::Event, None)),
            "all" => Ok((FunctionHeader::All, None)),
            "off" | "false" | "0" | "no" => Ok((FunctionHeader::Off, None)),
            "true" | "1" | "yes" | "on" => Ok((
                FunctionHeader::Event,
                Some(
                    "NOSLATE_FC_FUNCTION_HEADER=true is read as \"event\" (HTTP invocations cannot choose the \
                     function); set \"all\" to allow that, or \"event\" to silence this warning",
                ),
            )),
            _ => Err(format!("{raw:?} is not one of event, all, off")),
        }
    }
}

/// Who sent the request, as far as FC's control path tells.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Origin {
    /// `x-fc-control-path: /invoke`: an FC API caller.
    FcEvent,
    /// `x-fc-control-path: /http-invoke`: an end user through a trigger.
    FcHttp,
    /// No control path, `POST /invoke`, from a peer that may speak for FC.
    LocalEvent,
    /// No control path, any other request, from a peer that may speak for FC.
    LocalHttp,
}

impl Origin {
    pub fn new(event: bool, control_path: bool) -> Origin {
        match (event, control_path) {
            (true, true) => Origin::FcEvent,
            (false, true) => Origin::FcHttp,
            (true, false) => Origin::LocalEvent,
            (false, false) => Origin::LocalHttp,
        }
    }

    /// Not an end user's request: an FC API caller or the container.
    pub fn trusted(self) -> bool {
        self != Origin::FcHttp
    }

    /// An event invocation (FC API caller or local `POST /invoke`).
    pub fn is_event(self) -> bool {
        matches!(self, Origin::FcEvent | Origin::LocalEvent)
    }
}

/// A chosen function name, held inline: choosing one per invoke allocates
/// nothing. Only made from names `function_name` accepts.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct FunctionName {
    len: u8,
    bytes: [u8; MAX_FUNCTION_NAME],
}

impl FunctionName {
    /// `None` unless `function_name` accepts `name` (checked here, once).
    pub fn new(name: &[u8]) -> Option<FunctionName> {
        let valid = function_name(name)?;
        let mut bytes = [0u8; MAX_FUNCTION_NAME];
        bytes[..valid.len()].copy_from_slice(valid.as_bytes());
        Some(FunctionName { len: valid.len() as u8, bytes })
    }

    pub fn as_str(&self) -> &str {
        // Only ASCII bytes are ever stored (see `new`).
        std::str::from_utf8(&self.bytes[..usize::from(self.len)]).unwrap_or_default()
    }
}

impl std::ops::Deref for FunctionName {
    type Target = str;
    fn deref(&self) -> &str {
        self.as_str()
    }
}

impl std::fmt::Debug for FunctionName {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        std::fmt::Debug::fmt(self.as_str(), f)
    }
}

impl std::fmt::Display for FunctionName {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl PartialEq<&str> for FunctionName {
    fn eq(&self, other: &&str) -> bool {
        self.as_str() == *other
    }
}

#[cfg(test)]
impl From<&str> for FunctionName {
    /// For tests: panics on a name `function_name` refuses.
    fn from(name: &str) -> FunctionName {
        FunctionName::new(name.as_bytes()).expect("a valid function name")
    }
}

/// A function name as accepted anywhere: 1 to `MAX_FUNCTION_NAME` bytes of
/// ASCII letters, digits and `-_.:@`. Anything else (control bytes, `/`,
/// spaces, non-UTF-8, 10 KB names) is refused before it reaches a log line,
/// an error body or the data plane.
pub fn function_name(raw: &[u8]) -> Option<&str> {
    let ok = !raw.is_empty()
        && raw.len() <= MAX_FUNCTION_NAME
        && raw.iter().all(|b| b.is_ascii_alphanumeric() || b"-_.:@".contains(b));
    // All ASCII, so always UTF-8.
    ok.then(|| std::str::from_utf8(raw).ok()).flatten()
}

/// The first of `SINGLE_HEADERS` that appears more than once, if any.
pub fn repeated_single_header<'h>(headers: impl Iterator<Item = (&'h [u8], &'h [u8])>) -> Option<&'static str> {
    let mut seen = [false; SINGLE_HEADERS.len()];
    for (name, _) in headers {
        // All of them start with `x-`: most headers are passed over here.
        if !name.get(..2).is_some_and(|p| p.eq_ignore_ascii_case(b"x-")) {
            continue;
        }
        if let Some(i) = SINGLE_HEADERS.iter().position(|s| name.eq_ignore_ascii_case(s.as_bytes())) {
            if seen[i] {
                return Some(SINGLE_HEADERS[i]);
            }
            seen[i] = true;
        }
    }
    None
}

/// One `NOSLATE_FC_ROUTES` entry: requests whose path is `prefix` or under it
/// (on a segment boundary) go to `function`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PathRoute {
    /// Starts with `/`; no trailing `/` except for the root route.
    pub prefix: String,
    /// Checked when the routes are parsed: choosing it copies it, no more.
    pub function: FunctionName,
}

/// The path routes of HTTP invocations, longest prefix first.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Routes {
    table: Vec<PathRoute>,
    /// `NOSLATE_FC_ROUTES_STRIP`: the function sees its path without the
    /// matched prefix (`/api/users/1` → `/1` under `/api/users`).
    pub strip: bool,
}

impl Routes {
    /// Parse `/api/users=users,/api/orders=orders,/=web`. Matching is on the
    /// raw path bytes (no percent-decoding, no dot-segment removal), so a
    /// prefix is refused unless it can match a path as sent: it starts with
    /// `/`, has no empty, `.` or `..` segment, and no `?`, `#`, `=`, `,`,
    /// space or control byte.
    pub fn parse(raw: &str, strip: bool) -> Result<Routes, String> {
        let mut table: Vec<PathRoute> = Vec::new();
        for entry in raw.split(',').map(str::trim) {
            let Some((prefix, function)) = entry.split_once('=') else {
                return Err(format!("{entry:?} is not <path prefix>=<function>"));
            };
            let (prefix, function) = (prefix.trim(), function.trim());
            if !valid_prefix(prefix) {
                return Err(format!(
                    "{prefix:?} is not a path prefix (starts with /, no empty, . or .. segments, no ? # or spaces)"
                ));
            }
            let Some(function) = FunctionName::new(function.as_bytes()) else {
                return Err(format!(
                    "{function:?} is not a function name (1-{MAX_FUNCTION_NAME} of A-Z a-z 0-9 - _ . : @)"
                ));
            };
            let prefix = if prefix.len() > 1 { prefix.strip_suffix('/').unwrap_or(prefix) } else { prefix };
            if table.iter().any(|r| r.prefix == prefix) {
                return Err(format!("{prefix:?} is routed twice"));
            }
            table.push(PathRoute { prefix: prefix.to_string(), function });
        }
        table.sort_by_key(|r| std::cmp::Reverse(r.prefix.len()));
        Ok(Routes { table, strip })
    }

    pub fn is_empty(&self) -> bool {
        self.table.is_empty()
    }

    pub fn iter(&self) -> impl Iterator<Item = &PathRoute> {
        self.table.iter()
    }

    /// The longest route whose prefix is `path` or a whole-segment ancestor
    /// of it: `/api/users` takes `/api/users` and `/api/users/1`, not
    /// `/api/usersX`. `path` excludes the query.
    pub fn find(&self, path: &[u8]) -> Option<&PathRoute> {
        self.table.iter().find(|r| {
            let prefix = r.prefix.as_bytes();
            if prefix == b"/" {
                return path.first() == Some(&b'/');
            }
            path.starts_with(prefix) && matches!(path.get(prefix.len()), None | Some(b'/'))
        })
    }
}

fn valid_prefix(prefix: &str) -> bool {
    if prefix == "/" {
        return true;
    }
    let Some(rest) = prefix.strip_prefix('/') else { return false };
    let rest = rest.strip_suffix('/').unwrap_or(rest);
    let bytes_ok = prefix.bytes().all(|b| b.is_ascii_graphic() && !b"?#=,".contains(&b));
    bytes_ok && !rest.is_empty() && rest.split('/').all(|s| !s.is_empty() && s != "." && s != "..")
}

/// The operator's routing settings.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Policy {
    pub header: FunctionHeader,
    /// `NOSLATE_FC_FUNCTIONS`: when set, the only names that may be invoked.
    pub allowlist: Option<Vec<String>>,
    pub routes: Routes,
    /// `NOSLATE_FC_BASE_PATH`: an `x-fc-base-path` believed besides FC's own
    /// default-domain form (without a trailing `/`).
    pub base_path: Option<String>,
}

impl Default for Policy {
    fn default() -> Self {
        Policy { header: FunctionHeader::Event, allowlist: None, routes: Routes::default(), base_path: None }
    }
}

/// What a request says about where it should go.
pub struct Request<'a> {
    pub origin: Origin,
    /// `x-noslate-function`.
    pub function: Option<&'a [u8]>,
    /// `x-noslate-service` (`invokeService`); wins over `function`.
    pub service: Option<&'a [u8]>,
    pub target: &'a [u8],
    pub base_path: Option<&'a [u8]>,
}

/// Where the request goes.
#[derive(Debug, PartialEq, Eq)]
pub struct Choice {
    pub name: FunctionName,
    pub service: bool,
    /// Bytes of the request target the function does not see (the
    /// `x-fc-base-path` prefix, and the route prefix when stripping); see
    /// `function_url`.
    pub url_skip: usize,
}

impl Policy {
    /// Choose the function: a believed header, else (not for events) the
    /// longest matching route, else `default`.
    pub fn choose(&self, req: &Request<'_>, default: Option<&str>) -> Result<Choice, RouteError> {
        let base = req.base_path.filter(|b| self.believes_base_path(b));
        let base_skip = if req.origin.is_event() { 0 } else { base_path_skip(req.target, base) };
        let believed = match self.header {
            FunctionHeader::Off => false,
            FunctionHeader::Event => req.origin.trusted(),
            FunctionHeader::All => true,
        };
        let chosen = match (req.service, req.function) {
            (Some(s), _) => Some((s, true)),
            (None, Some(f)) => Some((f, false)),
            (None, None) => None,
        };
        if let (true, Some((raw, service))) = (believed, chosen) {
            let name = FunctionName::new(raw).ok_or(RouteError::BadFunctionName)?;
            self.allow(&name)?;
            return Ok(Choice { name, service, url_skip: base_skip });
        }
        if !req.origin.is_event() {
            let url = function_url(req.target, base_skip);
            let path = url.split(|b| *b == b'?').next().unwrap_or_default();
            if let Some(route) = self.routes.find(path) {
                // A root route, or a path left as "/" by the base-path rewrite
                // (only the root route matches those), strips nothing.
                let stripped = if self.routes.strip && route.prefix != "/" { route.prefix.len() } else { 0 };
                return Ok(Choice { name: route.function, service: false, url_skip: base_skip + stripped });
            }
        }
        match default {
            Some(name) => {
                let name = FunctionName::new(name.as_bytes()).ok_or(RouteError::BadFunctionName)?;
                self.allow(&name)?;
                Ok(Choice { name, service: false, url_skip: base_skip })
            }
            None if !req.origin.is_event() && !self.routes.is_empty() => Err(RouteError::NoRoute),
            None => Err(RouteError::NoFunction),
        }
    }

    /// Whether an `x-fc-base-path` is FC's (docs/fc-contract.md §3, F5): FC sets
    /// it only on its default domain, as `/2016-08-15/proxy/<service>/<function>/`
    /// (the service possibly with `.<qualifier>`); with a custom domain it
    /// sends none, so an end user's own copy would arrive as is. Believing
    /// any value let `x-fc-base-path: /app` turn `/app/admin/x` into
    /// `/admin/x` and reach the `/admin` route. Only FC's form, or the base
    /// the operator configured, can be stripped: FC's prefix never holds an
    /// application path, so stripping it reaches nothing a plain path could
    /// not.
    pub fn believes_base_path(&self, base: &[u8]) -> bool {
        let trimmed = base.strip_suffix(b"/").unwrap_or(base);
        if self.base_path.as_deref().is_some_and(|b| b.as_bytes() == trimmed) {
            return true;
        }
        let Some(rest) = trimmed.strip_prefix(b"/2016-08-15/proxy/") else { return false };
        let mut segments = rest.split(|b| *b == b'/');
        let name = |s: Option<&[u8]>| {
            s.is_some_and(|s| {
                !s.is_empty()
                    && s.len() <= MAX_FC_NAME
                    && s.iter().all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(b))
            })
        };
        name(segments.next()) && name(segments.next()) && segments.next().is_none()
    }

    /// Whether `name` may be invoked at all.
    pub fn allows(&self, name: &str) -> bool {
        self.allowlist.as_ref().is_none_or(|list| list.iter().any(|n| n == name))
    }

    fn allow(&self, name: &str) -> Result<(), RouteError> {
        if self.allows(name) {
            Ok(())
        } else {
            Err(RouteError::FunctionNotAllowed(name.to_string()))
        }
    }
}

/// How much of `target` FC's default-domain prefix `x-fc-base-path` covers
/// (docs/fc-contract.md §6): all of the base (without its trailing `/`)
/// when the target is the base itself or under it, else nothing — `/a/bc`
/// is not under `/a/b`.
fn base_path_skip(target: &[u8], base: Option<&[u8]>) -> usize {
    let Some(base) = base.filter(|b| b.len() > 1) else { return 0 };
    let base = base.strip_suffix(b"/").unwrap_or(base);
    match target.strip_prefix(base) {
        Some(rest) if matches!(rest.first(), None | Some(b'/') | Some(b'?')) => base.len(),
        _ => 0,
    }
}

/// The `url` the function sees: `target` without its first `skip` bytes,
/// always starting with `/` (`""` → `/`, `?q` → `/?q`). Borrowed unless a
/// `/` has to be put in front of a query.
pub fn function_url(target: &[u8], skip: usize) -> Cow<'_, [u8]> {
    match target.get(skip..).unwrap_or(target) {
        [] => Cow::Borrowed(b"/"),
        rest @ [b'?', ..] => Cow::Owned([b"/", rest].concat()),
        rest => Cow::Borrowed(rest),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The tests below compare names with `==`: it must tell names apart.
    #[test]
    fn function_names_compare_by_text() {
        let name = FunctionName::from("echo");
        assert!(name == "echo");
        assert!(name != "echo2" && name != "ech" && name != "ec");
    }

    fn req<'a>(origin: Origin, function: Option<&'a [u8]>, target: &'a [u8]) -> Request<'a> {
        Request { origin, function, service: None, target, base_path: None }
    }

    fn policy(header: FunctionHeader, allow: Option<&[&str]>, routes: &str, strip: bool) -> Policy {
        Policy {
            header,
            allowlist: allow.map(|a| a.iter().map(|s| s.to_string()).collect()),
            routes: if routes.is_empty() { Routes::default() } else { Routes::parse(routes, strip).unwrap() },
            base_path: None,
        }
    }

    fn name(p: &Policy, r: &Request<'_>, default: Option<&str>) -> Result<(String, String), RouteError> {
        p.choose(r, default)
            .map(|c| (c.name.to_string(), String::from_utf8(function_url(r.target, c.url_skip).into()).unwrap()))
    }

    #[test]
    fn header_mode_decides_whose_header_counts() {
        let f = Some(&b"other"[..]);
        let event = policy(FunctionHeader::Event, None, "", false);
        for origin in [Origin::FcEvent, Origin::LocalEvent, Origin::LocalHttp] {
            assert_eq!(name(&event, &req(origin, f, b"/x"), Some("dflt")).unwrap().0, "other", "{origin:?}");
        }
        // An end user's header is ignored: the default, as if it were absent.
        assert_eq!(name(&event, &req(Origin::FcHttp, f, b"/x"), Some("dflt")).unwrap().0, "dflt");
        assert_eq!(name(&event, &req(Origin::FcHttp, f, b"/x"), None), Err(RouteError::NoFunction));
        // Ignored means not even looked at: a bad name does not matter.
        let long = vec![b'a'; 10_000];
        assert_eq!(name(&event, &req(Origin::FcHttp, Some(&long), b"/x"), Some("d")).unwrap().0, "d");
        let all = policy(FunctionHeader::All, None, "", false);
        assert_eq!(name(&all, &req(Origin::FcHttp, f, b"/x"), Some("dflt")).unwrap().0, "other");
        let off = policy(FunctionHeader::Off, None, "", false);
        assert_eq!(name(&off, &req(Origin::FcEvent, f, b"/invoke"), Some("dflt")).unwrap().0, "dflt");
        // Service header wins, and says invokeService.
        let r = Request { service: Some(b"svc"), ..req(Origin::FcEvent, f, b"/invoke") };
        assert_eq!(event.choose(&r, None).unwrap(), Choice { name: "svc".into(), service: true, url_skip: 0 });
    }

    #[test]
    fn bad_names_are_refused_when_believed() {
        let p = policy(FunctionHeader::All, None, "", false);
        let long = vec![b'a'; MAX_FUNCTION_NAME + 1];
        let max = vec![b'a'; MAX_FUNCTION_NAME];
        for bad in [&b""[..], b"a/b", b"../x", b"a b", b"a\x01b", b"a\x7f", b"\xff\xfe", b"caf\xc3\xa9", &long, b"a,b"]
        {
            assert_eq!(name(&p, &req(Origin::FcEvent, Some(bad), b"/invoke"), None), Err(RouteError::BadFunctionName));
        }
        assert!(name(&p, &req(Origin::FcEvent, Some(&max), b"/invoke"), None).is_ok());
        assert!(name(&p, &req(Origin::FcEvent, Some(b"A-z_0.9:v@1"), b"/invoke"), None).is_ok());
    }

    #[test]
    fn allowlist_applies_to_every_source() {
        let p = policy(FunctionHeader::Event, Some(&["a", "b"]), "", false);
        assert_eq!(name(&p, &req(Origin::FcEvent, Some(b"b"), b"/invoke"), None).unwrap().0, "b");
        assert_eq!(
            name(&p, &req(Origin::FcEvent, Some(b"c"), b"/invoke"), None),
            Err(RouteError::FunctionNotAllowed("c".into()))
        );
        // A default taken from the profiles file at run time is checked too.
        assert_eq!(
            name(&p, &req(Origin::LocalHttp, None, b"/"), Some("z")),
            Err(RouteError::FunctionNotAllowed("z".into()))
        );
        assert!(p.allows("a") && !p.allows("A") && policy(FunctionHeader::Event, None, "", false).allows("x"));
    }

    #[test]
    fn routes_longest_prefix_on_segment_boundaries() {
        let p = policy(FunctionHeader::Event, None, "/api/users=users, /api/orders/=orders,/api=api,/=web", false);
        let cases: &[(&[u8], &str)] = &[
            (b"/api/users", "users"),
            (b"/api/users/1", "users"),
            (b"/api/users?x=1", "users"),
            (b"/api/users/", "users"),
            (b"/api/usersX", "api"),
            (b"/api/orders", "orders"),
            (b"/api/orders/9?a", "orders"),
            (b"/api", "api"),
            (b"/apix", "web"),
            (b"/", "web"),
            (b"/?q", "web"),
            (b"/other/api/users", "web"),
        ];
        for (target, want) in cases {
            let got = name(&p, &req(Origin::FcHttp, None, target), None).unwrap();
            assert_eq!((got.0.as_str(), got.1.as_bytes()), (*want, *target), "{}", String::from_utf8_lossy(target));
        }
        // Events never use routes.
        assert_eq!(name(&p, &req(Origin::FcEvent, None, b"/api/users"), None), Err(RouteError::NoFunction));
        // No root route and no default: 404 NoRoute; with a default: the default.
        let p = policy(FunctionHeader::Event, None, "/api=api", false);
        assert_eq!(name(&p, &req(Origin::FcHttp, None, b"/web"), None), Err(RouteError::NoRoute));
        assert_eq!(name(&p, &req(Origin::LocalHttp, None, b"/web"), Some("d")).unwrap().0, "d");
        // A non-origin-form target ("*") matches no route, not even the root.
        let p = policy(FunctionHeader::Event, None, "/=web", false);
        assert_eq!(name(&p, &req(Origin::FcHttp, None, b"*"), None), Err(RouteError::NoRoute));
        // A believed header wins over the routes.
        assert_eq!(name(&p, &req(Origin::LocalHttp, Some(b"h"), b"/x"), None).unwrap().0, "h");
    }

    #[test]
    fn strip_removes_the_matched_prefix_only() {
        let p = policy(FunctionHeader::Event, None, "/api/users=users,/=web", true);
        let cases: &[(&[u8], &str, &str)] = &[
            (b"/api/users", "users", "/"),
            (b"/api/users/", "users", "/"),
            (b"/api/users/1?x=2", "users", "/1?x=2"),
            (b"/api/users?x", "users", "/?x"),
            (b"/index.html?a", "web", "/index.html?a"),
        ];
        for (target, function, url) in cases {
            assert_eq!(
                name(&p, &req(Origin::FcHttp, None, target), None).unwrap(),
                (function.to_string(), url.to_string())
            );
        }
    }

    #[test]
    fn routes_match_after_the_base_path_rewrite() {
        let base = Some(&b"/2016-08-15/proxy/svc/fn/"[..]);
        let p = policy(FunctionHeader::Event, None, "/users=users", true);
        let r = |target: &'static [u8], origin| Request { base_path: base, ..req(origin, None, target) };
        let got = name(&p, &r(b"/2016-08-15/proxy/svc/fn/users/7?x", Origin::FcHttp), None).unwrap();
        assert_eq!(got, ("users".into(), "/7?x".into()));
        // Without stripping, the function sees its path after the base only.
        let keep = policy(FunctionHeader::Event, None, "/users=users", false);
        let got = name(&keep, &r(b"/2016-08-15/proxy/svc/fn/users/7", Origin::FcHttp), Some("d")).unwrap();
        assert_eq!(got, ("users".into(), "/users/7".into()));
        // "/a/bc" is not under "/a/b"; the bare base is "/", a query "/?q".
        let got = name(&keep, &r(b"/2016-08-15/proxy/svc/fnx/users", Origin::FcHttp), Some("d")).unwrap();
        assert_eq!(got, ("d".into(), "/2016-08-15/proxy/svc/fnx/users".into()));
        assert_eq!(name(&keep, &r(b"/2016-08-15/proxy/svc/fn", Origin::FcHttp), Some("d")).unwrap().1, "/");
        assert_eq!(name(&keep, &r(b"/2016-08-15/proxy/svc/fn?q", Origin::FcHttp), Some("d")).unwrap().1, "/?q");
        // Events keep their target whole.
        let got = name(&keep, &r(b"/2016-08-15/proxy/svc/fn/invoke", Origin::FcEvent), Some("d")).unwrap();
        assert_eq!(got.1, "/2016-08-15/proxy/svc/fn/invoke");
    }

    /// Issue #20 item 4: only FC's default-domain form of `x-fc-base-path`
    /// (or the operator's `NOSLATE_FC_BASE_PATH`) is stripped. main believed
    /// `x-fc-base-path: /app`, and `/app/admin/x` reached the `/admin` route.
    #[test]
    fn only_fcs_base_path_form_is_believed() {
        let mut p = policy(FunctionHeader::Event, None, "/app=web,/admin=admin", false);
        let r = |target: &'static [u8], base: &'static [u8]| Request {
            base_path: Some(base),
            ..req(Origin::FcHttp, None, target)
        };
        for spoof in
            [&b"/app"[..], b"/app/", b"/", b"/2016-08-15/proxy/s", b"/2016-08-15/proxy/s/f/g", b"/2016-08-15/proxy//f"]
        {
            let got = name(&p, &r(b"/app/admin/x", spoof), None).unwrap();
            assert_eq!(got, ("web".into(), "/app/admin/x".into()), "{:?}", String::from_utf8_lossy(spoof));
        }
        for fc in [&b"/2016-08-15/proxy/svc/fn/"[..], b"/2016-08-15/proxy/svc.LATEST/fn", b"/2016-08-15/proxy/s_1/f-2/"]
        {
            assert!(p.believes_base_path(fc), "{:?}", String::from_utf8_lossy(fc));
        }
        let got = name(&p, &r(b"/2016-08-15/proxy/svc/fn/admin/x", b"/2016-08-15/proxy/svc/fn/"), None).unwrap();
        assert_eq!(got, ("admin".into(), "/admin/x".into()));
        // The operator's own base path is believed too, exactly.
        p.base_path = Some("/app".into());
        let got = name(&p, &r(b"/app/admin/x", b"/app/"), None).unwrap();
        assert_eq!(got, ("admin".into(), "/admin/x".into()));
        assert_eq!(name(&p, &r(b"/app/admin/x", b"/ap"), None).unwrap().0, "web");
    }

    #[test]
    fn route_parsing_refuses_what_cannot_match() {
        let r = Routes::parse("/a=x,/a/b/=y,/=z", false).unwrap();
        let prefixes: Vec<&str> = r.iter().map(|r| r.prefix.as_str()).collect();
        assert_eq!(prefixes, ["/a/b", "/a", "/"]);
        for bad in [
            "",
            "/a",
            "a=x",
            "/a=",
            "=x",
            "/a=x,",
            "/a=x,,/b=y",
            "/a=x,/a/=y",
            "/a//b=x",
            "/a/../b=x",
            "/./a=x",
            "/a?b=x",
            "/a b=x",
            "/a=x y",
            "/a=x/y",
            "//=x",
            "/a\u{1}=x",
            "/é=x",
        ] {
            assert!(Routes::parse(bad, false).is_err(), "{bad:?} accepted");
        }
    }

    #[test]
    fn repeated_routing_headers_are_found() {
        let h = |list: &[(&'static str, &'static str)]| {
            repeated_single_header(list.iter().map(|(n, v)| (n.as_bytes(), v.as_bytes())))
        };
        assert_eq!(
            h(&[("x-fc-control-path", "/pre-stop"), ("X-FC-Control-Path", "/http-invoke")]),
            Some("x-fc-control-path")
        );
        assert_eq!(h(&[("x-noslate-function", "a"), ("x-noslate-function", "a")]), Some("x-noslate-function"));
        assert_eq!(h(&[("x-fc-base-path", "/a"), ("x-fc-base-path", "/b")]), Some("x-fc-base-path"));
        assert_eq!(h(&[("x-noslate-function", "a"), ("x-noslate-service", "b"), ("x-rep", "1"), ("x-rep", "2")]), None);
    }

    #[test]
    fn header_mode_parsing() {
        assert_eq!(FunctionHeader::parse("event"), Ok((FunctionHeader::Event, None)));
        assert_eq!(FunctionHeader::parse("ALL"), Ok((FunctionHeader::All, None)));
        assert_eq!(FunctionHeader::parse("off"), Ok((FunctionHeader::Off, None)));
        assert_eq!(FunctionHeader::parse("false"), Ok((FunctionHeader::Off, None)));
        let (mode, warning) = FunctionHeader::parse("true").unwrap();
        assert_eq!(mode, FunctionHeader::Event);
        assert!(warning.unwrap().contains("\"all\""));
        assert!(FunctionHeader::parse("maybe").is_err());
    }
}
