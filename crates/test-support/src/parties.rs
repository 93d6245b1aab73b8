//! Two in-process authorities over real HTTP: A (the caller's domain, issues reciprocal codes)
//! and B (issues tokens with `reciprocal`, accepts the reciprocal grant, redeems codes at A).
//! A cookie-keeping user agent drives the sign-in and consent forms.

use std::time::Duration;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use chaingate_authority::{spawn, AuthorityConfig, RunningAuthority};
use http::StatusCode;
use serde_json::Value;

pub const RECIPROCAL: &str = "urn:ietf:params:oauth:grant-type:reciprocal";

/// Party A: users, the gateway (agent), party B's client (recipient) and two more clients.
pub const A_CONFIG: &str = r#"
listen = "127.0.0.1:0"

[[users]]
username = "alice"
password = "alice-pw"

[[users]]
username = "bob"
password = "bob-pw"

[[clients]]
client_id = "gateway"
client_secret = "gw-secret"
grants = ["client_credentials"]

[[clients]]
client_id = "gateway2"
client_secret = "gw2-secret"
grants = ["client_credentials"]

[[clients]]
client_id = "party-b"
client_secret = "b-at-a-secret"
grants = ["authorization_code", "refresh_token"]
redirect_uris = ["https://b.example/cb"]
scope = "contacts.read contacts.write calendar"
client_name = "Party B"

[[clients]]
client_id = "other-rp"
client_secret = "other-secret"
grants = ["authorization_code"]
redirect_uris = ["https://other.example/cb"]
scope = "contacts.read calendar"
client_name = "Other RP"

[[clients]]
client_id = "web"
client_secret = "web-secret"
grants = ["authorization_code"]
redirect_uris = ["https://web.example/cb"]
scope = "profile"

[[clients]]
client_id = "party-b-post"
client_secret = "b-post-secret"
auth_method = "client_secret_post"
grants = ["authorization_code"]
redirect_uris = ["https://b.example/cb"]
scope = "contacts.read"

[[reciprocal_policies]]
agent = "gateway"
recipient = "party-b"
scope = "contacts.read contacts.write"

[[reciprocal_policies]]
agent = "gateway"
recipient = "party-b-post"
scope = "contacts.read"
"#;

/// How B authenticates at A by default.
pub const B_AT_A: &str = "client_id = \"party-b\"\nclient_secret = \"b-at-a-secret\"";

/// Party B's clients; `[reciprocal]` (pointing at A) is prepended at start.
pub const B_CLIENTS: &str = r#"
[[users]]
username = "alice"
password = "alice-pw"

[[clients]]
client_id = "gateway-at-b"
client_secret = "gwb-secret"
grants = ["client_credentials", "authorization_code"]
redirect_uris = ["https://gw.example/cb"]
scope = "files.read"
reciprocal = "contacts.read"

[[clients]]
client_id = "plain"
client_secret = "plain-secret"
grants = ["client_credentials", "authorization_code"]
redirect_uris = ["https://plain.example/cb"]
scope = "files.read"
"#;

pub struct Parties {
    pub a: RunningAuthority,
    pub b: RunningAuthority,
}

/// The two issuers only: no authority state (it holds client secrets and tokens).
impl std::fmt::Debug for Parties {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Parties")
            .field("a", &self.a.issuer())
            .field("b", &self.b.issuer())
            .finish_non_exhaustive()
    }
}

impl Parties {
    pub async fn start() -> Self {
        Self::start_with(B_AT_A).await
    }

    /// `b_credentials` goes into B's `[reciprocal]` table (client id, secret, method).
    pub async fn start_with(b_credentials: &str) -> Self {
        let a = spawn(AuthorityConfig::from_toml(A_CONFIG).unwrap())
            .await
            .unwrap();
        let b_toml = format!(
            "listen = \"127.0.0.1:0\"\n\n[reciprocal]\ntoken_endpoint = \"{}/token\"\n\
             allow_insecure_http = true\ntimeout = \"5s\"\n{b_credentials}\n{B_CLIENTS}",
            a.issuer()
        );
        let b = spawn(AuthorityConfig::from_toml(&b_toml).unwrap())
            .await
            .unwrap();
        Self { a, b }
    }
}

pub fn url(server: &RunningAuthority, path: &str) -> String {
    format!("{}{path}", server.issuer())
}

pub use crate::agent::{basic, encode, get, post_form, request, Agent, Page, Site};

