//! Route matching beyond the path prefix: an exact `path`, `host`, `methods` and `headers`,
//! parsed once at load so a request is matched without allocating; and the check that names a
//! route an earlier one shadows.

use std::sync::Arc;

use http::header::{HeaderName, HeaderValue, HOST};
use http::{Method, Request};

use super::file::FileRoute;
use super::{ConfigError, Route};

/// A route's conditions besides its path; a route with none has `None` and is matched by its
/// path alone, as before these keys existed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Conditions {
    /// `host`, lowercased: the request's host must equal it (its port too, if it names one).
    pub host: Option<HostMatch>,
    /// `methods`: the request's method must be one of them; empty: any.
    pub methods: Vec<Method>,
    /// `headers`: each field must be present exactly once with exactly this value.
    pub headers: Vec<(HeaderName, HeaderValue)>,
}

/// `host`: a host name (or IP literal), and a port if the configured value names one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HostMatch {
    /// The host, lowercased (IPv6 literals keep their brackets).
    pub host: String,
    /// The port, when the configured value has one: then the request's must be the same.
    pub port: Option<String>,
}

/// The path (`path_prefix`, or `path` for an exact match) and the conditions of a route.
pub(super) struct Parsed {
    pub(super) path: String,
    pub(super) exact: bool,
    pub(super) conditions: Option<Arc<Conditions>>,
}

/// Splits `host[:port]` (RFC 9110 §7.2; IPv6 literals in brackets), dropping any userinfo.
fn split_host(authority: &str) -> (&str, Option<&str>) {
    let authority = authority.rsplit_once('@').map_or(authority, |(_, a)| a);
    let colon = match authority.strip_prefix('[') {
        Some(rest) => rest.find(']').and_then(|end| {
            let after = end + 2;
            (authority.as_bytes().get(after) == Some(&b':')).then_some(after)
        }),
        None => authority.rfind(':'),
    };
    match colon {
        Some(at) => (&authority[..at], Some(&authority[at + 1..])),
        None => (authority, None),
    }
}

pub(super) fn parse(i: usize, r: &FileRoute) -> Result<Parsed, ConfigError> {
    let key = |field: &str| format!("routes[{i}].{field}");
    let (path, exact, field) = match (&r.path_prefix, &r.path) {
        (Some(prefix), None) => (prefix.clone(), false, "path_prefix"),
        (None, Some(path)) => (path.clone(), true, "path"),
        (Some(_), Some(_)) => {
            return Err(ConfigError::key(
                key("path"),
                "set path_prefix or path, not both",
            ))
        }
        (None, None) => {
            return Err(ConfigError::key(
                key("path_prefix"),
                "missing (or path, for an exact match)",
            ))
        }
    };
    if !path.starts_with('/') {
        return Err(ConfigError::key(key(field), "must start with /"));
    }
    let host = match r.host.as_deref() {
        None => None,
        Some(text) => {
            let (host, port) = split_host(text);
            let valid = !host.is_empty()
                && text.parse::<http::uri::Authority>().is_ok()
                && !text.contains('@')
                && port.is_none_or(|p| !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit()));
            if !valid {
                return Err(ConfigError::key(
                    key("host"),
                    "a host name or IP, optionally with :port",
                ));
            }
            Some(HostMatch {
                host: host.to_ascii_lowercase(),
                port: port.map(str::to_owned),
            })
        }
    };
    let mut methods = Vec::new();
    for (n, name) in r.methods.iter().flatten().enumerate() {
        let method = Method::from_bytes(name.as_bytes())
            .ok()
            .filter(|_| !name.is_empty())
            .ok_or_else(|| ConfigError::key(key(&format!("methods[{n}]")), "not an HTTP method"))?;
        if !methods.contains(&method) {
            methods.push(method);
        }
    }
    if r.methods.as_ref().is_some_and(Vec::is_empty) {
        return Err(ConfigError::key(key("methods"), "must not be empty"));
    }
    let mut headers = Vec::new();
    for (name, value) in r.headers.iter().flatten() {
        let field = || key(&format!("headers.{name}"));
        let name = HeaderName::from_bytes(name.as_bytes())
            .map_err(|_| ConfigError::key(field(), "not an HTTP header name"))?;
        if name == http::header::AUTHORIZATION {
            return Err(ConfigError::key(
                field(),
                "the caller's credential cannot pick a route",
            ));
        }
        let value = HeaderValue::from_str(value)
            .map_err(|_| ConfigError::key(field(), "not an HTTP header value"))?;
        headers.push((name, value));
    }
    let conditions = (host.is_some() || !methods.is_empty() || !headers.is_empty()).then(|| {
        Arc::new(Conditions {
            host,
            methods,
            headers,
        })
    });
    Ok(Parsed {
        path,
        exact,
        conditions,
    })
}

