//! Inbound authentication: exactly one bearer credential, from the Authorization header only.
//!
//! RFC 6750 §2.1 (`b64token`) and §2 (one method per request): query and body tokens are not
//! accepted, and a request that tries to use them next to the header is refused. A route with
//! `[routes.validate]` then checks the token locally (RFC 9068 §4), so a bad token never reaches
//! the token server. A route with `dpop` also takes `Authorization: DPoP` with its proof
//! (RFC 9449 §7.1, [`dpop`]).

mod dpop;

use std::fmt;

use http::header::AUTHORIZATION;
use http::{HeaderMap, Uri};

use crate::error::Error;
use crate::validate::InboundValidator;

pub(crate) use dpop::{register as register_dpop_metrics, InboundProofs, ProofsTotal};

/// One route's authentication: the bearer token, bounded, and optionally validated locally.
#[derive(Debug)]
pub(crate) struct Authn {
    max_token_bytes: usize,
    validator: Option<InboundValidator>,
    dpop: Option<InboundProofs>,
}

impl Authn {
    pub(crate) fn new(
        max_token_bytes: usize,
        validator: Option<InboundValidator>,
        dpop: Option<InboundProofs>,
    ) -> Self {
        Self {
            max_token_bytes,
            validator,
            dpop,
        }
    }

    /// The caller's token, once it has passed every check this route makes; `tls`: whether
    /// the caller reached chaingate over TLS (the scheme of its DPoP proof's `htu`).
    pub(crate) async fn authenticate<'r, B>(
        &self,
        request: &'r http::Request<B>,
        tls: bool,
    ) -> Result<InboundToken<'r>, Error> {
        let Some(dpop) = &self.dpop else {
            return self.bearer_only(request).await;
        };
        let (scheme, token) = match credential(request.headers(), request.uri(), true) {
            Err(Error::MissingToken) => {
                return Err(Error::DpopMissingToken {
                    bearer_too: dpop.mode() == crate::config::InboundDpop::Allowed,
                })
            }
            other => other?,
        };
        let proven = scheme == Scheme::Dpop;
        if token.expose().len() > self.max_token_bytes {
            return Err(Error::InvalidRequest("bearer token too long"));
        }
        let mut token = token;
        if let Some(validator) = &self.validator {
            let aimed = Box::pin(validator.check(token.expose()))
                .await
                .map_err(|e| token.in_its_scheme(e))?;
            // A DPoP token's proof is for chaingate: the upstream could not accept it as sent.
            token.2 = aimed && scheme == Scheme::Bearer;
        }
        // The key a JWT AT1 is bound to (RFC 9449 §6.1). Read even where the route does not
        // validate the token here: whoever holds a stolen AT1 cannot edit its `cnf` without
        // breaking the signature the token server checks, so a proof by any other key is refused.
        let bound = chaingate_oauth::jwt::peek(token.expose())
            .ok()
            .and_then(|(_, claims)| chaingate_oauth::dpop::bound_jkt(&claims).map(str::to_owned));
        if proven {
            dpop.check(request, tls, token.expose(), bound.as_deref())
                .await?;
        } else {
            dpop.check_bearer(bound.as_deref())?;
        }
        Ok(token)
    }

    async fn bearer_only<'r, B>(
        &self,
        request: &'r http::Request<B>,
    ) -> Result<InboundToken<'r>, Error> {
        let mut token = bearer(request.headers(), request.uri())?;
        if token.expose().len() > self.max_token_bytes {
            return Err(Error::InvalidRequest("bearer token too long"));
        }
        if let Some(validator) = &self.validator {
            // Boxed: a route without local validation should not carry its (JWKS-fetching)
            // future in every request's state.
            token.2 = Box::pin(validator.check(token.expose())).await?;
        }
        Ok(token)
    }

    /// The local validator, for readiness (its issuer's keys must be known).
    pub(crate) fn validator(&self) -> Option<&InboundValidator> {
        self.validator.as_ref()
    }
}

/// The caller's token (AT1), borrowed from the request, whether it came under the DPoP scheme,
/// and whether local validation found it already for the route's target audience. Never printed.
#[derive(Clone, Copy)]
pub(crate) struct InboundToken<'a>(&'a str, bool, bool);

impl<'a> InboundToken<'a> {
    /// The token's value, for the cache key digest and the exchange request only.
    pub(crate) fn expose(&self) -> &'a str {
        self.0
    }

    /// A bearer token that validated locally with an `aud` naming the route's target audience
    /// (`exchange = "if_needed"`): the upstream can take it as it is.
    pub(crate) fn aimed_at_target(&self) -> bool {
        self.2
    }

    /// `error` as this caller must hear it: a token refused later (by the token server's
    /// `invalid_grant`, say) is challenged under the scheme it came with, so a DPoP client is
    /// told `DPoP`, not `Bearer` (RFC 9449 §7.1).
    pub(crate) fn in_its_scheme(&self, error: Error) -> Error {
        match error {
            Error::InvalidToken if self.1 => Error::DpopInvalidToken,
            other => other,
        }
    }
}

impl fmt::Debug for InboundToken<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "InboundToken([redacted; {} bytes])", self.0.len())
    }
}

/// Extracts the bearer token from a request's headers.
pub(crate) fn bearer<'a>(headers: &'a HeaderMap, uri: &Uri) -> Result<InboundToken<'a>, Error> {
    // On a route without `dpop` the DPoP scheme is not ours: as if no credential came.
    credential(headers, uri, false).map(|(_, token)| token)
}

/// The Authorization scheme a token came under.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Scheme {
    Bearer,
    Dpop,
}

