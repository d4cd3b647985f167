//! The warm-up event (`NOSLATE_FC_WARM_UP_EVENT`): once the workers of the
//! `NOSLATE_FC_WARM_UP` functions are ready, noslate-fc sends each of them one
//! event invocation, and `/initialize` answers only after every one of them
//! was answered. The first request through each worker and through the data
//! plane is then one the user configured, not an end user's (BENCHMARKS.md,
//! "The first request's protobuf codecs": that first request costs ~4 ms more
//! than a warm one).
//!
//! Each event is an HTTP/1.1 request to noslate-fc's own port, so it takes the
//! path every invoke takes (readiness, routing, the data plane stream, the
//! deadline) and no second invoke path exists. Its connection is trusted as
//! FC's: the accepted peer address is exactly the local address of a socket
//! this process opened, which no other process can hold at the same time.
//! The answer is read to its end and dropped; its status is logged.

use std::io::{self, Read, Write};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use mio::net::TcpStream;
use mio::{Interest, Token};

use super::{Effect, Server};
use crate::logsafe::Escaped;

/// Tokens of the warm-up connections: `WARM_UP_TOKENS - i`, above every
/// client and plane token in use (`mod.rs` tokens).
pub(super) const WARM_UP_TOKENS: usize = usize::MAX - 1;

/// The warm-up events of one process: sent once.
#[derive(Default)]
pub(super) struct WarmUp {
    sent: bool,
    /// By token (`WARM_UP_TOKENS - i`); `None` once answered (its socket
    /// closed).
    calls: Vec<Option<Call>>,
}

/// One warm-up event in flight.
struct Call {
    function: String,
    sock: TcpStream,
    /// This socket's own address: the peer address its accepted end shows.
    local: SocketAddr,
    request: Vec<u8>,
    written: usize,
    /// The answer's first bytes, up to its status line.
    status_line: Vec<u8>,
    read: u64,
}

impl WarmUp {
    /// Whether `peer` is one of our own warm-up connections.
    pub(super) fn is_own(&self, peer: SocketAddr) -> bool {
        self.calls.iter().flatten().any(|c| c.local == peer)
    }

    /// What readiness still waits for here, if anything.
    pub(super) fn gap(&self, configured: bool) -> Option<String> {
        if configured && !self.sent {
            return Some("the warm-up events are not sent yet".into());
        }
        let waiting: Vec<&str> = self.calls.iter().flatten().map(|c| c.function.as_str()).collect();
        (!waiting.is_empty()).then(|| format!("the warm-up event to {} is not answered yet", waiting.join(", ")))
    }
}

/// Where to reach our own listener: its address, or loopback when it
/// listens on every address.
fn own_target(listening: SocketAddr) -> SocketAddr {
    let ip = match listening.ip() {
        IpAddr::V4(ip) if ip.is_unspecified() => IpAddr::V4(Ipv4Addr::LOCALHOST),
        IpAddr::V6(ip) if ip.is_unspecified() => IpAddr::V6(Ipv6Addr::LOCALHOST),
        ip => ip,
    };
    SocketAddr::new(ip, listening.port())
}

/// The event invocation sent to `function`.
fn request(function: &str, body: &[u8]) -> Vec<u8> {
    let mut r = format!(
        "POST /invoke HTTP/1.1\r\nhost: noslate-fc\r\nx-fc-control-path: /invoke\r\n\
         x-fc-request-id: noslate-fc-warm-up-{function}\r\nx-noslate-function: {function}\r\n\
         content-length: {}\r\nconnection: close\r\n\r\n",
        body.len()
    )
    .into_bytes();
    r.extend_from_slice(body);
    r
}

/// The status code of an HTTP/1.1 status line, if it is one.
fn status_of(line: &[u8]) -> Option<u16> {
    let code = line.strip_prefix(b"HTTP/1.")?.get(2..5)?;
    std::str::from_utf8(code).ok()?.parse().ok()
}

