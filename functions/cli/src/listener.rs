//! The API's listener: HTTP/1.1 over hyper, with a header-read timeout, an idle timeout, a
//! connection cap and a cap per client address, so that slow, silent or numerous clients
//! can neither stall the server, exhaust its file descriptors, nor take every slot from
//! everyone else. The few answers hyper gives on its own (a request it cannot parse as
//! HTTP) are turned into problem+json on their way out ([`LibraryAnswers`]).

use std::collections::HashMap;
use std::future::Future;
use std::io;
use std::net::IpAddr;
use std::pin::{Pin, pin};
use std::sync::{Arc, Mutex, PoisonError};
use std::task::{Context, Poll, ready};
use std::time::Duration;

use axum::Router;
use hyper::server::conn::http1;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulShutdown;
use hyper_util::service::TowerToHyperService;
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Semaphore;
use tokio_io_timeout::TimeoutStream;
use tracing::{debug, warn};

use flowgate_settings::Settings;

/// The listener's limits.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// How long a client may take to send a request's headers.
    pub header_read: Duration,
    /// How long a connection may send or accept nothing.
    pub idle: Duration,
    /// The most connections served at once.
    pub max_connections: usize,
    /// The most connections one client address may hold at once.
    pub per_address: usize,
}

impl Limits {
    /// The limits the settings give.
    pub fn from_settings(settings: &Settings) -> Self {
        Self {
            header_read: settings.header_read_timeout,
            idle: settings.idle_timeout,
            max_connections: settings.max_connections,
            per_address: settings.max_connections_per_address,
        }
    }
}

/// A whole HTTP/1.1 problem+json response that closes its connection.
fn problem_response(status: u16, reason: &str, kind: &str, detail: &str, extra: &str) -> String {
    let body = serde_json::json!({
        "type": format!("{}{kind}", flowgate_core::http::PROBLEM_TYPE_PREFIX),
        "title": reason,
        "status": status,
        "detail": detail,
    })
    .to_string();
    format!(
        "HTTP/1.1 {status} {reason}\r\ncontent-type: application/problem+json\r\n{extra}\
         connection: close\r\ncontent-length: {}\r\n\r\n{body}",
        body.len()
    )
}

/// The answer to a connection past a cap, before it is closed.
fn full(why: &str) -> String {
    problem_response(
        503,
        "Service Unavailable",
        "unavailable",
        &format!("{why}; retry after 1s."),
        "retry-after: 1\r\n",
    )
}

