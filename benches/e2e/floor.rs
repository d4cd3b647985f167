//! The floor: the same invoke made straight to the stub with the `h2` crate
//! (one connection, one stream at a time), no proxy in between. Its latency
//! minus noslate-fc's is what the proxy adds.

use std::path::Path;
use std::time::{Duration, Instant};

use bytes::Bytes;
use h2::client::SendRequest;
use http::Request;

use crate::load::Outcome;
use crate::wire::{self, Deframer, Fields, Val};

type Res<T> = Result<T, Box<dyn std::error::Error + Send + Sync>>;

/// What the floor sends: function name, the `host` header value the load
/// generator sends to a gateway, and how many streams run at once.
#[derive(Clone)]
pub struct Spec {
    pub function: String,
    pub host: String,
    pub conns: usize,
}

impl Default for Spec {
    fn default() -> Spec {
        Spec { function: "echo".into(), host: "127.0.0.1".into(), conns: 1 }
    }
}

/// The first `InvokeRequest` noslate-fc would send for `POST /invoke` with
/// `host` and `content-length` headers and `body` (all in the message):
/// the same fields in the same order, `fc-invocation-type: event` baggage,
/// a 10 s deadline and a request id shaped like noslate-fc's own
/// (`nfc-<ms hex>-<pid>-<n>`), new for every invoke.
fn message_for(spec: &Spec, body: &[u8], n: u64) -> Bytes {
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default();
    let deadline = now.as_secs_f64() * 1000.0 + 10_000.0;
    let len = body.len().to_string();
    let request_id = format!("nfc-{:x}-{}-{n}", now.as_millis(), std::process::id());
    let head = wire::InvokeHead {
        name: &spec.function,
        url: "/invoke",
        method: "POST",
        headers: &[("host", &spec.host), ("content-length", &len)],
        baggage: &[("fc-invocation-type", "event")],
        deadline_ms: deadline,
        request_id: &request_id,
        body,
    };
    Bytes::from(head.framed())
}

/// Invokes in a closed loop for `warmup + duration` (at most `max` measured),
/// one stream at a time.
pub fn run(sock: &Path, body: &[u8], warmup: Duration, duration: Duration, max: u64) -> Outcome {
    run_spec(&Spec::default(), sock, body, warmup, duration, max)
}

/// `spec.conns` closed loops at once, each one stream at a time, on one
/// HTTP/2 connection (as noslate-fc multiplexes its invokes on one).
pub fn run_spec(spec: &Spec, sock: &Path, body: &[u8], warmup: Duration, duration: Duration, max: u64) -> Outcome {
    let rt = match tokio::runtime::Builder::new_current_thread().enable_io().enable_time().build() {
        Ok(rt) => rt,
        Err(e) => return Outcome::failed(format!("runtime: {e}")),
    };
    rt.block_on(async {
        match run_async(spec, sock, body, warmup, duration, max).await {
            Ok(o) => o,
            Err(e) => Outcome::failed(e.to_string()),
        }
    })
}

async fn run_async(
    spec: &Spec,
    sock: &Path,
    body: &[u8],
    warmup: Duration,
    duration: Duration,
    max: u64,
) -> Res<Outcome> {
    let stream = tokio::net::UnixStream::connect(sock).await?;
    let (client, conn) = h2::client::Builder::new()
        .initial_window_size(1 << 20)
        .initial_connection_window_size(16 << 20)
        .handshake::<_, Bytes>(stream)
        .await?;
    tokio::spawn(async move {
        let _ = conn.await;
    });
    let client = client.ready().await?;
    let t0 = Instant::now();
    let start = t0 + warmup;
    let end = start + duration;
    let body = Bytes::copy_from_slice(body);
    let counter = std::sync::Arc::new(std::sync::atomic::AtomicU64::new(0));
    let per_loop = max.div_ceil(spec.conns.max(1) as u64);
    let mut tasks = Vec::new();
    for _ in 0..spec.conns.max(1) {
        let (mut client, spec, body, counter) = (client.clone(), spec.clone(), body.clone(), counter.clone());
        tasks.push(tokio::spawn(async move {
            let mut out = Outcome::default();
            loop {
                let t = Instant::now();
                if t >= end || out.ok >= per_loop {
                    break;
                }
                let n = counter.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                match invoke(&mut client, message_for(&spec, &body, n), body.len()).await {
                    Ok(()) => {
                        let done = Instant::now();
                        out.all_ok += 1;
                        if t >= start && done <= end {
                            out.ok += 1;
                            out.body_bytes += body.len() as u64;
                            out.lat_ns.push((done - t).as_nanos() as u64);
                        }
                    }
                    Err(e) => {
                        out.errors += 1;
                        out.first_error.get_or_insert(e.to_string());
                        if out.errors > 100 {
                            break;
                        }
                    }
                }
                client = match client.ready().await {
                    Ok(c) => c,
                    Err(e) => {
                        out.errors += 1;
                        out.first_error.get_or_insert(e.to_string());
                        break;
                    }
                };
            }
            out
        }));
    }
    let mut out = Outcome::default();
    for t in tasks {
        let o = t.await?;
        out.ok += o.ok;
        out.all_ok += o.all_ok;
        out.errors += o.errors;
        out.body_bytes += o.body_bytes;
        out.lat_ns.extend(o.lat_ns);
        if out.first_error.is_none() {
            out.first_error = o.first_error;
        }
    }
    out.window = Instant::now().min(end).saturating_duration_since(start);
    Ok(out)
}

async fn invoke(client: &mut SendRequest<Bytes>, first: Bytes, expect: usize) -> Res<()> {
    let req = Request::builder()
        .method("POST")
        .uri("http://localhost/noslated.data.PushServer/invoke")
        .header("content-type", "application/grpc")
        .header("te", "trailers")
        .header("grpc-timeout", "11000m")
        .body(())?;
    let (response, mut send) = client.send_request(req, false)?;
    send.send_data(first, true)?;
    let response = response.await?;
    let mut body = response.into_body();
    let mut deframer = Deframer::default();
    let mut head = false;
    let mut got = 0usize;
    while let Some(chunk) = body.data().await {
        let chunk = chunk?;
        let _ = body.flow_control().release_capacity(chunk.len());
        deframer.push(&chunk);
        while let Some(msg) = deframer.next_message()? {
            for (field, val) in Fields::new(&msg) {
                match (field, val) {
                    (1, _) => return Err("error from the stub".into()),
                    (2, Val::Len(result)) if head => {
                        for (f, v) in Fields::new(result) {
                            if let (3, Val::Len(b)) = (f, v) {
                                got += b.len();
                            }
                        }
                    }
                    (2, Val::Len(result)) => {
                        head = true;
                        for (f, v) in Fields::new(result) {
                            if let (1, Val::Varint(status)) = (f, v) {
                                if status != 200 {
                                    return Err(format!("status {status}").into());
                                }
                            }
                        }
                    }
                    _ => {}
                }
            }
        }
    }
    let trailers = body.trailers().await?.unwrap_or_default();
    let ok = trailers.get("grpc-status").is_some_and(|v| v == "0");
    if !ok || !head || got != expect {
        return Err(format!("bad answer: head {head}, {got} of {expect} bytes, trailers {trailers:?}").into());
    }
    Ok(())
}
