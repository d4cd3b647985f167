//! Header values through the FC exchange core (issue #20): numbers, lists
//! and repeats in every header noslate-fc reads, fed to `fc::dispatch`
//! (route, from FC and from inside the container; request id; the
//! `/initialize` and function timeouts; the function choice under every
//! policy, `x-fc-base-path` included), to the first `InvokeRequest` (what is
//! forwarded), to the unread-body decision (Expect: 100-continue) and to
//! the response head a function sends (status, header count and size).
//!
//! Input layout:
//!   byte 0  method and path: a hook path, `/invoke`, or the input's own
//!   byte 1  response status, high byte (with byte 2)
//!   rest    fields, each `name index, value length, value bytes`: the name
//!           is one of `name(i)` (index % len), so repeats and odd values of
//!           exactly the headers that matter are what the fuzzer explores.
//!
//! Invariants: no panic; timeouts are within a day and can be added to
//! `Instant::now()`; a request from inside the container is never a hook or
//! an event and its function is what a header-less request gets; a repeated
//! header noslate-fc reads is refused; no forwarded header is hop-by-hop,
//! plumbing, or named in `Connection`; a body the client may not send is
//! never counted as droppable; a refused response head writes nothing.
#![no_main]

use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use libfuzzer_sys::fuzz_target;
use noslate_fc::fc::dispatch::{self, Endpoint, Peer, MAX_FUNCTION_TIMEOUT_SECS, MAX_INIT_TIMEOUT_SECS};
use noslate_fc::fc::request::{first_message, InvokeTarget};
use noslate_fc::fc::response::{ResponseWriter, FINAL_STATUSES};
use noslate_fc::fc::{OutQueue, Scratch};
use noslate_fc::grpc::Deframer;
use noslate_fc::http1::{HeadParser, Limits, RequestHead};
use noslate_fc::proto::InvokeRequest;
use noslate_fc::route::{FunctionHeader, Origin, Policy, Request as Choosing, Routes, SINGLE_HEADERS};

/// Names besides `SINGLE_HEADERS` (every header noslate-fc reads, first in
/// the pick): plumbing FC sets, framing, hop-by-hop, and odd casing.
const OTHER_NAMES: &[&str] = &[
    "x-fc-access-key-id",
    "connection",
    "content-length",
    "transfer-encoding",
    "expect",
    "x-secret",
    "host",
    "X-FC-Control-Path",
];

/// Header name `i` of `SINGLE_HEADERS` then `OTHER_NAMES`, wrapping.
fn name(i: u8) -> &'static str {
    let i = usize::from(i) % (SINGLE_HEADERS.len() + OTHER_NAMES.len());
    SINGLE_HEADERS.get(i).copied().unwrap_or_else(|| OTHER_NAMES[i - SINGLE_HEADERS.len()])
}

const TARGETS: &[&str] =
    &["/pre-stop", "/pre-freeze", "/initialize", "/invoke", "/app/admin/x", "/2016-08-15/proxy/s/f/admin"];
const METHODS: &[&str] = &["GET", "POST", "PUT"];

fn parse(text: &[u8]) -> Option<RequestHead> {
    let mut buf = BytesMut::from(text);
    HeadParser::default().parse(&mut buf, &Limits::default()).ok().flatten()
}

fn check_numbers(head: &RequestHead) {
    let default = Duration::from_secs(10);
    let init = dispatch::init_timeout(head, default);
    assert!(init <= Duration::from_secs(MAX_INIT_TIMEOUT_SECS));
    assert!(Instant::now().checked_add(init).is_some());
    for origin in [Origin::FcEvent, Origin::FcHttp, Origin::LocalEvent, Origin::LocalHttp] {
        let t = dispatch::function_timeout(head, origin, default);
        assert!(t <= Duration::from_secs(MAX_FUNCTION_TIMEOUT_SECS));
        if origin == Origin::FcHttp {
            assert_eq!(t, default, "an end user's deadline");
        }
    }
    let id = dispatch::request_id(head);
    assert!(!id.as_bytes().is_empty() && id.as_bytes().iter().all(u8::is_ascii_graphic));
}

