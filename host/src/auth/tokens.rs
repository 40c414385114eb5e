//! Tokens in the store: making, listing and revoking them, the first
//! operator token of a fresh database, and [`Tokens`], which says who a
//! presented token belongs to.

use std::collections::HashMap;
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use super::{AuthError, Presented, Principal, Role, new_token};
use crate::secret::same;
use crate::store::tokens::{self as q, TokenRow};
use crate::store::{self, Store};

/// How long a token found valid is taken as valid without asking the store
/// again: a revocation reaches a running host within this.
pub const CACHE_TTL: Duration = Duration::from_secs(1);
/// `last_used_at` is written at most this often per token, so that using a
/// token costs no write on the request path.
const TOUCH_EVERY_MS: i64 = 60_000;
/// Entries the cache holds before it drops the stale ones.
const CACHE_MAX: usize = 1024;

/// Who a presented token belongs to, from the store, with tokens found
/// valid kept for [`CACHE_TTL`].
pub struct Tokens {
    store: Store,
    cache: Mutex<HashMap<String, (Arc<Principal>, Instant)>>,
}

impl Tokens {
    pub fn new(store: Store) -> Tokens {
        Tokens {
            store,
            cache: Mutex::default(),
        }
    }

    /// The caller, if this token was found valid less than [`CACHE_TTL`] ago.
    pub fn cached(&self, presented: &Presented) -> Option<Arc<Principal>> {
        let cache = self.cache.lock().unwrap_or_else(|e| e.into_inner());
        let (principal, at) = cache.get(presented.hash())?;
        (at.elapsed() < CACHE_TTL).then(|| principal.clone())
    }

    /// The caller, from the store (a blocking read): `None` for a token
    /// that is unknown or revoked.
    pub fn lookup(&self, presented: &Presented) -> Result<Option<Arc<Principal>>, AuthError> {
        let row = self.store.read(|c| q::live_by_hash(c, presented.hash()))?;
        // Found by its hash, and the hash compared again in constant time.
        let Some(row) = row.filter(|r| same(&r.hash, presented.hash())) else {
            return Ok(None);
        };
        let principal = Arc::new(principal(&row)?);
        let now = store::now_ms();
        if row.last_used_at.is_none_or(|at| now - at >= TOUCH_EVERY_MS) {
            let id = row.id.clone();
            // Bookkeeping: a failure to note the use must not refuse the call.
            if let Err(e) = self.store.write(|tx| q::touch(tx, &id, now)) {
                tracing::warn!("cannot record the use of token `{}`: {e}", row.name);
            }
        }
        let mut cache = self.cache.lock().unwrap_or_else(|e| e.into_inner());
        if cache.len() >= CACHE_MAX {
            cache.retain(|_, (_, at)| at.elapsed() < CACHE_TTL);
        }
        cache.insert(
            presented.hash().to_owned(),
            (principal.clone(), Instant::now()),
        );
        Ok(Some(principal))
    }
}

fn principal(row: &TokenRow) -> Result<Principal, AuthError> {
    Ok(Principal {
        id: row.id.clone(),
        name: row.name.clone(),
        role: Role::parse(&row.role).map_err(|_| {
            AuthError::Store(store::StoreError::Corrupt(format!(
                "token `{}` has the unknown role `{}`",
                row.name, row.role
            )))
        })?,
        services: row.services.clone(),
    })
}

/// A token just made: the token itself (shown once, never stored) and its row.
#[derive(Debug)]
pub struct NewToken {
    pub token: String,
    pub row: TokenRow,
}

/// Names: 1-100 printable characters, not starting with `tok_` (ids do).
fn check_name(name: &str) -> Result<(), AuthError> {
    if name.is_empty()
        || name.chars().count() > 100
        || name.chars().any(char::is_control)
        || name.trim() != name
        || name.starts_with("tok_")
    {
        return Err(AuthError::Invalid(format!(
            "token name `{}` is not usable: give 1-100 printable characters without leading or trailing spaces, not starting with `tok_`",
            name.escape_debug()
        )));
    }
    Ok(())
}

/// Service ids as manifests have them: lowercase letters, digits, dashes.
fn check_service(service: &str) -> Result<(), AuthError> {
    let ok = !service.is_empty()
        && service.len() <= 100
        && service
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-');
    if ok {
        Ok(())
    } else {
        Err(AuthError::Invalid(format!(
            "`{}` is not a service id (lowercase letters, digits and dashes, as a manifest's file name)",
            service.escape_debug()
        )))
    }
}

