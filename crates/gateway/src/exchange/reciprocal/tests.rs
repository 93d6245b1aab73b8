use super::*;
use base64::Engine as _;

fn jwt(claims: &str) -> String {
    let b64 = |s: &str| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(s);
    format!("{}.{}.sig", b64(r#"{"alg":"ES256"}"#), b64(claims))
}

#[test]
fn one_user_is_one_subject_whatever_token_they_hold() {
    let first = jwt(r#"{"sub":"alice","jti":"1"}"#);
    let second = jwt(r#"{"sub":"alice","jti":"2"}"#);
    assert_eq!(
        remember_key("b", &first, "a:read"),
        remember_key("b", &second, "a:read")
    );
    let bob = jwt(r#"{"sub":"bob"}"#);
    assert_ne!(
        remember_key("b", &first, "a:read"),
        remember_key("b", &bob, "a:read")
    );
    assert_ne!(
        remember_key("b", &first, "a:read"),
        remember_key("b", &first, "a:write")
    );
    assert_ne!(
        remember_key("b", &first, "a:read"),
        remember_key("c", &first, "a:read")
    );
}

#[test]
fn opaque_tokens_are_their_own_subject_and_never_a_sub() {
    // An opaque token whose text is "alice" must not collide with the user alice.
    assert_ne!(
        remember_key("b", "alice", "s"),
        remember_key("b", &jwt(r#"{"sub":"alice"}"#), "s")
    );
    assert_eq!(
        remember_key("b", "opaque-1", "s"),
        remember_key("b", "opaque-1", "s")
    );
}

#[test]
fn only_plausible_error_codes_reach_the_logs() {
    assert_eq!(
        oauth_error(br#"{"error":"consent_required"}"#).as_deref(),
        Some("consent_required")
    );
    assert_eq!(oauth_error(br#"{"error":"has space"}"#), None);
    assert_eq!(oauth_error(b"not json"), None);
}
