//! Secrets the host hands out (API tokens, link keys): what is stored of
//! them (a SHA-256 digest, never the secret) and how a presented one is
//! compared (in constant time, so timing tells nothing of a stored digest).

use sha2::{Digest as _, Sha256};

/// The SHA-256 of `secret`, in hex: what the database keeps.
pub fn digest(secret: &str) -> String {
    hex::encode(Sha256::digest(secret.as_bytes()))
}

/// Constant-time equality of two digests. Unequal lengths say only that,
/// and digests all have one length.
pub fn same(a: &str, b: &str) -> bool {
    a.len() == b.len()
        && a.bytes()
            .zip(b.bytes())
            .fold(0u8, |acc, (x, y)| acc | (x ^ y))
            == 0
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
    fn a_digest_is_sha256_in_hex() {
        assert_eq!(
            digest("abc"),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
    }
}
