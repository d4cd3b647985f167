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

/// The first `InvokeRequest` noslate-fc would send for
/// `POST /invoke` with `host` and `content-length` headers and `body`.
pub fn first_message(body: &[u8]) -> Bytes {
    let deadline = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs_f64() * 1000.0 + 10_000.0)
        .unwrap_or(0.0);
    let len = body.len().to_string();
    let head = wire::InvokeHead {
        name: "echo",
        url: "/invoke",
        method: "POST",
        headers: &[("host", "127.0.0.1"), ("content-length", &len)],
        baggage: &[("fc-invocation-type", "event")],
        deadline_ms: deadline,
        request_id: "floor-0000000000000000",
        body,
    };
    Bytes::from(head.framed())
}

/// Invokes in a closed loop for `warmup + duration` (at most `max` measured).
pub fn run(sock: &Path, body: &[u8], warmup: Duration, duration: Duration, max: u64) -> Outcome {
    let rt = match tokio::runtime::Builder::new_current_thread().enable_io().build() {
        Ok(rt) => rt,
        Err(e) => return Outcome::failed(format!("runtime: {e}")),
    };
    rt.block_on(async {
        match run_async(sock, body, warmup, duration, max).await {
            Ok(o) => o,
            Err(e) => Outcome::failed(e.to_string()),
        }
    })
}

async fn run_async(sock: &Path, body: &[u8], warmup: Duration, duration: Duration, max: u64) -> Res<Outcome> {
    let stream = tokio::net::UnixStream::connect(sock).await?;
    let (client, conn) = h2::client::Builder::new()
        .initial_window_size(1 << 20)
        .initial_connection_window_size(16 << 20)
        .handshake::<_, Bytes>(stream)
        .await?;
    tokio::spawn(async move {
        let _ = conn.await;
    });
    let mut client = client.ready().await?;
    let first = first_message(body);
    let mut out = Outcome::default();
    let t0 = Instant::now();
    let start = t0 + warmup;
    let end = start + duration;
    loop {
        let t = Instant::now();
        if t >= end || out.ok >= max {
            out.window = t.saturating_duration_since(start);
            break;
        }
        match invoke(&mut client, first.clone(), body.len()).await {
            Ok(()) => {
                let done = Instant::now();
                out.all_ok += 1;
                if t >= start {
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
        client = client.ready().await?;
    }
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
