//! `grant = "identity-chaining"` and `grant = "id-jag"` between two in-process authorities:
//! A (the caller's authority, which trusts the IdP that issued AT1) and B (the upstream's),
//! with the gateway between them (draft-ietf-oauth-identity-chaining-11,
//! draft-ietf-oauth-identity-assertion-authz-grant-02).

use chaingate_test_support as support;

use base64::Engine as _;
use chaingate_authority::{self as authority, AuthorityConfig, RunningAuthority};
use support::authority::post;
use support::logs::Logs;
use support::*;

fn claims_of(jwt: &str) -> serde_json::Value {
    let payload = jwt.split('.').nth(1).unwrap();
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(payload)
        .unwrap();
    serde_json::from_slice(&bytes).unwrap()
}

async fn start(toml: &str) -> RunningAuthority {
    authority::spawn(AuthorityConfig::from_toml(toml).unwrap())
        .await
        .unwrap()
}

/// The IdP that issued the caller's token (AT1, `aud` urn:gateway, `sub` app).
async fn idp() -> RunningAuthority {
    start(
        r#"
listen = "127.0.0.1:0"
default_audience = "urn:gateway"
[[clients]]
client_id = "app"
client_secret = "app-secret"
grants = ["client_credentials"]
scope = "a:read"
"#,
    )
    .await
}

async fn at1(idp: &RunningAuthority) -> String {
    post(
        &format!("{}/token", idp.issuer()),
        Some(&support::authority::basic("app", "app-secret")),
        &[("grant_type", "client_credentials"), ("scope", "a:read")],
    )
    .await
    .token()
}

/// A free loopback address: B's issuer must be known before A (its peer) starts.
fn free_addr() -> std::net::SocketAddr {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
}

struct Domains {
    idp: RunningAuthority,
    a: RunningAuthority,
    b: RunningAuthority,
}

/// A trusts the IdP and issues grants for B; B trusts A's grants. `a_extra` goes into A's
/// top level, `b_extra` into B's.
async fn domains(a_extra: &str, b_extra: &str) -> Domains {
    let idp = idp().await;
    let b_addr = free_addr();
    let b_issuer = format!("http://{b_addr}");
    let a = start(&format!(
        r#"
listen = "127.0.0.1:0"
{a_extra}
[[clients]]
client_id = "gateway"
client_secret = "a-secret"
grants = ["token-exchange"]
scope = "b:read"
[[trusted_issuers]]
issuer = "{i}"
jwks_uri = "{i}/jwks.json"
allow_insecure_http = true
audiences = ["urn:gateway"]
scope_map = {{ "a:read" = "b:read" }}
[[peer_authorities]]
issuer = "{b_issuer}"
client_ids = {{ gateway = "gateway-b" }}
"#,
        i = idp.issuer()
    ))
    .await;
    let b = start(&format!(
        r#"
listen = "{b_addr}"
default_audience = "urn:b-api"
{b_extra}
[[clients]]
client_id = "gateway-b"
client_secret = "b-secret"
grants = ["jwt-bearer"]
scope = "b:read"
[[peer_authorities]]
issuer = "{a}"
jwks_uri = "{a}/jwks.json"
allow_insecure_http = true
"#,
        a = a.issuer()
    ))
    .await;
    assert_eq!(b.issuer(), b_issuer);
    Domains { idp, a, b }
}

fn gateway_toml(d: &Domains, profile: &str, upstream: &Upstream) -> String {
    format!(
        r#"
listen = "127.0.0.1:0"
admin_listen = "127.0.0.1:0"
[domains.a]
issuer = "{a}"
grant = "token-exchange"
client_id = "gateway"
client_secret = "a-secret"
allow_insecure_http = true
[domains.b]
issuer = "{b}"
grant = "{profile}"
chaining_domain = "a"
client_id = "gateway-b"
client_secret = "b-secret"
allow_insecure_http = true
scope = "b:read"
[[routes]]
name = "api"
path_prefix = "/"
upstream = "{u}"
domain = "b"
"#,
        a = d.a.issuer(),
        b = d.b.issuer(),
        u = upstream.url()
    )
}

