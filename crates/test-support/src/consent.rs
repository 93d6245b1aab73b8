//! Support for the consent tests: an authority with users and code-flow clients, a tiny
//! cookie-keeping user agent that fills in the sign-in and consent forms, PKCE helpers.

use std::collections::HashMap;

use aws_lc_rs::digest::{digest, SHA256};
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use bytes::Bytes;
use chaingate_authority::{spawn, AuthorityConfig, RunningAuthority};
use http::StatusCode;
use http_body_util::Full;
use serde_json::Value;

pub const IAT: &str = "iat-0123456789abcdef";

pub const CONFIG: &str = r#"
listen = "127.0.0.1:0"
default_audience = "https://api.example/v1"
max_scopes_per_request = 3

[[users]]
username = "alice"
password = "alice-pw"

[[users]]
username = "bob"
password = "bob-pw"

[[clients]]
client_id = "web"
client_secret = "web-secret"
grants = ["authorization_code", "refresh_token"]
redirect_uris = ["https://web.example/cb", "https://web.example/cb2?x=1"]
scope = "read write profile email admin"
client_name = "Web <App>"
response_metadata = true
resource_uri = "https://api.example/v1/resource"

[[clients]]
client_id = "native"
public = true
grants = ["authorization_code", "refresh_token"]
redirect_uris = ["com.example.app:/cb"]
scope = "read write profile"

[[clients]]
client_id = "other"
client_secret = "other-secret"
auth_method = "client_secret_post"
grants = ["authorization_code", "refresh_token"]
redirect_uris = ["https://other.example/cb"]
scope = "read write"

[[clients]]
client_id = "m2m"
client_secret = "m2m-secret"
grants = ["client_credentials"]
scope = "read"
response_metadata = true

[registration]
initial_access_tokens = ["iat-0123456789abcdef"]
scope = "read write profile"
"#;

pub struct Server {
    pub a: RunningAuthority,
}

/// The issuer only: no authority state (it holds client secrets and tokens).
impl std::fmt::Debug for Server {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Server")
            .field("a", &self.a.issuer())
            .finish_non_exhaustive()
    }
}

impl Server {
    pub async fn start() -> Self {
        Self::start_with("").await
    }

    /// `extra` is prepended (top-level keys must come before the tables).
    pub async fn start_with(extra: &str) -> Self {
        let toml = format!("{extra}\n{CONFIG}");
        let a = spawn(AuthorityConfig::from_toml(&toml).unwrap())
            .await
            .unwrap();
        Self { a }
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.a.issuer())
    }
}

pub use crate::agent::{basic, encode, post_form, request, Agent, Page, Site};

impl Site for Server {
    fn url(&self, path: &str) -> String {
        Server::url(self, path)
    }
}

impl Agent {
    /// `GET /authorize` with `params`.
    pub async fn authorize(&mut self, s: &Server, params: &[(&str, &str)]) -> Page {
        self.get(&format!("{}?{}", s.url("/authorize"), encode(params)))
            .await
    }

    pub async fn sign_in(&mut self, s: &Server, page: &Page, user: &str, password: &str) -> Page {
        let (tx, csrf) = (page.hidden("tx"), page.hidden("csrf"));
        let form = [
            ("tx", tx.as_str()),
            ("csrf", csrf.as_str()),
            ("username", user),
            ("password", password),
        ];
        self.post(&s.url("/authorize/login"), &form).await
    }

    /// Authorize → sign in as `user` if asked → the consent page.
    pub async fn consent_page(&mut self, s: &Server, params: &[(&str, &str)], user: &str) -> Page {
        let page = self.authorize(s, params).await;
        assert_eq!(page.status, StatusCode::OK, "{}", page.body);
        if page.body.contains("name=\"password\"") {
            let page = self.sign_in(s, &page, user, &format!("{user}-pw")).await;
            assert!(page.body.contains("name=\"decision\""), "{}", page.body);
            return page;
        }
        page
    }

    /// The whole front channel, approved; returns the redirect's query parameters.
    pub async fn approve(
        &mut self,
        s: &Server,
        params: &[(&str, &str)],
        user: &str,
    ) -> HashMap<String, String> {
        let consent = self.consent_page(s, params, user).await;
        self.decide(s, &consent, "approve").await.redirect_params()
    }
}

/// A PKCE verifier and its S256 challenge.
pub fn pkce() -> (String, String) {
    let mut bytes = [0u8; 32];
    aws_lc_rs::rand::fill(&mut bytes).unwrap();
    let verifier = URL_SAFE_NO_PAD.encode(bytes);
    let challenge = URL_SAFE_NO_PAD.encode(digest(&SHA256, verifier.as_bytes()).as_ref());
    (verifier, challenge)
}

/// JSON request with an optional bearer token (registration).
pub async fn json_request(
    method: &str,
    url: &str,
    token: Option<&str>,
    body: Option<&Value>,
) -> Page {
    let mut req = http::Request::builder().method(method).uri(url);
    if let Some(t) = token {
        req = req.header("authorization", format!("Bearer {t}"));
    }
    let body = match body {
        Some(b) => {
            req = req.header("content-type", "application/json");
            Full::new(Bytes::from(b.to_string()))
        }
        None => Full::default(),
    };
    request(req.body(body).unwrap()).await
}

/// Standard request parameters for the confidential `web` client.
pub fn web_params<'a>(scope: &'a str, challenge: &'a str) -> Vec<(&'a str, &'a str)> {
    vec![
        ("response_type", "code"),
        ("client_id", "web"),
        ("redirect_uri", "https://web.example/cb"),
        ("scope", scope),
        ("state", "st-123"),
        ("code_challenge", challenge),
        ("code_challenge_method", "S256"),
    ]
}

/// Redeems a `web` code.
pub async fn redeem_web(s: &Server, code: &str, verifier: &str) -> Page {
    post_form(
        &s.url("/token"),
        Some(&basic("web", "web-secret")),
        &[
            ("grant_type", "authorization_code"),
            ("code", code),
            ("redirect_uri", "https://web.example/cb"),
            ("code_verifier", verifier),
        ],
    )
    .await
}

/// The unverified claims of a JWT.
pub fn claims(token: &str) -> Value {
    let payload = token.split('.').nth(1).unwrap();
    serde_json::from_slice(&URL_SAFE_NO_PAD.decode(payload).unwrap()).unwrap()
}
