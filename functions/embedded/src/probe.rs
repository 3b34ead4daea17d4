//! A read-only look at a data directory from outside the server: how many messages wait in
//! the queue, and how large the database and its write-ahead log are. `flowgate bench`
//! samples it while it loads a server on the same machine.

use std::path::Path;

use rusqlite::Connection;

use crate::{DB_FILE, DbError};

/// A read-only connection to a data directory's database.
pub struct Probe {
    conn: Connection,
}

/// The sizes of the database's files, in bytes.
#[derive(Debug, Clone, Copy, Default)]
pub struct FileSizes {
    /// The main database file.
    pub db: u64,
    /// The write-ahead log (`-wal`), which checkpoints copy back into the main file.
    pub wal: u64,
}

impl FileSizes {
    /// The current sizes of the database file and its log in `data_dir` (0 for a file that
    /// is absent).
    pub fn of(data_dir: &Path) -> Self {
        let size = |name: String| std::fs::metadata(data_dir.join(name)).map_or(0, |m| m.len());
        Self {
            db: size(DB_FILE.to_owned()),
            wal: size(format!("{DB_FILE}-wal")),
        }
    }
}

impl Probe {
    /// Opens the database in `data_dir` read-only, as the server's readers do; it must exist.
    pub fn open(data_dir: &Path) -> Result<Self, DbError> {
        let conn = crate::db::open_connection(&data_dir.join(DB_FILE), true)?;
        Ok(Self { conn })
    }

    /// What waits on the main queue: starts accepted whose delivery is not yet settled (on
    /// the queue in their own rows), and messages sent apart.
    pub fn backlog(&self) -> rusqlite::Result<u64> {
        let starts: u64 = self
            .conn
            .prepare_cached(&format!(
                "SELECT count(*) FROM starts WHERE {} AND due_at IS NOT NULL",
                crate::queue::LIVE
            ))?
            .query_row([], |row| row.get(0))?;
        let messages: u64 = self
            .conn
            .prepare_cached("SELECT count(*) FROM messages WHERE queue = 'main'")?
            .query_row([], |row| row.get(0))?;
        Ok(starts + messages)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Embedded, EmbeddedConfig};
    use flowgate_core::ports::{Envelope, Queue};

    #[tokio::test]
    async fn the_backlog_counts_the_messages_waiting_and_the_sizes_are_the_files() {
        let dir = tempfile::tempdir().expect("a temp dir");
        let store = Embedded::open(dir.path(), EmbeddedConfig::default()).expect("a store");
        let probe = Probe::open(dir.path()).expect("a probe");
        assert_eq!(probe.backlog().expect("a count"), 0);
        for n in 0..3 {
            let envelope = Envelope {
                tenant: "t".into(),
                request_id: format!("r{n}"),
                body: "{}".into(),
                traceparent: None,
            };
            store.send(&envelope).await.expect("sent");
        }
        assert_eq!(probe.backlog().expect("a count"), 3);
        let received = store
            .receive(1, std::time::Duration::ZERO)
            .await
            .expect("received");
        store.ack(&received[0]).await.expect("acked");
        assert_eq!(
            probe.backlog().expect("a count"),
            2,
            "an acked message left"
        );
        let sizes = FileSizes::of(dir.path());
        assert!(sizes.db > 0 && sizes.wal > 0, "{sizes:?}");
        let wal = std::fs::metadata(dir.path().join(format!("{DB_FILE}-wal"))).map(|m| m.len());
        assert_eq!(Ok(sizes.wal), wal.map_err(|e| e.to_string()));
    }
}
