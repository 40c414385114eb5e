//! Versioned schema migrations, applied in order at start. The version is
//! SQLite's `user_version`; a database newer than this binary is refused.

use std::path::Path;

use rusqlite::Connection;

use super::StoreError;

/// Each entry migrates from version `i` to `i + 1`. Append only: never edit a
/// released migration.
const MIGRATIONS: &[&str] = &[
    // 1: flows, tasks, history, outbox
    r#"
    CREATE TABLE flows (
        id          TEXT PRIMARY KEY,
        definition  TEXT NOT NULL,
        subject     TEXT NOT NULL,
        state       TEXT NOT NULL CHECK (state IN ('running', 'completed', 'failed', 'cancelled')),
        context     TEXT NOT NULL,
        created_at  INTEGER NOT NULL,
        updated_at  INTEGER NOT NULL
    );
    CREATE INDEX flows_state ON flows (state, definition);

    CREATE TABLE tasks (
        id                  TEXT PRIMARY KEY,
        flow_id             TEXT NOT NULL REFERENCES flows (id),
        seq                 INTEGER NOT NULL,
        name                TEXT NOT NULL,
        kind                TEXT NOT NULL CHECK (kind IN ('auto', 'manual', 'timer')),
        role                TEXT,
        action              TEXT,
        params              TEXT NOT NULL DEFAULT '{}',
        state               TEXT NOT NULL CHECK (state IN ('pending', 'open', 'done', 'failed', 'skipped')),
        inserted_by_demand  INTEGER NOT NULL DEFAULT 0,
        due_at              INTEGER,
        opened_at           INTEGER,
        completed_at        INTEGER,
        outcome             TEXT,
        data                TEXT
    );
    CREATE INDEX tasks_flow ON tasks (flow_id, seq);
    CREATE INDEX tasks_open ON tasks (state, role);

    CREATE TABLE flow_history (
        id       INTEGER PRIMARY KEY AUTOINCREMENT,
        flow_id  TEXT NOT NULL REFERENCES flows (id),
        at       INTEGER NOT NULL,
        actor    TEXT NOT NULL,
        event    TEXT NOT NULL,
        detail   TEXT NOT NULL DEFAULT '{}'
    );
    CREATE INDEX flow_history_flow ON flow_history (flow_id, id);

    CREATE TABLE outbox (
        id               INTEGER PRIMARY KEY AUTOINCREMENT,
        event_id         TEXT NOT NULL UNIQUE,
        kind             TEXT NOT NULL,
        target           TEXT,
        payload          TEXT NOT NULL,
        state            TEXT NOT NULL CHECK (state IN ('pending', 'delivered', 'held')),
        attempts         INTEGER NOT NULL DEFAULT 0,
        next_attempt_at  INTEGER NOT NULL,
        last_error       TEXT,
        created_at       INTEGER NOT NULL,
        delivered_at     INTEGER
    );
    CREATE INDEX outbox_due ON outbox (state, next_attempt_at);
    "#,
    // 2: accounts, requests, the decision log, reconciliations
    r#"
    CREATE TABLE accounts (
        id            TEXT PRIMARY KEY,
        status        TEXT NOT NULL CHECK (status IN ('active', 'expired', 'suspended')),
        paid_up       INTEGER NOT NULL,
        tier          TEXT NOT NULL DEFAULT '',
        contract_end  INTEGER,
        contact       TEXT,
        attributes    TEXT NOT NULL DEFAULT '{}',
        updated_at    INTEGER NOT NULL
    );

    CREATE TABLE requests (
        id                 TEXT PRIMARY KEY,
        service            TEXT NOT NULL,
        account_id         TEXT NOT NULL,
        description        TEXT NOT NULL DEFAULT '',
        attributes         TEXT NOT NULL DEFAULT '{}',
        state              TEXT NOT NULL,
        level              TEXT,
        failure            TEXT,
        reconciliation_id  TEXT,
        created_at         INTEGER NOT NULL,
        updated_at         INTEGER NOT NULL
    );

    CREATE TABLE decisions (
        id             INTEGER PRIMARY KEY AUTOINCREMENT,
        at             INTEGER NOT NULL,
        service        TEXT NOT NULL,
        account_id     TEXT NOT NULL,
        request_id     TEXT NOT NULL,
        inputs_digest  TEXT NOT NULL,
        inputs         TEXT NOT NULL,
        verdict        TEXT NOT NULL,
        level          TEXT,
        failure_code   TEXT,
        reason         TEXT,
        plugin         TEXT NOT NULL,
        plugin_digest  TEXT NOT NULL,
        duration_us    INTEGER NOT NULL
    );
    CREATE INDEX decisions_service ON decisions (service, id);
    CREATE INDEX decisions_account ON decisions (account_id, id);
    CREATE INDEX decisions_request ON decisions (request_id);

    CREATE TABLE reconciliations (
        id            TEXT PRIMARY KEY,
        request_id    TEXT NOT NULL,
        service       TEXT NOT NULL,
        account_id    TEXT NOT NULL,
        failure_code  TEXT NOT NULL,
        reason        TEXT NOT NULL,
        mode          TEXT NOT NULL,
        procedure     TEXT NOT NULL,
        description   TEXT NOT NULL DEFAULT '',
        key_hashes    TEXT NOT NULL DEFAULT '[]',
        attempts      INTEGER NOT NULL DEFAULT 0,
        deadline      INTEGER,
        flow_id       TEXT,
        created_at    INTEGER NOT NULL
    );
    CREATE INDEX reconciliations_request ON reconciliations (request_id);

    -- What is left of a finished reconciliation: enough to say why its link is dead.
    CREATE TABLE reconciliation_tombstones (
        id       TEXT PRIMARY KEY,
        outcome  TEXT NOT NULL,
        at       INTEGER NOT NULL
    );
    "#,
    // 3: plugin versions (the bytes of every version ever offered), what
    // happened to each offer, and which version is live per plugin name
    r#"
    CREATE TABLE plugin_versions (
        digest      TEXT PRIMARY KEY,
        bytes       BLOB NOT NULL,
        first_seen  INTEGER NOT NULL
    );

    CREATE TABLE plugin_events (
        id       INTEGER PRIMARY KEY AUTOINCREMENT,
        plugin   TEXT NOT NULL,
        digest   TEXT,
        at       INTEGER NOT NULL,
        source   TEXT NOT NULL,
        path     TEXT,
        result   TEXT NOT NULL CHECK (result IN ('activated', 'rejected')),
        step     TEXT,
        message  TEXT
    );
    CREATE INDEX plugin_events_plugin ON plugin_events (plugin, id);

    CREATE TABLE plugin_active (
        plugin        TEXT PRIMARY KEY,
        digest        TEXT NOT NULL REFERENCES plugin_versions (digest),
        activated_at  INTEGER NOT NULL
    );
    "#,
    // 4: requests keyed by their id alone (WITHOUT ROWID): one B-tree where
    // there were two (the rows and the id's index), so a check's commit
    // writes one page fewer to the WAL
    r#"
    CREATE TABLE requests_v4 (
        id                 TEXT PRIMARY KEY,
        service            TEXT NOT NULL,
        account_id         TEXT NOT NULL,
        description        TEXT NOT NULL DEFAULT '',
        attributes         TEXT NOT NULL DEFAULT '{}',
        state              TEXT NOT NULL,
        level              TEXT,
        failure            TEXT,
        reconciliation_id  TEXT,
        created_at         INTEGER NOT NULL,
        updated_at         INTEGER NOT NULL
    ) WITHOUT ROWID;
    INSERT INTO requests_v4 SELECT id, service, account_id, description, attributes, state, level,
        failure, reconciliation_id, created_at, updated_at FROM requests;
    DROP TABLE requests;
    ALTER TABLE requests_v4 RENAME TO requests;
    "#,
    // 5: the decision log without AUTOINCREMENT, whose `sqlite_sequence`
    // update was one more page in every check's commit (8 µs of a lone
    // check). Ids stay unique and increasing without it: each insert takes
    // the larger of the time in µs and the last id plus one
    // (`store::entitlement::insert_decision` until migration 7, which
    // hands ids to AUTOINCREMENT), so an id deleted with its request is
    // never handed out again.
    r#"
    CREATE TABLE decisions_v5 (
        id             INTEGER PRIMARY KEY,
        at             INTEGER NOT NULL,
        service        TEXT NOT NULL,
        account_id     TEXT NOT NULL,
        request_id     TEXT NOT NULL,
        inputs_digest  TEXT NOT NULL,
        inputs         TEXT NOT NULL,
        verdict        TEXT NOT NULL,
        level          TEXT,
        failure_code   TEXT,
        reason         TEXT,
        plugin         TEXT NOT NULL,
        plugin_digest  TEXT NOT NULL,
        duration_us    INTEGER NOT NULL
    );
    INSERT INTO decisions_v5 SELECT id, at, service, account_id, request_id, inputs_digest, inputs,
        verdict, level, failure_code, reason, plugin, plugin_digest, duration_us FROM decisions;
    DROP TABLE decisions;
    ALTER TABLE decisions_v5 RENAME TO decisions;
    CREATE INDEX decisions_service ON decisions (service, id);
    CREATE INDEX decisions_account ON decisions (account_id, id);
    CREATE INDEX decisions_request ON decisions (request_id);
    "#,
    // 6: the redo journal's position (`store::journal`): the database's
    // journal id, and the last journal record a commit covered
    r#"
    CREATE TABLE journal (
        id       INTEGER PRIMARY KEY CHECK (id = 1),
        db       INTEGER NOT NULL,
        applied  INTEGER NOT NULL
    );
    INSERT INTO journal (id, db, applied) VALUES (1, random(), 0);
    "#,
    // 7: durability is SQLite's log alone: the redo journal's table goes
    // (`legacy_journal` redid what the file held before this ran). Accounts
    // and requests get a version, bumped by every change, so a check
    // decided on a read records only if what it read is unchanged (a new
    // row starts at a random version, so a row made again never repeats
    // one). The decision log's ids come from the database (AUTOINCREMENT: never
    // reused, even after the newest row is deleted), not from max(id).
    r#"
    DROP TABLE journal;
    ALTER TABLE accounts ADD COLUMN version INTEGER NOT NULL DEFAULT 0;
    ALTER TABLE requests ADD COLUMN version INTEGER NOT NULL DEFAULT 0;
    CREATE TABLE decisions_v7 (
        id             INTEGER PRIMARY KEY AUTOINCREMENT,
        at             INTEGER NOT NULL,
        service        TEXT NOT NULL,
        account_id     TEXT NOT NULL,
        request_id     TEXT NOT NULL,
        inputs_digest  TEXT NOT NULL,
        inputs         TEXT NOT NULL,
        verdict        TEXT NOT NULL,
        level          TEXT,
        failure_code   TEXT,
        reason         TEXT,
        plugin         TEXT NOT NULL,
        plugin_digest  TEXT NOT NULL,
        duration_us    INTEGER NOT NULL
    );
    INSERT INTO decisions_v7 SELECT id, at, service, account_id, request_id, inputs_digest, inputs,
        verdict, level, failure_code, reason, plugin, plugin_digest, duration_us FROM decisions;
    DROP TABLE decisions;
    ALTER TABLE decisions_v7 RENAME TO decisions;
    CREATE INDEX decisions_service ON decisions (service, id);
    CREATE INDEX decisions_account ON decisions (account_id, id);
    CREATE INDEX decisions_request ON decisions (request_id);
    CREATE INDEX decisions_at ON decisions (at);
    "#,
    // 8: one bad notification never blocks the others: the outbox gets a
    // `dead` state (with when it died) for what cannot be read or delivered
    // after its retries. Reconciliation links lock for a growing cool-down
    // instead of closing (`locked_until`, `locks`: how many times so far);
    // "use another account" waits for the other account's contact
    // (`reconciliation_transfers`: one single-use key per account asked).
    // A request is fulfilled at most once, from `awaiting-reconciliation`
    // only, whatever the code above the store does.
    r#"
    CREATE TABLE outbox_v8 (
        id               INTEGER PRIMARY KEY AUTOINCREMENT,
        event_id         TEXT NOT NULL UNIQUE,
        kind             TEXT NOT NULL,
        target           TEXT,
        payload          TEXT NOT NULL,
        state            TEXT NOT NULL CHECK (state IN ('pending', 'delivered', 'held', 'dead')),
        attempts         INTEGER NOT NULL DEFAULT 0,
        next_attempt_at  INTEGER NOT NULL,
        last_error       TEXT,
        created_at       INTEGER NOT NULL,
        delivered_at     INTEGER,
        dead_at          INTEGER
    );
    INSERT INTO outbox_v8 (id, event_id, kind, target, payload, state, attempts, next_attempt_at,
        last_error, created_at, delivered_at)
        SELECT id, event_id, kind, target, payload, state, attempts, next_attempt_at,
            last_error, created_at, delivered_at FROM outbox;
    -- Ids the pruner deleted are never given again: the counter goes along.
    UPDATE sqlite_sequence
        SET seq = (SELECT max(seq) FROM sqlite_sequence WHERE name IN ('outbox', 'outbox_v8'))
        WHERE name = 'outbox_v8';
    INSERT INTO sqlite_sequence (name, seq)
        SELECT 'outbox_v8', seq FROM sqlite_sequence
        WHERE name = 'outbox' AND NOT EXISTS (SELECT 1 FROM sqlite_sequence WHERE name = 'outbox_v8');
    DROP TABLE outbox;
    ALTER TABLE outbox_v8 RENAME TO outbox;
    CREATE INDEX outbox_due ON outbox (state, next_attempt_at);

    ALTER TABLE reconciliations ADD COLUMN locked_until INTEGER;
    ALTER TABLE reconciliations ADD COLUMN locks INTEGER NOT NULL DEFAULT 0;

    CREATE TABLE reconciliation_transfers (
        reconciliation_id  TEXT NOT NULL,
        account_id         TEXT NOT NULL,
        key_hash           TEXT NOT NULL,
        created_at         INTEGER NOT NULL,
        PRIMARY KEY (reconciliation_id, account_id)
    ) WITHOUT ROWID;

    CREATE TRIGGER requests_fulfilled_once BEFORE UPDATE OF state ON requests
    WHEN NEW.state = 'fulfilled' AND OLD.state <> 'awaiting-reconciliation'
    BEGIN
        SELECT RAISE(ABORT, 'request already decided: it is fulfilled only once, from awaiting-reconciliation');
    END;
    "#,
    // 9: API tokens (`auth`): only the SHA-256 of each token is kept, never
    // the token. A revoked token stays listed (who had access, until when);
    // a name is unique among the tokens not revoked. Roles are checked in
    // code, not by a CHECK, so that a new role needs no migration.
    r#"
    CREATE TABLE api_tokens (
        id            TEXT PRIMARY KEY,
        name          TEXT NOT NULL,
        role          TEXT NOT NULL,
        services      TEXT NOT NULL DEFAULT '[]',
        hash          TEXT NOT NULL UNIQUE,
        created_at    INTEGER NOT NULL,
        last_used_at  INTEGER,
        revoked_at    INTEGER
    );
    CREATE UNIQUE INDEX api_tokens_live_name ON api_tokens (name) WHERE revoked_at IS NULL;
    "#,
    // 10: money (`store::ledger`). Accounts get a group, prepaid or
    // postpaid billing and a PIN (salted SHA-256, with its failed tries and
    // lock; never the PIN). Every movement of money is a `ledger` row with
    // an idempotency reference, unique per account; `balances` is their
    // running sum, changed in the transaction of each movement. Neither
    // touches `accounts`, so money moving never changes an account's
    // version (checks re-decide when it changes). A debit's `uncovered` is
    // what a prepaid balance could not pay of what was asked.
    r#"
    ALTER TABLE accounts ADD COLUMN account_group TEXT NOT NULL DEFAULT '';
    ALTER TABLE accounts ADD COLUMN billing TEXT NOT NULL DEFAULT 'prepaid'
        CHECK (billing IN ('prepaid', 'postpaid'));
    ALTER TABLE accounts ADD COLUMN pin_hash BLOB;
    ALTER TABLE accounts ADD COLUMN pin_salt BLOB;
    ALTER TABLE accounts ADD COLUMN pin_failures INTEGER NOT NULL DEFAULT 0;
    ALTER TABLE accounts ADD COLUMN pin_locked_until INTEGER;

    CREATE TABLE balances (
        account_id  TEXT PRIMARY KEY REFERENCES accounts (id) ON DELETE CASCADE,
        balance     INTEGER NOT NULL,
        updated_at  INTEGER NOT NULL
    );

    CREATE TABLE ledger (
        id             INTEGER PRIMARY KEY AUTOINCREMENT,
        account_id     TEXT NOT NULL,
        kind           TEXT NOT NULL CHECK (kind IN ('topup', 'debit', 'refund', 'adjustment')),
        amount         INTEGER NOT NULL,
        uncovered      INTEGER NOT NULL DEFAULT 0 CHECK (uncovered >= 0),
        reference      TEXT NOT NULL,
        balance_after  INTEGER NOT NULL,
        at             INTEGER NOT NULL,
        detail         TEXT,
        UNIQUE (account_id, reference),
        CHECK (CASE kind WHEN 'debit' THEN amount <= 0 WHEN 'adjustment' THEN 1 ELSE amount > 0 END)
    );
    CREATE INDEX ledger_account ON ledger (account_id, id);
    "#,
    // 11: communications and their detail records (`plans`), with as few
    // indexes as their queries need (each is a page more per commit). A
    // communication holds the rates it was authorized under, so a plan
    // changed or removed by a reload never changes what it costs. A record
    // is written once per communication (UNIQUE), in the transaction that
    // debits its balance. Per account and plan: counters since the last
    // reset, the activation and the paid subscription period; the
    // destinations associated with unlimited plans; the preferred plan and
    // who set it; and each account's communication count.
    r#"
    CREATE TABLE communications (
        id                 TEXT PRIMARY KEY,
        service            TEXT NOT NULL,
        account_id         TEXT NOT NULL,
        state              TEXT NOT NULL CHECK (state IN ('authorized', 'awaiting-choice', 'completed', 'declined')),
        plan               TEXT NOT NULL,
        rates              TEXT NOT NULL,
        max_duration_secs  INTEGER,
        restriction        TEXT,
        alternate_plan     TEXT,
        alternate_rates    TEXT,
        alternate_max_secs INTEGER,
        access_method      TEXT NOT NULL,
        access_groups      TEXT NOT NULL,
        destination        TEXT NOT NULL,
        region             TEXT NOT NULL,
        carrier            TEXT NOT NULL,
        attributes         TEXT NOT NULL,
        sequence           INTEGER NOT NULL,
        started_at         INTEGER NOT NULL,
        created_at         INTEGER NOT NULL,
        completed_at       INTEGER
    ) WITHOUT ROWID;
    -- Communications in progress hold their place against a plan's limits.
    CREATE INDEX communications_pending ON communications (account_id, plan) WHERE state = 'authorized';

    CREATE TABLE records (
        id                INTEGER PRIMARY KEY AUTOINCREMENT,
        communication_id  TEXT NOT NULL UNIQUE,
        service           TEXT NOT NULL,
        account_id        TEXT NOT NULL,
        plan              TEXT NOT NULL,
        access_method     TEXT NOT NULL,
        destination       TEXT NOT NULL,
        region            TEXT NOT NULL,
        started_at        INTEGER NOT NULL,
        duration_secs     INTEGER NOT NULL,
        answered          INTEGER NOT NULL,
        lines             TEXT NOT NULL,
        total             INTEGER NOT NULL,
        charged           INTEGER NOT NULL,
        uncovered         INTEGER NOT NULL,
        balance_after     INTEGER NOT NULL,
        associated        INTEGER NOT NULL,
        created_at        INTEGER NOT NULL
    );
    -- One index: every index is one more page in a completion's commit.
    -- An account's records by time serve its listing and its uses.
    CREATE INDEX records_account ON records (account_id, started_at);

    CREATE TABLE plan_usage (
        account_id      TEXT NOT NULL,
        plan            TEXT NOT NULL,
        total_uses      INTEGER NOT NULL DEFAULT 0,
        counters_since  INTEGER NOT NULL,
        activated_at    INTEGER,
        paid_until      INTEGER,
        PRIMARY KEY (account_id, plan)
    ) WITHOUT ROWID;
    -- The reset timer visits a plan's accounts.
    CREATE INDEX plan_usage_plan ON plan_usage (plan, account_id);

    CREATE TABLE associations (
        account_id      TEXT NOT NULL,
        plan            TEXT NOT NULL,
        destination     TEXT NOT NULL,
        associated_at   INTEGER NOT NULL,
        uses            INTEGER NOT NULL DEFAULT 0,
        last_used       INTEGER,
        expires_at      INTEGER,
        PRIMARY KEY (account_id, plan, destination)
    ) WITHOUT ROWID;
    CREATE INDEX associations_plan ON associations (plan, account_id);

    CREATE TABLE preferred_plans (
        account_id  TEXT PRIMARY KEY,
        plan        TEXT NOT NULL,
        set_by      TEXT NOT NULL CHECK (set_by IN ('subscriber', 'issuer', 'administrator')),
        set_at      INTEGER NOT NULL
    ) WITHOUT ROWID;

    CREATE TABLE communication_counts (
        account_id     TEXT PRIMARY KEY,
        last_sequence  INTEGER NOT NULL
    ) WITHOUT ROWID;
    "#,
    // 12: sessions and their charges (`sessions`). A session has a version,
    // bumped by every event, so an event is recorded only on the state it
    // was decided on. Participants are those present (`left_at` NULL) and
    // those who left, with when. Each event has the caller's id, unique in
    // its session, and the canonical JSON of what was asked (a replay with
    // the same id must ask the same); `seq` orders a session's events.
    // Each charge names the ledger movement that paid it (`reference`,
    // unique per account in `ledger`) and what it could not take. No index
    // beyond the keys: a session's sums scan its own charges, and every
    // index is one more page written by each event.
    r#"
    CREATE TABLE sessions (
        id             TEXT PRIMARY KEY,
        service        TEXT NOT NULL,
        attributes     TEXT NOT NULL,
        started_at     INTEGER NOT NULL,
        ended_at       INTEGER,
        last_event_at  INTEGER NOT NULL,
        events         INTEGER NOT NULL DEFAULT 0,
        version        INTEGER NOT NULL DEFAULT 0,
        created_at     INTEGER NOT NULL
    );
    CREATE INDEX sessions_service ON sessions (service, started_at);

    CREATE TABLE session_participants (
        session_id   TEXT NOT NULL REFERENCES sessions (id),
        participant  TEXT NOT NULL,
        account_id   TEXT NOT NULL,
        attributes   TEXT NOT NULL,
        joined_at    INTEGER NOT NULL,
        left_at      INTEGER,
        PRIMARY KEY (session_id, participant)
    ) WITHOUT ROWID;

    CREATE TABLE session_events (
        session_id     TEXT NOT NULL REFERENCES sessions (id),
        seq            INTEGER NOT NULL,
        id             TEXT NOT NULL,
        kind           TEXT NOT NULL CHECK (kind IN ('join', 'leave', 'end')),
        participant    TEXT,
        at             INTEGER NOT NULL,
        request        TEXT NOT NULL,
        plugin         TEXT NOT NULL,
        plugin_digest  TEXT NOT NULL,
        recorded_at    INTEGER NOT NULL,
        PRIMARY KEY (session_id, seq),
        UNIQUE (session_id, id)
    ) WITHOUT ROWID;

    CREATE TABLE session_charges (
        session_id     TEXT NOT NULL,
        seq            INTEGER NOT NULL,
        n              INTEGER NOT NULL,
        participant    TEXT NOT NULL,
        account_id     TEXT NOT NULL,
        amount         INTEGER NOT NULL CHECK (amount >= 0),
        charged        INTEGER NOT NULL CHECK (charged >= 0),
        uncovered      INTEGER NOT NULL CHECK (uncovered >= 0),
        balance_after  INTEGER NOT NULL,
        reference      TEXT NOT NULL,
        movement_id    INTEGER,
        description    TEXT NOT NULL,
        period_start   INTEGER NOT NULL,
        period_end     INTEGER NOT NULL,
        PRIMARY KEY (session_id, seq, n),
        FOREIGN KEY (session_id, seq) REFERENCES session_events (session_id, seq),
        CHECK (charged + uncovered = amount)
    ) WITHOUT ROWID;
    "#,
    // 13: provisioning. Organizations own services; users belong to one
    // and sign in with an Argon2id password (PHC string), locked for a
    // while after too many wrong ones. An offer of a service by a provider
    // has invitees, each with a link whose key is kept only as a SHA-256;
    // `via_permission` is the provider's own permission when they offer
    // onwards (the chain). One permission per invitation at most (`invitee_id`
    // is unique): ten accepts at once record one. The directory is what
    // each user can see and use, rewritten in the transaction that changes
    // what it derives from. Sign-ins (browser sessions and API user tokens)
    // and the one-use form tokens are kept as SHA-256 digests too.
    r#"
    CREATE TABLE organizations (
        id          TEXT PRIMARY KEY,
        name        TEXT NOT NULL,
        created_at  INTEGER NOT NULL
    );

    CREATE TABLE organization_services (
        organization_id  TEXT NOT NULL REFERENCES organizations (id),
        service          TEXT NOT NULL,
        PRIMARY KEY (organization_id, service)
    ) WITHOUT ROWID;
    CREATE INDEX organization_services_service ON organization_services (service);

    CREATE TABLE users (
        id               TEXT PRIMARY KEY,
        organization_id  TEXT NOT NULL REFERENCES organizations (id),
        email            TEXT NOT NULL,
        name             TEXT NOT NULL,
        phone            TEXT,
        admin            INTEGER NOT NULL CHECK (admin IN (0, 1)),
        password_hash    TEXT NOT NULL,
        failed_attempts  INTEGER NOT NULL DEFAULT 0,
        locked_until     INTEGER,
        created_at       INTEGER NOT NULL
    );
    CREATE INDEX users_organization ON users (organization_id);

    CREATE TABLE permissions (
        id              INTEGER PRIMARY KEY,
        service         TEXT NOT NULL,
        grantor_id      TEXT NOT NULL REFERENCES users (id),
        grantee_id      TEXT NOT NULL REFERENCES users (id),
        may_offer       INTEGER NOT NULL CHECK (may_offer IN (0, 1)),
        granted_at      INTEGER NOT NULL,
        offer_id        TEXT NOT NULL,
        invitee_id      TEXT NOT NULL UNIQUE,
        via_permission  INTEGER REFERENCES permissions (id)
    );
    CREATE INDEX permissions_grantee ON permissions (grantee_id, service);
    CREATE INDEX permissions_service ON permissions (service, grantee_id);

    CREATE TABLE offers (
        id               TEXT PRIMARY KEY,
        service          TEXT NOT NULL,
        organization_id  TEXT NOT NULL REFERENCES organizations (id),
        provider_id      TEXT NOT NULL REFERENCES users (id),
        description      TEXT NOT NULL,
        onwards          INTEGER NOT NULL CHECK (onwards IN (0, 1)),
        via_permission   INTEGER REFERENCES permissions (id),
        expires_at       INTEGER NOT NULL,
        expiry_chosen    INTEGER NOT NULL CHECK (expiry_chosen IN (0, 1)),
        expired_at       INTEGER,
        created_at       INTEGER NOT NULL
    );
    CREATE INDEX offers_provider ON offers (provider_id, created_at);

    CREATE TABLE invitees (
        id             TEXT PRIMARY KEY,
        offer_id       TEXT NOT NULL REFERENCES offers (id),
        email          TEXT NOT NULL,
        name           TEXT,
        organization   TEXT,
        phone          TEXT,
        key_hash       TEXT NOT NULL,
        created_at     INTEGER NOT NULL,
        user_id        TEXT REFERENCES users (id),
        registered_at  INTEGER,
        accepted_at    INTEGER,
        declined_at    INTEGER,
        CHECK (accepted_at IS NULL OR declined_at IS NULL)
    );
    CREATE INDEX invitees_offer ON invitees (offer_id, created_at);
    CREATE INDEX invitees_user ON invitees (user_id);

    CREATE TABLE directory (
        user_id     TEXT NOT NULL REFERENCES users (id),
        service     TEXT NOT NULL,
        usable      INTEGER NOT NULL CHECK (usable IN (0, 1)),
        why         TEXT NOT NULL,
        updated_at  INTEGER NOT NULL,
        PRIMARY KEY (user_id, service)
    ) WITHOUT ROWID;

    CREATE TABLE user_sessions (
        hash        TEXT PRIMARY KEY,
        kind        TEXT NOT NULL CHECK (kind IN ('site', 'api')),
        user_id     TEXT REFERENCES users (id),
        invitee_id  TEXT,
        created_at  INTEGER NOT NULL,
        expires_at  INTEGER NOT NULL
    ) WITHOUT ROWID;
    CREATE INDEX user_sessions_expiry ON user_sessions (expires_at);

    CREATE TABLE form_tokens (
        hash          TEXT PRIMARY KEY,
        session_hash  TEXT NOT NULL,
        form          TEXT NOT NULL,
        subject       TEXT NOT NULL,
        expires_at    INTEGER NOT NULL,
        used_at       INTEGER
    ) WITHOUT ROWID;
    CREATE INDEX form_tokens_expiry ON form_tokens (expires_at);
    "#,
    // 14: an account's records by time carry their plan and whether they
    // were answered, so that the uses an authorization reads (an account's
    // answered records under a plan since a time, up to 1,000) come from
    // the index alone instead of one table lookup per record; still one
    // index by account, so a completion touches no more B-trees than
    // before (its entries are a little wider). Rebuilding it reads every
    // record once, at the first start of this release. A plan's counters
    // get `changes`, raised by every use counted and every reset: what an
    // authorization compares, inside the write, instead of counting the
    // uses again.
    r#"
    DROP INDEX records_account;
    CREATE INDEX records_account ON records (account_id, started_at, plan, answered);
    ALTER TABLE plan_usage ADD COLUMN changes INTEGER NOT NULL DEFAULT 0;
    "#,
];

