//! The database schema and its migration.

use rusqlite::Connection;

/// The schema version this build writes (`PRAGMA user_version`).
pub const SCHEMA_VERSION: i64 = 10;

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
    ] {
        if version < step {
            conn.execute_batch(sql)?;
            conn.pragma_update(None, "user_version", step)?;
        }
    }
    Ok(())
}