/// The one token of the Authorization header, under Bearer or DPoP (RFC 9449 §7.1: the same
/// `token68` syntax as Bearer).
fn credential<'a>(
    headers: &'a HeaderMap,
    uri: &Uri,
    accept_dpop: bool,
) -> Result<(Scheme, InboundToken<'a>), Error> {
    let mut values = headers.get_all(AUTHORIZATION).iter();
    let Some(value) = values.next() else {
        return Err(Error::MissingToken);
    };
    if values.next().is_some() {
        return Err(Error::InvalidRequest("more than one Authorization header"));
    }
    if uri.query().is_some_and(has_access_token_param) {
        return Err(Error::InvalidRequest("token in both header and query"));
    }
    let value = value.as_bytes();
    // The scheme is case-insensitive (RFC 9110 §11.1); anything but Bearer is not ours to use.
    let Some((scheme, rest)) = split_once(value, b' ') else {
        return if value.eq_ignore_ascii_case(b"bearer") {
            Err(Error::InvalidRequest("empty bearer token"))
        } else {
            Err(Error::MissingToken)
        };
    };
    let scheme = if scheme.eq_ignore_ascii_case(b"bearer") {
        Scheme::Bearer
    } else if accept_dpop && scheme.eq_ignore_ascii_case(b"dpop") {
        Scheme::Dpop
    } else {
        return Err(Error::MissingToken);
    };
    if rest.is_empty() || !is_b64token(rest) {
        return Err(Error::InvalidRequest("malformed bearer token"));
    }
    // is_b64token admits ASCII only, so this cannot fail.
    std::str::from_utf8(rest)
        .map(|t| (scheme, InboundToken(t, scheme == Scheme::Dpop, false)))
        .map_err(|_| Error::InvalidRequest("malformed bearer token"))
}

fn split_once(value: &[u8], sep: u8) -> Option<(&[u8], &[u8])> {
    let at = value.iter().position(|&b| b == sep)?;
    Some((&value[..at], &value[at + 1..]))
}

/// `b64token = 1*( ALPHA / DIGIT / "-" / "." / "_" / "~" / "+" / "/" ) *"="`
fn is_b64token(token: &[u8]) -> bool {
    let body_len = token.len() - token.iter().rev().take_while(|&&b| b == b'=').count();
    // One table load per byte and no early exit: the compiler vectorises the fold, and a
    // token's length is the only thing its timing shows.
    body_len > 0
        && token[..body_len]
            .iter()
            .fold(true, |ok, &b| ok & B64TOKEN[usize::from(b)])
}

/// The bytes of `b64token`'s body.
static B64TOKEN: [bool; 256] = {
    let mut table = [false; 256];
    let mut b = 0;
    while b < 256 {
        let c = b as u8;
        table[b] =
            c.is_ascii_alphanumeric() || matches!(c, b'-' | b'.' | b'_' | b'~' | b'+' | b'/');
        b += 1;
    }
    table
};

fn has_access_token_param(query: &str) -> bool {
    query
        .split('&')
        .any(|pair| pair.split('=').next() == Some("access_token"))
}

impl<'a> InboundToken<'a> {
    /// A token that [`bearer`] accepted earlier, held on to for a background renewal.
    pub(crate) fn already_accepted(token: &'a str) -> Self {
        Self(token, false, false)
    }

    #[cfg(test)]
    pub(crate) fn for_test(token: &'a str) -> Self {
        Self(token, false, false)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::HeaderValue;

    fn extract(values: &[&str], uri: &str) -> Result<String, Error> {
        let mut headers = HeaderMap::new();
        for v in values {
            headers.append(AUTHORIZATION, HeaderValue::from_str(v).unwrap());
        }
        bearer(&headers, &uri.parse().unwrap()).map(|t| t.expose().to_string())
    }

    #[test]
    fn bearer_token_is_extracted_whatever_the_scheme_case() {
        assert_eq!(
            extract(&["Bearer abc.def-_~+/=="], "/").unwrap(),
            "abc.def-_~+/=="
        );
        assert_eq!(extract(&["bearer abc"], "/").unwrap(), "abc");
        assert_eq!(extract(&["BEARER abc"], "/").unwrap(), "abc");
    }

    #[test]
    fn no_or_foreign_credentials_are_missing_token() {
        assert_eq!(extract(&[], "/"), Err(Error::MissingToken));
        assert_eq!(
            extract(&["Basic dXNlcjpwYXNz"], "/"),
            Err(Error::MissingToken)
        );
        // A query token alone is not a credential we accept.
        assert_eq!(extract(&[], "/?access_token=abc"), Err(Error::MissingToken));
    }

    #[test]
    fn malformed_or_several_credentials_are_invalid_request() {
        for bad in [
            "Bearer",
            "Bearer ",
            "Bearer a b",
            "Bearer a,b",
            "Bearer ===",
            "Bearer  abc",
        ] {
            assert!(
                matches!(extract(&[bad], "/"), Err(Error::InvalidRequest(_))),
                "{bad}"
            );
        }
        assert!(matches!(
            extract(&["Bearer a", "Bearer b"], "/"),
            Err(Error::InvalidRequest(_))
        ));
        assert!(matches!(
            extract(&["Bearer a"], "/x?y=1&access_token=b"),
            Err(Error::InvalidRequest(_))
        ));
    }

    #[test]
    fn debug_does_not_show_the_token() {
        let t = InboundToken("very-secret-token", false, false);
        assert!(!format!("{t:?}").contains("very-secret"));
    }
}
