//! Entry points for the fuzz targets in `fuzz/` and the corpus replay in `tests/fuzz_corpus.rs`.
//! Each feeds untrusted bytes to one parser and must return, never panic.

use http::{HeaderMap, HeaderValue, Uri};

/// The Authorization header as a caller sends it.
pub fn bearer(input: &[u8]) {
    let Ok(value) = HeaderValue::from_bytes(input) else {
        return;
    };
    let mut headers = HeaderMap::new();
    headers.insert(http::header::AUTHORIZATION, value);
    let _ = crate::authn::bearer(&headers, &Uri::from_static("/"));
}

/// A token endpoint's answer, for every grant profile, with a 200 and with an error status.
pub fn token_response(input: &[u8]) {
    crate::exchange::fuzz_response(input);
}

/// A JWT as the gateway and the authority pre-parse it before any signature check.
pub fn jwt_peek(input: &[u8]) {
    let Ok(text) = std::str::from_utf8(input) else {
        return;
    };
    if let Ok((header, claims)) = chaingate_oauth::jwt::peek(text) {
        let _ = chaingate_oauth::jwt::typ_is(&header, "at+jwt");
        let _ = chaingate_oauth::jwt::check_times(&claims, 30);
        let _ = chaingate_oauth::jwt::audiences(&claims);
        let _ = chaingate_oauth::jwt::scope_claim(&claims);
    }
}

/// A gateway config file.
pub fn config(input: &[u8]) {
    let Ok(text) = std::str::from_utf8(input) else {
        return;
    };
    let _ = crate::config::Config::from_toml(text);
}

/// A `Link` header from a token response (draft-sakimura-oauth-meta).
pub fn link(input: &[u8]) {
    let Ok(text) = std::str::from_utf8(input) else {
        return;
    };
    let links = chaingate_oauth::link::parse(text);
    let _ = chaingate_oauth::link::find(&links, "ruri");
}