impl Server {
    /// Send the warm-up events, once: called when nothing else stands
    /// between us and readiness. A connection that cannot be opened is
    /// logged and not waited for.
    pub(super) fn send_warm_up(&mut self) {
        let Some(body) = self.cfg.warm_up_event.as_deref() else { return };
        if self.warm_up.sent {
            return;
        }
        self.warm_up.sent = true;
        let Some(target) = self.listener.as_ref().and_then(|l| l.local_addr().ok()).map(own_target) else {
            eprintln!("noslate-fc: warm-up events not sent: not listening");
            return;
        };
        for function in &self.cfg.warm_up {
            let token = Token(WARM_UP_TOKENS - self.warm_up.calls.len());
            let opened = TcpStream::connect(target).and_then(|mut sock| {
                let local = sock.local_addr()?;
                self.poll.registry().register(&mut sock, token, Interest::READABLE | Interest::WRITABLE)?;
                Ok((sock, local))
            });
            match opened {
                Ok((sock, local)) => self.warm_up.calls.push(Some(Call {
                    function: function.clone(),
                    sock,
                    local,
                    request: request(function, body),
                    written: 0,
                    status_line: Vec::new(),
                    read: 0,
                })),
                Err(e) => eprintln!("noslate-fc: warm-up event to {function} not sent: {e}"),
            }
        }
    }

    /// Readiness of warm-up connection `i`: write the request, read the
    /// answer to its end.
    pub(super) fn warm_up_event(&mut self, i: usize) {
        let Some(slot) = self.warm_up.calls.get_mut(i) else { return };
        let Some(outcome) = slot.as_mut().and_then(Call::pump) else { return };
        let Some(mut call) = slot.take() else { return };
        let _ = self.poll.registry().deregister(&mut call.sock);
        match outcome {
            Ok(status) => eprintln!("noslate-fc: warm-up event to {} answered {status}", call.function),
            Err(e) => eprintln!("noslate-fc: warm-up event to {} failed: {}", call.function, Escaped(&e)),
        }
        self.defer(Effect::CheckInitialize);
    }
}

impl Call {
    /// Move bytes both ways; `Some` once the answer ended (its status) or
    /// the connection failed.
    fn pump(&mut self) -> Option<Result<u16, String>> {
        while self.written < self.request.len() {
            match self.sock.write(&self.request[self.written..]) {
                Ok(n) => self.written += n,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Some(Err(e.to_string())),
            }
        }
        let mut buf = [0u8; 4096];
        loop {
            match self.sock.read(&mut buf) {
                Ok(0) => {
                    return Some(
                        status_of(&self.status_line)
                            .ok_or_else(|| format!("no HTTP status line in the {} bytes answered", self.read)),
                    )
                }
                Ok(n) => {
                    self.read += n as u64;
                    // Only the status line is kept; the rest is dropped.
                    if !self.status_line.ends_with(b"\r\n") && self.status_line.len() < 256 {
                        let room = 256 - self.status_line.len();
                        self.status_line.extend_from_slice(&buf[..n.min(room)]);
                        if let Some(end) = self.status_line.windows(2).position(|w| w == b"\r\n") {
                            self.status_line.truncate(end + 2);
                        }
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return None,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Some(Err(e.to_string())),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::{own_target, request, status_of};

    #[test]
    fn the_event_names_its_function_and_closes() {
        let r = String::from_utf8(request("echo", b"{\"warm\":1}")).unwrap();
        assert_eq!(
            r,
            "POST /invoke HTTP/1.1\r\nhost: noslate-fc\r\nx-fc-control-path: /invoke\r\n\
             x-fc-request-id: noslate-fc-warm-up-echo\r\nx-noslate-function: echo\r\n\
             content-length: 10\r\nconnection: close\r\n\r\n{\"warm\":1}"
        );
    }

    #[test]
    fn status_lines() {
        assert_eq!(status_of(b"HTTP/1.1 200 OK\r\n"), Some(200));
        assert_eq!(status_of(b"HTTP/1.0 503 x\r\n"), Some(503));
        for bad in [&b""[..], b"HTTP/1.1", b"HTTP/1.1 2x0 OK", b"HTTP/2 200", b"hello"] {
            assert_eq!(status_of(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn our_own_listener_is_reached_on_loopback_when_it_listens_everywhere() {
        let t = |s: &str| own_target(s.parse().unwrap()).to_string();
        assert_eq!(t("0.0.0.0:9000"), "127.0.0.1:9000");
        assert_eq!(t("[::]:9000"), "[::1]:9000");
        assert_eq!(t("10.1.2.3:9000"), "10.1.2.3:9000");
        assert_eq!(t("127.0.0.1:9001"), "127.0.0.1:9001");
    }
}
