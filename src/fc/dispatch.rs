//! What a request head asks for (docs/fc-contract.md §3, §6): a lifecycle hook,
//! an event or HTTP invocation (from FC or from inside the container), or a
//! refusal — plus the values a head carries for its exchange: the request
//! id and the timeouts.
//!
//! Pure functions of the head and the operator's settings. Which *function*
//! an invocation reaches is `route::Policy`'s decision; [`choose`] only
//! gathers what the head says for it.

use std::time::Duration;

use crate::http1::request::{BodyFraming, RequestHead, Version};
use crate::route::{Choice, Origin, Policy, Request, RouteError};

/// `x-fc-function-timeout` above this is ignored (a day, FC's longest
/// function timeout, docs/fc-contract.md §9): a caller must not hold a worker
/// longer.
pub const MAX_FUNCTION_TIMEOUT_SECS: u64 = 86_400;
/// `x-fc-initialization-timeout` above this is ignored (a day, like the
/// function timeout): an instant that far ahead is still far from
/// `Instant`'s range, so adding it never overflows (u64::MAX seconds did,
/// and the panic aborted PID 1).
pub const MAX_INIT_TIMEOUT_SECS: u64 = 86_400;
/// Longest `x-fc-request-id` taken as given; longer or unprintable ids are
/// replaced by one of ours.
pub const MAX_REQUEST_ID: usize = 256;

/// The method a hook path allows (`405` with `Allow` otherwise).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Allow {
    Get,
    Post,
}

/// What the request head asks for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Endpoint {
    /// An invocation: an event or an HTTP invocation, from FC or local.
    Invoke(Origin),
    Initialize,
    PreFreeze,
    PreStop,
    /// A hook path with the wrong method.
    WrongMethod(Allow),
    /// `x-fc-control-path` names nothing we serve.
    BadControlPath,
    /// A routing header appears more than once: which copy FC set cannot be
    /// known (`/pre-stop` then `/http-invoke` must not run the hook), so
    /// nothing runs.
    Ambiguous(&'static str),
}

/// Who is at the other end of a connection, as far as its address tells.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Peer {
    /// May speak for FC: run hooks, mark events, be local. FC's gateway
    /// connects from outside the container (docs/fc-contract.md §2), and so does
    /// everyone with `NOSLATE_FC_TRUSTED_PEERS=any`.
    Fc,
    /// A process inside the container (loopback, or one of the container's
    /// own addresses) under the default `NOSLATE_FC_TRUSTED_PEERS=remote`:
    /// a function's worker, perhaps through an SSRF bug. It gets what an end
    /// user gets.
    Container,
}

/// `NOSLATE_FC_TRUSTED_PEERS`: who may speak for FC.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TrustedPeers {
    /// Every peer that is not an address of this container (the default).
    Remote,
    /// Every peer but loopback: for a platform whose gateway would dial the
    /// instance's address from inside its network namespace (not what FC's
    /// documentation shows; SECURITY.md). A process in the container can then
    /// reach the hooks through that address.
    NotLoopback,
    /// Every peer, processes in the container included (development, tests,
    /// and setups where nothing untrusted runs in the container).
    Any,
}

impl TrustedPeers {
    pub fn parse(raw: &str) -> Result<TrustedPeers, String> {
        match raw.trim().to_ascii_lowercase().as_str() {
            "remote" => Ok(TrustedPeers::Remote),
            "not-loopback" => Ok(TrustedPeers::NotLoopback),
            "any" => Ok(TrustedPeers::Any),
            _ => Err(format!("{raw:?} is not one of remote, not-loopback, any")),
        }
    }

    /// The peer a connection from `addr` is. `is_own_address` tells whether
    /// an address belongs to this container (the server passes a check that
    /// binds a socket to it; a test passes a list).
    pub fn peer(self, addr: std::net::IpAddr, is_own_address: impl Fn(std::net::IpAddr) -> bool) -> Peer {
        if self == TrustedPeers::Any {
            return Peer::Fc;
        }
        let addr = match addr {
            std::net::IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(addr, std::net::IpAddr::V4),
            v4 => v4,
        };
        let own = || self == TrustedPeers::Remote && is_own_address(addr);
        if addr.is_loopback() || addr.is_unspecified() || own() {
            Peer::Container
        } else {
            Peer::Fc
        }
    }
}

