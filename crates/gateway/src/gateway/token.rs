//! The caller's token for a domain: from the cache, or exchanged once for all concurrent callers
//! (per route scope, or grown incrementally), renewed ahead of expiry, hop by hop.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use super::{DomainRuntime, Gateway};
use crate::authn::InboundToken;
use crate::cache::{CacheKey, CachedToken, Lookup, Scopes};
use crate::error::Error;
use crate::exchange::Issued;

/// A domain's token for the caller, and whether the cache had it.
type TokenResult = Result<(Arc<CachedToken>, Lookup), Error>;

/// Renews a cached token in the background; on any failure the one in use keeps serving.
fn refresh_ahead(
    domain: Arc<DomainRuntime>,
    key: CacheKey,
    at1: InboundToken<'_>,
    scope: Option<String>,
    held: Option<Scopes>,
) {
    let at1 = at1.expose().to_owned();
    tokio::spawn(async move {
        let scope = scope.filter(|s| !s.is_empty());
        let issued = domain
            .exchanger
            .exchange(&at1, scope.as_deref())
            .await
            .and_then(|issued| domain.metadata.check_issued(issued));
        if let Ok(issued) = issued {
            let token = InboundToken::already_accepted(&at1);
            let _ = domain
                .cache
                .refresh(key, token, issued, held.as_ref())
                .await;
        }
    });
}

impl Gateway {
    /// The token of domain `index` for the caller's token: cached, or exchanged once for all
    /// concurrent callers. With a subject domain, that domain's token (itself cached) is the
    /// subject of this exchange.
    pub(super) async fn token(
        &self,
        index: usize,
        scope: Option<&str>,
        at1: InboundToken<'_>,
    ) -> Result<(Arc<CachedToken>, Lookup), Error> {
        let domain = &self.domains[index];
        if domain.incremental() {
            return self.grown_token(index, scope, at1).await;
        }
        let key = domain.key(scope, at1);
        match domain.cache.get(&key).await {
            Some(hit) => {
                // Refresh ahead: a token in use is renewed before it expires, so a steady caller
                // never waits on the token server; if the renewal fails, this one keeps serving.
                if self.subject_of[index].is_none() && domain.cache.should_refresh(&hit) {
                    refresh_ahead(domain.clone(), key, at1, scope.map(str::to_owned), None);
                }
                Ok((hit, Lookup::Hit))
            }
            // Boxed: the exchange's future is large, and every hit would otherwise carry it.
            None => {
                let exchange = self.exchange(index, scope, at1);
                Box::pin(domain.cache.exchange(key, at1, exchange)).await
            }
        }
    }

    /// An incremental domain's token: the caller's one grant, if it serves `scope`, else that
    /// grant re-exchanged for the union of what it held and `scope`.
    async fn grown_token(
        &self,
        index: usize,
        scope: Option<&str>,
        at1: InboundToken<'_>,
    ) -> Result<(Arc<CachedToken>, Lookup), Error> {
        let domain = &self.domains[index];
        let key = domain.key(scope, at1);
        let needed = Scopes::parse(scope.unwrap_or(""));
        if let Some(hit) = domain.cache.get_covering(&key, &needed).await {
            if self.subject_of[index].is_none() && domain.cache.should_refresh(&hit) {
                // The renewal asks for the held union, so no route loses its scope.
                let held = hit.scope.clone().unwrap_or_default();
                refresh_ahead(domain.clone(), key, at1, Some(held.to_string()), Some(held));
            }
            return Ok((hit, Lookup::Hit));
        }
        let grow = domain.cache.grow(key, at1, &needed, |ask| async move {
            let ask = Some(ask).filter(|a| !a.is_empty());
            self.exchange(index, ask.as_deref(), at1).await
        });
        Box::pin(grow).await
    }

    /// One exchange at domain `index` (after its subject domain's, for a multi-hop domain),
    /// with the domain's response metadata checks.
    async fn exchange(
        &self,
        index: usize,
        scope: Option<&str>,
        at1: InboundToken<'_>,
    ) -> Result<Issued, Error> {
        let domain = &self.domains[index];
        let issued = match self.subject_of[index] {
            None => domain.exchanger.exchange(at1.expose(), scope).await?,
            Some(parent) => {
                let (subject, _) = self.parent_token(parent, at1).await?;
                domain.exchanger.exchange(subject.token(), scope).await?
            }
        };
        domain.metadata.check_issued(issued)
    }

    /// Boxed, because hops recurse (config validation bounds the depth).
    fn parent_token<'a>(
        &'a self,
        parent: usize,
        at1: InboundToken<'a>,
    ) -> Pin<Box<dyn Future<Output = TokenResult> + Send + 'a>> {
        let scope = self.domains[parent].exchanger.domain().scope.as_deref();
        Box::pin(self.token(parent, scope, at1))
    }
}
