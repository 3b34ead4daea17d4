//! `flowgate serve`: the API, the consumer and the reconciler in one process (or split by
//! `--roles`), with graceful shutdown on SIGTERM/SIGINT.

use std::process::ExitCode;
use std::sync::Arc;

use tokio::sync::watch;
use tokio::task::JoinSet;
use tracing::{info, warn};

use flowgate_core::ports::{Backfills, Dispatcher, Queue, Schedules, Store, Tokens};
use flowgate_core::usecases::{Consumer, ConsumerConfig, Reconciler, Scheduler};
use flowgate_core::{Flowgate, HostPorts};
use flowgate_settings::{Role, Settings};

use flowgate_embedded::Embedded;

use crate::access;
use crate::backend::{self, Ports};
use crate::listener;
use crate::observe::{self, Observer};
use crate::telemetry;
use crate::ui;

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

/// What the roles of one process share: the settings, the ports, the stop signal, and the
/// set of running roles.
struct Roles<'a> {
    settings: &'a Settings,
    store: Arc<dyn Store>,
    queue: Arc<dyn Queue>,
    tokens: Option<Arc<dyn Tokens>>,
    schedules: Option<Arc<dyn Schedules>>,
    backfills: Option<Arc<dyn Backfills>>,
    dispatcher: Arc<dyn Dispatcher>,
    embedded: Option<Arc<Embedded>>,
    observer: Arc<Observer>,
    stopped: watch::Receiver<bool>,
    running: JoinSet<&'static str>,
}

/// Runs until SIGTERM or SIGINT, then finishes in-flight work and exits 0.
pub async fn run(settings: Settings) -> Result<ExitCode, Box<dyn std::error::Error>> {
    let _telemetry =
        telemetry::init_exporting("info", settings.log_format, &settings.otlp_endpoint)?;
    let settings = with_callbacks(settings)?;
    let opened = backend::open_all(&settings).await?;
    let (store, queue) = with_faults(&settings, opened.store, opened.queue)?;
    let (stop, stopped) = watch::channel(false);
    let mut roles = Roles {
        settings: &settings,
        store,
        queue,
        tokens: opened.tokens,
        schedules: opened.schedules,
        backfills: opened.backfills,
        dispatcher: Arc::new(flowgate_targets::Targets::new(
            settings.allow_private_targets,
        )),
        embedded: opened.embedded,
        observer: Arc::new(Observer::default()),
        stopped,
        running: JoinSet::new(),
    };
    if let Some(embedded) = &roles.embedded {
        embedded.measure_with(roles.observer.clone());
    }
    if settings.roles.contains(&Role::Api) {
        roles.start_api().await?;
    }
    if settings.roles.contains(&Role::Consumer) {
        roles.start_consumer();
    }
    if settings.roles.contains(&Role::Reconciler) {
        roles.start_reconciler();
    }
    if settings.roles.contains(&Role::Scheduler) {
        roles.start_scheduler();
    }
    shutdown_signal().await;
    info!("shutting down: finishing in-flight work");
    let _ = stop.send(true);
    while let Some(done) = roles.running.join_next().await {
        if let Ok(role) = done {
            info!(role, "stopped");
        }
    }
    Ok(ExitCode::SUCCESS)
}

impl Roles<'_> {
    /// The use cases over this process's ports.
    fn flowgate(&self) -> Flowgate {
        Flowgate::build(
            self.settings,
            HostPorts {
                store: self.store.clone(),
                queue: self.queue.clone(),
                schedules: self.schedules.clone(),
                backfills: self.backfills.clone(),
                dispatcher: Some(self.dispatcher.clone()),
                metrics: Some(self.observer.clone()),
            },
        )
    }

    fn start_scheduler(&mut self) {
        if self.schedules.is_none() && self.backfills.is_none() {
            warn!("this backend keeps no schedules or backfills: the scheduler role does nothing");
            return;
        }
        let scheduler = Scheduler::new(self.flowgate());
        let (tick, until) = (self.settings.scheduler_tick, self.stopped.clone());
        self.running.spawn(async move {
            scheduler.run(tick, until).await;
            "scheduler"
        });
        info!(tick = ?tick, "scheduler running");
    }

    async fn start_api(&mut self) -> Result<(), Box<dyn std::error::Error>> {
        let listen = self.settings.listen;
        let listener = tokio::net::TcpListener::bind(listen)
            .await
            .map_err(|source| ServeError::Bind {
                addr: listen,
                source,
            })?;
        let addr = listener.local_addr().unwrap_or(listen);
        let operator = observe::routes(self.observer.clone(), self.embedded.clone());
        let app = access::guard(
            flowgate_core::http::router(self.flowgate())
                .merge(flowgate_core::http::guarded(operator))
                .merge(ui::routes()),
            self.settings,
            self.tokens.clone(),
        )
        .await?;
        let mut until = self.stopped.clone();
        let limits = listener::Limits::from_settings(self.settings);
        self.running.spawn(async move {
            let shutdown = async move {
                let _ = until.wait_for(|s| *s).await;
            };
            listener::serve(listener, app, limits, shutdown).await;
            "api"
        });
        info!(%addr, backend = ?self.settings.backend, "API listening");
        Ok(())
    }

    fn start_consumer(&mut self) {
        let consumer = Consumer::new(
            self.store.clone(),
            self.queue.clone(),
            ConsumerConfig::from_settings(self.settings),
        )
        .with_dispatcher(self.dispatcher.clone())
        .with_metrics(self.observer.clone());
        // Fires arrive on the queue where the backend's engine fires schedules itself.
        let consumer = Arc::new(match self.schedules {
            Some(_) => consumer.with_fires(self.flowgate()),
            None => consumer,
        });
        let until = self.stopped.clone();
        self.running.spawn(async move {
            consumer.run(until).await;
            "consumer"
        });
        info!(
            max_receive_count = self.settings.max_receive_count,
            "consumer running"
        );
    }

    fn start_reconciler(&mut self) {
        let retention =
            std::time::Duration::from_secs(u64::from(self.settings.retention_days) * 86_400);
        let reconciler = Reconciler::new(
            self.store.clone(),
            self.queue.clone(),
            self.settings.reconcile_grace,
        )
        .with_retention(retention)
        .with_dispatcher(self.dispatcher.clone())
        .with_metrics(self.observer.clone());
        let (interval, until) = (self.settings.reconcile_interval, self.stopped.clone());
        self.running.spawn(async move {
            reconciler.run(interval, until).await;
            "reconciler"
        });
        info!(grace = ?self.settings.reconcile_grace, "reconciler running");
    }
}

