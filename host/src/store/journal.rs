//! The redo journal: a write on the hot path (a check's decision record)
//! is made durable by one append to this file instead of its own SQLite
//! commit, and SQLite commits the writes of a few milliseconds at once.
//!
//! A SQLite commit writes every page the transaction touched to the WAL:
//! a check touches five B-trees, 13 `pwrite`s and six file locks, 26 µs of
//! its 42. Its record here is one `write` of about 1.5 KiB: the statements
//! it ran and their parameters. The writer keeps one SQLite transaction
//! (the batch) open across journaled writes and commits it when it is
//! [`super::StoreOptions::batch_window`] old, when it holds
//! [`MAX_BATCH`] writes, when any write that is not journaled comes, and
//! before any read on another connection, so every read still sees every
//! answered write. Each commit stores the last sequence number it covers
//! (table `journal`) and then empties the file.
//!
//! After a crash SQLite rolls the open batch back, and [`recover`] runs
//! the journal's statements newer than that number again, in order, on
//! the state they were first run on: the same rows come out.
//!
//! Durability is the same as SQLite's WAL with `synchronous = NORMAL`: an
//! answered write survives the process being killed at any moment (the
//! record is in the kernel's page cache when `write` returns); a power
//! loss may lose the writes since the last checkpoint. Each record carries
//! a CRC-32; recovery stops at the first torn or damaged one, as SQLite
//! stops at the first bad WAL frame.
//!
//! One process owns a journal: it holds an exclusive lock on the file.
//! Another process opening the same database (a CLI command beside
//! `serve`) commits each of its writes to SQLite directly.

use std::fs::{File, OpenOptions, TryLockError};
use std::io::Write as _;
use std::path::{Path, PathBuf};

use rusqlite::Connection;
use rusqlite::types::{ToSql, ToSqlOutput, Value, ValueRef};

use super::StoreError;

/// Most writes one batch holds before it is committed: bounds the work
/// recovery redoes and the dirty pages the open transaction keeps.
pub(super) const MAX_BATCH: u32 = 4096;

/// A record longer than this is damage, not a record.
const MAX_RECORD: usize = 64 << 20;

/// Frame header: payload length (u32) and its CRC-32 (u32).
const HEADER: usize = 8;

/// The journal file of one database, locked by this process.
pub(super) struct Journal {
    file: File,
    path: PathBuf,
}

impl Journal {
    /// Opens (creating) the journal beside the database at `db`. `None`
    /// when another process holds it: that process owns the database's
    /// batch, and this one commits every write itself.
    pub fn open(db: &Path) -> Result<Option<Journal>, StoreError> {
        let path = journal_path(db);
        let failed = |e: std::io::Error| {
            StoreError::Journal(format!("cannot open `{}`: {e}", path.display()))
        };
        let file = OpenOptions::new()
            .create(true)
            .read(true)
            .append(true)
            .open(&path)
            .map_err(failed)?;
        match file.try_lock() {
            Ok(()) => Ok(Some(Journal { file, path })),
            Err(TryLockError::WouldBlock) => {
                tracing::info!(
                    journal = %path.display(),
                    "another process owns this database's journal: this one commits each write"
                );
                Ok(None)
            }
            Err(TryLockError::Error(e)) => Err(failed(e)),
        }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Appends `frames` (whole records from [`Record::finish`]) in one
    /// `write`: when it returns `Ok`, they survive a crash of the process.
    pub fn append(&mut self, frames: &[u8]) -> Result<(), StoreError> {
        self.file.write_all(frames).map_err(|e| {
            StoreError::Journal(format!("cannot append to `{}`: {e}", self.path.display()))
        })
    }

    /// Empties the file, once a commit holds everything in it.
    pub fn reset(&mut self) -> Result<(), StoreError> {
        self.file.set_len(0).map_err(|e| {
            StoreError::Journal(format!("cannot empty `{}`: {e}", self.path.display()))
        })
    }

    /// Every whole record in the file, in order, and how many bytes at its
    /// end were not one (a write cut short by a crash, or damage).
    pub fn read(&self) -> Result<(Vec<Decoded>, usize), StoreError> {
        let bytes = std::fs::read(&self.path).map_err(|e| {
            StoreError::Journal(format!("cannot read `{}`: {e}", self.path.display()))
        })?;
        Ok(decode_all(&bytes))
    }
}

/// `<db>-redo`: SQLite's own `-journal` and `-wal` names are taken.
pub fn journal_path(db: &Path) -> PathBuf {
    let mut name = db.as_os_str().to_owned();
    name.push("-redo");
    PathBuf::from(name)
}

/// One write's record, built while it runs: the statements it executed
/// through [`super::Logged`] and their parameters.
#[derive(Default)]
pub(super) struct Record {
    /// The frame: header, database id, sequence number, statement count,
    /// statements.
    bytes: Vec<u8>,
    statements: u32,
}

impl Record {
    pub fn is_empty(&self) -> bool {
        self.statements == 0
    }

