//! JWT checks: signature against an allow-listed key set, then explicit claim rules per JWT kind.

use std::collections::BTreeSet;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use jsonwebtoken::{Algorithm, Validation};
use serde_json::Value;

use super::keys::KeySet;
use super::util::{now_secs, parse_scope};

/// Longest token or assertion accepted, in bytes.
pub const MAX_JWT_LEN: usize = 16 * 1024;

/// A signature-checked JWT: its protected header and claims.
#[derive(Debug)]
pub struct Verified {
    /// The JWT claims set (RFC 7519 §4) as JSON. Only the signature is checked so far; the
    /// caller still applies the claim rules ([`check_times`], [`audiences`], ...).
    pub claims: Value,
}

/// Decodes one base64url JSON segment without trusting it.
fn segment(part: &str) -> Result<Value, String> {
    let bytes = URL_SAFE_NO_PAD
        .decode(part.trim_end_matches('='))
        .map_err(|_| "token is not a JWT (bad base64url)".to_string())?;
    serde_json::from_slice(&bytes)
        .map_err(|_| "token is not a JWT (segment is not JSON)".to_string())
}

/// Splits a compact JWS and returns its unverified header and claims.
pub fn peek(token: &str) -> Result<(Value, Value), String> {
    if token.len() > MAX_JWT_LEN {
        return Err("token is too large".into());
    }
    let mut parts = token.split('.');
    let (Some(h), Some(c), Some(_), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err("token is not a JWT (expected three dot-separated parts)".into());
    };
    let header = segment(h)?;
    let claims = segment(c)?;
    if !header.is_object() || !claims.is_object() {
        return Err("token is not a JWT (header or claims not a JSON object)".into());
    }
    Ok((header, claims))
}

/// The header's `typ`, compared case-insensitively with an optional `application/` prefix.
pub fn typ_is(header: &Value, wanted: &str) -> bool {
    header.get("typ").and_then(Value::as_str).is_some_and(|t| {
        let t = t.to_ascii_lowercase();
        t == wanted || t.strip_prefix("application/") == Some(wanted)
    })
}

/// Verifies the signature of `token` with a key from `keys` matching the header's `kid`/`alg`.
/// `jku`, `x5u`, `jwk` and `x5c` headers are ignored: keys only come from configuration.
pub fn verify(token: &str, header: &Value, keys: &KeySet) -> Result<Verified, String> {
    let alg_name = header.get("alg").and_then(Value::as_str).unwrap_or("");
    let alg: Algorithm = match alg_name {
        "" => return Err("token header has no alg".into()),
        "none" => return Err("unsigned tokens (alg none) are not accepted".into()),
        name => name
            .parse()
            .map_err(|_| "token algorithm is not supported".to_string())?,
    };
    if matches!(alg, Algorithm::HS256 | Algorithm::HS384 | Algorithm::HS512) {
        return Err("symmetric token algorithms are not accepted".into());
    }
    if header.get("crit").is_some() {
        return Err("token header has unsupported critical extensions".into());
    }
    let kid = match header.get("kid") {
        None => None,
        Some(Value::String(k)) => Some(k.as_str()),
        Some(_) => return Err("token header kid is not a string".into()),
    };
    let mut validation = Validation::new(alg);
    validation.required_spec_claims.clear();
    validation.validate_exp = false;
    validation.validate_nbf = false;
    validation.validate_aud = false;
    let mut any_key = false;
    for key in keys.candidates(kid, alg) {
        any_key = true;
        if let Ok(data) = jsonwebtoken::decode::<Value>(token, &key.key, &validation) {
            return Ok(Verified {
                claims: data.claims,
            });
        }
    }
    if any_key {
        Err("token signature is invalid".into())
    } else {
        Err("no trusted key matches the token's kid and alg".into())
    }
}

/// A NumericDate claim: absent → `None`; present but not a non-negative number → error.
pub fn numeric(claims: &Value, name: &str) -> Result<Option<u64>, String> {
    match claims.get(name) {
        None => Ok(None),
        Some(v) => match (v.as_u64(), v.as_f64()) {
            (Some(n), _) => Ok(Some(n)),
            (None, Some(f)) if f.is_finite() && f >= 0.0 => Ok(Some(f as u64)),
            _ => Err(format!("{name} claim is not a NumericDate")),
        },
    }
}

/// Checks `exp` (required, in the future with no leeway), `nbf`/`iat` (not in the future
/// beyond `skew`). Returns `exp`.
pub fn check_times(claims: &Value, skew: u64) -> Result<u64, String> {
    let now = now_secs();
    let exp = numeric(claims, "exp")?.ok_or("token has no exp claim")?;
    if exp <= now {
        return Err("token is expired".into());
    }
    if numeric(claims, "nbf")?.is_some_and(|nbf| nbf > now + skew) {
        return Err("token is not valid yet (nbf)".into());
    }
    if numeric(claims, "iat")?.is_some_and(|iat| iat > now + skew) {
        return Err("token was issued in the future (iat)".into());
    }
    Ok(exp)
}

/// The `aud` claim as a list (a string or an array of strings); other shapes are an error.
pub fn audiences(claims: &Value) -> Result<Vec<String>, String> {
    match claims.get("aud") {
        None => Ok(Vec::new()),
        Some(Value::String(s)) => Ok(vec![s.clone()]),
        Some(Value::Array(items)) => items
            .iter()
            .map(|v| {
                v.as_str()
                    .map(str::to_string)
                    .ok_or_else(|| "aud claim is malformed".to_string())
            })
            .collect(),
        Some(_) => Err("aud claim is malformed".into()),
    }
}

/// A required non-empty string claim.
pub fn string_claim<'a>(claims: &'a Value, name: &str) -> Result<&'a str, String> {
    match claims.get(name) {
        Some(Value::String(s)) if !s.is_empty() => Ok(s),
        None => Err(format!("token has no {name} claim")),
        Some(_) => Err(format!("{name} claim is not a non-empty string")),
    }
}

/// The `scope` claim as a set (absent → empty).
pub fn scope_claim(claims: &Value) -> Result<BTreeSet<String>, String> {
    match claims.get("scope") {
        None => Ok(BTreeSet::new()),
        Some(Value::String(s)) => parse_scope(s).map_err(|_| "scope claim is malformed".into()),
        Some(_) => Err("scope claim is not a string".into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn string_dates_are_rejected() {
        let claims = json!({"exp": "99999999999"});
        assert!(numeric(&claims, "exp").is_err());
        assert_eq!(numeric(&json!({"exp": 5}), "exp").unwrap(), Some(5));
        assert!(numeric(&json!({"exp": -1}), "exp").is_err());
    }

    #[test]
    fn typ_matching_accepts_media_type_prefix() {
        assert!(typ_is(&json!({"typ": "at+jwt"}), "at+jwt"));
        assert!(typ_is(&json!({"typ": "application/AT+JWT"}), "at+jwt"));
        assert!(!typ_is(&json!({"typ": "JWT"}), "at+jwt"));
        assert!(!typ_is(&json!({}), "at+jwt"));
    }

    #[test]
    fn peek_refuses_non_jwts() {
        assert!(peek("abc").is_err());
        assert!(peek("a.b.c.d").is_err());
    }
}
