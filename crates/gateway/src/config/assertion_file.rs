//! `client_assertion_file`: a JWT written by someone else (a kubelet-projected service account
//! token, spiffe-helper's JWT-SVID) sent as the client assertion (RFC 7523 §2.2,
//! draft-ietf-oauth-spiffe-client-auth). No secret lives in the config.
//!
//! The kubelet rotates projected tokens by swapping the `..data` symlink, so the file is
//! re-read only when the stat of the resolved path (inode, length, mtime) changes: one
//! `stat` per use, never a read per request.

use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::SystemTime;

use chaingate_oauth::secret::Secret;
use chaingate_oauth::util::now_secs;

/// Assertions within this many seconds of `exp` are not sent: the token server's clock and
/// the request's flight time would make it expired on arrival.
const EXP_SKEW_SECS: u64 = 30;

/// `client_assertion_type`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AssertionType {
    /// `jwt-bearer`: RFC 7523 §2.2.
    JwtBearer,
    /// `jwt-spiffe`: draft-ietf-oauth-spiffe-client-auth.
    JwtSpiffe,
}

impl AssertionType {
    /// The `client_assertion_type` form value.
    pub fn urn(self) -> &'static str {
        match self {
            Self::JwtBearer => "urn:ietf:params:oauth:client-assertion-type:jwt-bearer",
            Self::JwtSpiffe => "urn:ietf:params:oauth:client-assertion-type:jwt-spiffe",
        }
    }
}

/// Why the file cannot be used now (the bounded `reason` label).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AssertionFileError {
    /// The path does not exist.
    Missing,
    /// It exists but cannot be read.
    Unreadable,
    /// Not a JWT with a numeric `exp`.
    Malformed,
    /// `exp` has passed (minus the skew).
    Expired,
}

impl AssertionFileError {
    /// Label value for `chaingate_client_assertion_errors_total{reason}`.
    pub fn reason(self) -> &'static str {
        match self {
            Self::Missing => "missing",
            Self::Unreadable => "unreadable",
            Self::Malformed => "malformed",
            Self::Expired => "expired",
        }
    }
}

#[derive(PartialEq, Eq, Clone, Copy)]
struct Stamp {
    ino: u64,
    len: u64,
    mtime: Option<SystemTime>,
}

struct Loaded {
    stamp: Stamp,
    result: Result<(Secret, u64), AssertionFileError>,
}

/// A client assertion read from a file, cached until the file changes.
pub struct AssertionFile {
    /// The configured path (may be a symlink into `..data`).
    pub path: PathBuf,
    /// `client_assertion_type`.
    pub kind: AssertionType,
    loaded: Mutex<Option<Loaded>>,
}

impl std::fmt::Debug for AssertionFile {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AssertionFile")
            .field("path", &self.path)
            .field("kind", &self.kind)
            .finish_non_exhaustive()
    }
}

impl AssertionFile {
    /// A file assertion of this type; nothing is read until first use.
    pub fn new(path: PathBuf, kind: AssertionType) -> Self {
        Self {
            path,
            kind,
            loaded: Mutex::new(None),
        }
    }

    /// The assertion to send now, re-read if the file changed.
    pub fn current(&self) -> Result<Secret, AssertionFileError> {
        // `metadata` follows symlinks: the stamp is the resolved file's, so a `..data` swap
        // shows up as a new inode.
        let stamp = match std::fs::metadata(&self.path) {
            Ok(m) => stamp(&m),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Err(AssertionFileError::Missing)
            }
            Err(_) => return Err(AssertionFileError::Unreadable),
        };
        let mut guard = self.loaded.lock().unwrap_or_else(|p| p.into_inner());
        if guard.as_ref().map(|l| l.stamp) != Some(stamp) {
            *guard = Some(Loaded {
                stamp,
                result: read(&self.path),
            });
        }
        let (assertion, exp) = guard
            .as_ref()
            .map(|l| l.result.clone())
            .unwrap_or(Err(AssertionFileError::Unreadable))?;
        if now_secs() + EXP_SKEW_SECS >= exp {
            return Err(AssertionFileError::Expired);
        }
        Ok(assertion)
    }
}

fn stamp(m: &std::fs::Metadata) -> Stamp {
    #[cfg(unix)]
    let ino = std::os::unix::fs::MetadataExt::ino(m);
    #[cfg(not(unix))]
    let ino = 0;
    Stamp {
        ino,
        len: m.len(),
        mtime: m.modified().ok(),
    }
}

fn read(path: &Path) -> Result<(Secret, u64), AssertionFileError> {
    let text = std::fs::read_to_string(path).map_err(|e| match e.kind() {
        std::io::ErrorKind::NotFound => AssertionFileError::Missing,
        _ => AssertionFileError::Unreadable,
    })?;
    let token = text.trim();
    // Unverified on purpose: the token server verifies; we only need `exp` to stop sending it.
    let (_, claims) =
        chaingate_oauth::jwt::peek(token).map_err(|_| AssertionFileError::Malformed)?;
    let exp = chaingate_oauth::jwt::numeric(&claims, "exp")
        .ok()
        .flatten()
        .ok_or(AssertionFileError::Malformed)?;
    Ok((Secret::new(token), exp))
}

#[cfg(test)]
mod tests {
    use super::*;
    use base64::Engine;

    fn jwt(exp: u64) -> String {
        let b = |v: &str| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(v);
        format!(
            "{}.{}.c2ln",
            b(r#"{"alg":"RS256"}"#),
            b(&format!(r#"{{"sub":"x","exp":{exp}}}"#))
        )
    }

    #[test]
    fn reads_rotates_and_refuses_expired_missing_malformed() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("token");
        let file = AssertionFile::new(path.clone(), AssertionType::JwtBearer);
        assert_eq!(file.current().unwrap_err(), AssertionFileError::Missing);

        let first = jwt(now_secs() + 3600);
        std::fs::write(&path, format!("{first}\n")).unwrap();
        assert_eq!(file.current().unwrap().expose(), first);

        // Kubelet-style: a new target, then an atomic rename over the link.
        let second = jwt(now_secs() + 7200);
        let target = dir.path().join("token2");
        std::fs::write(&target, &second).unwrap();
        let link = dir.path().join("link");
        std::os::unix::fs::symlink(&target, &link).unwrap();
        std::fs::rename(&link, &path).unwrap();
        assert_eq!(file.current().unwrap().expose(), second);

        std::fs::write(&path, jwt(now_secs() + 10)).unwrap();
        assert_eq!(file.current().unwrap_err(), AssertionFileError::Expired);
        std::fs::write(&path, "not-a-jwt").unwrap();
        assert_eq!(file.current().unwrap_err(), AssertionFileError::Malformed);
    }

    #[test]
    fn debug_shows_no_assertion() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("token");
        let token = jwt(now_secs() + 3600);
        std::fs::write(&path, &token).unwrap();
        let file = AssertionFile::new(path, AssertionType::JwtSpiffe);
        file.current().unwrap();
        assert!(!format!("{file:?}").contains(&token));
    }
}
