//! Password hashes for chat accounts (SASL PLAIN) and operators (OPER): argon2 in PHC form
//! (`$argon2id$v=19$m=...,t=...,p=...$salt$hash`) or bcrypt (`$2b$cost$...`). Checked once when
//! the configuration loads, so a typo stops the server there instead of failing every login.
//!
//! Verifying is deliberately slow (argon2's defaults take tens of milliseconds): the chat engine
//! runs [`verify`] outside its state lock (see `Effects::verify`).

use argon2::password_hash::{PasswordHasher, PasswordVerifier};
use argon2::{Argon2, PasswordHash};

/// Whether `secret` is meant as a hash: every accepted format starts with `$`. An operator
/// password that does not is compared as plain text.
pub fn is_hash(secret: &str) -> bool {
    secret.starts_with('$')
}

/// `Ok` if `hash` is an argon2 PHC string or a bcrypt hash that [`verify`] can check; otherwise
/// why not (without echoing the hash: it might be a password typed in the wrong place).
pub fn check(hash: &str) -> Result<(), String> {
    if is_bcrypt(hash) {
        let parts: bcrypt::HashParts = hash.parse().map_err(|e| format!("malformed bcrypt hash: {e}"))?;
        // The parser takes any two digits; verification only accepts bcrypt's cost range.
        if !(4..=31).contains(&parts.get_cost()) {
            return Err(format!("malformed bcrypt hash: cost {} is not within 4..=31", parts.get_cost()));
        }
        return Ok(());
    }
    if !hash.starts_with("$argon2") {
        return Err("not an argon2 or bcrypt hash (plain-text passwords are not accepted here; \
                    make a hash with `echoport hash-password`)"
            .to_owned());
    }
    let parsed = PasswordHash::new(hash).map_err(|e| format!("malformed argon2 hash: {e}"))?;
    argon2::Algorithm::try_from(parsed.algorithm.as_str()).map_err(|e| format!("malformed argon2 hash: {e}"))?;
    argon2::Params::try_from(&parsed).map_err(|e| format!("malformed argon2 hash: {e}"))?;
    if parsed.salt.is_none() || parsed.hash.is_none() {
        return Err("malformed argon2 hash: no salt or no hash part".to_owned());
    }
    Ok(())
}

fn is_bcrypt(hash: &str) -> bool {
    ["$2a$", "$2b$", "$2x$", "$2y$"].iter().any(|p| hash.starts_with(p))
}

/// Whether `password` matches `hash`, with the algorithm and costs the hash itself names. A hash
/// that [`check`] refuses matches nothing.
pub fn verify(hash: &str, password: &[u8]) -> bool {
    if is_bcrypt(hash) {
        return bcrypt::verify(password, hash).unwrap_or(false);
    }
    PasswordHash::new(hash).is_ok_and(|parsed| Argon2::default().verify_password(password, &parsed).is_ok())
}

/// An argon2id PHC string for `password` with the crate's recommended costs and a random salt.
pub fn hash(password: &[u8]) -> Result<String, String> {
    Argon2::default().hash_password(password).map(|h| h.to_string()).map_err(|e| format!("cannot hash: {e}"))
}

/// An argon2id hash at the lowest costs, so tests stay fast ([`verify`] reads the costs from it).
#[cfg(test)]
pub(crate) fn cheap_argon2(password: &str) -> String {
    use argon2::{Algorithm, Params, Version};
    let params = Params::new(8, 1, 1, None).expect("valid argon2 costs");
    let argon2 = Argon2::new(Algorithm::Argon2id, Version::V0x13, params);
    argon2.hash_password(password.as_bytes()).expect("argon2 hashes").to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn argon2_and_bcrypt_hashes_verify() {
        let h = cheap_argon2("sesame");
        assert_eq!(check(&h), Ok(()));
        assert!(verify(&h, b"sesame"));
        assert!(!verify(&h, b"millet"));
        let b = bcrypt::hash("sesame", 4).unwrap();
        assert!(b.starts_with("$2b$04$"), "{b}");
        assert_eq!(check(&b), Ok(()));
        assert!(verify(&b, b"sesame"));
        assert!(!verify(&b, b"sesame!"));
    }

    #[test]
    fn made_hashes_are_argon2id_and_verify() {
        let h = hash(b"pw").unwrap();
        assert!(h.starts_with("$argon2id$v=19$"), "{h}");
        assert_eq!(check(&h), Ok(()));
        assert!(verify(&h, b"pw"));
    }

    #[test]
    fn malformed_hashes_are_refused_with_a_reason() {
        assert!(check("sesame").unwrap_err().starts_with("not an argon2 or bcrypt hash"));
        assert!(check("$argon2id$v=19$m=8,t=1,p=1$").unwrap_err().starts_with("malformed argon2 hash"));
        assert!(
            check("$argon2xx$v=19$m=8,t=1,p=1$c2FsdHNhbHQ$aGFzaGhhc2g").unwrap_err().starts_with("malformed argon2")
        );
        let good = cheap_argon2("x");
        assert!(check(&good.replace("m=8", "m=zz")).unwrap_err().starts_with("malformed argon2 hash"));
        assert!(check("$2b$12$short").unwrap_err().starts_with("malformed bcrypt hash"));
        let b = bcrypt::hash("x", 4).unwrap();
        assert!(check(&b.replacen("$04$", "$99$", 1)).unwrap_err().contains("cost 99"));
        assert!(!verify("$2b$12$short", b"x"));
        assert!(!verify("$argon2id$nonsense", b"x"));
    }
}