/// Route one request head from `peer`. A request from inside the container
/// is an HTTP invocation whatever it says: it runs no hook, marks no event,
/// and chooses nothing an end user cannot (`Origin::FcHttp`).
pub fn endpoint(head: &RequestHead, peer: Peer) -> Endpoint {
    if let Some(name) = crate::route::repeated_single_header(head.headers()) {
        return Endpoint::Ambiguous(name);
    }
    if peer == Peer::Container {
        return Endpoint::Invoke(Origin::FcHttp);
    }
    match head.header("x-fc-control-path") {
        Some(b"/invoke") => Endpoint::Invoke(Origin::FcEvent),
        Some(b"/http-invoke") => Endpoint::Invoke(Origin::FcHttp),
        Some(b"/initialize") => Endpoint::Initialize,
        Some(b"/pre-freeze") => Endpoint::PreFreeze,
        Some(b"/pre-stop") => Endpoint::PreStop,
        Some(_) => Endpoint::BadControlPath,
        None => match (head.method(), head.path()) {
            (b"POST", b"/invoke") => Endpoint::Invoke(Origin::LocalEvent),
            (b"POST", b"/initialize") => Endpoint::Initialize,
            (b"GET", b"/pre-freeze") => Endpoint::PreFreeze,
            (b"GET", b"/pre-stop") => Endpoint::PreStop,
            (_, b"/initialize") | (_, b"/invoke") => Endpoint::WrongMethod(Allow::Post),
            (_, b"/pre-freeze") | (_, b"/pre-stop") => Endpoint::WrongMethod(Allow::Get),
            _ => Endpoint::Invoke(Origin::LocalHttp),
        },
    }
}

/// Whether a local answer may keep the connection: it never reads the body,
/// so only when there is none to skip.
pub fn reusable_without_body(head: &RequestHead) -> bool {
    head.keep_alive() && head.framing() == BodyFraming::None
}

/// The unread body of a request answered before its body was read: none,
/// a known length that will come, or unknown (chunked, or a body the client
/// may never send: `Expect: 100-continue` without our 100, RFC 9110
/// §10.1.1, after which dropping `n` bytes would eat the next request).
pub fn unread_body(head: &RequestHead) -> Option<u64> {
    match head.framing() {
        BodyFraming::None => Some(0),
        BodyFraming::Length(0) => Some(0),
        BodyFraming::Length(_) if head.expects_continue() => None,
        BodyFraming::Length(n) => Some(n),
        BodyFraming::Chunked => None,
    }
}

/// HTTP/1.0 clients cannot take chunked coding.
pub fn supports_chunked(head: &RequestHead) -> bool {
    head.version() == Version::Http11
}

/// A request id: FC's `x-fc-request-id` (printable ASCII, at most
/// `MAX_REQUEST_ID` bytes) or one we made up. Kept inline, as bytes: taking
/// one allocates nothing, and log lines are written from it unconverted.
#[derive(Clone, PartialEq, Eq)]
pub struct RequestId {
    len: u16,
    bytes: [u8; MAX_REQUEST_ID],
}

impl RequestId {
    /// The id `bytes`, cut at `MAX_REQUEST_ID` (callers pass checked ids).
    pub fn from_bytes(bytes: &[u8]) -> RequestId {
        let mut id = RequestId { len: 0, bytes: [0; MAX_REQUEST_ID] };
        let n = bytes.len().min(MAX_REQUEST_ID);
        id.bytes[..n].copy_from_slice(&bytes[..n]);
        id.len = n as u16;
        id
    }

    pub fn as_bytes(&self) -> &[u8] {
        &self.bytes[..self.len as usize]
    }

