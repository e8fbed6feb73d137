//! Durable state in one SQLite file: the input journal (every input the engine got,
//! with its time, so a live day can be replayed), the servers with their requests
//! (queued and placed ones keep their original request time), the name tables that
//! give servers and users their dense numeric ids, and the node registry (hosts added
//! through the API, rented VMs).
//!
//! Writes happen in the driver task before the API answers, in WAL mode: a process
//! killed at any moment has either not answered (the client retries) or has the row.

use conductor_core::io::Input;
use conductor_core::{Plan, ServerId, UserId};
use rusqlite::{params, Connection, OptionalExtension};
use std::path::Path;

pub struct Store {
    db: Connection,
}

/// A server's durable request state.
#[derive(Clone, Debug, PartialEq)]
pub struct ServerRow {
    pub id: ServerId,
    pub name: String,
    pub ram_mb: u32,
    pub plan: Plan,
    pub user: UserId,
    /// `queued`, `placed`, `running` or `stopped`.
    pub state: String,
    /// Engine time (Unix ms) of the original request, while it is not running.
    pub requested_at: Option<u64>,
    /// Where the server's current world is: the node it last started on, or while a
    /// transfer is under way its source node, or "" for the archive (a restore); `None`:
    /// not known (never started since the column exists).
    pub world_node: Option<String>,
    /// The node its last placement went to (while `placed`, its start may have come up
    /// there without a report).
    pub placed_node: Option<String>,
}

/// A node the driver must remember across restarts (config nodes are not stored).
#[derive(Clone, Debug, PartialEq)]
pub struct NodeRow {
    pub name: String,
    /// JSON of the node's description (driver-defined).
    pub spec: String,
}

