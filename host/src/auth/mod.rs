//! Who may call the internal API: API tokens, their roles, and what each
//! role may do.
//!
//! A token is `rh_` and 64 hex digits: 256 bits from the OS's RNG. Only its
//! SHA-256 is stored (the standard for high-entropy secrets, as GitHub and
//! Stripe do; a password hash is for guessable ones), it is shown once when
//! made, and revoking it takes effect on a running host within
//! [`tokens::CACHE_TTL`]. A presented token is found by its hash, and the
//! stored hash is compared to it in constant time.
//!
//! Roles: `operator` may do everything; `service` may run checks and manage
//! accounts, and read its own services' requests and decisions, for the
//! services named in the token; `viewer` may read (GET) and nothing else.
//!
//! Architecture invariant: this part knows nothing of HTTP. `http::access`
//! holds the table of which route needs which [`Access`], and asks
//! [`Tokens`] who is calling.

mod tokens;

use std::fmt;
use std::path::PathBuf;

use crate::store::StoreError;

pub use tokens::{CACHE_TTL, FirstToken, NewToken, Tokens, create, first_operator, list, revoke};

/// What a token may do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Role {
    /// Everything: plugins, rollback, replay, flows, tasks, the outbox, accounts, checks.
    Operator,
    /// Checks and accounts for the services named in the token.
    Service,
    /// Reads (GET) only.
    Viewer,
}

impl Role {
    pub const ALL: [Role; 3] = [Role::Operator, Role::Service, Role::Viewer];

    pub fn as_str(self) -> &'static str {
        match self {
            Role::Operator => "operator",
            Role::Service => "service",
            Role::Viewer => "viewer",
        }
    }

    pub fn parse(text: &str) -> Result<Role, AuthError> {
        Role::ALL
            .into_iter()
            .find(|r| r.as_str() == text)
            .ok_or_else(|| {
                AuthError::Invalid(format!(
                    "`{text}` is not a role; use operator, service or viewer"
                ))
            })
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What a route needs of its caller.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    /// No token (`/healthz`, `/metrics` unless `[auth]` closes them).
    Open,
    /// Any valid token, whatever its role.
    Token,
    /// A read: operator or viewer.
    Read,
    /// An operator's change: plugins, rollback, replay, flows, tasks.
    Operate,
    /// A read a service may make about its own services (the handler
    /// checks which service, where the record has one): operator, viewer,
    /// service.
    ServiceRead,
    /// A change a service may make for its own services (the handler checks
    /// which service): operator, service.
    ServiceWrite,
    /// A provisioning user (HTTP Basic with their id and password, or a
    /// user token), reading what is theirs; or a token of role operator or
    /// viewer, reading everything.
    UserRead,
    /// A provisioning user acting as themself (an offer, invitees): no API
    /// token's role may.
    UserWrite,
}

impl Access {
    /// Whether a token of `role` may call a route needing this.
    pub fn admits(self, role: Role) -> bool {
        match self {
            Access::Open | Access::Token => true,
            Access::Read => matches!(role, Role::Operator | Role::Viewer),
            Access::Operate => role == Role::Operator,
            Access::ServiceRead => true,
            Access::ServiceWrite => matches!(role, Role::Operator | Role::Service),
            Access::UserRead => matches!(role, Role::Operator | Role::Viewer),
            Access::UserWrite => false,
        }
    }

    /// Whether a provisioning user's credentials are taken.
    pub fn for_users(self) -> bool {
        matches!(self, Access::UserRead | Access::UserWrite)
    }

    /// The roles admitted, for messages: "operator or viewer".
    pub fn roles(self) -> String {
        let names: Vec<&str> = Role::ALL
            .into_iter()
            .filter(|r| self.admits(*r))
            .map(Role::as_str)
            .collect();
        if self == Access::UserWrite {
            return "none: it takes a user's credentials".into();
        }
        names.join(" or ")
    }
}

/// Who is calling: a valid token's name, role and services.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Principal {
    pub id: String,
    pub name: String,
    pub role: Role,
    /// The services a `service` token acts for (empty for other roles).
    pub services: Vec<String>,
}

impl Principal {
    /// Whether this caller may act (check, change) for `service`:
    /// operators for every service, service tokens for their own.
    pub fn acts_for(&self, service: &str) -> bool {
        match self.role {
            Role::Operator => true,
            Role::Service => self.services.iter().any(|s| s == service),
            Role::Viewer => false,
        }
    }

    /// Whether this caller may read what belongs to `service`.
    pub fn reads_for(&self, service: &str) -> bool {
        self.role == Role::Viewer || self.acts_for(service)
    }
}