    fn push(&mut self, part: &[u8]) {
        let at = self.len as usize;
        let n = part.len().min(MAX_REQUEST_ID - at);
        self.bytes[at..at + n].copy_from_slice(&part[..n]);
        self.len += n as u16;
    }

    /// `n` in base `radix` (10 or 16, lower-case digits).
    fn push_number(&mut self, mut n: u64, radix: u64) {
        let mut digits = [0u8; 20];
        let mut i = digits.len();
        loop {
            i -= 1;
            digits[i] = b"0123456789abcdef"[(n % radix) as usize];
            n /= radix;
            if n == 0 {
                break;
            }
        }
        self.push(&digits[i..]);
    }
}

impl std::fmt::Display for RequestId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Printable ASCII by construction: shown as is, never converted lossily.
        for &b in self.as_bytes() {
            std::fmt::Write::write_char(f, char::from(b))?;
        }
        Ok(())
    }
}

impl std::fmt::Debug for RequestId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "RequestId({self})")
    }
}

/// FC's request id, or one we make up (`nfc-<ms, hex>-<pid>-<counter>`) for
/// local callers.
pub fn request_id(head: &RequestHead) -> RequestId {
    if let Some(id) = given_request_id(head) {
        return RequestId::from_bytes(id);
    }
    use std::sync::atomic::{AtomicU64, Ordering};
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    // getpid(2) once, not per request.
    static PID: std::sync::OnceLock<u32> = std::sync::OnceLock::new();
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    let t = crate::sys::epoch_millis() as u64;
    let mut id = RequestId { len: 0, bytes: [0; MAX_REQUEST_ID] };
    id.push(b"nfc-");
    id.push_number(t, 16);
    id.push(b"-");
    id.push_number(u64::from(*PID.get_or_init(std::process::id)), 10);
    id.push(b"-");
    id.push_number(n, 10);
    id
}

/// `x-fc-request-id` when it is usable as given (printable, bounded).
fn given_request_id(head: &RequestHead) -> Option<&[u8]> {
    let id = head.header("x-fc-request-id")?;
    (!id.is_empty() && id.len() <= MAX_REQUEST_ID && id.iter().all(|b| b.is_ascii_graphic())).then_some(id)
}

/// A header holding whole seconds, 1..=`max` (anything else, a number past
/// `u64` included, is as if absent).
fn seconds(value: Option<&[u8]>, max: u64) -> Option<Duration> {
    let s = decimal(value?.trim_ascii())?;
    (s > 0 && s <= max).then(|| Duration::from_secs(s))
}

/// A plain decimal number: ASCII digits only (no sign, no spaces inside,
/// `+5` is not a number here though `u64::from_str` takes it), with checked
/// arithmetic: a value past `u64` is `None`, never a wrap or a panic.
pub fn decimal(digits: &[u8]) -> Option<u64> {
    if digits.is_empty() {
        return None;
    }
    digits.iter().try_fold(0u64, |n, &d| {
        if !d.is_ascii_digit() {
            return None;
        }
        n.checked_mul(10)?.checked_add(u64::from(d - b'0'))
    })
}

/// How long `/initialize` waits for readiness: `x-fc-initialization-timeout`
/// seconds, else the configured wait.
pub fn init_timeout(head: &RequestHead, default: Duration) -> Duration {
    seconds(head.header("x-fc-initialization-timeout"), MAX_INIT_TIMEOUT_SECS).unwrap_or(default)
}

/// The function timeout of an invocation: `x-fc-function-timeout` seconds
/// from a trusted caller, else the configured one. FC never sends the header
/// (docs/fc-contract.md §9): it is for trusted callers, and an end user must not
/// hold a worker for a day.
pub fn function_timeout(head: &RequestHead, origin: Origin, default: Duration) -> Duration {
    let given = head.header("x-fc-function-timeout").filter(|_| origin.trusted());
    seconds(given, MAX_FUNCTION_TIMEOUT_SECS).unwrap_or(default)
}

