//! Every setting of every Flowgate host, written once: its flag, its variable, its format,
//! its default and its meaning ([`specs::ALL`]). Each host builds one typed [`Settings`]
//! through [`Settings::load`], which reads only the settings that host uses and fails once,
//! at start, naming the setting.

mod format;
mod markdown;
pub mod specs;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

pub use format::{Format, parse_duration};
pub use markdown::markdown_table;
pub use specs::{ALL, Spec};

/// A process that reads settings. A setting is read only by the hosts its spec names.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Host {
    /// `flowgate serve`.
    Serve,
    /// The operator commands that work on a backend directly: `flowgate dlq`, `flowgate aws`.
    Operator,
    /// The client commands that talk to a server: `submit`, `status`, `workflows`, `bench`.
    Client,
    /// The API Lambda function.
    Api,
    /// The consumer Lambda function.
    Consumer,
    /// The reconciler Lambda function.
    Reconciler,
}

impl Host {
    /// Every host, in the order the docs list them.
    pub const ALL: [Host; 6] = [
        Host::Serve,
        Host::Operator,
        Host::Client,
        Host::Api,
        Host::Consumer,
        Host::Reconciler,
    ];

    /// The name the docs use.
    pub fn name(self) -> &'static str {
        match self {
            Host::Serve => "serve",
            Host::Operator => "dlq, aws",
            Host::Client => "client",
            Host::Api => "api λ",
            Host::Consumer => "consumer λ",
            Host::Reconciler => "reconciler λ",
        }
    }
}

/// Where a host keeps its data.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    /// One SQLite file under the data directory.
    Embedded,
    /// DynamoDB and SQS.
    Aws,
}

/// A role of `flowgate serve`; roles can be split across processes on one data directory.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// The HTTP API.
    Api,
    /// The queue consumer that creates instances.
    Consumer,
    /// The periodic sweep that re-sends stuck requests.
    Reconciler,
    /// The scheduler that fires due schedules.
    Scheduler,
}

/// How logs are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogFormat {
    /// Human-readable lines.
    Text,
    /// One JSON object per line.
    Json,
}

/// A setting whose value was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("--{} ({}): {value:?} {reason}", spec.flag, spec.env)]
pub struct SettingError {
    /// The setting.
    pub spec: &'static Spec,
    /// The value given.
    pub value: String,
    /// Why it was refused.
    pub reason: String,
}

/// Every setting, typed. A host's [`Settings::load`] fills the ones it reads; the rest keep
/// their defaults.
#[derive(Debug, Clone, PartialEq)]
pub struct Settings {
    /// Address the API listens on.
    pub listen: SocketAddr,
    /// The backend.
    pub backend: Backend,
    /// Directory of the embedded store.
    pub data_dir: PathBuf,
    /// The roles `serve` runs.
    pub roles: Vec<Role>,
    /// Deliveries of a message before it is dead-lettered.
    pub max_receive_count: u32,
    /// How long a delivered message stays invisible before it is delivered again.
    pub visibility_timeout: Duration,
    /// First retry delay after a failed delivery.
    pub retry_base: Duration,
    /// How long a request may stay pending before the reconciler re-sends it.
    pub reconcile_grace: Duration,
    /// How often the reconciler sweeps.
    pub reconcile_interval: Duration,
    /// DynamoDB table.
    pub table: String,
    /// SQS queue: a name or a URL.
    pub queue: String,
    /// SQS dead-letter queue: a name or a URL.
    pub dlq: String,
    /// Days a finished request is kept.
    pub retention_days: u32,
    /// The JWT claim that names the tenant.
    pub tenant_claim: String,
    /// Fault-injection plan (builds with the `faults` feature only).
    pub faults: String,
    /// Where to export spans through OTLP (builds with the `otlp` feature only); empty: nowhere.
    pub otlp_endpoint: String,
    /// Log format.
    pub log_format: LogFormat,
    /// How often the scheduler looks for due schedules.
    pub scheduler_tick: Duration,
    /// The longest one start request's validation may take.
    pub validation_budget: Duration,
    /// How long a client may take to send a request's headers.
    pub header_read_timeout: Duration,
    /// How long a connection may stay silent.
    pub idle_timeout: Duration,
    /// The most connections served at once.
    pub max_connections: usize,
    /// The most connections one client address may hold at once.
    pub max_connections_per_address: usize,
    /// The most read connections of the embedded store.
    pub read_pool: usize,
    /// Requests per second per tenant; 0 means no limit.
    pub rate_limit: u32,
    /// Serve without tokens beyond loopback.
    pub insecure_no_auth: bool,
    /// Webhook targets may reach non-public addresses.
    pub allow_private_targets: bool,
    /// Take the tenant from a JWT's `sub` when the tenant claim is absent.
    pub tenant_from_sub: bool,
    /// How an IAM caller maps to a tenant.
    pub iam_tenant: IamTenant,
    /// The API token the client commands send.
    pub token: String,
    /// Base URL of a running server, for the client commands.
    pub url: String,
    /// The EventBridge Scheduler group of the stack's schedules; empty: none kept.
    pub schedule_group: String,
    /// The role EventBridge Scheduler assumes to send fires.
    pub scheduler_role_arn: String,
    /// The queue's ARN (fires go there); empty: looked up.
    pub queue_arn: String,
    /// The dead-letter queue's ARN; empty: looked up.
    pub dlq_arn: String,
    /// The API's public base URL, for callbacks; empty: the host's own.
    pub public_url: String,
    /// The key that signs callback tokens; empty: the host's own.
    pub callback_secret: String,
    /// Each tenant's weight in fair delivery (a tenant not named weighs 1).
    pub tenant_weights: Vec<(String, u32)>,
}