#[derive(Debug, thiserror::Error)]
#[error("database: {0}")]
pub struct StoreError(#[from] rusqlite::Error);

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS journal (seq INTEGER PRIMARY KEY, at_ms INTEGER NOT NULL, input TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS servers (
    id INTEGER PRIMARY KEY, name TEXT NOT NULL UNIQUE, ram_mb INTEGER NOT NULL DEFAULT 0,
    plan TEXT NOT NULL DEFAULT 'payperplay', user_id INTEGER NOT NULL DEFAULT 0,
    state TEXT NOT NULL DEFAULT 'stopped', requested_at INTEGER);
CREATE TABLE IF NOT EXISTS users (id INTEGER PRIMARY KEY, name TEXT NOT NULL UNIQUE);
CREATE TABLE IF NOT EXISTS nodes (name TEXT PRIMARY KEY, spec TEXT NOT NULL);
";

/// Columns added after the first release, for files written before them.
fn migrate(db: &Connection) -> rusqlite::Result<()> {
    for column in ["world_node", "placed_node"] {
        let present: bool =
            db.query_row("SELECT COUNT(*) > 0 FROM pragma_table_info('servers') WHERE name = ?1", [column], |r| {
                r.get(0)
            })?;
        if !present {
            // `column` is one of the fixed names above, never input.
            db.execute_batch(&format!("ALTER TABLE servers ADD COLUMN {column} TEXT"))?;
        }
    }
    Ok(())
}

fn row_of(r: &rusqlite::Row<'_>) -> rusqlite::Result<ServerRow> {
    Ok(ServerRow {
        id: ServerId(r.get::<_, i64>(0)? as u64),
        name: r.get(1)?,
        ram_mb: r.get(2)?,
        plan: plan_of(&r.get::<_, String>(3)?),
        user: UserId(r.get::<_, i64>(4)? as u64),
        state: r.get(5)?,
        requested_at: r.get::<_, Option<i64>>(6)?.map(|v| v as u64),
        world_node: r.get(7)?,
        placed_node: r.get(8)?,
    })
}

fn plan_str(p: Plan) -> &'static str {
    p.as_str()
}

fn plan_of(s: &str) -> Plan {
    match s {
        "balanced" => Plan::Balanced,
        "reserved" => Plan::Reserved,
        _ => Plan::PayPerPlay,
    }
}

impl Store {
    pub fn open(path: &Path) -> Result<Store, StoreError> {
        let db = Connection::open(path)?;
        db.pragma_update(None, "journal_mode", "WAL")?;
        db.pragma_update(None, "synchronous", "NORMAL")?;
        db.busy_timeout(std::time::Duration::from_secs(5))?;
        db.execute_batch(SCHEMA)?;
        migrate(&db)?;
        Ok(Store { db })
    }

    /// Opens the file for the driver: like [`Store::open`], but the driver's connection never
    /// checkpoints the WAL itself (a checkpoint copies pages into the database and syncs it, tens
    /// of milliseconds the driver's loop would stand still for); a background thread with its
    /// own connection checkpoints it every `every` instead, passively, without blocking writes.
    pub fn open_with_checkpointer(path: &Path, every: std::time::Duration) -> Result<Store, StoreError> {
        let store = Store::open(path)?;
        store.db.pragma_update(None, "wal_autocheckpoint", 0)?;
        let checkpointer = Connection::open(path)?;
        checkpointer.busy_timeout(std::time::Duration::from_secs(5))?;
        std::thread::Builder::new()
            .name("wal-checkpoint".into())
            .spawn(move || loop {
                std::thread::sleep(every);
                if let Err(e) = checkpointer.query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |_| Ok(())) {
                    eprintln!("conductor: store: checkpoint failed: {e}");
                }
            })
            .map_err(|e| StoreError(rusqlite::Error::ToSqlConversionFailure(Box::new(e))))?;
        Ok(store)
    }

    /// Opens a private in-memory copy of the file for a dry run: it starts from the real
    /// state, and whatever the dry run writes stays in memory (the file is opened read-only
    /// and never written). A missing file gives an empty store.
    pub fn open_copy(path: &Path) -> Result<Store, StoreError> {
        let mut db = Connection::open_in_memory()?;
        if path.exists() {
            let src = Connection::open_with_flags(path, rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY)?;
            src.busy_timeout(std::time::Duration::from_secs(5))?;
            let backup = rusqlite::backup::Backup::new(&src, &mut db)?;
            // All pages in one step, under one read transaction: a busy writer cannot restart
            // the copy (a locked file is retried for a few seconds).
            use rusqlite::backup::StepResult;
            let mut tries = 0;
            loop {
                match backup.step(-1)? {
                    StepResult::Done => break,
                    StepResult::More | StepResult::Busy | StepResult::Locked if tries < 500 => {
                        tries += 1;
                        std::thread::sleep(std::time::Duration::from_millis(10));
                    }
                    _ => {
                        return Err(StoreError(rusqlite::Error::SqliteFailure(
                            rusqlite::ffi::Error::new(rusqlite::ffi::SQLITE_BUSY),
                            Some("the database stayed locked while copying it for a dry run".into()),
                        )))
                    }
                }
            }
        }
        db.execute_batch(SCHEMA)?;
        migrate(&db)?;
        Ok(Store { db })
    }

    pub fn open_in_memory() -> Result<Store, StoreError> {
        let db = Connection::open_in_memory()?;
        db.execute_batch(SCHEMA)?;
        migrate(&db)?;
        Ok(Store { db })
    }

    /// Opens a transaction: the writes up to [`Store::commit`] become durable together, with one
    /// WAL commit instead of one per statement (the driver groups the API calls waiting in its
    /// channel this way and answers them only after the commit).
    pub fn begin(&self) -> Result<(), StoreError> {
        self.db.execute_batch("BEGIN IMMEDIATE")?;
        Ok(())
    }

    pub fn commit(&self) -> Result<(), StoreError> {
        self.db.execute_batch("COMMIT")?;
        Ok(())
    }

    /// Undoes an open transaction after a failed commit (no-op without one).
    pub fn rollback(&self) {
        if !self.db.is_autocommit() {
            let _ = self.db.execute_batch("ROLLBACK");
        }
    }

    pub fn journal(&self, at_ms: u64, input: &Input) -> Result<(), StoreError> {
        let json = serde_json::to_string(input).expect("inputs serialize");
        self.db
            .prepare_cached("INSERT INTO journal (at_ms, input) VALUES (?1, ?2)")?
            .execute(params![at_ms as i64, json])?;
        Ok(())
    }

    /// The journal in order: (time, input). Rows that no longer parse are reported, not
    /// skipped silently.
    pub fn read_journal(&self) -> Result<Vec<(u64, Result<Input, String>)>, StoreError> {
        let mut st = self.db.prepare("SELECT at_ms, input FROM journal ORDER BY seq")?;
        let rows = st.query_map([], |r| Ok((r.get::<_, i64>(0)? as u64, r.get::<_, String>(1)?)))?;
        let mut out = Vec::new();
        for row in rows {
            let (at, json) = row?;
            out.push((at, serde_json::from_str(&json).map_err(|e| e.to_string())));
        }
        Ok(out)
    }

    /// The id of a server name, created if new (dense: 1, 2, 3, ...).
    pub fn server_id(&self, name: &str) -> Result<ServerId, StoreError> {
        if let Some(id) = self.find_server(name)? {
            return Ok(id);
        }
        self.db.prepare_cached("INSERT INTO servers (name) VALUES (?1)")?.execute(params![name])?;
        Ok(ServerId(self.db.last_insert_rowid() as u64))
    }

    pub fn find_server(&self, name: &str) -> Result<Option<ServerId>, StoreError> {
        Ok(self
            .db
            .prepare_cached("SELECT id FROM servers WHERE name = ?1")?
            .query_row(params![name], |r| r.get::<_, i64>(0))
            .optional()?
            .map(|i| ServerId(i as u64)))
    }

    pub fn user_id(&self, name: &str) -> Result<UserId, StoreError> {
        let found = self
            .db
            .prepare_cached("SELECT id FROM users WHERE name = ?1")?
            .query_row(params![name], |r| r.get::<_, i64>(0))
            .optional()?;
        if let Some(i) = found {
            return Ok(UserId(i as u64));
        }
        self.db.prepare_cached("INSERT INTO users (name) VALUES (?1)")?.execute(params![name])?;
        Ok(UserId(self.db.last_insert_rowid() as u64))
    }

    /// A start was accepted (queued or placed) at `at_ms`.
    pub fn requested(
        &self,
        id: ServerId,
        ram_mb: u32,
        plan: Plan,
        user: UserId,
        state: &str,
        at_ms: u64,
    ) -> Result<(), StoreError> {
        self.db
            .prepare_cached(
                "UPDATE servers SET ram_mb = ?2, plan = ?3, user_id = ?4, state = ?5, requested_at = ?6 WHERE id = ?1",
            )?
            .execute(params![id.0 as i64, ram_mb, plan_str(plan), user.0 as i64, state, at_ms as i64])?;
        Ok(())
    }

    /// The server's state changed (`placed`, `running`, `stopped`); `stopped` and
    /// `running` clear the request time.
    pub fn set_state(&self, id: ServerId, state: &str) -> Result<(), StoreError> {
        let clear = matches!(state, "running" | "stopped");
        self.db
            .prepare_cached(
                "UPDATE servers SET state = ?2, requested_at = CASE WHEN ?3 THEN NULL ELSE requested_at END WHERE id = ?1",
            )?
            .execute(params![id.0 as i64, state, clear])?;
        Ok(())
    }

    /// Back in the queue (requeued after a node loss, or queued again): keeps the
    /// original request time if it has one.
    pub fn requeued(&self, id: ServerId, at_ms: u64) -> Result<(), StoreError> {
        self.db
            .prepare_cached(
                "UPDATE servers SET state = 'queued', requested_at = COALESCE(requested_at, ?2) WHERE id = ?1",
            )?
            .execute(params![id.0 as i64, at_ms as i64])?;
        Ok(())
    }

    /// Where the server's last placement went (see [`ServerRow::placed_node`]).
    pub fn set_placed_node(&self, id: ServerId, node: &str) -> Result<(), StoreError> {
        self.db.execute("UPDATE servers SET placed_node = ?2 WHERE id = ?1", params![id.0 as i64, node])?;
        Ok(())
    }

    /// Where the server's current world is (see [`ServerRow::world_node`]).
    pub fn set_world_node(&self, id: ServerId, node: Option<&str>) -> Result<(), StoreError> {
        self.db.execute("UPDATE servers SET world_node = ?2 WHERE id = ?1", params![id.0 as i64, node])?;
        Ok(())
    }

    pub fn delete_server(&self, id: ServerId) -> Result<(), StoreError> {
        self.db.execute(
            "UPDATE servers SET state = 'stopped', requested_at = NULL, world_node = NULL WHERE id = ?1",
            params![id.0 as i64],
        )?;
        Ok(())
    }

    pub fn servers(&self) -> Result<Vec<ServerRow>, StoreError> {
        let mut st = self.db.prepare(
            "SELECT id, name, ram_mb, plan, user_id, state, requested_at, world_node, placed_node FROM servers ORDER BY id",
        )?;
        let rows = st.query_map([], row_of)?;
        rows.collect::<Result<Vec<_>, _>>().map_err(StoreError)
    }

    pub fn server(&self, id: ServerId) -> Result<Option<ServerRow>, StoreError> {
        Ok(self
            .db
            .query_row(
                "SELECT id, name, ram_mb, plan, user_id, state, requested_at, world_node, placed_node FROM servers WHERE id = ?1",
                params![id.0 as i64],
                row_of,
            )
            .optional()?)
    }

    pub fn server_name(&self, id: ServerId) -> Result<Option<String>, StoreError> {
        Ok(self
            .db
            .query_row("SELECT name FROM servers WHERE id = ?1", params![id.0 as i64], |r| r.get(0))
            .optional()?)
    }

    pub fn put_node(&self, name: &str, spec: &str) -> Result<(), StoreError> {
        self.db.execute(
            "INSERT INTO nodes (name, spec) VALUES (?1, ?2) ON CONFLICT(name) DO UPDATE SET spec = excluded.spec",
            params![name, spec],
        )?;
        Ok(())
    }

    pub fn remove_node(&self, name: &str) -> Result<(), StoreError> {
        self.db.execute("DELETE FROM nodes WHERE name = ?1", params![name])?;
        Ok(())
    }

    pub fn nodes(&self) -> Result<Vec<NodeRow>, StoreError> {
        let mut st = self.db.prepare("SELECT name, spec FROM nodes ORDER BY name")?;
        let rows = st.query_map([], |r| Ok(NodeRow { name: r.get(0)?, spec: r.get(1)? }))?;
        rows.collect::<Result<Vec<_>, _>>().map_err(StoreError)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn state_survives_reopening_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("c.db");
        {
            let s = Store::open(&path).unwrap();
            let a = s.server_id("mc-a").unwrap();
            let b = s.server_id("mc-b").unwrap();
            assert_eq!((a, b), (ServerId(1), ServerId(2)));
            assert_eq!(s.server_id("mc-a").unwrap(), a, "ids are stable");
            let u = s.user_id("alice").unwrap();
            s.requested(a, 2048, Plan::Balanced, u, "queued", 1_000).unwrap();
            s.requested(b, 1024, Plan::PayPerPlay, u, "placed", 2_000).unwrap();
            s.set_state(b, "running").unwrap();
            s.journal(5, &Input::StopRequested { server: a }).unwrap();
            s.put_node("dedi-9", "{\"x\":1}").unwrap();
        }
        let s = Store::open(&path).unwrap();
        let rows = s.servers().unwrap();
        assert_eq!(rows[0].state, "queued");
        assert_eq!(rows[0].requested_at, Some(1_000), "the original request time survives");
        assert_eq!(rows[0].plan, Plan::Balanced);
        assert_eq!(rows[1].state, "running");
        assert_eq!(rows[1].requested_at, None);
        let j = s.read_journal().unwrap();
        assert_eq!(j.len(), 1);
        assert_eq!(j[0].1, Ok(Input::StopRequested { server: ServerId(1) }));
        assert_eq!(s.nodes().unwrap()[0].name, "dedi-9");
        assert_eq!(s.server_name(ServerId(2)).unwrap().as_deref(), Some("mc-b"));
    }

    #[test]
    fn a_dry_runs_copy_starts_from_the_file_and_never_writes_it() {
        let dir = tempfile::tempdir().unwrap();
        let missing = dir.path().join("none.db");
        let s = Store::open_copy(&missing).unwrap();
        s.server_id("mc-x").unwrap();
        drop(s);
        assert!(!missing.exists(), "a copy of a missing file creates none");

        let path = dir.path().join("c.db");
        {
            let s = Store::open(&path).unwrap();
            let a = s.server_id("mc-a").unwrap();
            s.requested(a, 2048, Plan::Balanced, UserId(1), "queued", 1_000).unwrap();
        }
        let copy = Store::open_copy(&path).unwrap();
        assert_eq!(copy.servers().unwrap()[0].requested_at, Some(1_000), "the copy holds the file's state");
        let b = copy.server_id("mc-b").unwrap();
        copy.requested(b, 1024, Plan::PayPerPlay, UserId(1), "queued", 2_000).unwrap();
        copy.journal(5, &Input::StopRequested { server: b }).unwrap();
        assert_eq!(copy.servers().unwrap().len(), 2);
        drop(copy);
        let s = Store::open(&path).unwrap();
        assert_eq!(s.servers().unwrap().len(), 1, "the file never saw the copy's writes");
        assert!(s.read_journal().unwrap().is_empty());
    }

    #[test]
    fn the_world_and_placed_nodes_are_kept_and_added_to_old_files() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("c.db");
        {
            // A file from before the column.
            let db = Connection::open(&path).unwrap();
            db.execute_batch(SCHEMA).unwrap();
            db.execute("INSERT INTO servers (name) VALUES ('mc-a')", []).unwrap();
        }
        let s = Store::open(&path).unwrap();
        let a = s.server_id("mc-a").unwrap();
        assert_eq!(s.server(a).unwrap().unwrap().world_node, None);
        s.set_world_node(a, Some("")).unwrap();
        assert_eq!(s.servers().unwrap()[0].world_node.as_deref(), Some(""), "the archive");
        s.set_world_node(a, Some("n2")).unwrap();
        assert_eq!(s.server(a).unwrap().unwrap().placed_node, None);
        s.set_placed_node(a, "n3").unwrap();
        drop(s);
        let s = Store::open(&path).unwrap();
        assert_eq!(s.server(a).unwrap().unwrap().world_node.as_deref(), Some("n2"));
        assert_eq!(s.servers().unwrap()[0].placed_node.as_deref(), Some("n3"));
        s.delete_server(a).unwrap();
        assert_eq!(s.server(a).unwrap().unwrap().world_node, None);
    }

    #[test]
    fn a_committed_group_survives_and_an_uncommitted_one_does_not() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("c.db");
        {
            let s = Store::open(&path).unwrap();
            s.begin().unwrap();
            let a = s.server_id("mc-a").unwrap();
            s.journal(1, &Input::StopRequested { server: a }).unwrap();
            s.commit().unwrap();
            s.begin().unwrap();
            s.server_id("mc-b").unwrap();
            // Dropped without a commit, as a killed process would.
        }
        let s = Store::open(&path).unwrap();
        assert_eq!(s.servers().unwrap().iter().map(|r| r.name.as_str()).collect::<Vec<_>>(), ["mc-a"]);
        assert_eq!(s.read_journal().unwrap().len(), 1);
    }
}