/// Makes a token of `role`. A `service` token names at least one service,
/// other roles none. Without a name it is named after its role (`viewer`,
/// `viewer-2`, …). The token is in the answer and nowhere else.
pub fn create(
    store: &Store,
    role: Role,
    mut services: Vec<String>,
    name: Option<String>,
    now: i64,
) -> Result<NewToken, AuthError> {
    match role {
        Role::Service if services.is_empty() => {
            return Err(AuthError::Invalid(
                "a service token needs the services it acts for: --service ID (one or more)".into(),
            ));
        }
        Role::Operator | Role::Viewer if !services.is_empty() => {
            return Err(AuthError::Invalid(format!(
                "a token of role {role} is not limited to services; `--service` is for `--role service` only"
            )));
        }
        _ => {}
    }
    services.iter().try_for_each(|s| check_service(s))?;
    services.sort();
    services.dedup();
    if let Some(name) = &name {
        check_name(name)?;
    }
    let token = new_token()?;
    let hash = super::hash(&token);
    let row = store.write(|tx| {
        let name = match name {
            Some(name) if q::live_name_taken(tx, &name)? => {
                return Err(AuthError::Invalid(format!(
                    "a token named `{name}` exists; revoke it first or choose another --name"
                )));
            }
            Some(name) => name,
            None => free_name(tx, role)?,
        };
        let row = TokenRow {
            id: store::new_id("tok", 8),
            name,
            role: role.as_str().to_owned(),
            services,
            hash,
            created_at: now,
            last_used_at: None,
            revoked_at: None,
        };
        q::insert(tx, &row)?;
        Ok::<_, AuthError>(row)
    })?;
    Ok(NewToken { token, row })
}

/// `operator`, else `operator-2`, `operator-3`, …: the first not taken.
fn free_name(tx: &crate::store::Tx<'_>, role: Role) -> Result<String, AuthError> {
    let mut n = 1;
    loop {
        let name = match n {
            1 => role.as_str().to_owned(),
            n => format!("{role}-{n}"),
        };
        if !q::live_name_taken(tx, &name)? {
            return Ok(name);
        }
        n += 1;
    }
}

/// Every token, revoked ones too, oldest first (never the tokens themselves).
pub fn list(store: &Store) -> Result<Vec<TokenRow>, AuthError> {
    Ok(store.read(q::list)?)
}

/// Revokes the token with id or name `key`: refused from then on (by a
/// running host within [`CACHE_TTL`]).
pub fn revoke(store: &Store, key: &str, now: i64) -> Result<TokenRow, AuthError> {
    store
        .write(|tx| q::revoke(tx, key, now))?
        .ok_or_else(|| AuthError::NotFound(key.to_owned()))
}

/// What [`first_operator`] did.
#[derive(Debug, PartialEq, Eq)]
pub enum FirstToken {
    /// A fresh database: an operator token was made and written here.
    Written(PathBuf),
    /// The database already had an operator token; `live` says whether
    /// one is still valid.
    Exists { live: bool },
}

/// On a database that never had an operator token, makes one named
/// `operator` and writes it to `path`, readable by its owner only; nothing
/// otherwise (a restart never makes another or touches the file).
///
/// The file is written before the token is stored: should the host die in
/// between, the next start finds no operator and writes a new file.
pub fn first_operator(store: &Store, path: &Path, now: i64) -> Result<FirstToken, AuthError> {
    if store.read(q::any_operator)? {
        let live = store
            .read(q::list)?
            .iter()
            .any(|t| t.role == Role::Operator.as_str() && t.revoked_at.is_none());
        return Ok(FirstToken::Exists { live });
    }
    let token = new_token()?;
    write_private(path, &token).map_err(|source| AuthError::File {
        path: path.to_owned(),
        source,
    })?;
    let row = TokenRow {
        id: store::new_id("tok", 8),
        name: Role::Operator.as_str().to_owned(),
        role: Role::Operator.as_str().to_owned(),
        services: Vec::new(),
        hash: super::hash(&token),
        created_at: now,
        last_used_at: None,
        revoked_at: None,
    };
    if let Err(e) = store.write(|tx| q::insert(tx, &row)) {
        let _ = std::fs::remove_file(path);
        return Err(e.into());
    }
    Ok(FirstToken::Written(path.to_owned()))
}