/// How an IAM caller maps to a tenant.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IamTenant {
    /// The stable principal: a user's ARN, or an assumed role's role ARN without its session.
    Principal,
    /// The caller's account id.
    Account,
}

impl Settings {
    /// The settings of `host`: each one it reads comes from `lookup` (a flag or a variable)
    /// or its default, parsed by its format; a refused value fails with its name.
    pub fn load(
        host: Host,
        lookup: &dyn Fn(&'static Spec) -> Option<String>,
    ) -> Result<Self, SettingError> {
        let r = Reader { host, lookup };
        use specs::*;
        Ok(Self {
            listen: r.get(&LISTEN, format::address)?,
            backend: r.get(&BACKEND, |t| {
                format::choice(t, &[("embedded", Backend::Embedded), ("aws", Backend::Aws)])
            })?,
            data_dir: r.get(&DATA_DIR, format::path)?,
            roles: r.get(&ROLES, |t| {
                format::list(
                    t,
                    &[
                        ("api", Role::Api),
                        ("consumer", Role::Consumer),
                        ("reconciler", Role::Reconciler),
                        ("scheduler", Role::Scheduler),
                    ],
                )
            })?,
            max_receive_count: r.get(&MAX_RECEIVE_COUNT, |t| MAX_RECEIVE_COUNT.format.count(t))?,
            visibility_timeout: r.get(&VISIBILITY_TIMEOUT, |t| {
                VISIBILITY_TIMEOUT.format.duration(t)
            })?,
            retry_base: r.get(&RETRY_BASE, |t| RETRY_BASE.format.duration(t))?,
            reconcile_grace: r.get(&RECONCILE_GRACE, |t| RECONCILE_GRACE.format.duration(t))?,
            reconcile_interval: r.get(&RECONCILE_INTERVAL, |t| {
                RECONCILE_INTERVAL.format.duration(t)
            })?,
            table: r.get(&TABLE, format::text)?,
            queue: r.get(&QUEUE, format::text)?,
            dlq: r.get(&DLQ, format::text)?,
            retention_days: r.get(&RETENTION_DAYS, |t| RETENTION_DAYS.format.count(t))?,
            tenant_claim: r.get(&TENANT_CLAIM, format::text)?,
            faults: r.get(&FAULTS, |t| Ok(t.to_owned()))?,
            otlp_endpoint: r.get(&OTLP_ENDPOINT, |t| Ok(t.trim().to_owned()))?,
            log_format: r.get(&LOG_FORMAT, |t| {
                format::choice(t, &[("text", LogFormat::Text), ("json", LogFormat::Json)])
            })?,
            scheduler_tick: r.get(&SCHEDULER_TICK, |t| SCHEDULER_TICK.format.duration(t))?,
            validation_budget: r
                .get(&VALIDATION_BUDGET, |t| VALIDATION_BUDGET.format.duration(t))?,
            header_read_timeout: r.get(&HEADER_READ_TIMEOUT, |t| {
                HEADER_READ_TIMEOUT.format.duration(t)
            })?,
            idle_timeout: r.get(&IDLE_TIMEOUT, |t| IDLE_TIMEOUT.format.duration(t))?,
            max_connections: r.get(&MAX_CONNECTIONS, |t| MAX_CONNECTIONS.format.count(t))?,
            max_connections_per_address: r.get(&MAX_CONNECTIONS_PER_ADDRESS, |t| {
                MAX_CONNECTIONS_PER_ADDRESS.format.count(t)
            })?,
            read_pool: r.get(&READ_POOL, |t| READ_POOL.format.count(t))?,
            rate_limit: r.get(&RATE_LIMIT, |t| RATE_LIMIT.format.count(t))?,
            insecure_no_auth: r.get(&INSECURE_NO_AUTH, format::flag)?,
            allow_private_targets: r.get(&ALLOW_PRIVATE_TARGETS, format::flag)?,
            tenant_from_sub: r.get(&TENANT_FROM_SUB, format::flag)?,
            iam_tenant: r.get(&IAM_TENANT, |t| {
                format::choice(
                    t,
                    &[
                        ("principal", IamTenant::Principal),
                        ("account", IamTenant::Account),
                    ],
                )
            })?,
            token: r.get(&TOKEN, |t| Ok(t.to_owned()))?,
            url: r.get(&URL, format::text)?,
            schedule_group: r.get(&SCHEDULE_GROUP, |t| Ok(t.to_owned()))?,
            scheduler_role_arn: r.get(&SCHEDULER_ROLE_ARN, |t| Ok(t.to_owned()))?,
            queue_arn: r.get(&QUEUE_ARN, |t| Ok(t.to_owned()))?,
            dlq_arn: r.get(&DLQ_ARN, |t| Ok(t.to_owned()))?,
            public_url: r.get(&PUBLIC_URL, |t| Ok(t.trim_end_matches('/').to_owned()))?,
            callback_secret: r.get(&CALLBACK_SECRET, |t| {
                if !t.is_empty() && t.len() < 32 {
                    return Err("is shorter than 32 characters".into());
                }
                Ok(t.to_owned())
            })?,
            tenant_weights: r.get(&TENANT_WEIGHTS, weights)?,
        })
    }

    /// The settings of `host` from the process environment.
    pub fn from_env(host: Host) -> Result<Self, SettingError> {
        Self::load(host, &|spec| std::env::var(spec.env).ok())
    }

    /// Every setting at its default.
    pub fn defaults() -> Self {
        // Every default parses: a unit test holds the table to that.
        Self::load(Host::Serve, &|_| None).unwrap_or_else(|e| panic!("a default is refused: {e}"))
    }

    /// The longest a durably accepted request whose enqueue failed waits before the
    /// reconciler sends it: the grace period plus one sweep interval.
    pub fn redelivery_bound(&self) -> Duration {
        self.reconcile_grace + self.reconcile_interval
    }

    /// How long a finished request is kept (`retention_days`).
    pub fn retention(&self) -> Duration {
        Duration::from_secs(u64::from(self.retention_days) * 86_400)
    }
}

/// `tenant=weight,...`, each weight 1 to 100.
fn weights(text: &str) -> Result<Vec<(String, u32)>, String> {
    text.split(',')
        .map(str::trim)
        .filter(|p| !p.is_empty())
        .map(|pair| {
            let (tenant, weight) = pair
                .split_once('=')
                .ok_or_else(|| format!("{pair:?} is not tenant=weight"))?;
            let weight: u32 = weight
                .trim()
                .parse()
                .ok()
                .filter(|w| (1..=100).contains(w))
                .ok_or_else(|| format!("the weight of {tenant:?} is not 1 to 100"))?;
            Ok((tenant.trim().to_owned(), weight))
        })
        .collect()
}

struct Reader<'a> {
    host: Host,
    lookup: &'a dyn Fn(&'static Spec) -> Option<String>,
}

