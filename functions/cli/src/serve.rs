//! `flowgate serve`: the API, the consumer and the reconciler in one process (or split by
//! `--roles`), with graceful shutdown on SIGTERM/SIGINT.

use std::process::ExitCode;
use std::sync::Arc;

use tokio::sync::watch;
use tokio::task::JoinSet;
use tracing::{info, warn};

use flowgate_core::Flowgate;
use flowgate_core::ports::{Queue, Store};
use flowgate_core::usecases::{Consumer, ConsumerConfig, Reconciler};
use flowgate_settings::{Role, Settings};

use crate::backend::{self, Ports};
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
    #[error("--faults (FLOWGATE_FAULTS): {0}")]
    Faults(String),
}

type Roles = JoinSet<&'static str>;

/// Runs until SIGTERM or SIGINT, then finishes in-flight work and exits 0.
pub async fn run(settings: Settings) -> Result<ExitCode, Box<dyn std::error::Error>> {
    telemetry::init("info", settings.log_format);
    let (store, queue) = backend::open(&settings).await?;
    let (store, queue) = with_faults(&settings, store, queue)?;
    let (stop, stopped) = watch::channel(false);
    let mut roles = JoinSet::new();
    if settings.roles.contains(&Role::Api) {
        start_api(&settings, &store, &queue, &stopped, &mut roles).await?;
    }
    if settings.roles.contains(&Role::Consumer) {
        start_consumer(&settings, &store, &queue, &stopped, &mut roles);
    }
    if settings.roles.contains(&Role::Reconciler) {
        start_reconciler(&settings, &store, &queue, &stopped, &mut roles);
    }
    shutdown_signal().await;
    info!("shutting down: finishing in-flight work");
    let _ = stop.send(true);
    while let Some(done) = roles.join_next().await {
        if let Ok(role) = done {
            info!(role, "stopped");
        }
    }
    Ok(ExitCode::SUCCESS)
}

async fn start_api(
    settings: &Settings,
    store: &Arc<dyn Store>,
    queue: &Arc<dyn Queue>,
    stopped: &watch::Receiver<bool>,
    roles: &mut Roles,
) -> Result<(), ServeError> {
    let listener = tokio::net::TcpListener::bind(settings.listen)
        .await
        .map_err(|source| ServeError::Bind {
            addr: settings.listen,
            source,
        })?;
    let addr = listener.local_addr().unwrap_or(settings.listen);
    let flowgate = Flowgate::new(store.clone(), queue.clone())
        .with_redelivery_bound(settings.redelivery_bound());
    let app = flowgate_core::http::router(flowgate);
    let mut until = stopped.clone();
    roles.spawn(async move {
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
    info!(%addr, backend = ?settings.backend, "API listening");
    Ok(())
}

fn start_consumer(
    settings: &Settings,
    store: &Arc<dyn Store>,
    queue: &Arc<dyn Queue>,
    stopped: &watch::Receiver<bool>,
    roles: &mut Roles,
) {
    let consumer = Arc::new(Consumer::new(
        store.clone(),
        queue.clone(),
        ConsumerConfig::from_settings(settings),
    ));
    let until = stopped.clone();
    roles.spawn(async move {
        consumer.run(until).await;
        "consumer"
    });
    info!(
        max_receive_count = settings.max_receive_count,
        "consumer running"
    );
}

fn start_reconciler(
    settings: &Settings,
    store: &Arc<dyn Store>,
    queue: &Arc<dyn Queue>,
    stopped: &watch::Receiver<bool>,
    roles: &mut Roles,
) {
    let reconciler = Reconciler::new(store.clone(), queue.clone(), settings.reconcile_grace);
    let (interval, until) = (settings.reconcile_interval, stopped.clone());
    roles.spawn(async move {
        reconciler.run(interval, until).await;
        "reconciler"
    });
    info!(grace = ?settings.reconcile_grace, "reconciler running");
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

/// Wraps the ports in fault injectors when the `faults` setting asks for it.
#[cfg(feature = "faults")]
fn with_faults(
    settings: &Settings,
    store: Arc<dyn Store>,
    queue: Arc<dyn Queue>,
) -> Result<Ports, ServeError> {
    use flowgate_core::faults::{FaultPlan, FaultyQueue, FaultyStore};
    let plan = Arc::new(
        FaultPlan::parse(&settings.faults).map_err(|e| ServeError::Faults(e.to_string()))?,
    );
    if plan.is_empty() {
        return Ok((store, queue));
    }
    warn!(plan = %settings.faults, "fault injection is active");
    Ok((
        Arc::new(FaultyStore::new(store, plan.clone())),
        Arc::new(FaultyQueue::new(queue, plan)),
    ))
}

/// Without the `faults` feature, refuses a fault plan rather than ignore it.
#[cfg(not(feature = "faults"))]
fn with_faults(
    settings: &Settings,
    store: Arc<dyn Store>,
    queue: Arc<dyn Queue>,
) -> Result<Ports, ServeError> {
    if settings.faults.trim().is_empty() {
        return Ok((store, queue));
    }
    Err(ServeError::Faults(
        "set, but this build has no fault injection: build with `--features faults`".into(),
    ))
}