fn check_route(head: &RequestHead) {
    let from_fc = dispatch::endpoint(head, Peer::Fc);
    let inside = dispatch::endpoint(head, Peer::Container);
    let repeated = head.headers().any(|(name, _)| {
        SINGLE_HEADERS.iter().any(|s| name.eq_ignore_ascii_case(s.as_bytes()))
            && head.headers().filter(|(n, _)| n.eq_ignore_ascii_case(name)).count() > 1
    });
    if repeated {
        assert!(matches!(from_fc, Endpoint::Ambiguous(_)) && matches!(inside, Endpoint::Ambiguous(_)));
        return;
    }
    assert_eq!(inside, Endpoint::Invoke(Origin::FcHttp), "the container is an end user");
    let Endpoint::Invoke(origin) = from_fc else { return };
    for header in [FunctionHeader::Event, FunctionHeader::All, FunctionHeader::Off] {
        for base_path in [None, Some("/app".to_string())] {
            let routes = Routes::parse("/app=web,/admin=admin", false).expect("valid routes");
            let policy = Policy { header, allowlist: None, routes, base_path };
            let chosen = dispatch::choose(head, origin, &policy, Some("d"));
            if let Ok(c) = &chosen {
                assert!(c.url_skip <= head.target().len());
            }
            // A base path that is neither FC's form nor configured is
            // ignored: the same as without it.
            if let Some(base) = head.header("x-fc-base-path").filter(|b| !policy.believes_base_path(b)) {
                let _ = base;
                let bare = Choosing {
                    origin,
                    function: head.header("x-noslate-function"),
                    service: head.header("x-noslate-service"),
                    target: head.target(),
                    base_path: None,
                };
                assert_eq!(chosen, policy.choose(&bare, Some("d")), "an unbelieved base path decided");
            }
        }
    }
}

fn check_forwarded(head: &RequestHead) {
    let target =
        InvokeTarget { function: "f", url_skip: 0, origin: Origin::FcHttp, deadline_ms: 1e12, request_id: b"id" };
    let mut d = Deframer::new(usize::MAX);
    d.push(first_message(head, &target, false, 0, &mut Scratch::default()));
    let m = d.next_message().expect("framing").expect("complete");
    let m = InvokeRequest::decode(&m).expect("decodes");
    let connection_named = |name: &[u8]| {
        head.headers()
            .filter(|(n, _)| n.eq_ignore_ascii_case(b"connection"))
            .any(|(_, v)| v.split(|b| *b == b',').any(|t| t.trim_ascii().eq_ignore_ascii_case(name)))
    };
    for (name, _) in &m.headers {
        for dropped in ["connection", "transfer-encoding", "x-fc-control-path", "x-fc-base-path", "x-fc-access-key-id"]
        {
            assert!(!name.eq_ignore_ascii_case(dropped.as_bytes()), "{dropped} forwarded");
        }
        assert!(!connection_named(name), "a Connection-named header forwarded");
    }
}

fn check_unread(head: &RequestHead) {
    if head.expects_continue() {
        if let Some(n) = dispatch::unread_body(head) {
            assert_eq!(n, 0, "a body the client may not send counted as droppable");
        }
    }
}

fn listed<'h>(list: &'h [(Bytes, Bytes)]) -> impl Fn(&mut dyn FnMut(&'h [u8], &'h [u8])) + 'h {
    move |f| list.iter().for_each(|(k, v)| f(k, v))
}

fn check_response(head: &RequestHead, status: u16, data: &[u8]) {
    // The function's headers: pairs cut from the input.
    let pairs: Vec<(Bytes, Bytes)> = data
        .chunks(7)
        .take(64)
        .map(|c| (Bytes::copy_from_slice(&c[..c.len().min(3)]), Bytes::from(vec![b'v'; usize::from(c[0]) * 64])))
        .collect();
    let (mut out, mut scratch) = (OutQueue::default(), Scratch::default());
    let mut w = ResponseWriter::new(head);
    match w.head(status, listed(&pairs), &mut out, &mut scratch) {
        Ok(()) => {
            assert!(FINAL_STATUSES.contains(&status));
            assert!(out.len() > 0);
        }
        Err(_) => assert!(out.is_empty() && w.is_waiting(), "a refused head wrote bytes"),
    }
}

fuzz_target!(|data: &[u8]| {
    if data.len() < 3 {
        return;
    }
    let (method, target) =
        (METHODS[usize::from(data[0] & 3) % METHODS.len()], TARGETS[usize::from(data[0] >> 2) % TARGETS.len()]);
    let status = u16::from_be_bytes([data[1], data[2]]) % 1100;
    let mut text = format!("{method} {target} HTTP/1.1\r\n").into_bytes();
    let mut rest = &data[3..];
    let mut fields = 0;
    while rest.len() >= 2 && fields < 64 {
        let name = name(rest[0]);
        let len = usize::from(rest[1]).min(rest.len() - 2);
        let value: Vec<u8> =
            rest[2..2 + len].iter().map(|&b| if b == b'\r' || b == b'\n' { b' ' } else { b }).collect();
        rest = &rest[2 + len..];
        text.extend_from_slice(name.as_bytes());
        text.extend_from_slice(b": ");
        text.extend_from_slice(&value);
        text.extend_from_slice(b"\r\n");
        fields += 1;
    }
    text.extend_from_slice(b"\r\n");
    let Some(head) = parse(&text) else { return };
    check_numbers(&head);
    check_route(&head);
    check_forwarded(&head);
    check_unread(&head);
    check_response(&head, status, &data[3..]);
});