impl Reader<'_> {
    fn get<T>(
        &self,
        spec: &'static Spec,
        parse: impl Fn(&str) -> Result<T, String>,
    ) -> Result<T, SettingError> {
        let given = spec
            .read_by
            .contains(&self.host)
            .then(|| (self.lookup)(spec))
            .flatten();
        let text = given.as_deref().unwrap_or(spec.default);
        parse(text.trim()).map_err(|reason| SettingError {
            spec,
            value: text.to_owned(),
            reason,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn load(host: Host, vars: &[(&str, &str)]) -> Result<Settings, SettingError> {
        let vars: HashMap<String, String> = vars
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
        Settings::load(host, &move |spec| vars.get(spec.env).cloned())
    }

    #[test]
    fn every_default_parses_for_every_host() {
        for host in Host::ALL {
            load(host, &[]).expect("defaults");
        }
        assert_eq!(Settings::defaults().max_receive_count, 5);
    }

    #[test]
    fn names_are_unique_and_well_formed() {
        let mut seen = std::collections::HashSet::new();
        for spec in ALL {
            assert!(seen.insert(spec.env), "{} twice", spec.env);
            assert!(seen.insert(spec.flag), "{} twice", spec.flag);
            assert!(spec.env.starts_with("FLOWGATE_"), "{}", spec.env);
            assert_eq!(
                spec.env
                    .trim_start_matches("FLOWGATE_")
                    .to_ascii_lowercase(),
                spec.flag.replace('-', "_"),
                "the flag and the variable name one setting"
            );
            assert!(!spec.read_by.is_empty() && !spec.meaning.is_empty());
        }
    }

    #[test]
    fn a_bad_value_names_the_setting_and_a_host_reads_only_its_own() {
        let err = load(Host::Consumer, &[("FLOWGATE_VISIBILITY_TIMEOUT", "soon")]).unwrap_err();
        let text = err.to_string();
        assert!(
            text.contains("--visibility-timeout") && text.contains("FLOWGATE_VISIBILITY_TIMEOUT")
        );
        let err = load(Host::Serve, &[("FLOWGATE_MAX_RECEIVE_COUNT", "0")]).unwrap_err();
        assert!(err.to_string().contains("max-receive-count"), "{err}");
        // The API does not read the listen address, so a bad one there is not its business.
        assert!(load(Host::Api, &[("FLOWGATE_LISTEN", "nowhere")]).is_ok());
        let s = load(Host::Consumer, &[("FLOWGATE_VISIBILITY_TIMEOUT", "180s")]).unwrap();
        assert_eq!(s.visibility_timeout, Duration::from_secs(180));
        assert!(load(Host::Serve, &[("FLOWGATE_ROLES", "api,janitor")]).is_err());
        assert!(load(Host::Serve, &[("FLOWGATE_VISIBILITY_TIMEOUT", "13h")]).is_err());
    }

    #[test]
    fn tenant_weights_and_the_callback_key_are_checked() {
        let s = load(
            Host::Serve,
            &[("FLOWGATE_TENANT_WEIGHTS", "acme=3, beta=1")],
        )
        .unwrap();
        assert_eq!(
            s.tenant_weights,
            [("acme".to_owned(), 3), ("beta".to_owned(), 1)]
        );
        assert!(load(Host::Serve, &[("FLOWGATE_TENANT_WEIGHTS", "acme=0")]).is_err());
        assert!(load(Host::Serve, &[("FLOWGATE_TENANT_WEIGHTS", "acme")]).is_err());
        assert!(load(Host::Serve, &[("FLOWGATE_CALLBACK_SECRET", "short")]).is_err());
    }
}
