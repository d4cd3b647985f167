//! HTTP/2 client side of the proxy (RFC 9113), sans-IO.
//!
//! `frame` decodes and encodes single frames; `flow` keeps the signed
//! flow-control windows; `state` is one stream's lifecycle (§5.1); `conn` is
//! the client connection state machine that the event loop feeds with bytes
//! read from the upstream socket and drains with `writev` (its `send` part
//! schedules DATA and offers send capacity). `LIFECYCLE.md` walks through
//! all of it. Nothing here touches a socket or a clock.

pub mod conn;
pub mod flow;
pub mod frame;
mod state;

pub use conn::{ClientConnection, Config, ConnError, Event, OpenError, StreamRef};
pub use frame::{decode_frame, ErrorCode, Frame, FrameError, FrameHead, FRAME_HEAD_LEN};

/// Decoded header fields in wire order, pseudo-headers included. It lives
/// here, not in `conn`, because both `conn` and `state` (a queued head) hold
/// one, and `state` sits below `conn`.
pub type HeaderList = Vec<(bytes::Bytes, bytes::Bytes)>;
