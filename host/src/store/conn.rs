//! The handles through which domain code reaches the database: [`Conn`]
//! for reads, [`Tx`] for a write transaction. Both are opaque outside
//! `store/`: the queries that take them are the store's interface, and no
//! rusqlite type leaks past it, so a second backend (PostgreSQL) can give
//! the same handles over its own connection.

use std::ops::Deref;

use rusqlite::Connection;

/// A connection lent to a read, or to the reads of a write.
#[derive(Clone, Copy)]
pub struct Conn<'a> {
    raw: &'a Connection,
}

impl<'a> Conn<'a> {
    pub(super) fn new(raw: &'a Connection) -> Conn<'a> {
        Conn { raw }
    }

    /// The SQLite connection, for the queries in `store/`.
    pub(super) fn raw(&self) -> &'a Connection {
        self.raw
    }
}

/// A write transaction: committed with its group when the write returns
/// `Ok`, rolled back (alone) when it returns `Err`. Reads through it see
/// its own changes and those of every write before it.
pub struct Tx<'a> {
    conn: Conn<'a>,
}

impl<'a> Tx<'a> {
    pub(super) fn new(raw: &'a Connection) -> Tx<'a> {
        Tx {
            conn: Conn::new(raw),
        }
    }
}

impl<'a> Deref for Tx<'a> {
    type Target = Conn<'a>;

    fn deref(&self) -> &Conn<'a> {
        &self.conn
    }
}

impl std::fmt::Debug for Conn<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Conn")
    }
}

impl std::fmt::Debug for Tx<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Tx")
    }
}
