//! The redo journal of rulehost 0.1 (`<db>-redo`), read once at open.
//!
//! Earlier builds answered a check once its statements were appended to
//! this file and committed them to SQLite a few milliseconds later. A
//! database that such a build left after a crash may have answered writes
//! only here. Before migrating, [`redo_once`] runs those records again, in
//! one transaction, on the schema they were written for, and removes the
//! file. Nothing writes the file any more: durability is SQLite's log.
//!
//! A record that cannot be redone, or a gap in the records' numbering,
//! stops the start with a message saying what to do; the journal is never
//! ignored in silence.

use std::path::{Path, PathBuf};

use rusqlite::Connection;
use rusqlite::types::Value;

use super::StoreError;

/// A record longer than this is damage, not a record.
const MAX_RECORD: usize = 64 << 20;

/// Frame header: payload length (u32) and its CRC-32 (u32).
const HEADER: usize = 8;

/// `<db>-redo`, where 0.1 kept its journal.
pub fn journal_path(db: &Path) -> PathBuf {
    let mut name = db.as_os_str().to_owned();
    name.push("-redo");
    PathBuf::from(name)
}

/// Redoes what a 0.1 journal beside `db` holds that the database lacks,
/// then removes the file. Called before migrating, on the writer.
pub(super) fn redo_once(conn: &mut Connection, db: &Path) -> Result<(), StoreError> {
    let path = journal_path(db);
    let mut file = match std::fs::File::open(&path) {
        Ok(file) => file,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(refused(&path, format!("cannot read it: {e}"))),
    };
    // An earlier rulehost serving this database holds the file locked,
    // and still commits what it holds: its records are not ours to redo.
    match file.try_lock() {
        Ok(()) => {}
        Err(std::fs::TryLockError::WouldBlock) => {
            return Err(StoreError::LegacyJournal(format!(
                "an earlier rulehost is still serving this database (it holds `{}` locked); stop it, then start this one",
                path.display()
            )));
        }
        Err(std::fs::TryLockError::Error(e)) => {
            return Err(refused(&path, format!("cannot lock it: {e}")));
        }
    }
    let mut bytes = Vec::new();
    std::io::Read::read_to_end(&mut file, &mut bytes)
        .map_err(|e| refused(&path, format!("cannot read it: {e}")))?;
    let (records, torn) = decode_all(&bytes);
    if torn > 0 {
        tracing::warn!(
            journal = %path.display(),
            bytes = torn,
            "the journal ends in {torn} bytes that are not a whole record (a write cut short by a crash, never answered); they are ignored"
        );
    }
    let position = position(conn)?;
    let redo: Vec<&Decoded> = match position {
        Some((id, applied)) => {
            let foreign = records.iter().filter(|r| r.db != id).count();
            if foreign > 0 {
                tracing::warn!(
                    journal = %path.display(),
                    records = foreign,
                    "the journal holds {foreign} records of another database; they are not redone"
                );
            }
            records
                .iter()
                .filter(|r| r.db == id && r.seq > applied)
                .collect()
        }
        None if records.is_empty() => Vec::new(),
        // Migrated past the journal: this release redid the file before
        // migrating, so it is what a power loss brought back.
        None if super::migrations::version(conn)? >= 7 => {
            tracing::warn!(
                journal = %path.display(),
                "removing an earlier rulehost's journal that was redone before this database was migrated"
            );
            Vec::new()
        }
        None => {
            return Err(refused(
                &path,
                format!(
                    "it holds {} records but the database has no journal position, so they belong to another database or were applied already",
                    records.len()
                ),
            ));
        }
    };
    if let Some((_, applied)) = position {
        for (expected, record) in (applied + 1..).zip(&redo) {
            if record.seq != expected {
                return Err(refused(
                    &path,
                    format!(
                        "record {} follows {} with a gap, so writes between them are missing",
                        record.seq,
                        expected - 1
                    ),
                ));
            }
        }
    }
    if let Some(last) = redo.last() {
        let tx = conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
        for record in &redo {
            record.apply(&tx).map_err(|e| {
                refused(
                    &path,
                    format!("record {} cannot be redone: {e}", record.seq),
                )
            })?;
        }
        tx.execute(
            "UPDATE journal SET applied = ?1 WHERE id = 1",
            [last.seq as i64],
        )?;
        tx.commit()?;
        tracing::warn!(
            journal = %path.display(),
            writes = redo.len(),
            "redid answered writes that an earlier rulehost had left in its journal"
        );
    }
    match std::fs::remove_file(&path) {
        Ok(()) => {}
        // Another start removed it first.
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(refused(&path, format!("cannot remove it: {e}"))),
    }
    // The removal made durable before the migration drops the journal's
    // position, so a power loss cannot bring the file back without it.
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::File::open(dir)
            .and_then(|d| d.sync_all())
            .map_err(|e| {
                refused(
                    &path,
                    format!("cannot sync its folder after removing it: {e}"),
                )
            })?;
    }
    Ok(())
}

