//! Every response noslate-fc makes up itself lives here (sozu's `answers`
//! idea): one place maps each failure to a status code and a short JSON body,
//! so no failure path can forget to answer.
//!
//! Event invocations follow FC's convention (docs/fc-contract.md §7, §12.3): a
//! failed invocation is `404` with `x-fc-status: 404`. HTTP invocations reach
//! end users, so they get the precise code (docs/noslated-protocol.md §9.4).
//!
//! [`Answer`] is every complete response we make up — error answers, the
//! hooks' bodies (`/initialize`, `/pre-freeze`, `/pre-stop`), protocol
//! refusals and the overload 503 — encoded once by [`Answer::encode`].

use bytes::{Bytes, BytesMut};

use crate::fc::dispatch::Allow;
use crate::fc::{InvokeError, ProtocolError, ResponseError};
use crate::http1::response::{self, ResponseFraming};
use crate::http1::RequestError;
use crate::route::RouteError;
use crate::splice::Failure;

impl InvokeError {
    /// The precise HTTP status for this failure.
    pub fn http_status(&self) -> u16 {
        match self {
            InvokeError::Route(RouteError::NoFunction | RouteError::BadFunctionName) => 400,
            InvokeError::Route(RouteError::FunctionNotAllowed(_) | RouteError::NoRoute) => 404,
            InvokeError::NoDataPlane | InvokeError::ProfilesNotReady(_) | InvokeError::Draining => 503,
            InvokeError::Deadline => 504,
            InvokeError::PlaneLost(_) | InvokeError::Protocol(_) => 502,
            InvokeError::Status(status) => match status.code.0 {
                4 => 504,
                5 => 404,
                8 => 429,
                14 => 503,
                _ => 502,
            },
            InvokeError::Noslated(f) => noslated_status(f),
        }
    }

    /// The status FC should see for an event invocation: its own failure
    /// signal (404), except for our own refusals.
    pub fn event_status(&self) -> u16 {
        match self {
            InvokeError::Route(RouteError::NoFunction | RouteError::BadFunctionName) => 400,
            InvokeError::Draining => 503,
            _ => 404,
        }
    }

    fn name_and_message(&self) -> (&str, String) {
        match self {
            InvokeError::Route(why) => (
                match why {
                    RouteError::NoFunction => "NoFunction",
                    RouteError::BadFunctionName => "BadFunctionName",
                    RouteError::FunctionNotAllowed(_) => "FunctionNotFound",
                    RouteError::NoRoute => "NoRoute",
                },
                why.to_string(),
            ),
            InvokeError::NoDataPlane => ("NoDataPlane", "noslated: no data plane connected".into()),
            InvokeError::ProfilesNotReady(why) => {
                ("NotReady", format!("noslated: the function profiles are not in force yet: {why}"))
            }
            InvokeError::Draining => ("Draining", "noslate-fc is shutting down and takes no new invocations".into()),
            InvokeError::Deadline => ("DeadlineExceeded", "noslated: deadline exceeded".into()),
            InvokeError::PlaneLost(why) => ("DataPlaneLost", format!("noslated: data plane connection lost: {why}")),
            InvokeError::Protocol(ProtocolError::Response(ResponseError::BadStatus(_))) => {
                ("BadStatus", self.protocol_message())
            }
            InvokeError::Protocol(ProtocolError::Response(ResponseError::HeadTooLarge)) => {
                ("ResponseHeadTooLarge", self.protocol_message())
            }
            InvokeError::Protocol(_) => ("ProtocolError", self.protocol_message()),
            InvokeError::Status(s) => ("GrpcError", format!("noslated: gRPC status {}: {}", s.code.0, s.message)),
            InvokeError::Noslated(f) => (f.name.as_str(), f.message.clone()),
        }
    }

    fn protocol_message(&self) -> String {
        match self {
            InvokeError::Protocol(ProtocolError::Response(why @ ResponseError::BadStatus(_)))
            | InvokeError::Protocol(ProtocolError::Response(why @ ResponseError::HeadTooLarge)) => why.to_string(),
            InvokeError::Protocol(why) => format!("noslated: bad response from data plane: {why}"),
            _ => String::new(),
        }
    }

