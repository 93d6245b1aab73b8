//! Refresh tokens: opaque, stored by digest, rotated on use; reuse revokes the family.

use std::collections::{BTreeSet, HashMap};
use std::sync::{Mutex, MutexGuard};

use super::sessions::{digest, random_token};
use chaingate_oauth::util::{now_secs, random_id};

/// Most live refresh tokens kept.
const CAPACITY: usize = 100_000;

#[derive(Debug)]
struct TokenRecord {
    family: String,
    rotated: bool,
    exp: u64,
}

/// One grant: every refresh token issued from one authorization (and its rotations).
#[derive(Debug, Clone)]
pub(crate) struct Family {
    pub(crate) id: String,
    pub(crate) client_id: String,
    pub(crate) user: String,
    pub(crate) scope: BTreeSet<String>,
    /// RFC 9449 §5: the DPoP key a public client's refresh tokens are bound to.
    pub(crate) jkt: Option<String>,
    revoked: bool,
    exp: u64,
}

#[derive(Debug, Default)]
struct Inner {
    tokens: HashMap<[u8; 32], TokenRecord>,
    families: HashMap<String, Family>,
}

/// Why a refresh token was not accepted (all map to `invalid_grant`).
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum RefreshError {
    Unknown,
    Expired,
    Revoked,
    OtherClient,
    /// A rotated token came back: the family is now revoked.
    Reused,
    Full,
    /// A bound refresh token without a proof by its key (RFC 9449 §5).
    OtherKey,
}

impl RefreshError {
    pub(crate) fn describe(&self) -> &'static str {
        match self {
            Self::Unknown => "refresh token is unknown",
            Self::Expired => "refresh token is expired",
            Self::Revoked => "refresh token is revoked",
            Self::OtherClient => "refresh token was issued to another client",
            Self::Reused => "refresh token was already used; the grant is revoked",
            Self::Full => "refresh token store is full",
            Self::OtherKey => "refresh token is bound to another DPoP key",
        }
    }
}

#[derive(Debug, Default)]
pub(crate) struct RefreshStore {
    inner: Mutex<Inner>,
}

impl RefreshStore {
    fn lock(&self) -> MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Starts a new family; returns (family id, refresh token).
    pub(crate) fn start(
        &self,
        client_id: &str,
        user: &str,
        scope: BTreeSet<String>,
        jkt: Option<&str>,
        ttl: u64,
    ) -> Result<(String, String), RefreshError> {
        let id = random_id();
        let mut inner = self.lock();
        let exp = now_secs() + ttl;
        inner.families.insert(
            id.clone(),
            Family {
                id: id.clone(),
                client_id: client_id.to_string(),
                user: user.to_string(),
                scope,
                jkt: jkt.map(str::to_owned),
                revoked: false,
                exp,
            },
        );
        let token = add_token(&mut inner, &id, exp)?;
        Ok((id, token))
    }

    /// Rotates: `token` becomes invalid and a new one of the same family is returned. `jkt`:
    /// the key the request proved possession of; a bound family needs that key, and a refusal
    /// leaves the token as it was (whoever lacks the key has not spent it).
    pub(crate) fn rotate(
        &self,
        token: &str,
        client_id: &str,
        jkt: Option<&str>,
        ttl: u64,
    ) -> Result<(Family, String), RefreshError> {
        let mut inner = self.lock();
        let family = check(&mut inner, token, client_id, true)?;
        if family
            .jkt
            .as_deref()
            .is_some_and(|bound| Some(bound) != jkt)
        {
            return Err(RefreshError::OtherKey);
        }
        if let Some(record) = inner.tokens.get_mut(&digest(token)) {
            record.rotated = true;
        }
        let exp = now_secs() + ttl;
        if let Some(f) = inner.families.get_mut(&family.id) {
            f.exp = f.exp.max(exp);
        }
        let new = add_token(&mut inner, &family.id, exp)?;
        Ok((family, new))
    }