/// Writes `token` and a newline to `path` with mode 0600, through a file
/// beside it renamed over `path` (a stale file of an earlier database is
/// replaced whole, never half written).
fn write_private(path: &Path, token: &str) -> std::io::Result<()> {
    let mut partial = path.as_os_str().to_owned();
    partial.push(".partial");
    let partial = PathBuf::from(partial);
    let _ = std::fs::remove_file(&partial);
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt as _;
        options.mode(0o600);
    }
    let mut file = options.open(&partial)?;
    file.write_all(format!("{token}\n").as_bytes())?;
    file.sync_all()?;
    drop(file);
    std::fs::rename(&partial, path)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::auth::hash;

    fn presented(token: &str) -> Presented {
        Presented::parse(token).unwrap()
    }

    #[test]
    fn a_made_token_is_found_by_its_hash_and_only_the_hash_is_stored() {
        let store = Store::in_memory().unwrap();
        let made = create(
            &store,
            Role::Service,
            vec!["support-contract".into(), "support-contract".into()],
            Some("billing".into()),
            1,
        )
        .unwrap();
        assert_eq!(made.row.services, ["support-contract"]);
        let rows = list(&store).unwrap();
        assert_eq!(rows.len(), 1);
        assert_eq!(rows[0].hash, hash(&made.token));
        assert!(!format!("{:?}", rows[0]).contains(&made.token[3..]));

        let tokens = Tokens::new(store.clone());
        let who = tokens.lookup(&presented(&made.token)).unwrap().unwrap();
        assert_eq!(
            (who.name.as_str(), who.role, who.services.clone()),
            (
                "billing",
                Role::Service,
                vec!["support-contract".to_owned()]
            )
        );
        assert!(tokens.cached(&presented(&made.token)).is_some());
        // Its use is noted.
        assert!(list(&store).unwrap()[0].last_used_at.is_some());
        // A token of the right shape that was never made is nobody.
        let other = new_token().unwrap();
        assert!(tokens.lookup(&presented(&other)).unwrap().is_none());
        assert!(tokens.cached(&presented(&other)).is_none());
    }

    #[test]
    fn a_revoked_token_is_refused_once_the_cache_lapses() {
        let store = Store::in_memory().unwrap();
        let made = create(&store, Role::Viewer, vec![], None, 1).unwrap();
        assert_eq!(made.row.name, "viewer");
        let tokens = Tokens::new(store.clone());
        assert!(tokens.lookup(&presented(&made.token)).unwrap().is_some());
        let revoked = revoke(&store, "viewer", 2).unwrap();
        assert_eq!(revoked.revoked_at, Some(2));
        // The store says so at once; the cache within its TTL.
        assert!(tokens.lookup(&presented(&made.token)).unwrap().is_none());
        std::thread::sleep(CACHE_TTL);
        assert!(tokens.cached(&presented(&made.token)).is_none());
        // Revoked twice: there is nothing left to revoke.
        let again = revoke(&store, &made.row.id, 3).unwrap_err().to_string();
        assert!(again.contains("no token that is not revoked"), "{again}");
        // The name is free again, the revoked token still listed.
        let next = create(&store, Role::Viewer, vec![], None, 4).unwrap();
        assert_eq!(next.row.name, "viewer");
        assert_eq!(list(&store).unwrap().len(), 2);
    }

    #[test]
    fn names_services_and_roles_are_checked_and_nothing_is_stored_when_refused() {
        let store = Store::in_memory().unwrap();
        create(&store, Role::Operator, vec![], Some("ops".into()), 1).unwrap();
        let refused = [
            (Role::Service, vec![], None, "needs the services"),
            (
                Role::Viewer,
                vec!["x".into()],
                None,
                "is for `--role service` only",
            ),
            (
                Role::Service,
                vec!["Bad Id".into()],
                None,
                "is not a service id",
            ),
            (
                Role::Viewer,
                vec![],
                Some("ops".into()),
                "named `ops` exists",
            ),
            (Role::Viewer, vec![], Some("a\0b".into()), "is not usable"),
            (Role::Viewer, vec![], Some("tok_x".into()), "is not usable"),
            (Role::Viewer, vec![], Some(String::new()), "is not usable"),
        ];
        for (role, services, name, expected) in refused {
            let err = create(&store, role, services, name, 2)
                .unwrap_err()
                .to_string();
            assert!(err.contains(expected), "{err}");
        }
        assert_eq!(list(&store).unwrap().len(), 1);
        // Unnamed tokens of one role get distinct names.
        let a = create(&store, Role::Operator, vec![], None, 3).unwrap();
        let b = create(&store, Role::Operator, vec![], None, 3).unwrap();
        assert_eq!(
            (a.row.name.as_str(), b.row.name.as_str()),
            ("operator", "operator-2")
        );
    }

    #[test]
    fn the_first_operator_token_is_written_once_readable_by_its_owner_only() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&dir.path().join("db")).unwrap();
        let path = dir.path().join("db.operator-token");
        std::fs::write(&path, "stale").unwrap();
        let first = first_operator(&store, &path, 1).unwrap();
        assert_eq!(first, FirstToken::Written(path.clone()));
        let token = std::fs::read_to_string(&path).unwrap();
        let token = token.trim_end();
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt as _;
            let mode = std::fs::metadata(&path).unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o600);
        }
        let who = Tokens::new(store.clone())
            .lookup(&presented(token))
            .unwrap()
            .unwrap();
        assert_eq!(who.role, Role::Operator);
        // Again: nothing made, the file untouched.
        assert_eq!(
            first_operator(&store, &path, 2).unwrap(),
            FirstToken::Exists { live: true }
        );
        assert_eq!(std::fs::read_to_string(&path).unwrap().trim_end(), token);
        revoke(&store, "operator", 3).unwrap();
        assert_eq!(
            first_operator(&store, &path, 4).unwrap(),
            FirstToken::Exists { live: false }
        );
        assert_eq!(list(&store).unwrap().len(), 1);
    }
}