    /// `{"errorName":…,"errorMessage":…}` plus the code and, when the operator
    /// allows it, the stacks.
    pub fn json_body(&self, expose_stack: bool) -> Vec<u8> {
        let (name, message) = self.name_and_message();
        let mut out = String::with_capacity(64 + message.len());
        out.push_str("{\"errorName\":");
        json_string(&mut out, name);
        out.push_str(",\"errorMessage\":");
        json_string(&mut out, &message);
        if let InvokeError::Noslated(f) = self {
            if let Some(code) = f.code {
                out.push_str(&format!(",\"errorCode\":{code}"));
            }
            if expose_stack {
                if let Some(stack) = &f.stack {
                    out.push_str(",\"stack\":");
                    json_string(&mut out, stack);
                }
                if let Some(stack) = &f.peer_stack {
                    out.push_str(",\"peerStack\":");
                    json_string(&mut out, stack);
                }
            }
        }
        out.push('}');
        out.into_bytes()
    }

    /// One line for our log (never contains request data beyond the cause).
    pub fn log_text(&self) -> String {
        let (name, message) = self.name_and_message();
        format!("{name}: {message}")
    }
}

/// `x-fc-status` of a failed exchange (FC's failure signal) and of a hook
/// that succeeded.
const FC_FAILED: &[(&[u8], &[u8])] = &[(b"x-fc-status", b"404")];
const FC_OK: &[(&[u8], &[u8])] = &[(b"x-fc-status", b"200")];
const ALLOW_GET: &[(&[u8], &[u8])] = &[(b"allow", b"GET")];
const ALLOW_POST: &[(&[u8], &[u8])] = &[(b"allow", b"POST")];

/// What `/initialize` reports when the stack is ready.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Readiness {
    pub data_planes: usize,
    pub control_planes: usize,
    pub profiles: usize,
    pub platform_env: usize,
}

/// A complete JSON response we make up ourselves.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Answer {
    pub status: u16,
    /// Besides `content-type: application/json` and the framing.
    pub headers: &'static [(&'static [u8], &'static [u8])],
    pub body: Vec<u8>,
}

impl Answer {
    /// Status line, headers, `Content-Length` and the body, in one buffer.
    pub fn encode(&self, keep_alive: bool) -> Bytes {
        let mut headers: [(&[u8], &[u8]); 2] = [(b"content-type", b"application/json"), (b"", b"")];
        let n = match self.headers {
            [] => 1,
            [one] => {
                headers[1] = *one;
                2
            }
            more => unreachable!("answers carry at most one extra header, not {}", more.len()),
        };
        let mut out = BytesMut::with_capacity(128 + self.body.len());
        response::write_head(
            &mut out,
            self.status,
            &headers[..n],
            ResponseFraming::Length(self.body.len() as u64),
            keep_alive,
        );
        out.extend_from_slice(&self.body);
        out.freeze()
    }

    /// A failed invocation, answered before any byte of the function's
    /// response went out.
    pub fn invoke_failed(err: &InvokeError, event: bool, expose_stack: bool) -> Answer {
        let status = if event { err.event_status() } else { err.http_status() };
        Answer { status, headers: FC_FAILED, body: err.json_body(expose_stack) }
    }

    /// A malformed or over-limit request (RFC 9112 §9.6: the connection
    /// closes after it).
    pub fn refused(e: &RequestError) -> Answer {
        Answer { status: e.status(), headers: &[], body: error_body(e.reason()) }
    }

    /// An invocation's body broke its framing before the response began.
    pub fn body_refused(e: &RequestError) -> Answer {
        Answer { status: e.status(), headers: FC_FAILED, body: error_body(e.reason()) }
    }

    /// A routing header given more than once.
    pub fn ambiguous(header: &str) -> Answer {
        Answer { status: 400, headers: FC_FAILED, body: error_body(&format!("{header} must appear at most once")) }
    }

    pub fn wrong_method(allow: Allow) -> Answer {
        let headers = match allow {
            Allow::Get => ALLOW_GET,
            Allow::Post => ALLOW_POST,
        };
        Answer { status: 405, headers, body: error_body("method not allowed on this path") }
    }

    pub fn bad_control_path() -> Answer {
        Answer { status: 400, headers: &[], body: error_body("unknown x-fc-control-path") }
    }

    /// The head did not arrive within `NOSLATE_FC_HEADER_TIMEOUT_MS`.
    pub fn head_timeout() -> Answer {
        Answer { status: 408, headers: &[], body: error_body("request head not received in time") }
    }

