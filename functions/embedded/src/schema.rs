//! The database schema and its migration.

use rusqlite::Connection;

/// The schema version this build writes (`PRAGMA user_version`).
pub const SCHEMA_VERSION: i64 = 14;

const V1: &str = r#"
CREATE TABLE workflows (
    tenant        TEXT    NOT NULL,
    code          TEXT    NOT NULL,
    name          TEXT    NOT NULL,
    online        INTEGER NOT NULL,
    params_schema TEXT    NOT NULL,
    version       INTEGER NOT NULL,
    created_at    INTEGER NOT NULL,
    updated_at    INTEGER NOT NULL,
    PRIMARY KEY (tenant, code)
) WITHOUT ROWID;

CREATE TABLE requests (
    tenant          TEXT    NOT NULL,
    request_id      TEXT    NOT NULL,
    instance_id     TEXT    NOT NULL,
    idempotency_key TEXT,
    fingerprint     TEXT    NOT NULL,
    spec            TEXT    NOT NULL,
    status          TEXT    NOT NULL,
    attempts        INTEGER NOT NULL,
    last_error      TEXT,
    accepted_at     INTEGER NOT NULL,
    updated_at      INTEGER NOT NULL,
    pending_since   INTEGER,
    -- The timeline, a JSON array of {at, event, detail}, kept inline (as in a DynamoDB
    -- item) so an append costs no extra index write; capped at MAX_HISTORY events.
    history         TEXT    NOT NULL,
    PRIMARY KEY (tenant, request_id)
) WITHOUT ROWID;

-- The reconciler's scan: only pending requests are indexed.
CREATE INDEX requests_pending ON requests (COALESCE(pending_since, accepted_at))
    WHERE status = 'ACCEPTED';

CREATE TABLE instances (
    tenant        TEXT    NOT NULL,
    instance_id   TEXT    NOT NULL,
    request_id    TEXT    NOT NULL,
    workflow      TEXT    NOT NULL,
    params        TEXT    NOT NULL,
    priority      TEXT    NOT NULL,
    schedule_time INTEGER,
    status        TEXT    NOT NULL,
    created_at    INTEGER NOT NULL,
    PRIMARY KEY (tenant, instance_id)
) WITHOUT ROWID;
CREATE INDEX instances_by_workflow ON instances (tenant, workflow, created_at DESC, instance_id DESC);

-- The queue and its dead-letter queue: `queue` is 'main' or 'dlq'.
CREATE TABLE messages (
    id            INTEGER PRIMARY KEY AUTOINCREMENT,
    queue         TEXT    NOT NULL,
    tenant        TEXT,
    request_id    TEXT,
    body          TEXT    NOT NULL,
    sent_at       INTEGER NOT NULL,
    visible_at    INTEGER NOT NULL,
    receive_count INTEGER NOT NULL DEFAULT 0,
    receipt       TEXT,
    dead_reason   TEXT,
    dead_at       INTEGER
);
CREATE INDEX messages_visible ON messages (queue, visible_at, id);
CREATE INDEX messages_by_request ON messages (tenant, request_id);
"#;

/// API tokens, stored by the SHA-256 of the token, never the token.
const V2: &str = r#"
CREATE TABLE tokens (
    hash       TEXT    NOT NULL PRIMARY KEY,
    id         TEXT    NOT NULL UNIQUE,
    tenant     TEXT    NOT NULL,
    scopes     TEXT    NOT NULL,
    rate       INTEGER,
    created_at INTEGER NOT NULL,
    revoked_at INTEGER
) WITHOUT ROWID;
"#;

/// Schedules, and the logical date of instances started by a schedule or a backfill.
const V3: &str = r#"
ALTER TABLE instances ADD COLUMN logical_date INTEGER;

CREATE TABLE schedules (
    tenant     TEXT    NOT NULL,
    workflow   TEXT    NOT NULL,
    id         TEXT    NOT NULL,
    body       TEXT    NOT NULL,
    paused     INTEGER NOT NULL,
    version    INTEGER NOT NULL,
    created_at INTEGER NOT NULL,
    updated_at INTEGER NOT NULL,
    last_fired INTEGER,
    next_due   INTEGER,
    last_error TEXT,
    PRIMARY KEY (tenant, workflow, id)
) WITHOUT ROWID;
-- The scheduler's scan: only schedules that will fire are indexed.
CREATE INDEX schedules_due ON schedules (next_due) WHERE paused = 0 AND next_due IS NOT NULL;
"#;