/// Which function the invocation reaches (`route::Policy::choose`), from
/// what its head says.
pub fn choose(
    head: &RequestHead,
    origin: Origin,
    policy: &Policy,
    default: Option<&str>,
) -> Result<Choice, RouteError> {
    let request = Request {
        origin,
        function: head.header("x-noslate-function"),
        service: head.header("x-noslate-service"),
        target: head.target(),
        base_path: head.header("x-fc-base-path"),
    };
    policy.choose(&request, default)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fc::testing::head;

    #[test]
    fn request_id_parts_are_cut_at_the_capacity() {
        let mut id = RequestId::from_bytes(&[b'a'; MAX_REQUEST_ID - 2]);
        id.push(b"bcdef");
        assert_eq!(id.as_bytes().len(), MAX_REQUEST_ID);
        assert!(id.as_bytes().ends_with(b"aabc"));
        id.push_number(7, 10);
        assert_eq!(id.as_bytes().len(), MAX_REQUEST_ID, "a full id takes no more");
        let mut short = RequestId::from_bytes(b"nfc-");
        short.push_number(0xbeef, 16);
        short.push(b"-");
        short.push_number(42, 10);
        assert_eq!(short.as_bytes(), b"nfc-beef-42");
        assert_eq!(format!("{short:?}"), "RequestId(nfc-beef-42)");
    }

    #[test]
    fn routes_by_control_path_then_by_method_and_path() {
        let cases: &[(&str, Endpoint)] = &[
            ("POST /x HTTP/1.1\r\nx-fc-control-path: /invoke\r\n", Endpoint::Invoke(Origin::FcEvent)),
            ("GET /x HTTP/1.1\r\nx-fc-control-path: /http-invoke\r\n", Endpoint::Invoke(Origin::FcHttp)),
            ("POST /x HTTP/1.1\r\nx-fc-control-path: /initialize\r\n", Endpoint::Initialize),
            ("GET /x HTTP/1.1\r\nx-fc-control-path: /pre-freeze\r\n", Endpoint::PreFreeze),
            ("GET /x HTTP/1.1\r\nx-fc-control-path: /pre-stop\r\n", Endpoint::PreStop),
            ("GET /x HTTP/1.1\r\nx-fc-control-path: /nope\r\n", Endpoint::BadControlPath),
            ("POST /invoke HTTP/1.1\r\n", Endpoint::Invoke(Origin::LocalEvent)),
            ("GET /invoke HTTP/1.1\r\n", Endpoint::WrongMethod(Allow::Post)),
            ("POST /initialize HTTP/1.1\r\n", Endpoint::Initialize),
            ("GET /initialize HTTP/1.1\r\n", Endpoint::WrongMethod(Allow::Post)),
            ("GET /pre-freeze HTTP/1.1\r\n", Endpoint::PreFreeze),
            ("POST /pre-freeze HTTP/1.1\r\n", Endpoint::WrongMethod(Allow::Get)),
            ("GET /pre-stop HTTP/1.1\r\n", Endpoint::PreStop),
            ("PUT /pre-stop HTTP/1.1\r\n", Endpoint::WrongMethod(Allow::Get)),
            ("GET /pre-stop?x HTTP/1.1\r\n", Endpoint::PreStop),
            ("GET /anything HTTP/1.1\r\n", Endpoint::Invoke(Origin::LocalHttp)),
            (
                "GET /x HTTP/1.1\r\nx-fc-control-path: /pre-stop\r\nX-FC-Control-Path: /http-invoke\r\n",
                Endpoint::Ambiguous("x-fc-control-path"),
            ),
            (
                "POST /invoke HTTP/1.1\r\nx-noslate-function: a\r\nx-noslate-function: b\r\n",
                Endpoint::Ambiguous("x-noslate-function"),
            ),
        ];
        // Issue #20 item 6: every x-fc-* header noslate-fc reads is refused
        // when repeated (main refused only the four routing headers).
        let mut cases = cases.to_vec();
        let texts: Vec<String> = crate::route::SINGLE_HEADERS
            .iter()
            .map(|name| format!("POST /invoke HTTP/1.1\r\n{name}: 1\r\nhost: h\r\n{}: 2\r\n", name.to_uppercase()))
            .collect();
        for (text, name) in texts.iter().zip(crate::route::SINGLE_HEADERS) {
            cases.push((text.as_str(), Endpoint::Ambiguous(name)));
        }
        for name in ["x-fc-request-id", "x-fc-function-timeout", "x-fc-initialization-timeout", "x-fc-region"] {
            assert!(crate::route::SINGLE_HEADERS.contains(&name), "{name}");
        }
        for (text, want) in cases {
            assert_eq!(endpoint(&head(&format!("{text}\r\n")), Peer::Fc), want, "{text:?}");
            // Issue #20 item 5: from inside the container, every request is
            // an end user's HTTP invocation (repeats are still refused).
            let inside = if matches!(want, Endpoint::Ambiguous(_)) { want } else { Endpoint::Invoke(Origin::FcHttp) };
            assert_eq!(endpoint(&head(&format!("{text}\r\n")), Peer::Container), inside, "{text:?}");
        }
    }

    /// Issue #20 item 5: with the default `remote`, loopback and the
    /// container's own addresses are the container; FC's gateway, which
    /// dials the instance's address from outside, is FC.
    #[test]
    fn peers_by_address() {
        use std::net::IpAddr;
        let own: IpAddr = "21.0.5.7".parse().unwrap();
        let is_own = |a: IpAddr| a == own;
        for inside in ["127.0.0.1", "127.0.0.2", "::1", "::ffff:127.0.0.1", "0.0.0.0", "21.0.5.7", "::ffff:21.0.5.7"] {
            let ip: IpAddr = inside.parse().unwrap();
            assert_eq!(TrustedPeers::Remote.peer(ip, is_own), Peer::Container, "{inside}");
            assert_eq!(TrustedPeers::Any.peer(ip, is_own), Peer::Fc, "{inside}");
            let loopback = !inside.contains("21.0.5.7");
            let want = if loopback { Peer::Container } else { Peer::Fc };
            assert_eq!(TrustedPeers::NotLoopback.peer(ip, is_own), want, "{inside}");
        }
        for outside in ["21.0.5.1", "10.0.0.3", "2001:db8::1", "::ffff:21.0.5.1"] {
            assert_eq!(TrustedPeers::Remote.peer(outside.parse().unwrap(), is_own), Peer::Fc, "{outside}");
        }
        assert_eq!(TrustedPeers::parse(" Remote "), Ok(TrustedPeers::Remote));
        assert_eq!(TrustedPeers::parse("any"), Ok(TrustedPeers::Any));
        assert_eq!(TrustedPeers::parse("not-loopback"), Ok(TrustedPeers::NotLoopback));
        assert!(TrustedPeers::parse("yes").is_err());
    }

    #[test]
    fn request_ids_are_taken_when_printable_and_bounded() {
        assert_eq!(request_id(&head("GET / HTTP/1.1\r\nx-fc-request-id: abc-1\r\n\r\n")).as_bytes(), b"abc-1");
        let long = "a".repeat(MAX_REQUEST_ID + 1);
        for text in ["GET / HTTP/1.1\r\n\r\n", "GET / HTTP/1.1\r\nx-fc-request-id: a b\r\n\r\n"] {
            assert!(request_id(&head(text)).as_bytes().starts_with(b"nfc-"), "{text:?}");
        }
        let made = request_id(&head(&format!("GET / HTTP/1.1\r\nx-fc-request-id: {long}\r\n\r\n")));
        assert!(made.as_bytes().starts_with(b"nfc-"));
        let text = made.to_string();
        let parts: Vec<&str> = text.split('-').collect();
        assert_eq!(parts.len(), 4, "{text}");
        assert!(u64::from_str_radix(parts[1], 16).is_ok() && parts[2] == std::process::id().to_string(), "{text}");
        assert_ne!(made, request_id(&head("GET / HTTP/1.1\r\n\r\n")), "made-up ids differ");
    }

    #[test]
    fn function_timeout_only_from_trusted_callers_and_bounded() {
        let d = Duration::from_secs(10);
        let h = head("POST /invoke HTTP/1.1\r\nx-fc-function-timeout: 60\r\n\r\n");
        assert_eq!(function_timeout(&h, Origin::FcEvent, d), Duration::from_secs(60));
        assert_eq!(function_timeout(&h, Origin::LocalHttp, d), Duration::from_secs(60));
        assert_eq!(function_timeout(&h, Origin::FcHttp, d), d, "an end user's header is ignored");
        for bad in ["0", "86401", "x", "-1", ""] {
            let h = head(&format!("POST /invoke HTTP/1.1\r\nx-fc-function-timeout: {bad}\r\n\r\n"));
            assert_eq!(function_timeout(&h, Origin::FcEvent, d), d, "{bad:?}");
        }
        let h = head("POST /initialize HTTP/1.1\r\nx-fc-initialization-timeout:  7 \r\n\r\n");
        assert_eq!(init_timeout(&h, d), Duration::from_secs(7));
        // u64::MAX seconds once overflowed `Instant + Duration` and aborted
        // the process: every value past the bound is ignored.
        for bad in ["18446744073709551615", "18446744073709551616", "86401", "0", "+5", "5s"] {
            let h = head(&format!("POST /initialize HTTP/1.1\r\nx-fc-initialization-timeout: {bad}\r\n\r\n"));
            assert_eq!(init_timeout(&h, d), d, "{bad:?}");
        }
        let h = head("POST /initialize HTTP/1.1\r\nx-fc-initialization-timeout: 86400\r\n\r\n");
        assert_eq!(init_timeout(&h, d), Duration::from_secs(86_400));
        assert_eq!(init_timeout(&head("POST /initialize HTTP/1.1\r\n\r\n"), d), d);
    }

    #[test]
    fn bodies_left_unread_and_reuse() {
        let none = head("GET / HTTP/1.1\r\n\r\n");
        let length = head("POST / HTTP/1.1\r\ncontent-length: 5\r\n\r\n");
        let chunked = head("POST / HTTP/1.1\r\ntransfer-encoding: chunked\r\n\r\n");
        let close = head("GET / HTTP/1.1\r\nconnection: close\r\n\r\n");
        assert_eq!([unread_body(&none), unread_body(&length), unread_body(&chunked)], [Some(0), Some(5), None]);
        assert_eq!([&none, &length, &chunked, &close].map(reusable_without_body), [true, false, false, false]);
        // Issue #20 item 3: without our 100, the client may never send the
        // body; dropping 5 bytes would eat its next request.
        let expect = head("POST / HTTP/1.1\r\ncontent-length: 5\r\nexpect: 100-continue\r\n\r\n");
        assert_eq!(unread_body(&expect), None);
        let empty = head("POST / HTTP/1.1\r\ncontent-length: 0\r\nexpect: 100-continue\r\n\r\n");
        assert_eq!(unread_body(&empty), Some(0));
        assert!(supports_chunked(&none));
        assert!(!supports_chunked(&head("GET / HTTP/1.0\r\n\r\n")));
    }

    #[test]
    fn choose_reads_the_function_headers() {
        let policy = Policy::default();
        let h = head("POST /invoke HTTP/1.1\r\nx-noslate-service: svc\r\nx-noslate-function: f\r\n\r\n");
        let c = choose(&h, Origin::FcEvent, &policy, None).unwrap();
        assert_eq!((c.name.as_str(), c.service), ("svc", true));
        let h = head("GET /p HTTP/1.1\r\nx-noslate-function: f\r\n\r\n");
        assert_eq!(choose(&h, Origin::FcHttp, &policy, None), Err(RouteError::NoFunction));
        assert_eq!(choose(&h, Origin::FcHttp, &policy, Some("d")).unwrap().name, "d");
    }
}
