//! An upstream's step-up challenge, relayed in chaingate's terms. The upstream speaks of the
//! token chaingate sent (issued by the route's domain), while the caller's client can only act
//! at its own authorization server, the one the route's RFC 9728 metadata names. So a
//! `insufficient_user_authentication` (RFC 9470 §3), `insufficient_claims` or
//! `insufficient_scope` (RFC 6750 §3.1) keeps its error and step-up parameters (`acr_values`,
//! `max_age`, `claims`) and gets the route's `resource_metadata` and `scope` in place of the
//! upstream's own, which would send the client to a server it has no business with.

use http::header::{HeaderValue, WWW_AUTHENTICATE};
use http::{Response, StatusCode};

use crate::error::{ChallengeParams, StepUp};

/// `response`, its step-up challenge rewritten when the route publishes metadata; anything
/// else passes through untouched.
pub(super) fn relay<B>(mut response: Response<B>, challenge: &ChallengeParams) -> Response<B> {
    // Without metadata the route has no `resource_metadata` of its own to point at, and the
    // upstream's challenge goes to the caller as it always has.
    let status = response.status();
    if challenge.on_401.is_empty()
        || (status != StatusCode::UNAUTHORIZED && status != StatusCode::FORBIDDEN)
    {
        return response;
    }
    let Some(step_up) = response
        .headers()
        .get_all(WWW_AUTHENTICATE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .find_map(step_up)
    else {
        return response;
    };
    let route = match status {
        StatusCode::FORBIDDEN => &challenge.on_403,
        _ => &challenge.on_401,
    };
    let value = format!(
        "Bearer realm=\"chaingate\", error=\"{}\"{}{route}",
        step_up.code,
        step_up.params()
    );
    if let Ok(value) = HeaderValue::from_str(&value) {
        let headers = response.headers_mut();
        headers.remove(WWW_AUTHENTICATE);
        headers.insert(WWW_AUTHENTICATE, value);
    }
    response
}

/// The step-up in one challenge (`Bearer` or `DPoP`, RFC 9110 §11.6.1), if it is one.
fn step_up(field: &str) -> Option<StepUp> {
    let params = auth_params(field)?;
    let get = |name: &str| {
        params
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    };
    let code = match get("error")? {
        "insufficient_user_authentication" => "insufficient_user_authentication",
        "insufficient_claims" => "insufficient_claims",
        "insufficient_scope" => "insufficient_scope",
        _ => return None,
    };
    Some(StepUp::new(
        code,
        get("acr_values"),
        get("max_age").and_then(|a| a.parse().ok()),
        get("claims"),
    ))
}

/// The auth-params of the first challenge in a field: `scheme name=value, name="quoted"`.
/// `None` for another scheme or anything malformed: such a challenge passes through unread.
fn auth_params(field: &str) -> Option<Vec<(String, String)>> {
    let (scheme, mut rest) = field.trim().split_once(' ')?;
    if !scheme.eq_ignore_ascii_case("bearer") && !scheme.eq_ignore_ascii_case("dpop") {
        return None;
    }
    let mut params = Vec::new();
    loop {
        rest = rest.trim_start_matches([' ', ',']);
        if rest.is_empty() {
            return Some(params);
        }
        let (name, after) = rest.split_once('=')?;
        let name = name.trim();
        // `, Basic realm=…`: the next challenge in the same field begins; this one is whole.
        if name.contains(' ') {
            return Some(params);
        }
        if name.is_empty() || name.contains([',', '"']) {
            return None;
        }
        let after = after.trim_start();
        let (value, next) = match after.strip_prefix('"') {
            Some(quoted) => quoted_string(quoted)?,
            None => {
                let end = after.find(',').unwrap_or(after.len());
                (after[..end].trim().to_string(), &after[end..])
            }
        };
        params.push((name.to_string(), value));
        rest = next;
    }
}

/// A quoted-string's value (RFC 9110 §5.6.4) and the text after its closing quote.
fn quoted_string(s: &str) -> Option<(String, &str)> {
    let mut value = String::new();
    let mut chars = s.char_indices();
    while let Some((i, c)) = chars.next() {
        match c {
            '"' => return Some((value, &s[i + 1..])),
            '\\' => value.push(chars.next()?.1),
            c => value.push(c),
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn params() -> ChallengeParams {
        ChallengeParams {
            on_401: Box::from(", resource_metadata=\"https://gw.example/.well-known/oauth-protected-resource\", scope=\"files.read\""),
            on_403: Box::from(", resource_metadata=\"https://gw.example/.well-known/oauth-protected-resource\", scope=\"files.read\""),
        }
    }

    fn answered(status: u16, challenge: &str, params: &ChallengeParams) -> Option<String> {
        let response = Response::builder()
            .status(status)
            .header(WWW_AUTHENTICATE, challenge)
            .body(())
            .unwrap();
        relay(response, params)
            .headers()
            .get(WWW_AUTHENTICATE)
            .map(|v| v.to_str().unwrap().to_string())
    }

    #[test]
    fn a_step_up_keeps_its_parameters_and_points_at_our_metadata() {
        let upstream = r#"Bearer realm="billing", error="insufficient_user_authentication", error_description="A different authentication level is required", acr_values="phr phrh", max_age=300, resource_metadata="https://internal.billing/.well-known/oauth-protected-resource""#;
        let relayed = answered(401, upstream, &params()).unwrap();
        assert_eq!(
            relayed,
            "Bearer realm=\"chaingate\", error=\"insufficient_user_authentication\", acr_values=\"phr phrh\", max_age=300, resource_metadata=\"https://gw.example/.well-known/oauth-protected-resource\", scope=\"files.read\""
        );
        assert!(!relayed.contains("internal.billing"));
    }

    #[test]
    fn without_metadata_or_for_other_errors_the_challenge_passes_through() {
        let upstream = r#"Bearer error="insufficient_user_authentication", max_age=5"#;
        let none = ChallengeParams::default();
        assert_eq!(answered(401, upstream, &none).as_deref(), Some(upstream));
        let other = r#"Bearer error="invalid_token""#;
        assert_eq!(answered(401, other, &params()).as_deref(), Some(other));
        assert_eq!(
            answered(500, upstream, &params()).as_deref(),
            Some(upstream)
        );
        assert_eq!(
            answered(401, "Basic realm=\"x\"", &params()).as_deref(),
            Some("Basic realm=\"x\"")
        );
    }

    #[test]
    fn unsafe_or_malformed_values_are_left_out() {
        // An escaped quote is a legal quoted-string but must not reach our header unescaped.
        let upstream = r#"Bearer error="insufficient_claims", claims="a\"b", max_age=x"#;
        let relayed = answered(401, upstream, &params()).unwrap();
        assert!(
            relayed.starts_with(
                "Bearer realm=\"chaingate\", error=\"insufficient_claims\", resource_metadata="
            ),
            "{relayed}"
        );
        let unterminated = r#"Bearer error="insufficient_claims"#;
        assert_eq!(
            answered(401, unterminated, &params()).as_deref(),
            Some(unterminated)
        );
    }

    #[test]
    fn forbidden_insufficient_scope_gets_the_route_scope() {
        let upstream = r#"Bearer error="insufficient_scope", scope="billing.internal""#;
        let relayed = answered(403, upstream, &params()).unwrap();
        assert!(relayed.ends_with("scope=\"files.read\""), "{relayed}");
        assert!(!relayed.contains("billing.internal"), "{relayed}");
    }
}
