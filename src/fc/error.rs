//! Why an invocation failed: [`InvokeError`], each cause carrying its own
//! layer's error type (routing, h2, gRPC, splice, the response framing) up
//! to the answer: nothing is turned into a `String` on the way. The type
//! lives here, below `route` and `answers` users alike, so that no layer
//! imports it from above; `answers.rs` maps it to statuses and bodies, once,
//! at the top.

use std::fmt;
use std::io;

use crate::grpc::{GrpcError, Status};
use crate::h2::{ConnError, ErrorCode, OpenError};
use crate::route::RouteError;
use crate::splice::{Failure, SpliceError};

/// Why an invocation failed, by cause; `answers.rs` turns it into a reply.
#[derive(Debug, Clone, PartialEq)]
pub enum InvokeError {
    /// No function could be chosen (`route::Policy::choose`).
    Route(RouteError),
    /// No data plane connected within the readiness wait.
    NoDataPlane,
    /// The function is in NOSLATE_FUNCTION_PROFILES, and the profiles were
    /// not in force within the readiness wait (the reason says what was
    /// missing).
    ProfilesNotReady(String),
    /// We are shutting down (`/pre-stop` or SIGTERM).
    Draining,
    /// Noslated reported a failure in the stream.
    Noslated(Failure),
    /// The gRPC call ended with a non-OK status.
    Status(Status),
    /// The stream or its data plane connection failed mid-invoke.
    PlaneLost(PlaneFault),
    /// The response broke a protocol (which one: `ProtocolError`).
    Protocol(ProtocolError),
    /// The invoke deadline passed before the head arrived.
    Deadline,
}

impl InvokeError {
    /// Noslated's answer for a function its data plane does not have
    /// (`DataFlowController.getBroker`: `RpcError` NOT_FOUND, sent before
    /// anything of the request reached a function).
    pub fn is_function_unknown(&self) -> bool {
        matches!(self, InvokeError::Noslated(f)
            if f.name == "Error" && f.code == Some(5) && f.message.starts_with("No function named "))
    }
}

impl From<RouteError> for InvokeError {
    fn from(e: RouteError) -> Self {
        InvokeError::Route(e)
    }
}

impl From<ResponseError> for InvokeError {
    fn from(e: ResponseError) -> Self {
        InvokeError::Protocol(ProtocolError::Response(e))
    }
}

/// The function's response broke HTTP/1.1 framing as it promised it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ResponseError {
    /// More body than the function's `content-length` (never sent).
    LongerThanContentLength,
    /// The stream ended short of the function's `content-length`.
    ShorterThanContentLength,
    /// The stream ended inside a gRPC message.
    EndedInsideMessage,
    /// The stream ended OK without a response head.
    NoHead,
    /// The function answered a status that is not final (RFC 9110 §15:
    /// only 200–599 may end an exchange; a 1xx or 600+ never reaches the
    /// client).
    BadStatus(u16),
    /// The function's response head is over `response::MAX_RESPONSE_HEAD`.
    HeadTooLarge,
}

impl fmt::Display for ResponseError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            ResponseError::LongerThanContentLength => "body longer than content-length",
            ResponseError::ShorterThanContentLength => "body shorter than content-length",
            ResponseError::EndedInsideMessage => "stream ended inside a message",
            ResponseError::NoHead => "No headers received",
            ResponseError::BadStatus(status) => return write!(f, "the function answered status {status}, not 200-599"),
            ResponseError::HeadTooLarge => "the function's response head is over 16 KiB",
        })
    }
}

/// The data plane's response broke a protocol, by layer.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ProtocolError {
    /// The response head is not gRPC (`:status`, `content-type`): the status
    /// a gRPC client synthesizes for it.
    Head(Status),
    /// The trailers' `grpc-status` is missing or malformed.
    Trailers(GrpcError),
    /// The `InvokeResponse` messages (splice layer).
    Splice(SpliceError),
    /// The HTTP/1.1 response the messages describe.
    Response(ResponseError),
}

impl fmt::Display for ProtocolError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ProtocolError::Head(status) => status.fmt(f),
            ProtocolError::Trailers(e) => e.fmt(f),
            ProtocolError::Splice(e) => e.fmt(f),
            ProtocolError::Response(e) => e.fmt(f),
        }
    }
}

impl From<SpliceError> for ProtocolError {
    fn from(e: SpliceError) -> Self {
        ProtocolError::Splice(e)
    }
}

impl From<ResponseError> for ProtocolError {
    fn from(e: ResponseError) -> Self {
        ProtocolError::Response(e)
    }
}

/// Which socket operation failed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum IoOp {
    Read,
    Write,
}

/// Why an invoke's stream, or its whole data-plane connection, went away.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PlaneFault {
    /// The data plane closed the connection (EOF).
    Closed,
    /// A read or write on the unix socket failed (`WriteZero` for a write
    /// that took nothing).
    Io(IoOp, io::ErrorKind),
    /// The HTTP/2 connection failed (our GOAWAY is queued).
    Connection(ConnError),
    /// The data plane reset the stream.
    Reset(ErrorCode),
    /// No stream could be opened on the connection.
    Open(OpenError),
}

impl fmt::Display for PlaneFault {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PlaneFault::Closed => f.write_str("data plane closed the connection"),
            PlaneFault::Io(IoOp::Read, kind) => write!(f, "read: {kind}"),
            PlaneFault::Io(IoOp::Write, kind) => write!(f, "write: {kind}"),
            PlaneFault::Connection(e) => e.fmt(f),
            PlaneFault::Reset(code) => write!(f, "stream reset ({code})"),
            PlaneFault::Open(e) => e.fmt(f),
        }
    }
}

impl std::error::Error for ResponseError {}
impl std::error::Error for ProtocolError {}
impl std::error::Error for PlaneFault {}
