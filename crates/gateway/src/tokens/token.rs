//! A downstream token (AT2) as the cache holds it, and how long it may live.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use base64::Engine as _;
use http::HeaderValue;
use tokio::time::Instant;

use chaingate_oauth::dpop::ProofKey;
use chaingate_oauth::scope::Scopes;

use crate::authn::InboundToken;
use crate::cache::Expiring;
use crate::config::CacheSettings;
use crate::error::Error;
use crate::exchange::Issued;

/// A token is never kept longer than this, whatever a server says its lifetime is.
const MAX_LIFETIME: Duration = Duration::from_secs(24 * 3600);

/// A downstream token (AT2), ready to be sent upstream.
pub(crate) struct CachedToken {
    /// `Bearer <AT2>` (or `DPoP <AT2>`), marked sensitive so hyper never logs or indexes it.
    pub authorization: HeaderValue,
    /// A DPoP-bound token's key: every request carrying it gets a fresh proof (RFC 9449 §7.1).
    pub dpop: Option<Arc<ProofKey>>,
    /// When the token stops being used (its lifetime less the configured skew).
    pub expires_at: Instant,
    /// False for an RFC 8693 `N_A` token: usable as another hop's subject, never forwarded.
    pub bearer: bool,
    /// Incremental entries only: the scope held (granted, else as requested) and the part of
    /// the last request the server did not grant, which is not asked for again
    /// (draft-ietf-oauth-incremental-authz-04 §6.1).
    pub scope: Option<Scopes>,
    pub(super) refused: Scopes,
    /// The response's `ruri` as an origin (`scheme://host:port`), if it had a usable one.
    pub ruri: Option<Arc<str>>,
    ttl: Duration,
    /// Set while a background renewal runs, or backs off after a failed one.
    refreshing: AtomicBool,
}

impl CachedToken {
    /// The token itself, e.g. as the subject token of the next hop.
    pub(crate) fn token(&self) -> &str {
        // Built from the scheme, one space and a visible-ASCII token in `cached`.
        self.authorization
            .to_str()
            .ok()
            .and_then(|v| v.split_once(' '))
            .map_or("", |(_, token)| token)
    }

    /// Builds the entry for `issued`. `asked`: for an incremental entry, the scope requested
    /// (held if the response names none, RFC 6749 §5.1).
    pub(super) fn cached(
        issued: Issued,
        inbound: InboundToken<'_>,
        asked: Option<&Scopes>,
        settings: &CacheSettings,
    ) -> Result<Arc<Self>, Error> {
        let mut authorization = HeaderValue::try_from(format!(
            "{} {}",
            scheme(issued.dpop.as_ref()),
            issued.access_token.expose()
        ))
        .map_err(|_| Error::ExchangeFailed("access_token is not a usable bearer token"))?;
        authorization.set_sensitive(true);
        let lifetime = issued.expires_in.unwrap_or(settings.default_ttl);
        let mut ttl = lifetime.saturating_sub(settings.expiry_skew);
        // Never keep AT2 past AT1's own expiry: chaining must not extend a grant.
        if let Some(remaining) = jwt_remaining_lifetime(inbound.expose()) {
            ttl = ttl.min(remaining);
        }
        ttl = ttl.min(MAX_LIFETIME);
        let scope = asked.map(|asked| match &issued.scope {
            Some(granted) => Scopes::parse(granted),
            None => asked.clone(),
        });
        let refused = match (asked, &scope) {
            (Some(asked), Some(held)) => asked.minus(held),
            _ => Scopes::default(),
        };
        Ok(Arc::new(Self {
            authorization,
            dpop: issued.dpop,
            bearer: issued.bearer,
            scope,
            refused,
            ruri: issued
                .links
                .ruri
                .as_deref()
                .and_then(crate::config::origin)
                .map(Arc::from),
            refreshing: AtomicBool::new(false),
            expires_at: Instant::now() + ttl,
            ttl,
        }))
    }

    /// This token as the shared tier stores it (the expiry on the wall clock replicas share).
    pub(super) fn to_shared(&self) -> crate::fleet::Entry {
        let left = self.expires_at.saturating_duration_since(Instant::now());
        crate::fleet::Entry {
            token: self.token().to_string(),
            bearer: self.bearer,
            jkt: self.dpop.as_ref().map(|key| key.jkt().to_owned()),
            ruri: self.ruri.as_deref().map(str::to_owned),
            expires_unix_ms: crate::fleet::now_unix_ms()
                + u64::try_from(left.as_millis()).unwrap_or(u64::MAX),
            ttl_ms: u64::try_from(self.ttl.as_millis()).unwrap_or(u64::MAX),
        }
    }

    /// When this token stops being used, on the wall clock (to tell a newer shared entry).
    pub(super) fn expires_unix_ms(&self) -> u64 {
        let left = self.expires_at.saturating_duration_since(Instant::now());
        crate::fleet::now_unix_ms() + u64::try_from(left.as_millis()).unwrap_or(u64::MAX)
    }

