//! The issued registration, as kept in `state_file` across restarts. Its contents are secrets:
//! the file is written atomically (temporary file + rename) with mode 0600, and never logged.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use chaingate_oauth::secret::Secret;
use chaingate_oauth::util::now_secs;

/// A secret is renewed this long before it expires, and not used within the last seconds.
const EXPIRY_MARGIN_SECS: u64 = 5;

/// One issued registration (RFC 7591 §3.2.1, RFC 7592 §3).
#[derive(Clone)]
pub(super) struct Stored {
    pub(super) client_id: String,
    pub(super) client_secret: Secret,
    /// Seconds since the epoch; 0: never expires.
    pub(super) client_secret_expires_at: u64,
    pub(super) registration_access_token: Option<Secret>,
    pub(super) registration_client_uri: Option<String>,
    /// Digest of the metadata this registration was made or updated with.
    pub(super) metadata_digest: String,
    /// The registration endpoint it was made at: another endpoint means another server.
    pub(super) endpoint: String,
}

impl std::fmt::Debug for Stored {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Stored")
            .field("client_id", &self.client_id)
            .field("client_secret_expires_at", &self.client_secret_expires_at)
            .finish_non_exhaustive()
    }
}

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct StateFile {
    client_id: String,
    client_secret: String,
    #[serde(default)]
    client_secret_expires_at: u64,
    registration_access_token: Option<String>,
    registration_client_uri: Option<String>,
    metadata_digest: String,
    endpoint: String,
}

fn string(body: &Map<String, Value>, key: &str) -> Result<Option<String>, String> {
    match body.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) if !s.is_empty() => Ok(Some(s.clone())),
        Some(_) => Err(format!("{key} is not a non-empty string")),
    }
}

impl Stored {
    /// Reads a registration response (201 of RFC 7591, or 200 of RFC 7592 read/update).
    pub(super) fn issued(
        body: &Map<String, Value>,
        metadata_digest: &str,
        endpoint: &str,
        allow_insecure_http: bool,
    ) -> Result<Self, String> {
        let client_id = string(body, "client_id")?.ok_or("the response has no client_id")?;
        let client_secret = string(body, "client_secret")?
            .ok_or("the response has no client_secret (a secret method was registered)")?;
        let mut stored = Self {
            client_id,
            client_secret: Secret::new(client_secret),
            client_secret_expires_at: 0,
            registration_access_token: None,
            registration_client_uri: None,
            metadata_digest: metadata_digest.to_string(),
            endpoint: endpoint.to_string(),
        };
        stored.merge(body, allow_insecure_http)?;
        Ok(stored)
    }

    /// Takes what a RFC 7592 response changed: the server may rotate the secret and the
    /// registration access token; members it leaves out stay as they were.
    pub(super) fn merge(
        &mut self,
        body: &Map<String, Value>,
        allow_insecure_http: bool,
    ) -> Result<(), String> {
        if let Some(id) = string(body, "client_id")? {
            if id != self.client_id {
                return Err("the response names another client_id".into());
            }
        }
        if let Some(secret) = string(body, "client_secret")? {
            self.client_secret = Secret::new(secret);
            self.client_secret_expires_at = 0;
        }
        match body.get("client_secret_expires_at") {
            None | Some(Value::Null) => {}
            Some(v) => {
                self.client_secret_expires_at = v
                    .as_u64()
                    .ok_or("client_secret_expires_at is not a number")?;
            }
        }
        if let Some(token) = string(body, "registration_access_token")? {
            self.registration_access_token = Some(Secret::new(token));
        }
        if let Some(uri) = string(body, "registration_client_uri")? {
            let scheme_ok = match uri
                .parse::<http::Uri>()
                .ok()
                .as_ref()
                .and_then(|u| u.scheme_str())
            {
                Some("https") => true,
                Some("http") => allow_insecure_http,
                _ => false,
            };
            if !scheme_ok {
                return Err("registration_client_uri is not an https URL".into());
            }
            self.registration_client_uri = Some(uri);
        }
        Ok(())
    }

    /// Whether the secret can no longer be used (expired, or about to).
    pub(super) fn secret_expired(&self) -> bool {
        self.client_secret_expires_at != 0
            && self.client_secret_expires_at <= now_secs() + EXPIRY_MARGIN_SECS
    }

    /// When to renew the secret (seconds from now), if it expires at all.
    pub(super) fn renew_in(&self) -> Option<u64> {
        (self.client_secret_expires_at != 0).then(|| {
            let left = self.client_secret_expires_at.saturating_sub(now_secs());
            // A tenth of what is left, at most a minute, before it expires; never a busy loop.
            left.saturating_sub((left / 10).min(60)).max(1)
        })
    }
}

/// The stored registration; `Ok(None)` if there is none (or it cannot be read as one: then a
/// new registration replaces it).
pub(super) async fn load(path: &Path) -> Result<Option<Stored>, String> {
    let text = match tokio::fs::read(path).await {
        Ok(text) => text,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(format!("cannot read {}: {e}", path.display())),
    };
    // Only where and what kind of error: serde_json's messages may quote a value ("invalid
    // type: string \"…\""), and every value in this file may be a secret.
    match serde_json::from_slice::<StateFile>(&text) {
        Ok(s) => Ok(Some(Stored {
            client_id: s.client_id,
            client_secret: Secret::new(s.client_secret),
            client_secret_expires_at: s.client_secret_expires_at,
            registration_access_token: s.registration_access_token.map(Secret::new),
            registration_client_uri: s.registration_client_uri,
            metadata_digest: s.metadata_digest,
            endpoint: s.endpoint,
        })),
        Err(e) => {
            tracing::warn!(file = %path.display(), kind = ?e.classify(), line = e.line(), column = e.column(), "the registration state file is unreadable; registering afresh");
            Ok(None)
        }
    }
}