impl Agent {
    /// Signs in on a sign-in page if shown; returns the consent page.
    pub async fn through_sign_in(
        &mut self,
        server: &RunningAuthority,
        page: Page,
        user: &str,
    ) -> Page {
        assert_eq!(page.status, StatusCode::OK, "{}", page.body);
        if !page.body.contains("name=\"password\"") {
            return page;
        }
        let (tx, csrf) = (page.hidden("tx"), page.hidden("csrf"));
        let password = format!("{user}-pw");
        let form = [
            ("tx", tx.as_str()),
            ("csrf", csrf.as_str()),
            ("username", user),
            ("password", password.as_str()),
        ];
        let consent = self.post(&url(server, "/authorize/login"), &form).await;
        assert!(
            consent.body.contains("name=\"decision\""),
            "{}",
            consent.body
        );
        consent
    }
}

/// The whole code flow for a confidential client without PKCE: returns the token response.
pub async fn user_token(
    server: &RunningAuthority,
    client: (&str, &str),
    redirect_uri: &str,
    scope: &str,
    user: &str,
) -> Page {
    let mut agent = Agent::default();
    let query = encode(&[
        ("response_type", "code"),
        ("client_id", client.0),
        ("redirect_uri", redirect_uri),
        ("scope", scope),
        ("state", "s"),
    ]);
    let page = agent
        .get(&format!("{}?{query}", url(server, "/authorize")))
        .await;
    let consent = agent.through_sign_in(server, page, user).await;
    let q = agent
        .decide(server, &consent, "approve")
        .await
        .redirect_params();
    let expected = (client.0 == "gateway-at-b").then(|| "contacts.read".to_string());
    assert_eq!(
        q.get("reciprocal"),
        expected.as_ref(),
        "in the authorization response"
    );
    post_form(
        &url(server, "/token"),
        Some(&basic(client.0, client.1)),
        &[
            ("grant_type", "authorization_code"),
            ("code", &q["code"]),
            ("redirect_uri", redirect_uri),
        ],
    )
    .await
}

/// Alice's access token at A (via A's `web` client): the subject_token for codes.
pub async fn alice_at_a(p: &Parties) -> String {
    user_token(
        &p.a,
        ("web", "web-secret"),
        "https://web.example/cb",
        "profile",
        "alice",
    )
    .await
    .field("access_token")
}

/// Alice's access token at B for the gateway's client there (whose responses carry `reciprocal`).
pub async fn alice_at_b(p: &Parties) -> Page {
    user_token(
        &p.b,
        ("gateway-at-b", "gwb-secret"),
        "https://gw.example/cb",
        "files.read",
        "alice",
    )
    .await
}

/// `POST A/reciprocal/code` as `agent`.
pub async fn code_request(
    p: &Parties,
    agent: (&str, &str),
    subject_token: &str,
    recipient: &str,
    scope: &str,
) -> Page {
    post_form(
        &url(&p.a, "/reciprocal/code"),
        Some(&basic(agent.0, agent.1)),
        &[
            ("subject_token", subject_token),
            ("recipient", recipient),
            ("scope", scope),
        ],
    )
    .await
}

/// The reciprocal grant at B from the gateway's client.
pub async fn deliver(p: &Parties, code: &str, access_token: &str) -> Page {
    post_form(
        &url(&p.b, "/token"),
        Some(&basic("gateway-at-b", "gwb-secret")),
        &[
            ("grant_type", RECIPROCAL),
            ("code", code),
            ("client_id", "gateway-at-b"),
            ("access_token", access_token),
        ],
    )
    .await
}

/// RFC 7662 at A, as the gateway.
pub async fn introspect_at_a(p: &Parties, token: &str) -> Value {
    post_form(
        &url(&p.a, "/introspect"),
        Some(&basic("gateway", "gw-secret")),
        &[("token", token)],
    )
    .await
    .json()
}

/// Waits (bounded) until B has finished `count` redemptions; returns (ok, failed).
pub async fn redemptions(p: &Parties, count: u64) -> (u64, u64) {
    p.b.wait_reciprocal_redemptions(count, Duration::from_secs(10))
        .await
}

/// The unverified claims of a JWT.
pub fn claims(token: &str) -> Value {
    let payload = token.split('.').nth(1).unwrap();
    serde_json::from_slice(&URL_SAFE_NO_PAD.decode(payload).unwrap()).unwrap()
}
