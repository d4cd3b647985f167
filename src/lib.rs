//! noslate-fc: the front door of a Noslate instance on Function Compute.
//!
//! Protocol layers are sans-IO state machines (`http1`, `hpack`, `h2`, `grpc`,
//! `proto`, `splice`, and `fc`, the FC exchange itself); the event loop in `server` is the only code that
//! touches sockets, and `sys` the only code with `unsafe` (denied everywhere
//! else).

#![deny(unsafe_code)]

pub mod answers;
pub mod config;
pub mod fc;
pub mod grpc;
pub mod h2;
pub mod hpack;
pub mod http1;
pub mod idmap;
pub mod instance;
pub mod logsafe;
pub mod pool;
pub mod profile;
pub mod proto;
pub mod route;
pub mod server;
pub mod splice;
#[allow(unsafe_code)]
pub mod sys;
pub mod timer;