#[derive(Debug, thiserror::Error)]
pub enum AuthError {
    #[error("{0}")]
    Invalid(String),
    #[error(
        "no token that is not revoked has the id or name `{0}`; `rulehost tokens list` shows them"
    )]
    NotFound(String),
    #[error("no secure randomness available to make a token: {0}")]
    Random(String),
    #[error("cannot write the operator token to `{}`: {source}", path.display())]
    File {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// The prefix of every token: recognizable in a leaked file or a log.
pub const PREFIX: &str = "rh_";
/// Random bytes in a token.
const SECRET_BYTES: usize = 32;

/// A fresh token from the OS's RNG; never a weaker fallback.
pub fn new_token() -> Result<String, AuthError> {
    let mut secret = [0u8; SECRET_BYTES];
    getrandom::fill(&mut secret).map_err(|e| AuthError::Random(e.to_string()))?;
    Ok(format!("{PREFIX}{}", hex::encode(secret)))
}

/// A token as a caller presented it, well formed and hashed.
#[derive(Debug, Clone)]
pub struct Presented {
    hash: String,
}

impl Presented {
    /// `None` unless `token` has the shape of a token (prefix, 64 hex digits).
    pub fn parse(token: &str) -> Option<Presented> {
        let hex = token.strip_prefix(PREFIX)?;
        (hex.len() == SECRET_BYTES * 2 && hex.bytes().all(|b| b.is_ascii_hexdigit()))
            .then(|| Presented { hash: hash(token) })
    }

    pub fn hash(&self) -> &str {
        &self.hash
    }
}

/// SHA-256 of a token, hex: what is stored.
pub fn hash(token: &str) -> String {
    crate::secret::digest(token)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_token_is_prefixed_256_random_bits_and_only_its_shape_is_accepted() {
        let a = new_token().unwrap();
        let b = new_token().unwrap();
        assert_ne!(a, b);
        assert!(a.starts_with("rh_") && a.len() == 3 + 64, "{a}");
        assert!(Presented::parse(&a).is_some());
        assert_eq!(Presented::parse(&a).unwrap().hash(), hash(&a));
        // The stored hash is SHA-256, not the token.
        assert_eq!(hash(&a).len(), 64);
        assert_ne!(hash(&a), a[3..]);
        for bad in [
            "",
            "rh_",
            &a[3..],
            &a[..a.len() - 1],
            &format!("{a}0"),
            &format!("xx_{}", &a[3..]),
            &format!("rh_{}", "g".repeat(64)),
        ] {
            assert!(Presented::parse(bad).is_none(), "{bad}");
        }
    }

    #[test]
    fn roles_admit_what_the_route_needs() {
        use Role::*;
        let table = [
            (Access::Open, [true, true, true]),
            (Access::Token, [true, true, true]),
            (Access::Read, [true, false, true]),
            (Access::Operate, [true, false, false]),
            (Access::ServiceRead, [true, true, true]),
            (Access::ServiceWrite, [true, true, false]),
            (Access::UserRead, [true, false, true]),
            (Access::UserWrite, [false, false, false]),
        ];
        for (access, admitted) in table {
            for (role, expected) in [Operator, Service, Viewer].into_iter().zip(admitted) {
                assert_eq!(access.admits(role), expected, "{access:?} {role}");
            }
        }
        assert_eq!(Access::Read.roles(), "operator or viewer");
        assert_eq!(Access::Operate.roles(), "operator");
    }

    #[test]
    fn a_service_token_acts_and_reads_for_its_own_services_only() {
        let service = Principal {
            id: "tok_1".into(),
            name: "billing".into(),
            role: Role::Service,
            services: vec!["support-contract".into()],
        };
        assert!(service.acts_for("support-contract"));
        assert!(!service.acts_for("premium-support"));
        assert!(!service.reads_for("premium-support"));
        let viewer = Principal {
            role: Role::Viewer,
            services: vec![],
            ..service.clone()
        };
        assert!(!viewer.acts_for("support-contract"));
        assert!(viewer.reads_for("support-contract"));
        let operator = Principal {
            role: Role::Operator,
            ..viewer
        };
        assert!(operator.acts_for("anything") && operator.reads_for("anything"));
    }

    #[test]
    fn roles_parse_by_name() {
        for role in Role::ALL {
            assert_eq!(Role::parse(role.as_str()).unwrap(), role);
        }
        let err = Role::parse("admin").unwrap_err().to_string();
        assert!(err.contains("`admin` is not a role"), "{err}");
    }
}
