//! Self-registration (RFC 7591) with client intermediary metadata, kept across restarts in a
//! state file and managed with RFC 7592.
//!
//! At start: a stored registration is read back (GET); if the metadata the config asks for now
//! differs, it is replaced (PUT); if the server no longer knows it (401/403/404), or there is
//! none, the gateway registers afresh (POST with the initial access token). Until one of those
//! succeeds the domain has no credentials: token requests answer 503 and `/ready` waits.
//! Failures are retried with capped, jittered exponential backoff. A secret that expires
//! (`client_secret_expires_at`) is renewed shortly before: read again (servers may rotate it
//! on read), else a new registration; an expired secret is dropped, not used.

mod client;
mod metrics;
mod state;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

use http::{Method, StatusCode, Uri};
use serde_json::{json, Map, Value};

use super::{Credentials, Exchanger};
use crate::config::{basic_authorization, ClientAuth, Registration, TokenEndpoint};
use client::{call, object, parse_uri, refusal};
pub(crate) use metrics::RegistrationMetrics;
use metrics::{DomainRegistrationMetrics, RegOutcome};
use state::Stored;

const FIRST_BACKOFF: Duration = Duration::from_millis(500);
const MAX_BACKOFF: Duration = Duration::from_secs(60);

/// One domain's registration: its settings, the registration in use, its metrics.
#[derive(Debug)]
pub(super) struct Registrar {
    pub(super) settings: Arc<Registration>,
    domain: Arc<str>,
    metrics: DomainRegistrationMetrics,
    current: Mutex<Option<Stored>>,
    /// Set at shutdown: nothing is registered or stored any more.
    closed: AtomicBool,
}

enum Read {
    Found(Map<String, Value>),
    Gone,
}

impl Registrar {
    pub(super) fn new(
        settings: Arc<Registration>,
        domain: &Arc<str>,
        metrics: &super::ExchangeMetrics,
    ) -> Self {
        Self {
            settings,
            domain: domain.clone(),
            metrics: metrics.registration.domain(domain),
            current: Mutex::new(None),
            closed: AtomicBool::new(false),
        }
    }

    /// Starts from the registration the replaced exchanger had in use (config reload).
    pub(super) fn inherit(&self, previous: &Registrar) {
        if let Some(stored) = previous.current() {
            self.metrics.active.set(1);
            *self.current.lock().unwrap_or_else(|e| e.into_inner()) = Some(stored);
        }
    }