impl Route {
    /// Whether `request` (whose path is `path`) takes this route. A prefix-only route costs one
    /// `starts_with`, as before the other conditions existed.
    #[inline]
    pub fn matches<B>(&self, path: &str, request: &Request<B>) -> bool {
        let path_matches = if self.path_exact {
            path == self.path_prefix
        } else {
            path.starts_with(&self.path_prefix)
        };
        path_matches
            && self
                .conditions
                .as_deref()
                .is_none_or(|c| c.matches(request))
    }
}

impl Conditions {
    fn matches<B>(&self, request: &Request<B>) -> bool {
        if !self.methods.is_empty() && !self.methods.contains(request.method()) {
            return false;
        }
        if let Some(want) = &self.host {
            // HTTP/2's `:authority` (or an absolute-form target) names the host; else `Host`.
            let given = match request.uri().authority() {
                Some(authority) => Some(authority.as_str()),
                None => request.headers().get(HOST).and_then(|v| v.to_str().ok()),
            };
            let Some((host, port)) = given.map(split_host) else {
                return false;
            };
            let host = host.strip_suffix('.').unwrap_or(host);
            if !host.eq_ignore_ascii_case(&want.host) {
                return false;
            }
            if want.port.is_some() && port != want.port.as_deref() {
                return false;
            }
        }
        self.headers.iter().all(|(name, value)| {
            let mut values = request.headers().get_all(name).iter();
            // Sent twice, a field has no one value to compare (RFC 9110 §5.3 would join them).
            values.next() == Some(value) && values.next().is_none()
        })
    }

    /// Whether every request these conditions admit, `other` admits too.
    fn covers(&self, other: Option<&Conditions>) -> bool {
        let empty = Conditions {
            host: None,
            methods: Vec::new(),
            headers: Vec::new(),
        };
        let other = other.unwrap_or(&empty);
        let host = match (&other.host, &self.host) {
            (_, None) => true,
            (None, Some(_)) => false,
            (Some(later), Some(earlier)) => {
                later.host == earlier.host && (earlier.port.is_none() || earlier.port == later.port)
            }
        };
        let methods = self.methods.is_empty()
            || (!other.methods.is_empty()
                && other.methods.iter().all(|m| self.methods.contains(m)));
        let headers = self.headers.iter().all(|h| other.headers.contains(h));
        host && methods && headers
    }
}

impl Route {
    /// Whether this route matches every request `later` matches: then `later`, after it, never
    /// takes one.
    fn shadows(&self, later: &Route) -> bool {
        let path = if self.path_exact {
            later.path_exact && later.path_prefix == self.path_prefix
        } else {
            later.path_prefix.starts_with(&self.path_prefix)
        };
        let conditions = match &self.conditions {
            None => true,
            Some(earlier) => earlier.covers(later.conditions.as_deref()),
        };
        path && conditions
    }
}

/// One line per route that can never match because an earlier one matches all it would.
pub(super) fn shadowed(routes: &[Route]) -> Vec<String> {
    let mut warnings = Vec::new();
    for (i, later) in routes.iter().enumerate() {
        if let Some(j) = routes[..i]
            .iter()
            .position(|earlier| earlier.shadows(later))
        {
            warnings.push(format!(
                "routes[{i}] (\"{}\") can never match: routes[{j}] (\"{}\") comes first and matches every request it would",
                later.name, routes[j].name
            ));
        }
    }
    warnings
}
