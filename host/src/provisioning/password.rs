//! Users' passwords: Argon2id (RFC 9106) with the `argon2` crate's
//! defaults (19 MiB, 2 passes, 1 lane: OWASP's first recommended setting),
//! stored as a PHC string, so the parameters travel with each hash and can
//! be raised later without invalidating old ones.
//!
//! A password is guessable, unlike a token or a link's key: hence a slow,
//! memory-hard hash here and a plain SHA-256 there.

use std::sync::LazyLock;

use argon2::Argon2;
use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};

use super::ProvisioningError;

/// The shortest password accepted (NIST SP 800-63B's floor).
pub const MIN_LEN: usize = 8;
/// The longest, in bytes: past it, hashing is only a way to burn CPU.
pub const MAX_LEN: usize = 256;

/// Refuses passwords too short or too long to be one.
pub fn check_policy(password: &str) -> Result<(), ProvisioningError> {
    let chars = password.chars().count();
    if chars < MIN_LEN {
        return Err(ProvisioningError::Invalid(format!(
            "`password` has {chars} characters; use at least {MIN_LEN}"
        )));
    }
    if password.len() > MAX_LEN {
        return Err(ProvisioningError::Invalid(format!(
            "`password` is longer than {MAX_LEN} bytes"
        )));
    }
    Ok(())
}

/// The PHC string of `password` with a fresh 16-byte salt from the OS.
pub fn hash(password: &str) -> Result<String, ProvisioningError> {
    let mut salt = [0u8; 16];
    getrandom::fill(&mut salt).map_err(|e| ProvisioningError::Random(e.to_string()))?;
    let salt = SaltString::encode_b64(&salt).map_err(|e| ProvisioningError::Hash(e.to_string()))?;
    Argon2::default()
        .hash_password(password.as_bytes(), &salt)
        .map(|h| h.to_string())
        .map_err(|e| ProvisioningError::Hash(e.to_string()))
}

/// Whether `password` matches the stored PHC string. A malformed stored
/// string matches nothing.
pub fn verify(password: &str, stored: &str) -> bool {
    if password.len() > MAX_LEN {
        return false;
    }
    PasswordHash::new(stored).is_ok_and(|parsed| {
        Argon2::default()
            .verify_password(password.as_bytes(), &parsed)
            .is_ok()
    })
}

/// A hash of nothing anyone knows, verified against when the user does not
/// exist, so that an unknown id costs as long as a wrong password.
static DECOY: LazyLock<String> =
    LazyLock::new(|| hash("decoy password, never valid").unwrap_or_default());

/// Spends the time of one verification, for an unknown user.
pub fn waste_a_verification(password: &str) {
    let _ = verify(password, &DECOY);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_right_password_verifies_and_nothing_else_does() {
        let stored = hash("correct horse").unwrap();
        assert!(
            stored.starts_with("$argon2id$v=19$m=19456,t=2,p=1$"),
            "{stored}"
        );
        assert!(verify("correct horse", &stored));
        assert!(!verify("correct horsf", &stored));
        assert!(!verify("", &stored));
        assert!(!verify("correct horse", "not a phc string"));
        // Two hashes of one password differ (salted).
        assert_ne!(stored, hash("correct horse").unwrap());
    }

    #[test]
    fn short_and_huge_passwords_are_refused_with_why() {
        let e = check_policy("short").unwrap_err().to_string();
        assert!(e.contains("at least 8"), "{e}");
        assert!(check_policy(&"x".repeat(MAX_LEN + 1)).is_err());
        assert!(check_policy("long enough").is_ok());
    }
}