    /// Beyond `NOSLATE_FC_MAX_CONNECTIONS`.
    pub fn overloaded() -> Answer {
        Answer { status: 503, headers: &[], body: error_body("too many connections") }
    }

    pub fn pre_freeze() -> Answer {
        Answer { status: 200, headers: FC_OK, body: b"{\"preFreeze\":\"ok\"}".to_vec() }
    }

    pub fn pre_stop() -> Answer {
        Answer { status: 200, headers: FC_OK, body: b"{\"preStop\":\"ok\"}".to_vec() }
    }

    /// `/initialize`: the stack is ready.
    pub fn initialized(r: &Readiness) -> Answer {
        let body = format!(
            "{{\"initialized\":true,\"dataPlanes\":{},\"controlPlanes\":{},\"profiles\":{},\"platformEnv\":{}}}",
            r.data_planes, r.control_planes, r.profiles, r.platform_env
        );
        Answer { status: 200, headers: FC_OK, body: body.into_bytes() }
    }

    /// `/initialize`: not ready in time, or cannot be (a bad profile file).
    pub fn not_initialized(reason: &str) -> Answer {
        let mut body = String::from("{\"initialized\":false,\"reason\":");
        json_string(&mut body, reason);
        body.push('}');
        Answer { status: 404, headers: FC_FAILED, body: body.into_bytes() }
    }
}

/// docs/noslated-protocol.md §9.2, §9.4: `code` is a gRPC status for `Error` and an
/// aworker CanonicalCode for `NoslatedError`.
fn noslated_status(f: &Failure) -> u16 {
    let code = f.code.unwrap_or(0);
    if f.name == "NoslatedError" {
        return match code {
            2 => 504,
            _ => 502,
        };
    }
    match code {
        5 => 404,
        8 => 429,
        9 => 503,
        4 => 504,
        _ if f.message.starts_with("No available worker process") => 503,
        _ if f.message.starts_with("rate limit") => 429,
        _ => 502,
    }
}

/// Append `s` as a JSON string literal.
pub fn json_string(out: &mut String, s: &str) {
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if (c as u32) < 0x20 => out.push_str(&format!("\\u{:04x}", c as u32)),
            c => out.push(c),
        }
    }
    out.push('"');
}

