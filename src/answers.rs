//! Every response noslate-fc makes up itself lives here (sozu's `answers`
//! idea): one place maps each failure to a status code and a short JSON body,
//! so no failure path can forget to answer.
//!
//! Event invocations follow FC's convention (fc-protocol.md §5, §9.4): a
//! failed invocation is `404` with `x-fc-status: 404`. HTTP invocations reach
//! end users, so they get the precise code (noslated-protocol.md §7.5).

use crate::splice::Failure;

#[derive(Debug, Clone, PartialEq)]
pub enum InvokeError {
    /// No function configured and none chosen by header.
    NoFunction,
    /// The function header names something unusable.
    BadFunctionName,
    /// The chosen name is not in NOSLATE_FC_FUNCTIONS.
    FunctionNotAllowed(String),
    /// NOSLATE_FC_ROUTES has no route for the path, and there is no default.
    NoRoute,
    /// No data plane connected within the readiness wait.
    NoDataPlane,
    /// We are shutting down (`/pre-stop` or SIGTERM).
    Draining,
    /// Noslated reported a failure in the stream.
    Noslated(Failure),
    /// The gRPC call ended with a non-OK status.
    Status { code: u32, message: String },
    /// The data plane connection failed mid-invoke.
    PlaneLost(String),
    /// The response broke the protocol.
    Protocol(String),
    /// The invoke deadline passed before the head arrived.
    Deadline,
}

impl InvokeError {
    /// The precise HTTP status for this failure.
    pub fn http_status(&self) -> u16 {
        match self {
            InvokeError::NoFunction | InvokeError::BadFunctionName => 400,
            InvokeError::FunctionNotAllowed(_) | InvokeError::NoRoute => 404,
            InvokeError::NoDataPlane | InvokeError::Draining => 503,
            InvokeError::Deadline => 504,
            InvokeError::PlaneLost(_) | InvokeError::Protocol(_) => 502,
            InvokeError::Status { code, .. } => match code {
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
            InvokeError::NoFunction | InvokeError::BadFunctionName => 400,
            InvokeError::Draining => 503,
            _ => 404,
        }
    }

    fn name_and_message(&self) -> (&str, String) {
        match self {
            InvokeError::NoFunction => (
                "NoFunction",
                "no function to invoke: set NOSLATE_FUNCTION, configure exactly one profile in \
                 NOSLATE_FUNCTION_PROFILES, or send x-noslate-function"
                    .to_string(),
            ),
            InvokeError::BadFunctionName => (
                "BadFunctionName",
                "x-noslate-function / x-noslate-service must be 1-128 of A-Z a-z 0-9 - _ . : @".into(),
            ),
            // The name passed `route::function_name`: short, plain ASCII.
            InvokeError::FunctionNotAllowed(name) => {
                ("FunctionNotFound", format!("no function named {name:?} can be invoked here"))
            }
            InvokeError::NoRoute => ("NoRoute", "no function serves this path".into()),
            InvokeError::NoDataPlane => ("NoDataPlane", "noslated: no data plane connected".into()),
            InvokeError::Draining => ("Draining", "noslate-fc is shutting down and takes no new invocations".into()),
            InvokeError::Deadline => ("DeadlineExceeded", "noslated: deadline exceeded".into()),
            InvokeError::PlaneLost(why) => ("DataPlaneLost", format!("noslated: data plane connection lost: {why}")),
            InvokeError::Protocol(why) => ("ProtocolError", format!("noslated: bad response from data plane: {why}")),
            InvokeError::Status { code, message } => ("GrpcError", format!("noslated: gRPC status {code}: {message}")),
            InvokeError::Noslated(f) => (f.name.as_str(), f.message.clone()),
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

/// noslated-protocol.md §7.5: `code` is a gRPC status for `Error` and an
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
        assert_eq!(InvokeError::NoFunction.event_status(), 400);
        assert_eq!(InvokeError::Deadline.http_status(), 504);
        let not_allowed = InvokeError::FunctionNotAllowed("x".into());
        assert_eq!((not_allowed.http_status(), not_allowed.event_status()), (404, 404));
        assert_eq!((InvokeError::NoRoute.http_status(), InvokeError::NoRoute.event_status()), (404, 404));
    }

    #[test]
    fn json_bodies_escape_and_hide_stacks() {
        let e = failure("Error", "bad \"quote\"\n", Some(5));
        let body = String::from_utf8(e.json_body(false)).unwrap();
        assert_eq!(body, r#"{"errorName":"Error","errorMessage":"bad \"quote\"\n","errorCode":5}"#);
        assert!(String::from_utf8(e.json_body(true)).unwrap().contains("\"stack\""));
        assert_eq!(error_body("x\u{1}"), br#"{"error":"x\u0001"}"#);
    }
}
