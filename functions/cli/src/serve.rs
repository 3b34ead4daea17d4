//! `flowgate serve`: the API, the consumer and the reconciler in one process (or split by
//! `--roles`), over the embedded store, with graceful shutdown on SIGTERM/SIGINT.

use std::process::ExitCode;
use std::sync::Arc;

use tokio::sync::watch;
use tokio::task::JoinSet;
use tracing::{info, warn};

use flowgate_core::Flowgate;
use flowgate_core::ports::{Queue, Store};
use flowgate_core::usecases::{Consumer, ConsumerConfig, Reconciler};
use flowgate_embedded::EmbeddedConfig;

use crate::backend::{self, Ports};
use crate::config::{Role, ServeArgs};
use crate::telemetry;

/// Why `serve` could not start.
#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    /// The listen address could not be bound.
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        /// The address.
        addr: std::net::SocketAddr,
        /// Why.
        source: std::io::Error,
    },
    /// `FLOWGATE_FAULTS` is malformed, or set on a build without fault injection.
    #[error("FLOWGATE_FAULTS: {0}")]
    Faults(String),
    /// `--roles` is empty.
    #[error("--roles names no role: give one or more of api, consumer, reconciler")]
    NoRoles,
}

/// Runs until SIGTERM or SIGINT, then finishes in-flight work and exits 0.
pub async fn run(args: ServeArgs) -> Result<ExitCode, Box<dyn std::error::Error>> {
    telemetry::init("info");
    if args.roles.is_empty() {
        return Err(ServeError::NoRoles.into());
    }
    let (store, queue) = backend::open(
        args.backend,
        &args.data_dir,
        EmbeddedConfig {
            visibility_timeout: args.visibility_timeout,
            max_receive_count: args.max_receive_count,
        },
    )
    .await?;
    let (store, queue) = with_faults(store, queue)?;
    let (stop, stopped) = watch::channel(false);
    let mut tasks = JoinSet::new();

    if args.roles.contains(&Role::Api) {
        let listener = tokio::net::TcpListener::bind(args.listen)
            .await
            .map_err(|source| ServeError::Bind {
                addr: args.listen,
                source,
            })?;
        let addr = listener.local_addr().unwrap_or(args.listen);
        let app = flowgate_core::http::router(Flowgate::new(store.clone(), queue.clone()));
        let mut until = stopped.clone();
        tasks.spawn(async move {
            let shutdown = async move {
                let _ = until.wait_for(|s| *s).await;
            };
            if let Err(e) = axum::serve(listener, app)
                .with_graceful_shutdown(shutdown)
                .await
            {
                warn!(error = %e, "API server failed");
            }
            "api"
        });
        info!(%addr, backend = ?args.backend, "API listening");
    }
    if args.roles.contains(&Role::Consumer) {
        let consumer = Arc::new(Consumer::new(
            store.clone(),
            queue.clone(),
            ConsumerConfig {
                max_receive_count: args.max_receive_count,
                visibility_timeout: args.visibility_timeout,
                retry_base: args.retry_base,
                ..ConsumerConfig::default()
            },
        ));
        let until = stopped.clone();
        tasks.spawn(async move {
            consumer.run(until).await;
            "consumer"
        });
        info!(
            max_receive_count = args.max_receive_count,
            "consumer running"
        );
    }
    if args.roles.contains(&Role::Reconciler) {
        let reconciler = Reconciler::new(store.clone(), queue.clone(), args.reconcile_grace);
        let (interval, until) = (args.reconcile_interval, stopped.clone());
        tasks.spawn(async move {
            reconciler.run(interval, until).await;
            "reconciler"
        });
        info!(grace = ?args.reconcile_grace, "reconciler running");
    }

    shutdown_signal().await;
    info!("shutting down: finishing in-flight work");
    let _ = stop.send(true);
    while let Some(done) = tasks.join_next().await {
        if let Ok(role) = done {
            info!(role, "stopped");
        }
    }
    Ok(ExitCode::SUCCESS)
}

async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => {}
        _ = terminate => {}
    }
}

/// Wraps the ports in fault injectors when `FLOWGATE_FAULTS` asks for it.
#[cfg(feature = "faults")]
fn with_faults(store: Arc<dyn Store>, queue: Arc<dyn Queue>) -> Result<Ports, ServeError> {
    use flowgate_core::faults::{FAULTS_ENV, FaultPlan, FaultyQueue, FaultyStore};
    let Ok(text) = std::env::var(FAULTS_ENV) else {
        return Ok((store, queue));
    };
    let plan = Arc::new(FaultPlan::parse(&text).map_err(|e| ServeError::Faults(e.to_string()))?);
    if plan.is_empty() {
        return Ok((store, queue));
    }
    warn!(plan = %text, "fault injection is active");
    Ok((
        Arc::new(FaultyStore::new(store, plan.clone())),
        Arc::new(FaultyQueue::new(queue, plan)),
    ))
}

/// Without the `faults` feature, refuses a set `FLOWGATE_FAULTS` rather than ignore it.
#[cfg(not(feature = "faults"))]
fn with_faults(store: Arc<dyn Store>, queue: Arc<dyn Queue>) -> Result<Ports, ServeError> {
    match std::env::var("FLOWGATE_FAULTS") {
        Ok(text) if !text.trim().is_empty() => Err(ServeError::Faults(
            "set, but this build has no fault injection: build with `--features faults`".into(),
        )),
        _ => Ok((store, queue)),
    }
}