fn refused(path: &Path, why: String) -> StoreError {
    StoreError::LegacyJournal(format!(
        "`{}` is the redo journal of an earlier rulehost and {why}; the database was left as it was. Move the file aside to start without its writes (they are lost), or start the earlier rulehost once to apply them",
        path.display()
    ))
}

/// The database's journal id and the last record a commit covered;
/// `None` when it has no journal table (never used by 0.1, or migrated).
fn position(conn: &Connection) -> Result<Option<(u64, u64)>, StoreError> {
    let has_table: bool = conn.query_row(
        "SELECT count(*) > 0 FROM sqlite_master WHERE type = 'table' AND name = 'journal'",
        [],
        |r| r.get(0),
    )?;
    if !has_table {
        return Ok(None);
    }
    let (db, seq): (i64, i64) =
        conn.query_row("SELECT db, applied FROM journal WHERE id = 1", [], |r| {
            Ok((r.get(0)?, r.get(1)?))
        })?;
    Ok(Some((db as u64, seq.max(0) as u64)))
}

/// A record read back.
#[derive(Debug, PartialEq)]
struct Decoded {
    db: u64,
    seq: u64,
    statements: Vec<(String, Vec<Value>)>,
}

impl Decoded {
    fn apply(&self, conn: &Connection) -> Result<(), StoreError> {
        for (sql, params) in &self.statements {
            conn.prepare_cached(sql)?
                .execute(rusqlite::params_from_iter(params))?;
        }
        Ok(())
    }
}

/// Whole records from the start of `bytes`, and the length of what
/// follows the last one.
fn decode_all(bytes: &[u8]) -> (Vec<Decoded>, usize) {
    let mut records = Vec::new();
    let mut at = 0;
    while let Some((record, len)) = decode_frame(&bytes[at..]) {
        records.push(record);
        at += len;
    }
    (records, bytes.len() - at)
}

/// The frame at the start of `bytes` and its length; `None` when it is
/// incomplete or its CRC does not match.
fn decode_frame(bytes: &[u8]) -> Option<(Decoded, usize)> {
    let mut header = Reader(bytes);
    let len = header.u32()? as usize;
    let crc = header.u32()?;
    if len > MAX_RECORD || bytes.len() < HEADER + len {
        return None;
    }
    let payload = &bytes[HEADER..HEADER + len];
    if crc32fast::hash(payload) != crc {
        return None;
    }
    let mut r = Reader(payload);
    let db = r.u64()?;
    let seq = r.u64()?;
    let count = r.u32()?;
    let mut statements = Vec::new();
    for _ in 0..count {
        let sql = String::from_utf8(r.bytes()?.to_vec()).ok()?;
        let n = r.u32()?;
        let mut params = Vec::new();
        for _ in 0..n {
            params.push(r.value()?);
        }
        statements.push((sql, params));
    }
    r.0.is_empty().then_some((
        Decoded {
            db,
            seq,
            statements,
        },
        HEADER + len,
    ))
}

