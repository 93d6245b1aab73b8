//! Feedback from the upstream (RFC 6750 §3.1): it answered 401 `invalid_token` to a token our
//! cache still held (revoked, or the server's clock disagrees). Evict it, exchange a fresh one,
//! and send a bodyless request once more; the second answer stands, so a token server and an
//! upstream that disagree cannot loop. Likewise a DPoP upstream that answers 401
//! `use_dpop_nonce` (RFC 9449 §9) gets the same token once more, with a proof carrying its nonce.
//! A step-up the upstream asks for is relayed to the caller in chaingate's own terms
//! ([`step_up`]).

use http::header::WWW_AUTHENTICATE;
use http::{Response, StatusCode};

use crate::authn::InboundToken;
use crate::config::Route;
use crate::error::{ChallengeParams, Error};
use crate::outbound::{self, Credential, Replay, Target, UpstreamResponseBody};
use crate::shed::InFlight;
use crate::tokens::Caller;
use crate::tokens::DomainTokens;
use crate::Body;

mod step_up;

/// The response the caller gets: the upstream's, or the retry's after a refusal; a step-up
/// challenge in it is rewritten for the caller when the route publishes metadata.
pub(crate) async fn after(
    (route, tokens, target): (&Route, &std::sync::Arc<DomainTokens>, Target<'_>),
    replay: Option<Replay>,
    response: Response<UpstreamResponseBody>,
    timeout: std::time::Duration,
    caller: &Caller<'_>,
    challenge: &ChallengeParams,
) -> Result<Response<Body>, Error> {
    let Some(replay) = replay.filter(|replay| {
        refuses_token(&response)
            || (replay.dpop_credential().is_some() && outbound::asks_for_nonce(&response))
    }) else {
        return Ok(step_up::relay(response, challenge).map(streamed));
    };
    // Boxed: the retry (an exchange and a second send) is rare, and every request's future would
    // otherwise be sized for it.
    Box::pin(retry(
        (route, tokens, target),
        replay,
        response,
        timeout,
        caller,
    ))
    .await
    .map(|r| step_up::relay(r, challenge))
}

async fn retry(
    (route, tokens, target): (&Route, &std::sync::Arc<DomainTokens>, Target<'_>),
    replay: Replay,
    response: Response<UpstreamResponseBody>,
    timeout: std::time::Duration,
    caller: &Caller<'_>,
) -> Result<Response<Body>, Error> {
    if outbound::asks_for_nonce(&response) {
        if let Some(same) = replay.dpop_credential() {
            // `forward` kept the nonce from this answer; the next proof carries it.
            tracing::debug!(route = %route.name, "upstream asked for a DPoP nonce");
            let retry = replay.with(same, target.nonce, target.upstream)?;
            let response = outbound::send(target.client, retry, timeout).await?;
            return Ok(response.map(streamed));
        }
    }
    let Some(at1) = replay
        .at1
        .to_str()
        .ok()
        .and_then(|v| v.split_once(' '))
        .map(|(_, t)| t.to_owned())
    else {
        return Ok(response.map(streamed));
    };
    // Accepted by authn when this request arrived.
    let at1 = InboundToken::already_accepted(&at1);
    let (fresh, _) = tokens.refused(route, at1, caller).await?;
    tracing::debug!(route = %route.name, "upstream refused the token; exchanged a fresh one");
    let credential = Credential {
        authorization: fresh.authorization.clone(),
        dpop: fresh.dpop.clone(),
    };
    let retry = replay.with(credential, target.nonce, target.upstream)?;
    let response = outbound::send(target.client, retry, timeout).await?;
    Ok(response.map(streamed))
}

fn streamed(body: UpstreamResponseBody) -> Body {
    Body::Left(InFlight::new(body))
}

/// A 401 whose challenge says `error="invalid_token"` (RFC 6750 §3.1).
fn refuses_token(response: &Response<UpstreamResponseBody>) -> bool {
    response.status() == StatusCode::UNAUTHORIZED
        && response
            .headers()
            .get_all(WWW_AUTHENTICATE)
            .iter()
            .any(|v| v.to_str().is_ok_and(|v| v.contains("invalid_token")))
}
