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
    let base = token_key("billing", Some("a"), None, t);
    assert_eq!(base, token_key("billing", Some("a"), None, t));
    assert_ne!(base, token_key("payroll", Some("a"), None, t));
    assert_ne!(base, token_key("billing", Some("b"), None, t));
    assert_ne!(base, token_key("billing", None, None, t));
    assert_ne!(
        token_key("billing", Some(""), None, t),
        token_key("billing", None, None, t)
    );
    assert_ne!(
        base,
        token_key("billing", Some("a"), None, InboundToken::for_test("tok2"))
    );
    // Length prefixes keep shifted boundaries apart.
    assert_ne!(
        token_key("ab", Some("c"), None, t),
        token_key("a", Some("bc"), None, t)
    );
}

#[test]
fn keys_differ_by_route_targets() {
    let t = InboundToken::for_test("tok");
    let targets = |digest: u8| Targets {
        audience: Vec::new(),
        resource: Vec::new(),
        authorization_details: None,
        digest: [digest; 32],
    };
    let plain = token_key("billing", Some("a"), None, t);
    let one = token_key("billing", Some("a"), Some(&targets(1)), t);
    assert_ne!(plain, one);
    assert_eq!(one, token_key("billing", Some("a"), Some(&targets(1)), t));
    assert_ne!(one, token_key("billing", Some("a"), Some(&targets(2)), t));
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
