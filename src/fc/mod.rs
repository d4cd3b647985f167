//! The FC exchange as a sans-IO core: everything Function Compute's
//! HTTP/1.1 contract asks of an exchange, fed with request heads, body
//! bytes, Noslated's response pieces and `Instant`s, returning messages,
//! response bytes and decisions. No socket, no timer, no loop.
//!
//! * [`dispatch`] — what a request head asks for (hook, event or HTTP
//!   invocation, local or from FC), its request id and timeouts, and the
//!   function it reaches (with `route::Policy`);
//! * [`request`] — the head → the first `InvokeRequest`, the body → messages;
//! * [`response`] — Noslated's response → HTTP/1.1 response bytes;
//! * [`invocation`] — one invocation's state, tying the two halves;
//! * [`error`] — the typed causes of a failed invocation ([`InvokeError`]);
//! * [`out`] — the client output queue and scratch heads.
//!
//! `server/` drives it: it owns the sockets, readiness and timers, and acts on
//! what these functions return. Error answers are made in `answers.rs`.

pub mod dispatch;
pub mod error;
pub mod invocation;
pub mod out;
pub mod request;
pub mod response;

pub use dispatch::Endpoint;
pub use error::{InvokeError, IoOp, PlaneFault, ProtocolError, ResponseError};
pub use invocation::{Invocation, Now, RequestSink};
pub use out::{OutQueue, Scratch};
pub use request::{BodyStep, RequestBody};
pub use response::{Progress, Resp, ResponseSplice, ResponseWriter};

/// FC's log markers on stdout (docs/fc-contract.md §11): a Start and an End line
/// around every invocation and hook, with the request id.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Marker {
    Invoke,
    Initialize,
    PreFreeze,
    PreStop,
}

impl Marker {
    pub fn name(self) -> &'static str {
        match self {
            Marker::Invoke => "Invoke",
            Marker::Initialize => "Initialize",
            Marker::PreFreeze => "PreFreeze",
            Marker::PreStop => "PreStop",
        }
    }
}

#[cfg(test)]
mod marker_tests {
    use super::Marker;

    /// FC reads these words in `FC <name> Start/End RequestId: <id>`.
    #[test]
    fn marker_names_are_fcs() {
        let names = [Marker::Invoke, Marker::Initialize, Marker::PreFreeze, Marker::PreStop].map(Marker::name);
        assert_eq!(names, ["Invoke", "Initialize", "PreFreeze", "PreStop"]);
    }
}

#[cfg(test)]
pub(crate) mod testing {
    use bytes::BytesMut;

    use super::OutQueue;
    use crate::http1::{HeadParser, Limits, RequestHead};

    /// Parse a complete request head.
    pub fn head(text: &str) -> RequestHead {
        let mut buf = BytesMut::from(text.as_bytes());
        HeadParser::default().parse(&mut buf, &Limits::default()).expect("valid head").expect("complete head")
    }

    /// What the queue would write, as text.
    pub fn queued(out: &OutQueue) -> String {
        out.segments().map(|s| String::from_utf8_lossy(s).into_owned()).collect()
    }
}
