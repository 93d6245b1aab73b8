use super::*;

fn jwt_with(payload: &str) -> String {
    let b64 = |s: &str| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(s);
    format!("{}.{}.sig", b64(r#"{"alg":"ES256"}"#), b64(payload))
}

#[test]
fn keys_differ_by_domain_scope_and_token() {
    let t = InboundToken::for_test("tok");
    let base = CacheKey::new("billing", Some("a"), t);
    assert_eq!(base, CacheKey::new("billing", Some("a"), t));
    assert_ne!(base, CacheKey::new("payroll", Some("a"), t));
    assert_ne!(base, CacheKey::new("billing", Some("b"), t));
    assert_ne!(base, CacheKey::new("billing", None, t));
    assert_ne!(
        CacheKey::new("billing", Some(""), t),
        CacheKey::new("billing", None, t)
    );
    assert_ne!(
        base,
        CacheKey::new("billing", Some("a"), InboundToken::for_test("tok2"))
    );
    // Length prefixes keep shifted boundaries apart.
    assert_ne!(
        CacheKey::new("ab", Some("c"), t),
        CacheKey::new("a", Some("bc"), t)
    );
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
