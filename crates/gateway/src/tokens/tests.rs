use std::time::{SystemTime, UNIX_EPOCH};

use base64::Engine as _;

use super::token::jwt_remaining_lifetime;
use super::*;

fn jwt_with(payload: &str) -> String {
    let b64 = |s: &str| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(s);
    format!("{}.{}.sig", b64(r#"{"alg":"ES256"}"#), b64(payload))
}

#[test]
fn keys_differ_by_domain_scope_and_token() {
    let t = InboundToken::for_test("tok");
    let base = token_key("billing", Some("a"), t);
    assert_eq!(base, token_key("billing", Some("a"), t));
    assert_ne!(base, token_key("payroll", Some("a"), t));
    assert_ne!(base, token_key("billing", Some("b"), t));
    assert_ne!(base, token_key("billing", None, t));
    assert_ne!(
        token_key("billing", Some(""), t),
        token_key("billing", None, t)
    );
    assert_ne!(
        base,
        token_key("billing", Some("a"), InboundToken::for_test("tok2"))
    );
    // Length prefixes keep shifted boundaries apart.
    assert_ne!(token_key("ab", Some("c"), t), token_key("a", Some("bc"), t));
}

#[test]
fn jwt_exp_caps_lifetime() {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let left = jwt_remaining_lifetime(&jwt_with(&format!(r#"{{"exp":{}}}"#, now + 100))).unwrap();
    assert!(left <= Duration::from_secs(100) && left >= Duration::from_secs(98));
    assert_eq!(
        jwt_remaining_lifetime(&jwt_with(r#"{"exp":5}"#)),
        Some(Duration::ZERO)
    );
    assert_eq!(
        jwt_remaining_lifetime(&jwt_with(r#"{"exp":"99999999999"}"#)),
        None
    );
    assert_eq!(jwt_remaining_lifetime("opaque-token"), None);
}