/// Backfills: each one's dates and progress, as a JSON record beside its state.
const V4: &str = r#"
CREATE TABLE backfills (
    tenant     TEXT    NOT NULL,
    id         TEXT    NOT NULL,
    state      TEXT    NOT NULL,
    version    INTEGER NOT NULL,
    created_at INTEGER NOT NULL,
    record     TEXT    NOT NULL,
    PRIMARY KEY (tenant, id)
) WITHOUT ROWID;
CREATE INDEX backfills_running ON backfills (created_at) WHERE state = 'running';
"#;

/// A workflow's DolphinScheduler codes: the definition code is unique per tenant.
const V5: &str = r#"
ALTER TABLE workflows ADD COLUMN ds_code INTEGER;
ALTER TABLE workflows ADD COLUMN ds_project_code INTEGER;
CREATE UNIQUE INDEX workflows_by_ds_code ON workflows (tenant, ds_code) WHERE ds_code IS NOT NULL;
"#;

/// Hand-off: a workflow's target, a request's hand-off state, and a pending index that also
/// holds the requests whose instance is created but whose hand-off is owed (the only
/// `CREATED` ones with a `pending_since`).
const V6: &str = r#"
ALTER TABLE workflows ADD COLUMN target TEXT;
ALTER TABLE requests ADD COLUMN dispatch TEXT;
DROP INDEX requests_pending;
CREATE INDEX requests_pending ON requests (COALESCE(pending_since, accepted_at))
    WHERE status = 'ACCEPTED' OR (status = 'CREATED' AND pending_since IS NOT NULL);
"#;

/// Retention: finished requests, oldest change first, so the reconciler removes the ones past
/// retention without a scan. (The same rule as the TTL of the DynamoDB items: nothing owed,
/// and an instance made or the request archived.)
const V7: &str = r#"
CREATE INDEX requests_expiry ON requests (updated_at)
    WHERE pending_since IS NULL AND status IN ('CREATED', 'DISPATCHED', 'ARCHIVED');
"#;

/// Traces: the W3C `traceparent` a message carries (its attribute).
const V8: &str = r#"
ALTER TABLE messages ADD COLUMN traceparent TEXT;
"#;

/// Schedules keep their next fire times (a JSON array), worked out when put and at each
/// fire, so that a listing never works them out.
const V9: &str = r#"
ALTER TABLE schedules ADD COLUMN next_fires TEXT;
"#;

/// The audit: a tenant's requests by the time they were accepted, so that counting a
/// window reads the window only.
const V10: &str = r#"
CREATE INDEX requests_by_accepted ON requests (tenant, accepted_at);
"#;

/// One row per start: the request, its place on the queue, and its instance once created.
///
/// - **Clustered by arrival** (`seq`): every write a start makes after its acceptance (its
///   deliveries, its creation, its hand-off) touches the table's growing edge, never a page
///   chosen by a random key. Only the idempotency index (`starts_by_request`) is keyed by a
///   random id, and a start writes it once.
/// - **The request is its own outbox**: `due_at` is when the row is next delivered (NULL: it
///   is not on the queue) and `deliveries` how often it was. A row leaves the queue as its
///   status leaves pending (`ACCEPTED`, or `CREATED` with a hand-off owed), in the same write;
///   one index (`starts_live`) serves the queue and the reconciler.
///   `messages` stays for what is sent apart from an acceptance (a re-send, a replay) and for
///   the dead-letter queue.
/// - **Compact**: ids as their 16 bytes, fingerprints as their 32, the spec and the history in
///   short forms (`compact.rs`); rows moved from V10 keep their JSON forms, which still read.
/// - **The instance is the row** once `created_at` is set: its workflow, params, priority
///   and times are the request's own. A start expired by retention keeps its instance
///   (status `EXPIRED`: no request any more, so its key may be used again).
///
/// Existing requests and instances move over; the messages waiting stay where they are.
const V11: &str = r#"
CREATE TABLE starts (
    seq             INTEGER PRIMARY KEY,
    tenant          TEXT    NOT NULL,
    request_id      TEXT    NOT NULL,
    instance_id     TEXT    NOT NULL,
    idempotency_key TEXT,
    fingerprint     TEXT    NOT NULL,
    workflow        TEXT    NOT NULL,
    spec            TEXT    NOT NULL,
    status          TEXT    NOT NULL,
    attempts        INTEGER NOT NULL,
    last_error      TEXT,
    accepted_at     INTEGER NOT NULL,
    updated_at      INTEGER NOT NULL,
    pending_since   INTEGER,
    history         TEXT    NOT NULL,
    dispatch        TEXT,
    due_at          INTEGER,
    deliveries      INTEGER NOT NULL DEFAULT 0,
    created_at      INTEGER
);