/// Waits until both discoveries (B's, and step one's at A) are done: `/ready` says more than
/// a bare "not ready" (it is ready, or names a refused domain). Polls an event, bounded.
async fn discovered(gw: &chaingate_gateway::Running) -> Answer {
    for _ in 0..500 {
        let ready = get(gw.admin_addr, "/ready", None).await;
        if ready.body != "not ready\n" {
            return ready;
        }
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    panic!("discovery did not finish");
}

fn forwarded(answer: &Answer) -> String {
    answer.json()["authorization"]
        .as_str()
        .unwrap()
        .strip_prefix("Bearer ")
        .unwrap()
        .to_string()
}

async fn end_to_end(profile: &str) {
    let logs = Logs::global();
    let d = domains("", "").await;
    let upstream = Upstream::start().await;
    let gw = gateway(&gateway_toml(&d, profile, &upstream)).await;
    assert_eq!(discovered(&gw).await.status, 200);
    let token = at1(&d.idp).await;
    let addr = gw.addr;
    // Concurrent misses share one exchange: one grant from A, one token from B.
    let burst: Vec<_> = (0..6)
        .map(|_| {
            let token = token.clone();
            tokio::spawn(async move { get(addr, "/x", Some(&token)).await })
        })
        .collect();
    let mut at2 = String::new();
    for answer in burst {
        let answer = answer.await.unwrap();
        assert_eq!(answer.status, 200, "{}", answer.body);
        at2 = forwarded(&answer);
    }
    // The upstream got B's token, bought with A's grant: B's issuer, A's transcribed subject.
    let claims = claims_of(&at2);
    assert_eq!(claims["iss"], d.b.issuer());
    assert_eq!(claims["sub"], "app");
    assert_eq!(claims["client_id"], "gateway-b");
    assert_eq!(claims["scope"], "b:read");
    let scrape = metrics(&gw).await;
    for domain in ["a", "b"] {
        assert_eq!(
            sample(
                &scrape,
                &format!(
                    r#"chaingate_token_exchanges_total{{domain="{domain}",outcome="issued"}}"#
                )
            ),
            Some(1.0),
            "{scrape}"
        );
    }
    // B says which kind of grant it accepted.
    let text = logs.text();
    assert!(
        text.contains(&format!(r#""id_jag":{}"#, profile == "id-jag")),
        "{text}"
    );
    // No token of any step in logs or metrics (every JWT starts with a JSON header).
    for (name, seen) in [("logs", &text), ("metrics", &scrape)] {
        assert!(!seen.contains(&token), "AT1 in {name}");
        assert!(!seen.contains(&at2), "AT2 in {name}");
    }
    // Nor the grant, which the test never sees: no JWT at all (every one starts `eyJ`).
    assert!(!scrape.contains("eyJ"), "a JWT in the metrics");
    assert!(
        !text
            .lines()
            .filter(|l| l.contains("chaining") || l.contains("chaingate_gateway"))
            .any(|l| l.contains("eyJ")),
        "a JWT in the chaining logs"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn identity_chaining_profile_end_to_end() {
    end_to_end("identity-chaining").await;
}

#[tokio::test(flavor = "multi_thread")]
async fn id_jag_profile_end_to_end() {
    end_to_end("id-jag").await;
}

/// B's tokens outlive nothing in the cache (20 s < the 30 s expiry skew), so every request is a
/// new exchange: each asks A for a new ID-JAG, since B refuses one it has seen.
#[tokio::test(flavor = "multi_thread")]
async fn every_exchange_gets_a_fresh_id_jag() {
    let d = domains("", "token_ttl = \"20s\"").await;
    let upstream = Upstream::start().await;
    let gw = gateway(&gateway_toml(&d, "id-jag", &upstream)).await;
    assert_eq!(discovered(&gw).await.status, 200);
    let token = at1(&d.idp).await;
    let mut seen = Vec::new();
    for _ in 0..3 {
        let answer = get(gw.addr, "/x", Some(&token)).await;
        assert_eq!(answer.status, 200, "{}", answer.body);
        seen.push(claims_of(&forwarded(&answer))["jti"].clone());
    }
    seen.dedup();
    assert_eq!(seen.len(), 3);
    let scrape = metrics(&gw).await;
    assert_eq!(
        sample(
            &scrape,
            r#"chaingate_token_exchanges_total{domain="a",outcome="issued"}"#
        ),
        Some(3.0),
        "{scrape}"
    );
}

/// A advertises identity_chaining_requested_token_types_supported without `jwt`: the
/// identity-chaining domain is refused (named on /ready, 502 without asking A or B).
#[tokio::test(flavor = "multi_thread")]
async fn a_chaining_domain_without_the_type_is_refused() {
    let d = domains("identity_chaining_token_types = [\"id-jag\"]", "").await;
    let metadata = support::authority::get(&format!(
        "{}/.well-known/oauth-authorization-server",
        d.a.issuer()
    ))
    .await;
    assert_eq!(
        metadata.body["identity_chaining_requested_token_types_supported"],
        serde_json::json!(["urn:ietf:params:oauth:token-type:id-jag"])
    );
    let upstream = Upstream::start().await;
    let gw = gateway(&gateway_toml(&d, "identity-chaining", &upstream)).await;
    let ready = discovered(&gw).await;
    assert_eq!(ready.status, 503, "{}", ready.body);
    assert!(
        ready.body.contains(
            "domain b: chaining_domain identity_chaining_requested_token_types_supported lacks urn:ietf:params:oauth:token-type:jwt"
        ),
        "{}",
        ready.body
    );
    let token = at1(&d.idp).await;
    assert_eq!(get(gw.addr, "/x", Some(&token)).await.status, 502);
    let scrape = metrics(&gw).await;
    assert_eq!(
        sample(
            &scrape,
            r#"chaingate_token_exchanges_total{domain="a",outcome="issued"}"#
        )
        .unwrap_or(0.0),
        0.0,
        "{scrape}"
    );
    // The id-jag profile, which A does advertise, is ready on the same authorities.
    let gw = gateway(&gateway_toml(&d, "id-jag", &upstream)).await;
    assert_eq!(discovered(&gw).await.status, 200);
    assert_eq!(get(gw.addr, "/x", Some(&token)).await.status, 200);
}

/// B enforces the ID-JAG rules: single use, `client_id` = the authenticated client.
#[tokio::test(flavor = "multi_thread")]
async fn b_refuses_a_replayed_or_misbound_id_jag() {
    let d = domains("", "").await;
    let token = at1(&d.idp).await;
    let ask = |audience: String| {
        let token = token.clone();
        let a = d.a.issuer().to_string();
        async move {
            post(
                &format!("{a}/token"),
                Some(&support::authority::basic("gateway", "a-secret")),
                &[
                    (
                        "grant_type",
                        "urn:ietf:params:oauth:grant-type:token-exchange",
                    ),
                    ("subject_token", &token),
                    (
                        "subject_token_type",
                        "urn:ietf:params:oauth:token-type:access_token",
                    ),
                    (
                        "requested_token_type",
                        "urn:ietf:params:oauth:token-type:id-jag",
                    ),
                    ("audience", &audience),
                ],
            )
            .await
        }
    };
    let answer = ask(d.b.issuer().to_string()).await;
    assert_eq!(answer.body["token_type"], "N_A", "{}", answer.raw);
    assert_eq!(
        answer.body["issued_token_type"],
        "urn:ietf:params:oauth:token-type:id-jag"
    );
    let grant = answer.token();
    assert_eq!(
        support::authority::header(&grant)["typ"],
        "oauth-id-jag+jwt"
    );
    let claims = claims_of(&grant);
    assert_eq!(claims["aud"], d.b.issuer());
    assert_eq!(claims["client_id"], "gateway-b");
    assert_eq!(claims["sub"], "app");
    // An audience that is no peer: invalid_target (identity chaining §2.3.2).
    assert_eq!(
        ask("https://c.example".into()).await.error(),
        "invalid_target"
    );
    let redeem = |grant: String, client: &'static str, secret: &'static str| {
        let b = d.b.issuer().to_string();
        async move {
            post(
                &format!("{b}/token"),
                Some(&support::authority::basic(client, secret)),
                &[
                    ("grant_type", "urn:ietf:params:oauth:grant-type:jwt-bearer"),
                    ("assertion", &grant),
                ],
            )
            .await
        }
    };
    let first = redeem(grant.clone(), "gateway-b", "b-secret").await;
    assert_eq!(first.status, 200, "{}", first.raw);
    let replay = redeem(grant.clone(), "gateway-b", "b-secret").await;
    assert_eq!(replay.error(), "invalid_grant", "{}", replay.raw);
    assert!(!replay.raw.contains(&grant));
    // A fresh ID-JAG for gateway-b, presented by another client of B.
    let other = ask(d.b.issuer().to_string()).await.token();
    let misbound = redeem(other, "gateway-b", "wrong").await;
    assert_eq!(misbound.error(), "invalid_client");
}

/// An ID-JAG from A for `audience`, asked by the gateway with the caller's token.
async fn id_jag(d: &Domains, token: &str, audience: &str) -> support::authority::Reply {
    post(
        &format!("{}/token", d.a.issuer()),
        Some(&support::authority::basic("gateway", "a-secret")),
        &[
            (
                "grant_type",
                "urn:ietf:params:oauth:grant-type:token-exchange",
            ),
            ("subject_token", token),
            (
                "subject_token_type",
                "urn:ietf:params:oauth:token-type:access_token",
            ),
            (
                "requested_token_type",
                "urn:ietf:params:oauth:token-type:id-jag",
            ),
            ("audience", audience),
        ],
    )
    .await
}

/// `grant` presented at B's jwt-bearer grant by `client`.
async fn redeem_at_b(
    d: &Domains,
    grant: &str,
    client: &str,
    secret: &str,
) -> support::authority::Reply {
    post(
        &format!("{}/token", d.b.issuer()),
        Some(&support::authority::basic(client, secret)),
        &[
            ("grant_type", "urn:ietf:params:oauth:grant-type:jwt-bearer"),
            ("assertion", grant),
        ],
    )
    .await
}

#[tokio::test]
async fn b_refuses_an_id_jag_for_another_server_or_another_client() {
    // A also serves a third authority C; B has a second client of its own.
    let d = domains(
        "[[peer_authorities]]\nissuer = \"https://c.example\"\nclient_ids = { gateway = \"gateway-b\" }\n",
        "[[clients]]\nclient_id = \"other-b\"\nclient_secret = \"other-secret\"\ngrants = [\"jwt-bearer\"]\nscope = \"b:read\"\n",
    )
    .await;
    let token = at1(&d.idp).await;

    // Signed by A, a peer B trusts, but aimed at C: B is not its audience (ID-JAG §4.3).
    let for_c = id_jag(&d, &token, "https://c.example").await.token();
    assert_eq!(claims_of(&for_c)["aud"], "https://c.example");
    // Bound to gateway-b as at B, so the audience alone tells them apart.
    assert_eq!(claims_of(&for_c)["client_id"], "gateway-b");
    let refused = redeem_at_b(&d, &for_c, "gateway-b", "b-secret").await;
    assert_eq!(refused.error(), "invalid_grant", "{}", refused.raw);

    // Aimed at B for gateway-b, presented by another client of B: the grant is not its own.
    let for_b = id_jag(&d, &token, d.b.issuer()).await.token();
    assert_eq!(claims_of(&for_b)["client_id"], "gateway-b");
    let misbound = redeem_at_b(&d, &for_b, "other-b", "other-secret").await;
    assert_eq!(misbound.error(), "invalid_grant", "{}", misbound.raw);
    assert!(!misbound.raw.contains(&for_b));
    // Not spent by the refusal: its own client still redeems it once.
    let own = redeem_at_b(&d, &for_b, "gateway-b", "b-secret").await;
    assert_eq!(own.status, 200, "{}", own.raw);
}