    /// Another replica's token for the same caller, if it has a second or more to live (and
    /// never past AT1's own expiry). A DPoP-bound one only if `dpop` is the key it is bound to
    /// (replicas that share `dpop_key_file` share bound tokens; generated keys never do).
    pub(super) fn from_shared(
        entry: &crate::fleet::Entry,
        inbound: InboundToken<'_>,
        dpop: Option<&Arc<ProofKey>>,
    ) -> Option<Arc<Self>> {
        let dpop = match (&entry.jkt, dpop) {
            (None, _) => None,
            (Some(jkt), Some(key)) if key.jkt() == jkt => Some(key.clone()),
            (Some(_), _) => return None,
        };
        let mut left = Duration::from_millis(
            entry
                .expires_unix_ms
                .saturating_sub(crate::fleet::now_unix_ms()),
        );
        if let Some(remaining) = jwt_remaining_lifetime(inbound.expose()) {
            left = left.min(remaining);
        }
        if left < Duration::from_secs(1) || !entry.token.bytes().all(|b| b.is_ascii_graphic()) {
            return None;
        }
        let mut authorization =
            HeaderValue::try_from(format!("{} {}", scheme(dpop.as_ref()), entry.token)).ok()?;
        authorization.set_sensitive(true);
        let ttl = Duration::from_millis(entry.ttl_ms).clamp(left, MAX_LIFETIME);
        Some(Arc::new(Self {
            authorization,
            dpop,
            bearer: entry.bearer,
            scope: None,
            refused: Scopes::default(),
            ruri: entry.ruri.as_deref().map(Arc::from),
            refreshing: AtomicBool::new(false),
            expires_at: Instant::now() + left.min(MAX_LIFETIME),
            ttl,
        }))
    }

    /// Whether an incremental token serves a route needing `needed`: it holds the scopes, or
    /// the server declined the missing ones for this token already.
    pub(super) fn serves(&self, needed: &Scopes) -> bool {
        self.scope
            .as_ref()
            .is_some_and(|held| held.covers(needed) || self.refused.covers(&needed.minus(held)))
    }

    /// Whether this hit is old enough to be renewed in the background: past `ahead` of its
    /// lifetime. Marks it, so only one renewal starts per entry.
    pub(super) fn should_refresh(&self, ahead: Option<f64>) -> bool {
        let Some(ahead) = ahead else {
            return false;
        };
        let left = self.expires_at.saturating_duration_since(Instant::now());
        left < self.ttl.mul_f64(1.0 - ahead) && !self.refreshing.swap(true, Ordering::AcqRel)
    }

    /// After a failed renewal: how long until a request may try again. A tenth of the time
    /// left (so a token has several tries before it expires), between 250 ms and 5 s (so a
    /// flapping token server is neither hammered nor waited out).
    pub(super) fn renewal_backoff(&self) -> Duration {
        let left = self.expires_at.saturating_duration_since(Instant::now());
        (left / 10).clamp(Duration::from_millis(250), Duration::from_secs(5))
    }

    /// Lets the next request after a failed renewal start another one.
    pub(super) fn renewal_failed(&self) {
        self.refreshing.store(false, Ordering::Release);
    }
}

impl Expiring for CachedToken {
    fn expires_at(&self) -> Instant {
        self.expires_at
    }
    fn ttl(&self) -> Duration {
        self.ttl
    }
    fn size_bytes(&self) -> usize {
        self.authorization.len()
    }
}

impl std::fmt::Debug for CachedToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CachedToken")
            .field("ttl", &self.ttl)
            .finish_non_exhaustive()
    }
}

/// The `Authorization` scheme a token is sent with (RFC 6750 §2.1, RFC 9449 §7.1).
fn scheme(dpop: Option<&Arc<ProofKey>>) -> &'static str {
    match dpop {
        Some(_) => chaingate_oauth::dpop::TOKEN_TYPE,
        None => "Bearer",
    }
}

/// Time left before a JWT's `exp`, read without verifying it (used only to shorten a TTL).
/// `Some(ZERO)` if it has expired; `None` if the token is not a JWT with a numeric `exp`.
pub(super) fn jwt_remaining_lifetime(token: &str) -> Option<Duration> {
    let mut parts = token.split('.');
    let (_header, payload, _sig) = (parts.next()?, parts.next()?, parts.next()?);
    if parts.next().is_some() || payload.len() > 16 * 1024 {
        return None;
    }
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(payload)
        .ok()?;
    #[derive(serde::Deserialize)]
    struct Exp {
        exp: Option<serde_json::Value>,
    }
    let exp = serde_json::from_slice::<Exp>(&bytes).ok()?.exp?.as_u64()?;
    let now = SystemTime::now().duration_since(UNIX_EPOCH).ok()?.as_secs();
    Some(Duration::from_secs(exp.saturating_sub(now)))
}