INSERT INTO starts (tenant, request_id, instance_id, idempotency_key, fingerprint, workflow,
    spec, status, attempts, last_error, accepted_at, updated_at, pending_since, history,
    dispatch, due_at, deliveries, created_at)
SELECT r.tenant,
    CASE WHEN length(r.request_id) = 36 AND lower(r.request_id) = r.request_id
        AND unhex(replace(r.request_id, '-', '')) IS NOT NULL
        THEN unhex(replace(r.request_id, '-', '')) ELSE r.request_id END,
    CASE WHEN length(r.instance_id) = 36 AND lower(r.instance_id) = r.instance_id
        AND unhex(replace(r.instance_id, '-', '')) IS NOT NULL
        THEN unhex(replace(r.instance_id, '-', '')) ELSE r.instance_id END,
    r.idempotency_key,
    CASE WHEN length(r.fingerprint) = 64 AND lower(r.fingerprint) = r.fingerprint
        AND unhex(r.fingerprint) IS NOT NULL THEN unhex(r.fingerprint) ELSE r.fingerprint END,
    json_extract(r.spec, '$.workflow'), r.spec, r.status, r.attempts, r.last_error,
    r.accepted_at, r.updated_at, r.pending_since, r.history, r.dispatch, NULL, 0, i.created_at
FROM requests r LEFT JOIN instances i ON i.tenant = r.tenant AND i.instance_id = r.instance_id
ORDER BY r.accepted_at;

INSERT INTO starts (tenant, request_id, instance_id, idempotency_key, fingerprint, workflow,
    spec, status, attempts, last_error, accepted_at, updated_at, pending_since, history,
    dispatch, due_at, deliveries, created_at)
SELECT i.tenant,
    CASE WHEN length(i.request_id) = 36 AND lower(i.request_id) = i.request_id
        AND unhex(replace(i.request_id, '-', '')) IS NOT NULL
        THEN unhex(replace(i.request_id, '-', '')) ELSE i.request_id END,
    CASE WHEN length(i.instance_id) = 36 AND lower(i.instance_id) = i.instance_id
        AND unhex(replace(i.instance_id, '-', '')) IS NOT NULL
        THEN unhex(replace(i.instance_id, '-', '')) ELSE i.instance_id END,
    NULL, '', i.workflow,
    json_object('workflow', i.workflow, 'params', json(i.params), 'priority', i.priority,
        'schedule_time', CASE WHEN i.schedule_time IS NULL THEN NULL
            ELSE strftime('%Y-%m-%dT%H:%M:%fZ', i.schedule_time / 1000000.0, 'unixepoch') END,
        'logical_date', CASE WHEN i.logical_date IS NULL THEN NULL
            ELSE strftime('%Y-%m-%dT%H:%M:%fZ', i.logical_date / 1000000.0, 'unixepoch') END),
    'EXPIRED', 0, NULL, i.created_at, i.created_at, NULL, '[]', NULL, NULL, 0, i.created_at
FROM instances i
WHERE NOT EXISTS (SELECT 1 FROM requests r WHERE r.tenant = i.tenant AND r.request_id = i.request_id)
ORDER BY i.created_at;

DROP TABLE requests;
DROP TABLE instances;

CREATE UNIQUE INDEX starts_by_request ON starts (tenant, request_id) WHERE status <> 'EXPIRED';
CREATE INDEX starts_by_instance ON starts (tenant, instance_id) WHERE created_at IS NOT NULL;
CREATE INDEX starts_by_workflow ON starts (tenant, workflow, created_at, instance_id)
    WHERE created_at IS NOT NULL;
-- The live starts (ACCEPTED, or CREATED with a hand-off owed), by when each is next due:
-- its delivery's time while on the queue, else its pending time. A receive reads the front
-- for the ones on the queue; the reconciler reads it for the ones pending past its grace. A
-- start enters it when accepted and leaves it when its instance is made: two index writes.
CREATE INDEX starts_live ON starts (COALESCE(due_at, pending_since, accepted_at))
    WHERE status = 'ACCEPTED' OR (status = 'CREATED' AND pending_since IS NOT NULL);
