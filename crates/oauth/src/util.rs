//! Small protocol helpers: the clock in JWT seconds, random ids, RFC 6749 §3.3 scope sets.

use std::collections::BTreeSet;
use std::time::{SystemTime, UNIX_EPOCH};

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;

/// Seconds since the Unix epoch.
pub fn now_secs() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// A random, URL-safe identifier with 128 bits of entropy (for `jti`, `kid`).
pub fn random_id() -> String {
    let mut bytes = [0u8; 16];
    #[allow(clippy::expect_used)]
    aws_lc_rs::rand::fill(&mut bytes).expect("system random number generator failed");
    URL_SAFE_NO_PAD.encode(bytes)
}

/// Parses an RFC 6749 §3.3 scope string into a set; `Err` names the offending token.
pub fn parse_scope(text: &str) -> Result<BTreeSet<String>, String> {
    let mut set = BTreeSet::new();
    for token in text.split(' ') {
        if token.is_empty() {
            continue;
        }
        let valid = token
            .bytes()
            .all(|b| b == 0x21 || (0x23..=0x5b).contains(&b) || (0x5d..=0x7e).contains(&b));
        if !valid {
            return Err("scope contains a character not allowed by RFC 6749 section 3.3".into());
        }
        set.insert(token.to_string());
    }
    Ok(set)
}

/// Joins a scope set back into its space-delimited form.
pub fn join_scope(set: &BTreeSet<String>) -> String {
    set.iter().map(String::as_str).collect::<Vec<_>>().join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scope_rejects_quotes_and_backslashes() {
        assert!(parse_scope("a \"b").is_err());
        assert!(parse_scope("a\\b").is_err());
        assert_eq!(parse_scope(" b  a ").unwrap().len(), 2);
    }

    #[test]
    fn random_ids_differ() {
        assert_ne!(random_id(), random_id());
    }
}