    /// Adds one executed statement.
    pub fn push(&mut self, sql: &str, params: &[&dyn ToSql]) -> Result<(), StoreError> {
        if self.bytes.is_empty() {
            self.bytes.reserve(2048);
            // Header, database, sequence number and count: see `finish`.
            self.bytes.resize(HEADER + 8 + 8 + 4, 0);
        }
        put_bytes(&mut self.bytes, sql.as_bytes());
        put_u32(&mut self.bytes, params.len() as u32);
        for param in params {
            let value = param.to_sql()?;
            put_value(&mut self.bytes, &value)?;
        }
        self.statements += 1;
        Ok(())
    }

    /// The finished frame: record `seq` of the database `db` (its journal
    /// id, which tells its records from those of a file left behind by a
    /// database since deleted).
    pub fn finish(mut self, db: u64, seq: u64) -> Vec<u8> {
        self.bytes[HEADER..HEADER + 8].copy_from_slice(&db.to_le_bytes());
        self.bytes[HEADER + 8..HEADER + 16].copy_from_slice(&seq.to_le_bytes());
        self.bytes[HEADER + 16..HEADER + 20].copy_from_slice(&self.statements.to_le_bytes());
        let payload = &self.bytes[HEADER..];
        let len = payload.len() as u32;
        let crc = crc32fast::hash(payload);
        self.bytes[..4].copy_from_slice(&len.to_le_bytes());
        self.bytes[4..HEADER].copy_from_slice(&crc.to_le_bytes());
        self.bytes
    }
}

/// A record read back.
#[derive(Debug, PartialEq)]
pub(super) struct Decoded {
    pub db: u64,
    pub seq: u64,
    pub statements: Vec<(String, Vec<Value>)>,
}

impl Decoded {
    /// Runs the record's statements again on `conn`.
    pub fn apply(&self, conn: &Connection) -> Result<(), StoreError> {
        for (sql, params) in &self.statements {
            conn.prepare_cached(sql)?
                .execute(rusqlite::params_from_iter(params))?;
        }
        Ok(())
    }
}

/// Runs again every record of `journal` newer than the last one a commit
/// covered, in one transaction, and empties the file: what a crash lost
/// from the open batch is back.
pub(super) fn recover(conn: &mut Connection, journal: &mut Journal) -> Result<(), StoreError> {
    let (db, applied) = position(conn)?;
    let (records, torn) = journal.read()?;
    let foreign = records.iter().filter(|r| r.db != db).count();
    if foreign > 0 {
        tracing::warn!(
            journal = %journal.path().display(),
            records = foreign,
            "the journal holds {foreign} records of another database (one deleted while its journal stayed); they are ignored"
        );
    }
    if torn > 0 {
        tracing::warn!(
            journal = %journal.path().display(),
            bytes = torn,
            "the journal ends in {torn} bytes that are not a whole record (a write cut short by a crash, never answered); they are ignored"
        );
    }
    let redo: Vec<&Decoded> = records
        .iter()
        .filter(|r| r.db == db && r.seq > applied)
        .collect();
    let last = redo.last().map_or(applied, |r| r.seq);
    if !redo.is_empty() {
        let tx = conn.transaction()?;
        for record in &redo {
            record.apply(&tx).map_err(|e| {
                StoreError::Journal(format!(
                    "cannot redo record {} of `{}`: {e}; the database was left as it was, and the journal is kept for another try",
                    record.seq,
                    journal.path().display()
                ))
            })?;
        }
        set_applied(&tx, last)?;
        tx.commit()?;
        // A crash happened: worth an operator's attention at the default level.
        tracing::warn!(
            journal = %journal.path().display(),
            writes = redo.len(),
            "recovered journaled writes that a crash had left uncommitted"
        );
    }
    journal.reset()
}

/// The database's journal id and the last sequence number a commit
/// covered.
pub(super) fn position(conn: &Connection) -> Result<(u64, u64), StoreError> {
    let (db, seq): (i64, i64) =
        conn.query_row("SELECT db, applied FROM journal WHERE id = 1", [], |r| {
            Ok((r.get(0)?, r.get(1)?))
        })?;
    Ok((db as u64, seq.max(0) as u64))
}

/// Records, inside the transaction about to commit, that it covers every
/// journal record up to `seq`.
pub(super) fn set_applied(conn: &Connection, seq: u64) -> Result<(), StoreError> {
    conn.prepare_cached("UPDATE journal SET applied = ?1 WHERE id = 1")?
        .execute([seq as i64])?;
    Ok(())
}

fn put_u32(out: &mut Vec<u8>, n: u32) {
    out.extend_from_slice(&n.to_le_bytes());
}

fn put_bytes(out: &mut Vec<u8>, bytes: &[u8]) {
    put_u32(out, bytes.len() as u32);
    out.extend_from_slice(bytes);
}

fn put_value(out: &mut Vec<u8>, value: &ToSqlOutput<'_>) -> Result<(), StoreError> {
    let value = match value {
        ToSqlOutput::Borrowed(v) => *v,
        ToSqlOutput::Owned(v) => ValueRef::from(v),
        #[allow(unreachable_patterns)] // other kinds exist behind rusqlite features
        _ => {
            return Err(StoreError::Journal(
                "a journaled statement has a parameter of a kind the journal cannot store".into(),
            ));
        }
    };
    match value {
        ValueRef::Null => out.push(0),
        ValueRef::Integer(i) => {
            out.push(1);
            out.extend_from_slice(&i.to_le_bytes());
        }
        ValueRef::Real(f) => {
            out.push(2);
            out.extend_from_slice(&f.to_le_bytes());
        }
        ValueRef::Text(t) => {
            out.push(3);
            put_bytes(out, t);
        }
        ValueRef::Blob(b) => {
            out.push(4);
            put_bytes(out, b);
        }
    }
    Ok(())
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

    fn record(seq: u64, text: &str) -> Vec<u8> {
        let mut r = Record::default();
        r.push(
            "INSERT INTO t VALUES (?1, ?2, ?3, ?4, ?5)",
            &[&7_i64, &text, &Option::<i64>::None, &1.5_f64, &vec![1u8, 2]],
        )
        .unwrap();
        r.push("DELETE FROM t WHERE a = ?1", &[&3_i64]).unwrap();
        r.finish(42, seq)
    }

    #[test]
    fn records_read_back_as_written() {
        let mut bytes = record(1, "é and \"quotes\"");
        bytes.extend(record(2, ""));
        let (records, torn) = decode_all(&bytes);
        assert_eq!(torn, 0);
        assert_eq!(records.len(), 2);
        assert_eq!((records[0].db, records[0].seq), (42, 1));
        assert_eq!(
            records[0].statements[0].1,
            vec![
                Value::Integer(7),
                Value::Text("é and \"quotes\"".into()),
                Value::Null,
                Value::Real(1.5),
                Value::Blob(vec![1, 2]),
            ]
        );
        assert_eq!(
            records[1].statements[1],
            ("DELETE FROM t WHERE a = ?1".into(), vec![Value::Integer(3)])
        );
    }

    #[test]
    fn a_torn_or_damaged_record_ends_what_is_read() {
        let first = record(1, "kept");
        let second = record(2, "cut short");
        // Cut short: only the first record counts.
        let mut bytes = first.clone();
        bytes.extend(&second[..second.len() - 3]);
        let (records, torn) = decode_all(&bytes);
        assert_eq!((records.len(), torn), (1, second.len() - 3));
        // One byte flipped in the second: neither it nor anything after it.
        let mut bytes = first.clone();
        let mut damaged = second.clone();
        damaged[HEADER + 20] ^= 1;
        bytes.extend(&damaged);
        bytes.extend(record(3, "after the damage"));
        let (records, _) = decode_all(&bytes);
        assert_eq!(records.iter().map(|r| r.seq).collect::<Vec<_>>(), [1]);
        // An absurd length is not read as a record.
        let (records, torn) = decode_all(&[0xff, 0xff, 0xff, 0xff, 0, 0, 0, 0]);
        assert_eq!((records.len(), torn), (0, 8));
    }

    #[test]
    fn a_second_opener_does_not_get_the_journal() {
        let dir = tempfile::tempdir().unwrap();
        let db = dir.path().join("j.db");
        let first = Journal::open(&db).unwrap();
        assert!(first.is_some());
        assert!(Journal::open(&db).unwrap().is_none());
        drop(first);
        assert!(Journal::open(&db).unwrap().is_some());
    }
}