fn temporary(path: &Path) -> PathBuf {
    let mut name = path.file_name().unwrap_or_default().to_os_string();
    name.push(".tmp");
    path.with_file_name(name)
}

/// Writes `stored` atomically: a reader sees the old file or the new one, never a mix.
pub(super) async fn save(path: &Path, stored: &Stored) -> Result<(), String> {
    let file = StateFile {
        client_id: stored.client_id.clone(),
        client_secret: stored.client_secret.expose().to_string(),
        client_secret_expires_at: stored.client_secret_expires_at,
        registration_access_token: stored
            .registration_access_token
            .as_ref()
            .map(|t| t.expose().to_string()),
        registration_client_uri: stored.registration_client_uri.clone(),
        metadata_digest: stored.metadata_digest.clone(),
        endpoint: stored.endpoint.clone(),
    };
    let bytes = serde_json::to_vec_pretty(&file).map_err(|e| e.to_string())?;
    let tmp = temporary(path);
    let write = async {
        use tokio::io::AsyncWriteExt as _;
        let _ = tokio::fs::remove_file(&tmp).await;
        let mut f = tokio::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&tmp)
            .await?;
        f.write_all(&bytes).await?;
        f.sync_all().await?;
        drop(f);
        tokio::fs::rename(&tmp, path).await
    };
    write
        .await
        .map_err(|e| format!("cannot write {}: {e}", path.display()))
}

pub(super) async fn remove(path: &Path) -> Result<(), String> {
    match tokio::fs::remove_file(path).await {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(format!("cannot remove {}: {e}", path.display())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn body(v: Value) -> Map<String, Value> {
        v.as_object().unwrap().clone()
    }

    fn issued() -> Stored {
        Stored::issued(
            &body(json!({
                "client_id": "c1", "client_secret": "s1", "client_secret_expires_at": 0,
                "registration_access_token": "t1",
                "registration_client_uri": "https://as.example/register/c1",
            })),
            "digest",
            "https://as.example/register",
            false,
        )
        .unwrap()
    }

    #[test]
    fn a_response_needs_a_client_id_and_a_secret() {
        let no_secret = body(json!({ "client_id": "c1" }));
        assert!(Stored::issued(&no_secret, "d", "e", false).is_err());
        let no_id = body(json!({ "client_secret": "s" }));
        assert!(Stored::issued(&no_id, "d", "e", false).is_err());
        let s = issued();
        assert_eq!(s.client_id, "c1");
        assert_eq!(s.client_secret.expose(), "s1");
        assert!(!s.secret_expired());
        assert_eq!(s.renew_in(), None);
    }

    #[test]
    fn rotated_secrets_and_tokens_are_taken_and_another_client_is_refused() {
        let mut s = issued();
        s.merge(
            &body(json!({ "client_id": "c1", "client_secret": "s2", "registration_access_token": "t2" })),
            false,
        )
        .unwrap();
        assert_eq!(s.client_secret.expose(), "s2");
        assert_eq!(s.registration_access_token.as_ref().unwrap().expose(), "t2");
        assert!(s.merge(&body(json!({ "client_id": "c2" })), false).is_err());
        let plain = body(json!({ "registration_client_uri": "http://as.example/r" }));
        assert!(s.merge(&plain, false).is_err());
        assert!(s.merge(&plain, true).is_ok());
    }

    #[test]
    fn an_expiring_secret_is_renewed_before_it_expires_and_not_used_after() {
        let mut s = issued();
        s.client_secret_expires_at = now_secs() + 3600;
        assert!(!s.secret_expired());
        let renew = s.renew_in().unwrap();
        assert!((3500..3600).contains(&renew), "{renew}");
        s.client_secret_expires_at = now_secs() + 1;
        assert!(s.secret_expired());
        assert_eq!(s.renew_in(), Some(1), "never a busy loop");
        s.client_secret_expires_at = now_secs().saturating_sub(10);
        assert!(s.secret_expired());
    }

    #[tokio::test]
    async fn the_state_file_round_trips_with_mode_0600_and_debug_hides_secrets() {
        use std::os::unix::fs::PermissionsExt as _;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("state.json");
        assert!(load(&path).await.unwrap().is_none());
        save(&path, &issued()).await.unwrap();
        let mode = std::fs::metadata(&path).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
        let back = load(&path).await.unwrap().unwrap();
        assert_eq!(back.client_id, "c1");
        assert_eq!(back.registration_access_token.unwrap().expose(), "t1");
        assert!(!format!("{:?}", issued()).contains("s1"));
        std::fs::write(&path, "not json").unwrap();
        assert!(
            load(&path).await.unwrap().is_none(),
            "unreadable → register afresh"
        );
        remove(&path).await.unwrap();
        remove(&path).await.unwrap();
    }
}