/// The settings with a callback key and a public URL: on the embedded host, an unset key
/// is the one kept in the data directory (made on first use, readable by its owner only),
/// and an unset URL is the listen address's.
fn with_callbacks(mut settings: Settings) -> Result<Settings, Box<dyn std::error::Error>> {
    if settings.public_url.is_empty() {
        let mut addr = settings.listen;
        if addr.ip().is_unspecified() {
            addr.set_ip(std::net::Ipv4Addr::LOCALHOST.into());
        }
        settings.public_url = format!("http://{addr}");
    }
    if settings.callback_secret.is_empty()
        && settings.backend == flowgate_settings::Backend::Embedded
    {
        settings.callback_secret = kept_callback_key(&settings.data_dir)?;
    }
    Ok(settings)
}

/// The callback key kept in `dir/callback.key`, made on first use. It appears whole or not at
/// all: written to a file of its own, then linked in place, which fails if another
/// process (on the same directory, starting at the same moment) linked its key first; that
/// key is then the one.
fn kept_callback_key(dir: &std::path::Path) -> Result<String, Box<dyn std::error::Error>> {
    use std::io::Write;
    let path = dir.join("callback.key");
    if let Some(key) = read_callback_key(&path)? {
        return Ok(key);
    }
    std::fs::create_dir_all(dir)?;
    let key = format!(
        "{}{}",
        uuid::Uuid::new_v4().simple(),
        uuid::Uuid::new_v4().simple()
    );
    let mine = dir.join(format!(
        "callback.key.{}.new",
        uuid::Uuid::new_v4().simple()
    ));
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    let mut file = options
        .open(&mine)
        .map_err(|e| format!("cannot write {}: {e}", mine.display()))?;
    file.write_all(key.as_bytes())?;
    file.sync_all()?;
    drop(file);
    let linked = std::fs::hard_link(&mine, &path);
    let _ = std::fs::remove_file(&mine);
    match linked {
        Ok(()) => Ok(key),
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => read_callback_key(&path)?
            .ok_or_else(|| format!("{} vanished while it was read", path.display()).into()),
        Err(e) => Err(format!("cannot write {}: {e}", path.display()).into()),
    }
}

/// The key in `path`, if the file exists; one shorter than 32 characters is refused.
fn read_callback_key(path: &std::path::Path) -> Result<Option<String>, Box<dyn std::error::Error>> {
    match std::fs::read_to_string(path) {
        Ok(key) if key.trim().len() >= 32 => Ok(Some(key.trim().to_owned())),
        Ok(_) => Err(format!("{} is shorter than 32 characters", path.display()).into()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(format!("cannot read {}: {e}", path.display()).into()),
    }
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

#[cfg(test)]
mod tests {
    /// Processes starting at once on a fresh directory all end up with one key, whole.
    #[test]
    fn one_callback_key_however_many_start_at_once() {
        for _ in 0..20 {
            let dir = tempfile::tempdir().expect("a directory");
            let keys: Vec<String> = std::thread::scope(|scope| {
                let started: Vec<_> = (0..8)
                    .map(|_| scope.spawn(|| super::kept_callback_key(dir.path()).expect("a key")))
                    .collect();
                started
                    .into_iter()
                    .map(|t| t.join().expect("joined"))
                    .collect()
            });
            assert!(
                keys.iter().all(|k| k.len() >= 32 && *k == keys[0]),
                "{keys:?}"
            );
            let leftovers = std::fs::read_dir(dir.path()).expect("listed").count();
            assert_eq!(leftovers, 1, "only callback.key is left");
        }
    }
}
