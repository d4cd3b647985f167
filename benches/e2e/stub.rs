//! The fast data-plane stub: `/noslated.data.PushServer/invoke` echo over
//! HTTP/2 (the `h2` crate) on a unix socket, on a single-threaded tokio
//! runtime. It exists so the proxy's own cost is visible instead of hidden
//! behind grpc-js (the production peer, tests/peer/noslated-peer.js).
//!
//! Behaviour (the fixture's `echo`, minus its bookkeeping): on the first
//! request message it sends the response HEADERS and the head
//! `result{status 200, headers [content-type: application/octet-stream,
//! x-request-id: <requestId>]}`; every non-empty body chunk comes back as one
//! `result{body}`; after the client's half-close, trailers `grpc-status: 0`.
//! Request window is returned only after the echo is queued, so a client
//! that stops reading stops the stub too. `DataPlane/checkHealth` answers
//! healthy (noslate-fc asks on connect); anything else is UNIMPLEMENTED.
//!
//! Run by the bench binary re-executing itself: `e2e __e2e-stub <socket>`.

use std::error::Error;
use std::path::Path;

use bytes::Bytes;
use h2::server::SendResponse;
use h2::{RecvStream, SendStream};
use http::{HeaderMap, HeaderValue, Request, Response};
use tokio::net::UnixListener;

use crate::wire::{self, Deframer, Fields, Val};

type Res<T> = Result<T, Box<dyn Error + Send + Sync>>;

/// Request windows the stub grants. Larger than grpc-js's 64 KiB defaults so
/// flow control does not hide the proxy's cost behind round trips.
const STREAM_WINDOW: u32 = 1 << 20;
const CONNECTION_WINDOW: u32 = 16 << 20;
/// Echo messages up to this size are queued without waiting for window.
const SMALL: usize = 16 * 1024;

pub fn run(sock: &Path) -> i32 {
    let rt = match tokio::runtime::Builder::new_current_thread().enable_io().build() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("stub: runtime: {e}");
            return 1;
        }
    };
    match rt.block_on(serve(sock)) {
        Ok(()) => 0,
        Err(e) => {
            eprintln!("stub: {e}");
            1
        }
    }
}

async fn serve(sock: &Path) -> Res<()> {
    let _ = std::fs::remove_file(sock);
    let listener = UnixListener::bind(sock)?;
    println!("READY");
    use std::io::Write;
    std::io::stdout().flush()?;
    loop {
        let (stream, _) = listener.accept().await?;
        tokio::spawn(async move {
            if let Err(e) = connection(stream).await {
                eprintln!("stub: connection: {e}");
            }
        });
    }
}

async fn connection(stream: tokio::net::UnixStream) -> Res<()> {
    let mut conn = h2::server::Builder::new()
        .initial_window_size(STREAM_WINDOW)
        .initial_connection_window_size(CONNECTION_WINDOW)
        .handshake::<_, Bytes>(stream)
        .await?;
    while let Some(accepted) = conn.accept().await {
        let (req, respond) = accepted?;
        tokio::spawn(async move {
            if let Err(e) = call(req, respond).await {
                // A client reset (cancel) is routine; anything else is worth a line.
                let routine = e.downcast_ref::<h2::Error>().is_some_and(|h| h.is_reset() || h.is_go_away());
                if !routine {
                    eprintln!("stub: call: {e}");
                }
            }
        });
    }
    Ok(())
}

fn grpc_head() -> Res<Response<()>> {
    Ok(Response::builder().status(200).header("content-type", "application/grpc+proto").body(())?)
}

fn trailers(code: u32, message: &'static str) -> HeaderMap {
    let mut t = HeaderMap::new();
    t.insert("grpc-status", HeaderValue::from(code));
    t.insert("grpc-message", HeaderValue::from_static(message));
    t
}

async fn call(req: Request<RecvStream>, mut respond: SendResponse<Bytes>) -> Res<()> {
    match req.uri().path() {
        "/noslated.data.PushServer/invoke" | "/noslated.data.PushServer/invokeService" => {
            echo(req.into_body(), respond).await
        }
        "/noslated.data.DataPlane/checkHealth" => {
            let mut body = req.into_body();
            while let Some(chunk) = body.data().await {
                let n = chunk?.len();
                let _ = body.flow_control().release_capacity(n);
            }
            let mut send = respond.send_response(grpc_head()?, false)?;
            send.send_data(wire::health_ok(), false)?;
            send.send_trailers(trailers(0, "OK"))?;
            Ok(())
        }
        _ => {
            let mut head = Response::builder()
                .status(200)
                .header("content-type", "application/grpc+proto")
                .header("grpc-status", "12")
                .body(())?;
            head.headers_mut().insert("grpc-message", HeaderValue::from_static("unimplemented"));
            respond.send_response(head, true)?;
            Ok(())
        }
    }
}

async fn echo(mut body: RecvStream, mut respond: SendResponse<Bytes>) -> Res<()> {
    let mut deframer = Deframer::default();
    let mut send: Option<SendStream<Bytes>> = None;
    while let Some(chunk) = body.data().await {
        let chunk = chunk?;
        let n = chunk.len();
        deframer.push(&chunk);
        while let Some(msg) = deframer.next_message()? {
            let mut data: &[u8] = b"";
            let mut request_id: &[u8] = b"";
            for (field, val) in Fields::new(&msg) {
                match (field, val) {
                    (7, Val::Len(b)) => data = b,
                    (8, Val::Len(b)) => request_id = b,
                    _ => {}
                }
            }
            let s = match send.as_mut() {
                Some(s) => s,
                None => {
                    let mut s = respond.send_response(grpc_head()?, false)?;
                    let head = wire::result_head(
                        200,
                        &[(b"content-type", b"application/octet-stream"), (b"x-request-id", request_id)],
                    );
                    s.send_data(Bytes::from(head), false)?;
                    send.insert(s)
                }
            };
            if !data.is_empty() {
                send_flow(s, wire::result_body(data)).await?;
            }
        }
        let _ = body.flow_control().release_capacity(n);
    }
    match send.as_mut() {
        Some(s) => s.send_trailers(trailers(0, "OK"))?,
        None => {
            // Half-closed without a single message: Noslated would hang;
            // the stub answers INTERNAL at once.
            let head = Response::builder()
                .status(200)
                .header("content-type", "application/grpc+proto")
                .header("grpc-status", "13")
                .body(())?;
            respond.send_response(head, true)?;
        }
    }
    Ok(())
}

/// Queue `data` on the stream, waiting for send window for large messages.
async fn send_flow(s: &mut SendStream<Bytes>, mut data: Bytes) -> Res<()> {
    if data.len() <= SMALL {
        s.send_data(data, false)?;
        return Ok(());
    }
    while !data.is_empty() {
        s.reserve_capacity(data.len());
        let cap = match std::future::poll_fn(|cx| s.poll_capacity(cx)).await {
            Some(cap) => cap?,
            None => return Err("stream closed while sending".into()),
        };
        if cap > 0 {
            let n = cap.min(data.len());
            s.send_data(data.split_to(n), false)?;
        }
    }
    Ok(())
}