CREATE INDEX starts_by_accepted ON starts (tenant, accepted_at);
CREATE INDEX starts_expiry ON starts (updated_at)
    WHERE pending_since IS NULL AND status IN ('CREATED', 'DISPATCHED', 'ARCHIVED');
"#;

/// Version 12: a workflow's instances are listed by (creation time, row): the row's own
/// position breaks a tie where the instance id did, so the index no longer repeats the
/// 16-byte id (about 17 bytes less per start).
const V12: &str = r#"
DROP INDEX starts_by_workflow;
CREATE INDEX starts_by_workflow ON starts (tenant, workflow, created_at)
    WHERE created_at IS NOT NULL;
"#;

/// Version 13: instances are looked up by their id alone (each lookup still names its
/// tenant, checked on the row): an instance id is minted by the server (UUIDv7), so the
/// index need not repeat the tenant (about 8 bytes less per start).
const V13: &str = r#"
DROP INDEX starts_by_instance;
CREATE INDEX starts_by_instance ON starts (instance_id) WHERE created_at IS NOT NULL;
"#;

/// Version 14: runs. A start's run (`run`, JSON, once reported), a workflow's run settings
/// (`runs`, JSON), the slots unfinished instances hold under their workflow's concurrency
/// limit with their run's deadline (`run_slots`), and the starts waiting for one
/// (`run_waits`). Only starts of a workflow with a limit or a time-out write the last two;
/// only unfinished Step Functions runs are in `starts_polled`.
const V14: &str = r#"
ALTER TABLE starts ADD COLUMN run TEXT;
ALTER TABLE workflows ADD COLUMN runs TEXT;
CREATE TABLE run_slots (
    seq      INTEGER PRIMARY KEY,
    tenant   TEXT    NOT NULL,
    grp      TEXT,
    deadline INTEGER
);
CREATE INDEX run_slots_by_group ON run_slots (tenant, grp) WHERE grp IS NOT NULL;
CREATE INDEX run_slots_by_deadline ON run_slots (deadline) WHERE deadline IS NOT NULL;
CREATE TABLE run_waits (
    seq    INTEGER PRIMARY KEY,
    tenant TEXT    NOT NULL,
    grp    TEXT    NOT NULL,
    rank   INTEGER NOT NULL
);
CREATE INDEX run_waits_by_group ON run_waits (tenant, grp, rank, seq);
-- The runs the reconciler asks their target about (Step Functions executions, handed off
-- and not yet final), by their last change: only those rows are in it.
-- Retention also removes skipped starts (they have no instance).
DROP INDEX starts_expiry;
CREATE INDEX starts_expiry ON starts (updated_at)
    WHERE pending_since IS NULL AND status IN ('CREATED', 'DISPATCHED', 'ARCHIVED', 'SKIPPED');
CREATE INDEX starts_polled ON starts (updated_at)
    WHERE status = 'DISPATCHED' AND dispatch LIKE '{"target":"stepfunctions"%'
    AND (run IS NULL OR run LIKE '{"status":"RUNNING"%');
"#;

/// Brings a database to [`SCHEMA_VERSION`], refusing one written by a newer build. The
/// version is read inside the write transaction that creates the tables, so two processes
/// opening a fresh directory at once cannot both try to create them.
pub fn migrate(conn: &Connection) -> rusqlite::Result<()> {
    conn.execute_batch("BEGIN IMMEDIATE")?;
    let result = migrate_locked(conn);
    match result {
        Ok(()) => conn.execute_batch("COMMIT"),
        Err(e) => {
            let _ = conn.execute_batch("ROLLBACK");
            Err(e)
        }
    }
}

fn migrate_locked(conn: &Connection) -> rusqlite::Result<()> {
    migrate_to(conn, SCHEMA_VERSION)
}

