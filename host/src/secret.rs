//! Secrets the host hands out (API tokens, link keys, account PINs): what
//! is stored of them (a SHA-256 digest, never the secret; salted for a PIN)
//! and how a presented one is compared (in constant time, so timing tells
//! nothing of a stored digest).

use sha2::{Digest as _, Sha256};

/// The SHA-256 of `secret`, in hex: what the database keeps.
pub fn digest(secret: &str) -> String {
    hex::encode(Sha256::digest(secret.as_bytes()))
}

/// The SHA-256 of `salt` followed by `secret`: what the database keeps of
/// a short secret that many accounts may share (a PIN), so that equal
/// secrets are not equal digests. See `crate::ledger` for why a PIN gets
/// no slower hash.
pub fn salted_digest(salt: &[u8], secret: &[u8]) -> [u8; 32] {
    let mut hasher = Sha256::new();
    hasher.update(salt);
    hasher.update(secret);
    hasher.finalize().into()
}

/// Constant-time equality of two digests. Unequal lengths say only that,
/// and digests all have one length.
pub fn same(a: &str, b: &str) -> bool {
    same_bytes(a.as_bytes(), b.as_bytes())
}

/// [`same`] for digests as bytes.
pub fn same_bytes(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn constant_time_equality_is_equality() {
        assert!(same("abc", "abc"));
        assert!(!same("abc", "abd"));
        assert!(!same("abc", "ab"));
        assert!(same("", ""));
    }

    #[test]
    fn a_salted_digest_is_sha256_of_salt_then_secret() {
        assert_eq!(
            hex::encode(salted_digest(b"ab", b"c")),
            digest("abc"),
            "salt first, then the secret"
        );
        assert_ne!(salted_digest(b"x", b"1234"), salted_digest(b"y", b"1234"));
        assert!(same_bytes(b"\x00\xff", b"\x00\xff"));
        assert!(!same_bytes(b"\x00\xff", b"\x00\xfe"));
        assert!(!same_bytes(b"\x00", b"\x00\x00"));
    }

    #[test]
    fn a_digest_is_sha256_in_hex() {
        assert_eq!(
            digest("abc"),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
    }
}