/// Body of a protocol-level refusal (400, 408, 413, …): `{"error":"…"}`.
pub fn error_body(message: &str) -> Vec<u8> {
    let mut out = String::from("{\"error\":");
    json_string(&mut out, message);
    out.push('}');
    out.into_bytes()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fc::PlaneFault;
    use crate::grpc::Status;

    fn failure(name: &str, message: &str, code: Option<i32>) -> InvokeError {
        InvokeError::Noslated(Failure {
            name: name.into(),
            message: message.into(),
            code,
            stack: Some("Error: x\n at y".into()),
            peer_stack: None,
        })
    }

    #[test]
    fn status_mapping() {
        assert_eq!(failure("Error", "No function named x registered in this node.", Some(5)).http_status(), 404);
        assert_eq!(failure("Error", "rate limit exceeded", Some(8)).http_status(), 429);
        assert_eq!(failure("Error", "System circuit breaker opened.", Some(9)).http_status(), 503);
        assert_eq!(failure("Error", "No available worker process for f now.", None).http_status(), 503);
        assert_eq!(failure("Error", "Waiting for worker has timed out", Some(4)).http_status(), 504);
        assert_eq!(failure("NoslatedError", "… TIMEOUT …", Some(2)).http_status(), 504);
        assert_eq!(failure("NoslatedError", "… INTERNAL_ERROR …", Some(1)).http_status(), 502);
        assert_eq!(InvokeError::NoDataPlane.http_status(), 503);
        assert_eq!(InvokeError::NoDataPlane.event_status(), 404);
        let not_ready = InvokeError::ProfilesNotReady("cp-0.sock not ready".into());
        assert_eq!((not_ready.http_status(), not_ready.event_status()), (503, 404));
        assert_eq!(InvokeError::Route(RouteError::NoFunction).event_status(), 400);
        assert_eq!(InvokeError::Deadline.http_status(), 504);
        let not_allowed = InvokeError::Route(RouteError::FunctionNotAllowed("x".into()));
        assert_eq!((not_allowed.http_status(), not_allowed.event_status()), (404, 404));
        assert_eq!(
            (
                InvokeError::Route(RouteError::NoRoute).http_status(),
                InvokeError::Route(RouteError::NoRoute).event_status()
            ),
            (404, 404)
        );
    }

    #[test]
    fn only_noslated_not_found_for_a_function_is_function_unknown() {
        assert!(failure("Error", "No function named x registered in this node.", Some(5)).is_function_unknown());
        assert!(!failure("Error", "No function named x registered in this node.", Some(2)).is_function_unknown());
        assert!(!failure("Error", "not found", Some(5)).is_function_unknown(), "a function's own code 5");
        assert!(!failure("NoslatedError", "No function named x", Some(5)).is_function_unknown());
        assert!(!InvokeError::Status(Status { code: crate::grpc::Code(5), message: "x".into() }).is_function_unknown());
    }

    #[test]
    fn json_bodies_escape_and_hide_stacks() {
        let e = failure("Error", "bad \"quote\"\n", Some(5));
        let body = String::from_utf8(e.json_body(false)).unwrap();
        assert_eq!(body, r#"{"errorName":"Error","errorMessage":"bad \"quote\"\n","errorCode":5}"#);
        assert!(String::from_utf8(e.json_body(true)).unwrap().contains("\"stack\""));
        assert_eq!(error_body("x\u{1}"), br#"{"error":"x\u0001"}"#);
    }

    #[test]
    fn typed_causes_keep_their_layer_in_the_body() {
        let lost = InvokeError::PlaneLost(PlaneFault::Reset(crate::h2::ErrorCode::CANCEL));
        assert_eq!(lost.http_status(), 502);
        let body = String::from_utf8(lost.json_body(false)).unwrap();
        assert!(
            body.starts_with(
                r#"{"errorName":"DataPlaneLost","errorMessage":"noslated: data plane connection lost: stream reset ("#
            ),
            "{body}"
        );
        let open = InvokeError::PlaneLost(PlaneFault::Open(crate::h2::OpenError::Closing));
        assert!(!String::from_utf8(open.json_body(false)).unwrap().contains("Closing"), "no Debug text in bodies");
        let short = InvokeError::from(ResponseError::ShorterThanContentLength);
        assert_eq!(
            short.log_text(),
            "ProtocolError: noslated: bad response from data plane: body shorter than content-length"
        );
        let unavailable = InvokeError::Status(Status::new(crate::grpc::Code(14), "down"));
        assert_eq!((unavailable.http_status(), unavailable.event_status()), (503, 404));
    }

    #[test]
    fn answers_encode_as_complete_json_responses() {
        let text = |a: Answer, keep| String::from_utf8(a.encode(keep).to_vec()).unwrap();
        let t = text(Answer::pre_stop(), false);
        assert!(t.starts_with("HTTP/1.1 200 OK\r\n"), "{t}");
        assert!(
            t.contains("content-type: application/json\r\nx-fc-status: 200\r\n") && t.contains("Connection: close"),
            "{t}"
        );
        assert!(t.ends_with("\r\n\r\n{\"preStop\":\"ok\"}"), "{t}");
        let t = text(Answer::wrong_method(Allow::Post), true);
        assert!(t.starts_with("HTTP/1.1 405 ") && t.contains("allow: POST\r\n") && !t.contains("Connection"), "{t}");
        let t = text(Answer::not_initialized("dp-0 \"down\""), true);
        assert!(
            t.contains("x-fc-status: 404") && t.ends_with(r#"{"initialized":false,"reason":"dp-0 \"down\""}"#),
            "{t}"
        );
        let r = Readiness { data_planes: 1, control_planes: 2, profiles: 3, platform_env: 4 };
        let t = text(Answer::initialized(&r), true);
        assert!(
            t.ends_with(r#"{"initialized":true,"dataPlanes":1,"controlPlanes":2,"profiles":3,"platformEnv":4}"#),
            "{t}"
        );
        assert_eq!(Answer::overloaded().status, 503);
        assert_eq!(Answer::invoke_failed(&InvokeError::NoDataPlane, false, false).status, 503);
        assert_eq!(Answer::invoke_failed(&InvokeError::NoDataPlane, true, false).status, 404);
    }
}
