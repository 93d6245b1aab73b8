//! Feedback from the upstream (RFC 6750 §3.1): it answered 401 `invalid_token` to a token our
//! cache still held (revoked, or the server's clock disagrees). Evict it, exchange a fresh one,
//! and send a bodyless request once more; the second answer stands, so a token server and an
//! upstream that disagree cannot loop.

use http::header::WWW_AUTHENTICATE;
use http::{Response, StatusCode};

use crate::authn::InboundToken;
use crate::config::Route;
use crate::error::Error;
use crate::outbound::{self, Replay, UpstreamClient, UpstreamResponseBody};
use crate::shed::InFlight;
use crate::tokens::Caller;
use crate::tokens::DomainTokens;
use crate::Body;

/// The response the caller gets: the upstream's, or the retry's after a refusal.
pub(crate) async fn after(
    (route, tokens, client): (&Route, &std::sync::Arc<DomainTokens>, &UpstreamClient),
    replay: Option<Replay>,
    response: Response<UpstreamResponseBody>,
    timeout: std::time::Duration,
    caller: &Caller<'_>,
) -> Result<Response<Body>, Error> {
    let Some(replay) = replay.filter(|_| refuses_token(&response)) else {
        return Ok(response.map(streamed));
    };
    // Boxed: the retry (an exchange and a second send) is rare, and every request's future would
    // otherwise be sized for it.
    Box::pin(retry(
        (route, tokens, client),
        replay,
        response,
        timeout,
        caller,
    ))
    .await
}

async fn retry(
    (route, tokens, client): (&Route, &std::sync::Arc<DomainTokens>, &UpstreamClient),
    replay: Replay,
    response: Response<UpstreamResponseBody>,
    timeout: std::time::Duration,
    caller: &Caller<'_>,
) -> Result<Response<Body>, Error> {
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
    let retry = replay.with(fresh.authorization.clone());
    let response = outbound::send(client, retry, timeout).await?;
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