/// The schema version this binary writes.
pub const SCHEMA_VERSION: i64 = MIGRATIONS.len() as i64;

/// The schema version of the database on `conn`.
pub(super) fn version(conn: &Connection) -> Result<i64, StoreError> {
    Ok(conn.pragma_query_value(None, "user_version", |row| row.get(0))?)
}

pub(super) fn apply(conn: &mut Connection, path: &Path) -> Result<(), StoreError> {
    let found = version(conn)?;
    if found > SCHEMA_VERSION {
        return Err(StoreError::SchemaTooNew {
            path: path.to_owned(),
            found,
            supported: SCHEMA_VERSION,
        });
    }
    for (index, sql) in MIGRATIONS
        .iter()
        .enumerate()
        .skip(usize::try_from(found).unwrap_or(0))
    {
        let tx = conn.transaction()?;
        tx.execute_batch(sql)?;
        tx.pragma_update(None, "user_version", index as i64 + 1)?;
        tx.commit()?;
        tracing::info!(version = index + 1, "applied database migration");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use rusqlite::params;

    use super::*;

    /// A database as the first `version` migrations left it.
    fn at_version(version: usize) -> Connection {
        let conn = Connection::open_in_memory().unwrap();
        for sql in &MIGRATIONS[..version] {
            conn.execute_batch(sql).unwrap();
        }
        conn.pragma_update(None, "user_version", version as i64)
            .unwrap();
        conn
    }

    /// The `CREATE` statement of table `name`.
    fn ddl(conn: &Connection, name: &str) -> String {
        conn.query_row(
            "SELECT sql FROM sqlite_schema WHERE name = ?1",
            [name],
            |r| r.get(0),
        )
        .unwrap()
    }

    #[test]
    fn requests_survive_the_move_to_without_rowid() {
        let mut conn = at_version(3);
        conn.execute(
            "INSERT INTO requests (id, service, account_id, state, created_at, updated_at)
             VALUES ('req_1', 'support', 'acme', 'passed', 1, 2)",
            [],
        )
        .unwrap();
        apply(&mut conn, Path::new(":memory:")).unwrap();
        let (state, updated): (String, i64) = conn
            .query_row(
                "SELECT state, updated_at FROM requests WHERE id = 'req_1'",
                [],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )
            .unwrap();
        assert_eq!((state.as_str(), updated), ("passed", 2));
        let ddl = ddl(&conn, "requests");
        assert!(ddl.contains("WITHOUT ROWID"), "{ddl}");
    }

    #[test]
    fn decisions_keep_their_ids_and_new_ones_follow_them_never_reused() {
        let mut conn = at_version(6);
        conn.execute(
            "INSERT INTO decisions (id, at, service, account_id, request_id, inputs_digest, inputs,
                 verdict, plugin, plugin_digest, duration_us)
             VALUES (1700000000000007, 1, 'support', 'acme', 'req_1', 'd', '{}', 'pass', 'p', 'x', 3)",
            [],
        )
        .unwrap();
        conn.execute("INSERT INTO accounts (id, status, paid_up, updated_at) VALUES ('acme', 'active', 1, 1)", [])
            .unwrap();
        apply(&mut conn, Path::new(":memory:")).unwrap();
        let (request, duration): (String, i64) = conn
            .query_row(
                "SELECT request_id, duration_us FROM decisions WHERE id = 1700000000000007",
                [],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )
            .unwrap();
        assert_eq!((request.as_str(), duration), ("req_1", 3));
        let indexes: i64 = conn
            .query_row(
                "SELECT count(*) FROM sqlite_schema WHERE type = 'index' AND tbl_name = 'decisions'",
                [],
                |r| r.get(0),
            )
            .unwrap();
        assert_eq!(indexes, 4);
        let insert =
            "INSERT INTO decisions (at, service, account_id, request_id, inputs_digest, inputs,
                 verdict, plugin, plugin_digest, duration_us)
             VALUES (2, 'support', 'acme', 'req_2', 'd', '{}', 'pass', 'p', 'x', 3)";
        conn.execute(insert, []).unwrap();
        let newest = conn.last_insert_rowid();
        assert_eq!(newest, 1700000000000008);
        // The newest one deleted (with its request): its id is not given again.
        conn.execute("DELETE FROM decisions WHERE id = ?1", [newest])
            .unwrap();
        conn.execute(insert, []).unwrap();
        assert_eq!(conn.last_insert_rowid(), newest + 1);
        // Rows from before keep a version to compare against.
        let version: i64 = conn
            .query_row("SELECT version FROM accounts WHERE id = 'acme'", [], |r| {
                r.get(0)
            })
            .unwrap();
        assert_eq!(version, 0);
        let journal: i64 = conn
            .query_row(
                "SELECT count(*) FROM sqlite_schema WHERE name = 'journal'",
                [],
                |r| r.get(0),
            )
            .unwrap();
        assert_eq!(journal, 0);
    }

    #[test]
    fn outbox_rows_survive_the_dead_state_and_requests_are_fulfilled_once() {
        let mut conn = at_version(7);
        conn.execute(
            "INSERT INTO outbox (event_id, kind, target, payload, state, attempts, next_attempt_at, created_at)
             VALUES ('evt_1', 'mail', 'mailto:a@b.test', '{}', 'pending', 4, 9, 1)",
            [],
        )
        .unwrap();
        // A newer row the pruner deleted: its id must never come back.
        conn.execute(
            "INSERT INTO outbox (event_id, kind, target, payload, state, attempts, next_attempt_at, created_at)
             VALUES ('evt_2', 'mail', 'mailto:a@b.test', '{}', 'delivered', 1, 9, 1)",
            [],
        )
        .unwrap();
        conn.execute("DELETE FROM outbox WHERE event_id = 'evt_2'", [])
            .unwrap();
        conn.execute(
            "INSERT INTO reconciliations (id, request_id, service, account_id, failure_code, reason, mode, procedure, created_at)
             VALUES ('rec_1', 'r-1', 's', 'a', 'expired', '', 'sync', '{}', 1)",
            [],
        )
        .unwrap();
        apply(&mut conn, Path::new(":memory:")).unwrap();
        conn.execute(
            "INSERT INTO outbox (event_id, kind, target, payload, state, attempts, next_attempt_at, created_at)
             VALUES ('evt_3', 'mail', 'mailto:a@b.test', '{}', 'pending', 0, 9, 1)",
            [],
        )
        .unwrap();
        let next_id: i64 = conn
            .query_row("SELECT id FROM outbox WHERE event_id = 'evt_3'", [], |r| {
                r.get(0)
            })
            .unwrap();
        assert_eq!(next_id, 3, "a pruned outbox id was given again");
        conn.execute("DELETE FROM outbox WHERE event_id = 'evt_3'", [])
            .unwrap();
        let (event, attempts, next): (String, i64, i64) = conn
            .query_row(
                "SELECT event_id, attempts, next_attempt_at FROM outbox WHERE id = 1",
                [],
                |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
            )
            .unwrap();
        assert_eq!((event.as_str(), attempts, next), ("evt_1", 4, 9));
        conn.execute(
            "UPDATE outbox SET state = 'dead', dead_at = 10 WHERE id = 1",
            [],
        )
        .unwrap();
        assert!(
            conn.execute("UPDATE outbox SET state = 'lost' WHERE id = 1", [])
                .is_err()
        );
        let locks: i64 = conn
            .query_row(
                "SELECT locks FROM reconciliations WHERE id = 'rec_1'",
                [],
                |r| r.get(0),
            )
            .unwrap();
        assert_eq!(locks, 0);
        conn.execute(
            "INSERT INTO requests (id, service, account_id, state, created_at, updated_at)
             VALUES ('r-1', 's', 'a', 'passed', 1, 1)",
            [],
        )
        .unwrap();
        let err = conn
            .execute(
                "UPDATE requests SET state = 'fulfilled' WHERE id = 'r-1'",
                [],
            )
            .unwrap_err();
        assert!(err.to_string().contains("fulfilled only once"), "{err}");
    }

    #[test]
    fn accounts_keep_their_rows_and_versions_and_money_gets_its_tables() {
        let mut conn = at_version(9);
        conn.execute(
            "INSERT INTO accounts (id, status, paid_up, updated_at, version) VALUES ('acme', 'active', 1, 1, 41)",
            [],
        )
        .unwrap();
        apply(&mut conn, Path::new(":memory:")).unwrap();
        conn.pragma_update(None, "foreign_keys", "ON").unwrap();
        type Money = (String, String, Option<Vec<u8>>, i64, Option<i64>, i64);
        let row: Money = conn
            .query_row(
                "SELECT account_group, billing, pin_hash, pin_failures, pin_locked_until, version FROM accounts",
                [],
                |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?, r.get(5)?)),
            )
            .unwrap();
        assert_eq!(row, ("".into(), "prepaid".into(), None, 0, None, 41));
        let refused = |sql: &str| assert!(conn.execute(sql, []).is_err(), "{sql}");
        refused("UPDATE accounts SET billing = 'credit'");
        refused("INSERT INTO balances (account_id, balance, updated_at) VALUES ('nobody', 1, 1)");
        conn.execute(
            "INSERT INTO balances (account_id, balance, updated_at) VALUES ('acme', 5, 1)",
            [],
        )
        .unwrap();
        let insert = |kind: &str, amount: i64, reference: &str| {
            conn.execute(
                "INSERT INTO ledger (account_id, kind, amount, reference, balance_after, at)
                 VALUES ('acme', ?1, ?2, ?3, 0, 1)",
                params![kind, amount, reference],
            )
        };
        insert("topup", 5, "t-1").unwrap();
        assert!(insert("topup", 5, "t-1").is_err(), "a reference twice");
        for (kind, amount) in [("topup", 0), ("refund", -1), ("debit", 1), ("gift", 1)] {
            assert!(insert(kind, amount, "x").is_err(), "{kind} {amount}");
        }
        insert("debit", 0, "d-0").unwrap();
        insert("adjustment", -3, "a-1").unwrap();
        // An account deleted takes its balance along; its ledger rows stay.
        conn.execute("DELETE FROM accounts WHERE id = 'acme'", [])
            .unwrap();
        let balances: i64 = conn
            .query_row("SELECT count(*) FROM balances", [], |r| r.get(0))
            .unwrap();
        assert_eq!(balances, 0);
    }

    #[test]
    fn migrations_apply_once_and_a_newer_schema_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("db");
        let mut conn = Connection::open(&path).unwrap();
        apply(&mut conn, &path).unwrap();
        apply(&mut conn, &path).unwrap();
        let version: i64 = conn
            .pragma_query_value(None, "user_version", |r| r.get(0))
            .unwrap();
        assert_eq!(version, SCHEMA_VERSION);
        conn.pragma_update(None, "user_version", SCHEMA_VERSION + 1)
            .unwrap();
        let err = apply(&mut conn, &path)
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        assert!(
            err.contains("newer than this rulehost understands"),
            "{err}"
        );
    }
}
