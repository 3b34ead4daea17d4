//! The API's listener: HTTP/1.1 over hyper, with a header-read timeout, an idle timeout and
//! a connection cap, so that slow, silent or numerous clients can neither stall the server
//! nor exhaust its file descriptors.

use std::future::Future;
use std::pin::pin;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use hyper::server::conn::http1;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulShutdown;
use hyper_util::service::TowerToHyperService;
use tokio::io::AsyncWriteExt;
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
}

impl Limits {
    /// The limits the settings give.
    pub fn from_settings(settings: &Settings) -> Self {
        Self {
            header_read: settings.header_read_timeout,
            idle: settings.idle_timeout,
            max_connections: settings.max_connections,
        }
    }
}

/// The problem a connection past the cap gets.
const FULL_BODY: &str = r#"{"type":"urn:flowgate:problem:unavailable","title":"Service temporarily unavailable","status":503,"detail":"Too many connections; retry after 1s."}"#;

/// The answer to a connection past the cap, before it is closed.
fn full() -> String {
    format!(
        "HTTP/1.1 503 Service Unavailable\r\ncontent-type: application/problem+json\r\n\
         retry-after: 1\r\nconnection: close\r\ncontent-length: {}\r\n\r\n{FULL_BODY}",
        FULL_BODY.len()
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
    let graceful = GracefulShutdown::new();
    let mut shutdown = pin!(shutdown);
    loop {
        let stream = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => stream,
                Err(e) => {
                    // Out of descriptors, say: wait a moment rather than spin.
                    warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            () = &mut shutdown => break,
        };
        let Ok(slot) = slots.clone().try_acquire_owned() else {
            tokio::spawn(refuse(stream));
            continue;
        };
        let connection = http1::Builder::new()
            .timer(TokioTimer::new())
            .header_read_timeout(limits.header_read)
            .serve_connection(
                TokioIo::new(Box::pin(idle_bounded(stream, limits.idle))),
                TowerToHyperService::new(app.clone()),
            );
        let connection = graceful.watch(connection);
        tokio::spawn(async move {
            if let Err(e) = connection.await {
                debug!(error = %e, "connection closed with an error");
            }
            drop(slot);
        });
    }
    graceful.shutdown().await;
}

/// A stream whose reads and writes fail after `idle` without progress.
fn idle_bounded(stream: TcpStream, idle: Duration) -> TimeoutStream<TcpStream> {
    let mut bounded = TimeoutStream::new(stream);
    bounded.set_read_timeout(Some(idle));
    bounded.set_write_timeout(Some(idle));
    bounded
}

/// Tells a connection past the cap to come back later, and closes it.
async fn refuse(mut stream: TcpStream) {
    let _ = tokio::time::timeout(Duration::from_secs(1), stream.write_all(full().as_bytes())).await;
    let _ = stream.shutdown().await;
}

#[cfg(test)]
mod tests {
    use super::full;

    #[test]
    fn the_refusal_is_a_well_formed_response() {
        let text = full();
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
}