    /// Checks an `existing_grant` (incremental auth -04 §5) without rotating it.
    pub(crate) fn existing(&self, token: &str, client_id: &str) -> Result<Family, RefreshError> {
        check(&mut self.lock(), token, client_id, false)
    }

    /// RFC 7009: revokes the family of `token` if it belongs to `client_id`.
    pub(crate) fn revoke(&self, token: &str, client_id: &str) -> bool {
        let mut inner = self.lock();
        let Some(record) = inner.tokens.get(&digest(token)) else {
            return false;
        };
        let id = record.family.clone();
        match inner.families.get_mut(&id) {
            Some(f) if f.client_id == client_id => {
                f.revoked = true;
                true
            }
            _ => false,
        }
    }

    /// Revokes a family by id (authorization code replay).
    pub(crate) fn revoke_family(&self, id: &str) {
        if let Some(f) = self.lock().families.get_mut(id) {
            f.revoked = true;
        }
    }

    /// Revokes every family of a client (client deleted).
    pub(crate) fn revoke_client(&self, client_id: &str) {
        for f in self.lock().families.values_mut() {
            if f.client_id == client_id {
                f.revoked = true;
            }
        }
    }
}

fn add_token(inner: &mut Inner, family: &str, exp: u64) -> Result<String, RefreshError> {
    let now = now_secs();
    if inner.tokens.len() >= CAPACITY {
        inner.tokens.retain(|_, t| t.exp > now);
        let live: std::collections::HashSet<&String> =
            inner.tokens.values().map(|t| &t.family).collect();
        let keep: std::collections::HashSet<String> = live.into_iter().cloned().collect();
        inner.families.retain(|id, _| keep.contains(id));
        if inner.tokens.len() >= CAPACITY {
            return Err(RefreshError::Full);
        }
    }
    let token = random_token();
    inner.tokens.insert(
        digest(&token),
        TokenRecord {
            family: family.to_string(),
            rotated: false,
            exp,
        },
    );
    Ok(token)
}

/// Common checks; a rotated token revokes its family when `detect_reuse` (a refresh request).
fn check(
    inner: &mut Inner,
    token: &str,
    client_id: &str,
    detect_reuse: bool,
) -> Result<Family, RefreshError> {
    let record = inner
        .tokens
        .get(&digest(token))
        .ok_or(RefreshError::Unknown)?;
    let (family_id, rotated, exp) = (record.family.clone(), record.rotated, record.exp);
    let family = inner
        .families
        .get_mut(&family_id)
        .ok_or(RefreshError::Unknown)?;
    if family.client_id != client_id {
        return Err(RefreshError::OtherClient);
    }
    if family.revoked {
        return Err(RefreshError::Revoked);
    }
    if rotated {
        if detect_reuse {
            family.revoked = true;
            tracing::warn!(client_id, family = %family.id, "refresh token reuse; grant revoked");
            return Err(RefreshError::Reused);
        }
        return Err(RefreshError::Revoked);
    }
    if exp <= now_secs() {
        return Err(RefreshError::Expired);
    }
    Ok(family.clone())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rotation_and_reuse_detection() {
        let store = RefreshStore::default();
        let scope: BTreeSet<String> = ["a".to_string()].into();
        let (_, t1) = store.start("c", "u", scope, None, 60).unwrap();
        let (family, t2) = store.rotate(&t1, "c", None, 60).unwrap();
        assert_eq!(family.user, "u");
        assert_eq!(
            store.rotate(&t2, "other", None, 60).unwrap_err(),
            RefreshError::OtherClient
        );
        assert_eq!(
            store.rotate(&t1, "c", None, 60).unwrap_err(),
            RefreshError::Reused
        );
        assert_eq!(
            store.rotate(&t2, "c", None, 60).unwrap_err(),
            RefreshError::Revoked
        );
        let (_, t3) = store.start("c", "u", BTreeSet::new(), None, 0).unwrap();
        assert_eq!(store.existing(&t3, "c").unwrap_err(), RefreshError::Expired);
    }
}
