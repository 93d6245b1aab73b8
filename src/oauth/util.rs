//! Small helpers shared by the authority: clock, random ids, durations, scope sets.

use std::collections::BTreeSet;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;

/// Seconds since the Unix epoch.
pub(crate) fn now_secs() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// A random, URL-safe identifier with 128 bits of entropy (for `jti`, `kid`).
pub(crate) fn random_id() -> String {
    let mut bytes = [0u8; 16];
    #[allow(clippy::expect_used)]
    aws_lc_rs::rand::fill(&mut bytes).expect("system random number generator failed");
    URL_SAFE_NO_PAD.encode(bytes)
}

/// Parses durations like `"500ms"`, `"30s"`, `"5m"`, `"1h"`, `"1d"` (one number, one unit).
pub(crate) fn parse_duration(text: &str) -> Result<Duration, String> {
    let text = text.trim();
    let split = text
        .find(|c: char| !c.is_ascii_digit())
        .ok_or_else(|| format!("`{text}` has no unit; use e.g. \"30s\", \"5m\", \"1h\""))?;
    let (number, unit) = text.split_at(split);
    let n: u64 = number
        .parse()
        .map_err(|_| format!("`{text}` does not start with a whole number"))?;
    let secs = match unit {
        "ms" => return Ok(Duration::from_millis(n)),
        "s" => Some(n),
        "m" => n.checked_mul(60),
        "h" => n.checked_mul(3600),
        "d" => n.checked_mul(86_400),
        _ => return Err(format!("`{text}`: unknown unit `{unit}` (ms, s, m, h, d)")),
    };
    secs.map(Duration::from_secs)
        .ok_or_else(|| format!("`{text}` is too large"))
}

/// Parses an RFC 6749 §3.3 scope string into a set; `Err` names the offending token.
pub(crate) fn parse_scope(text: &str) -> Result<BTreeSet<String>, String> {
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
pub(crate) fn join_scope(set: &BTreeSet<String>) -> String {
    set.iter().map(String::as_str).collect::<Vec<_>>().join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_parse_with_units() {
        assert_eq!(parse_duration("30s").unwrap(), Duration::from_secs(30));
        assert_eq!(parse_duration("5m").unwrap(), Duration::from_secs(300));
        assert_eq!(parse_duration("1h").unwrap(), Duration::from_secs(3600));
        assert_eq!(parse_duration("250ms").unwrap(), Duration::from_millis(250));
        assert!(parse_duration("5").is_err());
        assert!(parse_duration("5 minutes").is_err());
        assert!(parse_duration("m").is_err());
    }

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