/// Serves `app` on `listener` until `shutdown` completes, then lets the requests in flight
/// finish.
pub async fn serve(
    listener: TcpListener,
    app: Router,
    limits: Limits,
    shutdown: impl Future<Output = ()>,
) {
    let slots = Arc::new(Semaphore::new(limits.max_connections));
    let addresses = Arc::new(PerAddress::new(limits.per_address));
    let graceful = GracefulShutdown::new();
    let mut shutdown = pin!(shutdown);
    loop {
        let (stream, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(e) => {
                    // Out of descriptors, say: wait a moment rather than spin.
                    warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            () = &mut shutdown => break,
        };
        let Some(address_slot) = addresses.take(peer.ip()) else {
            tokio::spawn(refuse(stream, "Too many connections from this address"));
            continue;
        };
        let Ok(slot) = slots.clone().try_acquire_owned() else {
            tokio::spawn(refuse(stream, "Too many connections"));
            continue;
        };
        let connection = http1::Builder::new()
            .timer(TokioTimer::new())
            .header_read_timeout(limits.header_read)
            .writev(false)
            .serve_connection(
                TokioIo::new(LibraryAnswers::new(Box::pin(idle_bounded(
                    stream,
                    limits.idle,
                )))),
                TowerToHyperService::new(app.clone()),
            );
        let connection = graceful.watch(connection);
        tokio::spawn(async move {
            if let Err(e) = connection.await {
                debug!(error = %e, "connection closed with an error");
            }
            drop((slot, address_slot));
        });
    }
    graceful.shutdown().await;
}

/// The connections each client address holds, capped per address.
struct PerAddress {
    cap: usize,
    held: Mutex<HashMap<IpAddr, usize>>,
}

/// One connection's hold on its address's share; released when dropped.
struct AddressSlot {
    owner: Arc<PerAddress>,
    ip: IpAddr,
}

impl PerAddress {
    fn new(cap: usize) -> Self {
        Self {
            cap,
            held: Mutex::new(HashMap::new()),
        }
    }

    /// A slot for `ip`, unless it holds its share already.
    fn take(self: &Arc<Self>, ip: IpAddr) -> Option<AddressSlot> {
        let mut held = self.held.lock().unwrap_or_else(PoisonError::into_inner);
        let count = held.entry(ip).or_insert(0);
        if *count >= self.cap {
            return None;
        }
        *count += 1;
        Some(AddressSlot {
            owner: self.clone(),
            ip,
        })
    }
}

impl Drop for AddressSlot {
    fn drop(&mut self) {
        let mut held = self
            .owner
            .held
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        if let Some(count) = held.get_mut(&self.ip) {
            *count -= 1;
            if *count == 0 {
                held.remove(&self.ip);
            }
        }
    }
}

/// A stream whose reads and writes fail after `idle` without progress.
fn idle_bounded(stream: TcpStream, idle: Duration) -> TimeoutStream<TcpStream> {
    let mut bounded = TimeoutStream::new(stream);
    bounded.set_read_timeout(Some(idle));
    bounded.set_write_timeout(Some(idle));
    bounded
}

/// Tells a connection past a cap to come back later, and closes it.
async fn refuse(mut stream: TcpStream, why: &str) {
    let answer = full(why);
    let _ = tokio::time::timeout(Duration::from_secs(1), stream.write_all(answer.as_bytes())).await;
    let _ = stream.shutdown().await;
}

/// The problem+json answer that replaces hyper's own bodiless answer to a request it could
/// not parse, if `written` is one: hyper writes `400`, `414` or `431` with no content type
/// and no body, and closes the connection. Flowgate's own answers always carry a content
/// type, so they are never mistaken for one.
fn library_answer(written: &[u8]) -> Option<String> {
    let head_end = written.windows(4).position(|w| w == b"\r\n\r\n")?;
    let head = std::str::from_utf8(&written[..head_end]).ok()?;
    if head
        .lines()
        .any(|l| l.to_ascii_lowercase().starts_with("content-type:"))
    {
        return None;
    }
    let (status, reason, kind, detail) = match head.get(..13)? {
        "HTTP/1.1 400 " => (
            400,
            "Bad Request",
            "malformed-request",
            "The request is not well-formed HTTP/1.1 (a byte not allowed in a header, or a \
             malformed request line or header); the connection is closed.",
        ),
        "HTTP/1.1 414 " => (
            414,
            "URI Too Long",
            "uri-too-long",
            "The request target is longer than the server reads (65,534 bytes); the \
             connection is closed.",
        ),
        "HTTP/1.1 431 " => (
            431,
            "Request Header Fields Too Large",
            "header-fields-too-large",
            "The request's head is larger than the server reads (more than 100 headers, or \
             about 400 KiB); the connection is closed.",
        ),
        _ => return None,
    };
    Some(problem_response(status, reason, kind, detail, ""))
}

/// A connection's stream, on which hyper's own answers to requests it cannot parse leave as
/// problem+json ([`library_answer`]). Everything else passes through untouched.
struct LibraryAnswers<S> {
    inner: S,
    /// The replacement still to be written.
    pending: Vec<u8>,
    written: usize,
}

impl<S> LibraryAnswers<S> {
    fn new(inner: S) -> Self {
        Self {
            inner,
            pending: Vec::new(),
            written: 0,
        }
    }
}

impl<S: AsyncWrite + Unpin> LibraryAnswers<S> {
    /// Writes what is left of a replacement; ready when none is left.
    fn poll_pending(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        while self.written < self.pending.len() {
            let n =
                ready!(Pin::new(&mut self.inner).poll_write(cx, &self.pending[self.written..]))?;
            if n == 0 {
                return Poll::Ready(Err(io::ErrorKind::WriteZero.into()));
            }
            self.written += n;
        }
        Poll::Ready(Ok(()))
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for LibraryAnswers<S> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_read(cx, buf)
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for LibraryAnswers<S> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        ready!(this.poll_pending(cx))?;
        if this.pending.is_empty()
            && let Some(answer) = library_answer(buf)
        {
            // hyper's answer counts as written; ours goes out in its place.
            this.pending = answer.into_bytes();
            this.written = 0;
            let _ = this.poll_pending(cx)?;
            return Poll::Ready(Ok(buf.len()));
        }
        Pin::new(&mut this.inner).poll_write(cx, buf)
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        ready!(this.poll_pending(cx))?;
        Pin::new(&mut this.inner).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        ready!(this.poll_pending(cx))?;
        Pin::new(&mut this.inner).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::{full, library_answer};

    #[test]
    fn the_refusal_is_a_well_formed_response() {
        let text = full("Too many connections");
        let (head, body) = text.split_once("\r\n\r\n").expect("head and body");
        let length: usize = head
            .lines()
            .find_map(|l| l.strip_prefix("content-length: "))
            .and_then(|n| n.parse().ok())
            .expect("a content-length");
        assert_eq!(length, body.len());
        let problem: serde_json::Value = serde_json::from_str(body).expect("JSON");
        assert_eq!(problem["status"], 503);
    }

    #[test]
    fn only_hypers_bodiless_answers_are_replaced() {
        for (hyper, status) in [
            (
                "HTTP/1.1 400 Bad Request\r\ncontent-length: 0\r\ndate: x\r\n\r\n",
                400,
            ),
            (
                "HTTP/1.1 414 URI Too Long\r\ncontent-length: 0\r\n\r\n",
                414,
            ),
            (
                "HTTP/1.1 431 Request Header Fields Too Large\r\ncontent-length: 0\r\n\r\n",
                431,
            ),
        ] {
            let ours = library_answer(hyper.as_bytes()).expect("replaced");
            assert!(ours.contains("content-type: application/problem+json"));
            let body = ours.split_once("\r\n\r\n").expect("a body").1;
            let problem: serde_json::Value = serde_json::from_str(body).expect("JSON");
            assert_eq!(problem["status"], status);
        }
        for own in [
            "HTTP/1.1 400 Bad Request\r\ncontent-type: application/problem+json\r\n\r\n{}",
            "HTTP/1.1 200 OK\r\ncontent-length: 0\r\n\r\n",
            "HTTP/1.1 204 No Content\r\n\r\n",
            "{\"half\": \"a body\"}",
        ] {
            assert_eq!(library_answer(own.as_bytes()), None, "{own}");
        }
    }
}