/// Brings a database to `target` (at most [`SCHEMA_VERSION`]).
fn migrate_to(conn: &Connection, target: i64) -> rusqlite::Result<()> {
    let version: i64 = conn.pragma_query_value(None, "user_version", |r| r.get(0))?;
    if version > SCHEMA_VERSION {
        return Err(rusqlite::Error::InvalidParameterName(format!(
            "the data directory holds schema version {version}, newer than this build's \
             {SCHEMA_VERSION}: upgrade flowgate"
        )));
    }
    for (step, sql) in [
        (1, V1),
        (2, V2),
        (3, V3),
        (4, V4),
        (5, V5),
        (6, V6),
        (7, V7),
        (8, V8),
        (9, V9),
        (10, V10),
        (11, V11),
        (12, V12),
        (13, V13),
        (14, V14),
    ] {
        if version < step && step <= target {
            conn.execute_batch(sql)?;
            conn.pragma_update(None, "user_version", step)?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A data directory of the version before one row per start moves over whole: its
    /// requests (with their instances), an instance whose request retention removed, and
    /// the messages waiting; every id reads back as it was.
    #[test]
    fn requests_and_instances_move_to_one_row_per_start() {
        let conn = Connection::open_in_memory().expect("a database");
        migrate_to(&conn, 10).expect("version 10");
        let spec =
            r#"{"workflow":"orders","params":{"n":1},"priority":"HIGH","schedule_time":null}"#;
        let history = r#"[{"at":"2026-12-01T00:00:00Z","event":"accepted","detail":"accepted"}]"#;
        conn.execute_batch(&format!(
            "INSERT INTO requests (tenant, request_id, instance_id, fingerprint, spec, status, \
             attempts, accepted_at, updated_at, history) VALUES \
             ('t', '01a23766-cc11-772e-9b8e-6b407a98f868', '01a23766-cc11-772e-9b8e-6b407a98f869', \
             '{fp}', '{spec}', 'CREATED', 1, 1, 2, '{history}'), \
             ('t', 'r-legacy', 'i-legacy', 'x', '{spec}', 'ACCEPTED', 0, 3, 3, '{history}'); \
             INSERT INTO instances (tenant, instance_id, request_id, workflow, params, priority, \
             status, created_at) VALUES \
             ('t', '01a23766-cc11-772e-9b8e-6b407a98f869', '01a23766-cc11-772e-9b8e-6b407a98f868', \
             'orders', '{{\"n\":1}}', 'HIGH', 'CREATED', 5), \
             ('t', 'i-gone', 'r-gone', 'orders', '{{}}', 'LOW', 'CREATED', 7); \
             INSERT INTO messages (queue, tenant, request_id, body, sent_at, visible_at) \
             VALUES ('main', 't', 'r-legacy', '{{}}', 3, 3);",
            fp = "ab".repeat(32),
        ))
        .expect("old rows");
        migrate_to(&conn, SCHEMA_VERSION).expect("the current version");
        let sql = format!(
            "SELECT {} FROM starts ORDER BY seq",
            crate::codec::START_COLS
        );
        let mut statement = conn.prepare(&sql).expect("a query");
        let requests: Vec<(String, String, String, bool)> = statement
            .query_map([], |row| {
                let status: String = row.get(6)?;
                let created = row.get::<_, Option<i64>>(14)?.is_some();
                let instance = crate::codec::instance(row).ok().map(|i| i.instance_id);
                Ok((
                    crate::compact::id_at(row, 1)?,
                    status,
                    instance.unwrap_or_default(),
                    created,
                ))
            })
            .expect("rows")
            .collect::<rusqlite::Result<_>>()
            .expect("they read");
        assert_eq!(
            requests,
            [
                (
                    "01a23766-cc11-772e-9b8e-6b407a98f868".to_owned(),
                    "CREATED".to_owned(),
                    "01a23766-cc11-772e-9b8e-6b407a98f869".to_owned(),
                    true
                ),
                (
                    "r-legacy".to_owned(),
                    "ACCEPTED".to_owned(),
                    String::new(),
                    false
                ),
                (
                    "r-gone".to_owned(),
                    "EXPIRED".to_owned(),
                    "i-gone".to_owned(),
                    true
                ),
            ]
        );
        let record = conn
            .query_row(&format!("{sql} LIMIT 1"), [], crate::codec::request)
            .expect("the first reads as a request");
        assert_eq!(record.fingerprint, "ab".repeat(32));
        assert_eq!(record.spec.params["n"], 1);
        let waiting: i64 = conn
            .query_row(
                "SELECT count(*) FROM messages WHERE queue = 'main'",
                [],
                |r| r.get(0),
            )
            .expect("count");
        assert_eq!(waiting, 1, "the messages waiting stay where they are");
    }
}