    fn current(&self) -> Option<Stored> {
        self.current
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    fn endpoint(&self, ex: &Exchanger) -> Result<Option<Uri>, String> {
        if let Some(uri) = &self.settings.endpoint {
            return Ok(Some(uri.clone()));
        }
        match ex.endpoints.load().as_ref() {
            None => Ok(None),
            Some(found) => found
                .registration
                .clone()
                .map(Some)
                .ok_or_else(|| "the discovered metadata has no registration_endpoint".into()),
        }
    }

    /// Reuses, updates or creates the registration and puts its credentials in use.
    async fn establish(&self, ex: &Exchanger, endpoint: &Uri) -> Result<Stored, String> {
        let insecure = ex.domain.allow_insecure_http;
        let digest = &self.settings.metadata_digest;
        let stored = match self.current() {
            Some(s) => Some(s),
            None => state::load(&self.settings.state_file).await?,
        };
        let stored = stored.filter(|s| {
            let same = s.endpoint == endpoint.to_string();
            if !same {
                tracing::info!(domain = %self.domain, client_id = %s.client_id, "the stored registration was made at another registration endpoint; registering afresh");
            }
            same
        });
        let mut outcome = RegOutcome::Registered;
        let mut kept = None;
        if let Some(mut stored) = stored {
            match (
                &stored.registration_client_uri,
                &stored.registration_access_token,
            ) {
                (Some(uri), Some(token)) => match self.read(ex, uri, token.expose()).await? {
                    Read::Found(body) => {
                        stored.merge(&body, insecure)?;
                        if stored.metadata_digest != *digest {
                            let body = self.update(ex, &stored).await?;
                            stored.merge(&body, insecure)?;
                            stored.metadata_digest.clone_from(digest);
                            outcome = RegOutcome::Updated;
                        } else {
                            outcome = RegOutcome::Reused;
                        }
                        kept = Some(stored);
                    }
                    Read::Gone => {
                        tracing::info!(domain = %self.domain, client_id = %stored.client_id, "the stored registration is no longer known; registering afresh");
                    }
                },
                // Without RFC 7592 management nothing can be checked or changed.
                _ if stored.metadata_digest == *digest => {
                    outcome = RegOutcome::Reused;
                    kept = Some(stored);
                }
                _ => {}
            }
        }
        let stored = match kept.filter(|s| !s.secret_expired()) {
            Some(s) => s,
            None => {
                outcome = RegOutcome::Registered;
                self.register(ex, endpoint).await?
            }
        };
        if self.closed.load(Ordering::Acquire) {
            return Err("shutting down".into());
        }
        if let Err(e) = state::save(&self.settings.state_file, &stored).await {
            // The credentials work; only a restart will not find them.
            tracing::error!(domain = %self.domain, error = %e, "cannot store the registration");
        }
        let auth = if self.settings.secret_in_body {
            ClientAuth::Post(stored.client_secret.clone())
        } else {
            ClientAuth::Basic(basic_authorization(
                &stored.client_id,
                &stored.client_secret,
            ))
        };
        ex.credentials.store(Some(Arc::new(Credentials {
            client_id: stored.client_id.clone(),
            auth,
        })));
        *self.current.lock().unwrap_or_else(|e| e.into_inner()) = Some(stored.clone());
        self.metrics.count(outcome);
        self.metrics.active.set(1);
        tracing::info!(domain = %self.domain, client_id = %stored.client_id, outcome = outcome.as_str(), "client registration");
        ex.discovered.notify_waiters();
        Ok(stored)
    }

    /// RFC 7591 §3.1: POST the metadata with the initial access token.
    async fn register(&self, ex: &Exchanger, endpoint: &Uri) -> Result<Stored, String> {
        let path = &self.settings.initial_access_token_file;
        // Read at each attempt: the secret file may have been rotated.
        let token = tokio::fs::read_to_string(path)
            .await
            .map_err(|e| format!("cannot read {}: {e}", path.display()))?;
        let token = token.trim();
        if token.is_empty() {
            return Err(format!("{} is empty", path.display()));
        }
        let body = Value::Object(self.settings.metadata.clone());
        let (status, body) = call(ex, Method::POST, endpoint, token, Some(&body)).await?;
        match status {
            StatusCode::CREATED | StatusCode::OK => Stored::issued(
                &object(&body)?,
                &self.settings.metadata_digest,
                &endpoint.to_string(),
                ex.domain.allow_insecure_http,
            ),
            StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN => {
                Err(format!("the initial access token was refused ({status})"))
            }
            other => Err(refusal("registration", other, &body)),
        }
    }

    /// RFC 7592 §2.1.
    async fn read(&self, ex: &Exchanger, uri: &str, token: &str) -> Result<Read, String> {
        let uri = parse_uri(uri)?;
        let (status, body) = call(ex, Method::GET, &uri, token, None).await?;
        match status {
            StatusCode::OK => Ok(Read::Found(object(&body)?)),
            StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN | StatusCode::NOT_FOUND => {
                Ok(Read::Gone)
            }
            other => Err(refusal("registration read", other, &body)),
        }
    }

    /// RFC 7592 §2.2: a full replacement; `client_id` included, the server-managed members not.
    async fn update(&self, ex: &Exchanger, stored: &Stored) -> Result<Map<String, Value>, String> {
        let (Some(uri), Some(token)) = (
            &stored.registration_client_uri,
            &stored.registration_access_token,
        ) else {
            return Err("the registration cannot be managed".into());
        };
        let mut body = self.settings.metadata.clone();
        body.insert("client_id".into(), json!(stored.client_id));
        // Sent so that a server cannot read its absence as "drop the secret" (it must match).
        body.insert("client_secret".into(), json!(stored.client_secret.expose()));
        let uri = parse_uri(uri)?;
        let (status, body) = call(
            ex,
            Method::PUT,
            &uri,
            token.expose(),
            Some(&Value::Object(body)),
        )
        .await?;
        match status {
            StatusCode::OK => object(&body),
            other => Err(refusal("registration update", other, &body)),
        }
    }

    /// At graceful shutdown with `delete_on_shutdown`: RFC 7592 §2.3 DELETE, then the state
    /// file goes. The credentials are dropped either way.
    pub(super) async fn deregister(&self, ex: &Exchanger) {
        if !self.settings.delete_on_shutdown {
            return;
        }
        self.closed.store(true, Ordering::Release);
        let Some(stored) = self
            .current
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .take()
        else {
            return;
        };
        ex.credentials.store(None);
        self.metrics.active.set(0);
        let (Some(uri), Some(token)) = (
            &stored.registration_client_uri,
            &stored.registration_access_token,
        ) else {
            tracing::warn!(domain = %self.domain, client_id = %stored.client_id, "the registration cannot be deleted (no registration_client_uri)");
            return;
        };
        let deleted = match parse_uri(uri) {
            Ok(uri) => call(ex, Method::DELETE, &uri, token.expose(), None).await,
            Err(e) => Err(e),
        };
        match deleted {
            // 401/404: the server no longer knows it, which is what was asked for.
            Ok((
                StatusCode::NO_CONTENT
                | StatusCode::OK
                | StatusCode::UNAUTHORIZED
                | StatusCode::NOT_FOUND,
                _,
            )) => {
                if let Err(e) = state::remove(&self.settings.state_file).await {
                    tracing::warn!(domain = %self.domain, error = %e, "cannot remove the registration state file");
                }
                self.metrics.count(RegOutcome::Deleted);
                tracing::info!(domain = %self.domain, client_id = %stored.client_id, outcome = "deleted", "client registration");
            }
            Ok((status, body)) => {
                tracing::warn!(domain = %self.domain, client_id = %stored.client_id, error = %refusal("registration delete", status, &body), "client registration not deleted");
            }
            Err(e) => {
                tracing::warn!(domain = %self.domain, client_id = %stored.client_id, error = %e, "client registration not deleted");
            }
        }
    }
}

/// Registers (or reuses) with backoff until it works, then renews the secret before it expires.
/// Ends when the exchanger is dropped or the gateway shuts down.
pub(super) async fn keep_registered(exchanger: Weak<Exchanger>) {
    let mut backoff = FIRST_BACKOFF;
    loop {
        let Some(this) = exchanger.upgrade() else {
            return;
        };
        let Some(registrar) = &this.registration else {
            return;
        };
        if registrar.closed.load(Ordering::Acquire) {
            return;
        }
        let attempt = match registrar.endpoint(&this) {
            // Discovery has not answered yet; it retries on its own.
            Ok(None) => None,
            Ok(Some(endpoint)) => Some(registrar.establish(&this, &endpoint).await),
            Err(e) => Some(Err(e)),
        };
        let wait = match attempt {
            None => Duration::from_millis(100),
            Some(Ok(stored)) => {
                backoff = FIRST_BACKOFF;
                match stored.renew_in() {
                    Some(secs) => Duration::from_secs(secs),
                    None => return,
                }
            }
            Some(Err(e)) => {
                if registrar.closed.load(Ordering::Acquire) {
                    return;
                }
                registrar.metrics.count(RegOutcome::Failed);
                tracing::warn!(domain = %registrar.domain, error = %e, "client registration failed; retrying");
                if registrar.current().is_some_and(|s| s.secret_expired()) {
                    tracing::warn!(domain = %registrar.domain, "the client secret has expired; token requests fail until registration succeeds");
                    this.credentials.store(None);
                    registrar.metrics.active.set(0);
                }
                let wait = jitter(backoff);
                backoff = (backoff * 2).min(MAX_BACKOFF);
                wait
            }
        };
        drop(this);
        tokio::time::sleep(wait).await;
    }
}

/// Between half and all of `backoff`: many gateways restarting together do not retry in step.
fn jitter(backoff: Duration) -> Duration {
    let mut byte = [0u8; 1];
    let _ = aws_lc_rs::rand::fill(&mut byte);
    backoff.mul_f64(0.5 + f64::from(byte[0]) / 510.0)
}

impl Exchanger {
    /// Takes over the issued credentials of the exchanger this one replaces (config reload), so
    /// requests need not wait while the registration is checked again.
    pub(crate) fn inherit_registration(&self, previous: &Exchanger) {
        if let (Some(next), Some(prev)) = (&self.registration, &previous.registration) {
            // Only for the same server: credentials from another one would be refused there.
            let same_server = next.settings.state_file == prev.settings.state_file
                && next.settings.endpoint == prev.settings.endpoint
                && match (&self.domain.endpoint, &previous.domain.endpoint) {
                    (TokenEndpoint::Fixed(a), TokenEndpoint::Fixed(b)) => a == b,
                    (
                        TokenEndpoint::Discover { issuer: a, .. },
                        TokenEndpoint::Discover { issuer: b, .. },
                    ) => a == b,
                    _ => false,
                };
            if same_server && self.credentials.load().is_none() {
                self.credentials.store(previous.credentials.load_full());
                next.inherit(prev);
                self.discovered.notify_waiters();
            }
        }
    }

    /// RFC 7592 DELETE of the registration if `delete_on_shutdown` (graceful shutdown).
    pub(crate) async fn deregister(&self) {
        if let Some(registrar) = &self.registration {
            registrar.deregister(self).await;
        }
    }
}