struct Reader<'a>(&'a [u8]);

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Option<&'a [u8]> {
        if self.0.len() < n {
            return None;
        }
        let (head, rest) = self.0.split_at(n);
        self.0 = rest;
        Some(head)
    }

    fn u32(&mut self) -> Option<u32> {
        Some(u32::from_le_bytes(self.take(4)?.try_into().ok()?))
    }

    fn u64(&mut self) -> Option<u64> {
        Some(u64::from_le_bytes(self.take(8)?.try_into().ok()?))
    }

    fn bytes(&mut self) -> Option<&'a [u8]> {
        let n = self.u32()? as usize;
        self.take(n)
    }

    fn value(&mut self) -> Option<Value> {
        Some(match self.take(1)?[0] {
            0 => Value::Null,
            1 => Value::Integer(i64::from_le_bytes(self.take(8)?.try_into().ok()?)),
            2 => Value::Real(f64::from_le_bytes(self.take(8)?.try_into().ok()?)),
            3 => Value::Text(String::from_utf8(self.bytes()?.to_vec()).ok()?),
            4 => Value::Blob(self.bytes()?.to_vec()),
            _ => return None,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A frame as 0.1 wrote it: one statement with its parameters.
    fn frame(db: u64, seq: u64, sql: &str, params: &[Value]) -> Vec<u8> {
        let mut payload = Vec::new();
        payload.extend_from_slice(&db.to_le_bytes());
        payload.extend_from_slice(&seq.to_le_bytes());
        payload.extend_from_slice(&1u32.to_le_bytes());
        payload.extend_from_slice(&(sql.len() as u32).to_le_bytes());
        payload.extend_from_slice(sql.as_bytes());
        payload.extend_from_slice(&(params.len() as u32).to_le_bytes());
        for p in params {
            match p {
                Value::Integer(i) => {
                    payload.push(1);
                    payload.extend_from_slice(&i.to_le_bytes());
                }
                Value::Text(t) => {
                    payload.push(3);
                    payload.extend_from_slice(&(t.len() as u32).to_le_bytes());
                    payload.extend_from_slice(t.as_bytes());
                }
                _ => unreachable!("the tests use integers and text"),
            }
        }
        let mut out = Vec::new();
        out.extend_from_slice(&(payload.len() as u32).to_le_bytes());
        out.extend_from_slice(&crc32fast::hash(&payload).to_le_bytes());
        out.extend_from_slice(&payload);
        out
    }

    /// A database as 0.1 left it: the journal table at `applied`.
    fn old_database(dir: &Path, applied: i64) -> (PathBuf, Connection) {
        let db = dir.join("old.db");
        let conn = Connection::open(&db).unwrap();
        conn.execute_batch(
            "CREATE TABLE t (n INTEGER PRIMARY KEY, text TEXT NOT NULL);
             CREATE TABLE journal (id INTEGER PRIMARY KEY CHECK (id = 1), db INTEGER NOT NULL, applied INTEGER NOT NULL);",
        )
        .unwrap();
        conn.execute("INSERT INTO journal VALUES (1, 77, ?1)", [applied])
            .unwrap();
        (db, conn)
    }

    fn insert(seq: u64, n: i64) -> Vec<u8> {
        frame(
            77,
            seq,
            "INSERT INTO t (n, text) VALUES (?1, ?2)",
            &[Value::Integer(n), Value::Text(format!("row {n}"))],
        )
    }

    fn rows(conn: &Connection) -> Vec<i64> {
        let mut stmt = conn.prepare("SELECT n FROM t ORDER BY n").unwrap();
        stmt.query_map([], |r| r.get(0))
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap()
    }

    #[test]
    fn answered_writes_left_in_an_old_journal_are_redone_once_and_the_file_goes() {
        let dir = tempfile::tempdir().unwrap();
        let (db, mut conn) = old_database(dir.path(), 1);
        // Record 1 was committed already; 2 and 3 were answered, not
        // committed; the last bytes are a record cut short.
        let mut journal = [insert(1, 1), insert(2, 2), insert(3, 3)].concat();
        journal.extend_from_slice(&insert(4, 4)[..10]);
        std::fs::write(journal_path(&db), journal).unwrap();
        redo_once(&mut conn, &db).unwrap();
        assert_eq!(rows(&conn), vec![2, 3]);
        assert!(!journal_path(&db).exists());
        // A second start has nothing to redo.
        redo_once(&mut conn, &db).unwrap();
        assert_eq!(rows(&conn), vec![2, 3]);
    }

    #[test]
    fn a_gap_or_a_record_that_cannot_be_redone_stops_the_start_and_changes_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let (db, mut conn) = old_database(dir.path(), 0);
        std::fs::write(journal_path(&db), [insert(1, 1), insert(3, 3)].concat()).unwrap();
        let e = redo_once(&mut conn, &db).unwrap_err().to_string();
        assert!(
            e.contains("gap") && e.contains("Move the file aside"),
            "{e}"
        );
        assert!(rows(&conn).is_empty());
        assert!(journal_path(&db).exists());

        let bad = frame(
            77,
            2,
            "INSERT INTO missing VALUES (?1)",
            &[Value::Integer(1)],
        );
        std::fs::write(journal_path(&db), [insert(1, 1), bad].concat()).unwrap();
        let e = redo_once(&mut conn, &db).unwrap_err().to_string();
        assert!(e.contains("cannot be redone"), "{e}");
        assert!(rows(&conn).is_empty(), "half a journal was applied");
    }

    #[test]
    fn a_journal_an_earlier_rulehost_still_holds_is_left_alone() {
        let dir = tempfile::tempdir().unwrap();
        let (db, mut conn) = old_database(dir.path(), 0);
        std::fs::write(journal_path(&db), insert(1, 1)).unwrap();
        let held = std::fs::File::open(journal_path(&db)).unwrap();
        held.lock().unwrap();
        let e = redo_once(&mut conn, &db).unwrap_err().to_string();
        assert!(e.contains("still serving this database"), "{e}");
        assert!(rows(&conn).is_empty());
        drop(held);
        redo_once(&mut conn, &db).unwrap();
        assert_eq!(rows(&conn), vec![1]);
    }

    #[test]
    fn records_for_a_database_without_a_journal_position_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let db = dir.path().join("new.db");
        let mut conn = Connection::open(&db).unwrap();
        std::fs::write(journal_path(&db), insert(1, 1)).unwrap();
        let e = redo_once(&mut conn, &db).unwrap_err().to_string();
        assert!(e.contains("no journal position"), "{e}");
        // An empty file is only removed.
        std::fs::write(journal_path(&db), b"").unwrap();
        redo_once(&mut conn, &db).unwrap();
        assert!(!journal_path(&db).exists());
    }
}
