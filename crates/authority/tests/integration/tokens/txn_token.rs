//! The authority as a Transaction Token Service (draft-ietf-oauth-transaction-tokens-10 §7).

use http::StatusCode;

use super::support::*;

const TXN_TOKEN: &str = "urn:ietf:params:oauth:token-type:txn_token";

/// B serves the trust domain `trust.b.example`; only `gateway` may ask.
const SERVICE: &str = r#"
[txn_token_service]
audiences = ["trust.b.example"]
clients = ["gateway"]
lifetime = "30s"
"#;

async fn txn_request(d: &Domains, who: (&str, &str), params: &[(&str, &str)]) -> Reply {
    let mut all = vec![
        ("grant_type", EXCHANGE),
        ("requested_token_type", TXN_TOKEN),
        ("subject_token_type", AT_TYPE),
    ];
    all.extend_from_slice(params);
    post(&d.b_url("/token"), Some(&basic(who.0, who.1)), &all).await
}

#[tokio::test]
async fn a_txn_token_request_answers_a_short_txntoken_jwt_with_the_drafts_claims() {
    let d = Domains::start_with(SERVICE).await;
    let at1 = d.at1("a:read a:write").await;
    let r = txn_request(
        &d,
        ("gateway", "gw-secret"),
        &[
            ("subject_token", &at1),
            ("audience", "trust.b.example"),
            ("scope", "b:read"),
            ("request_context", r#"{"req_ip":"192.0.2.7"}"#),
            ("request_details", r#"{"method":"GET","path":"/orders"}"#),
        ],
    )
    .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.raw);
    // §7.4: N_A, txn_token, no refresh token.
    assert_eq!(r.body["token_type"], "N_A");
    assert_eq!(r.body["issued_token_type"], TXN_TOKEN);
    assert!(r.body.get("refresh_token").is_none());
    let token = r.token();
    assert_eq!(header(&token)["typ"], "txntoken+jwt");
    let c = claims(&token);
    assert_eq!(c["aud"], "trust.b.example");
    assert_eq!(c["iss"], d.b.issuer());
    assert_eq!(c["sub"], "app");
    assert_eq!(c["scope"], "b:read");
    assert_eq!(c["req_wl"], "gateway");
    assert_eq!(c["rctx"]["req_ip"], "192.0.2.7");
    assert_eq!(c["tctx"]["path"], "/orders");
    let (iat, exp) = (c["iat"].as_u64().unwrap(), c["exp"].as_u64().unwrap());
    assert!(exp > iat && exp - iat <= 30, "{c}");
    assert!(c["txn"].as_str().is_some_and(|t| t.len() >= 16), "{c}");
    // A fresh `txn` for every request (§7.3), not a reused token.
    let again = txn_request(
        &d,
        ("gateway", "gw-secret"),
        &[
            ("subject_token", &at1),
            ("audience", "trust.b.example"),
            ("scope", "b:read"),
        ],
    )
    .await;
    assert_ne!(claims(&again.token())["txn"], c["txn"]);
}

#[tokio::test]
async fn a_trust_domain_the_service_does_not_serve_is_invalid_target() {
    let d = Domains::start_with(SERVICE).await;
    let at1 = d.at1("a:read").await;
    let r = txn_request(
        &d,
        ("gateway", "gw-secret"),
        &[
            ("subject_token", &at1),
            ("audience", "urn:b:api"),
            ("scope", "b:read"),
        ],
    )
    .await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST, "{}", r.raw);
    assert_eq!(r.error(), "invalid_target");
}

#[tokio::test]
async fn a_client_not_listed_may_not_request_txn_tokens() {
    // `other-gw` may exchange tokens, but is not a workload the service issues Txn-Tokens to.
    let d = Domains::start_with(&format!(
        r#"{SERVICE}
[[clients]]
client_id = "other-gw"
client_secret = "other-secret"
grants = ["token-exchange"]
scope = "b:read"
"#
    ))
    .await;
    let at1 = d.at1("a:read").await;
    let r = txn_request(
        &d,
        ("other-gw", "other-secret"),
        &[
            ("subject_token", &at1),
            ("audience", "trust.b.example"),
            ("scope", "b:read"),
        ],
    )
    .await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST, "{}", r.raw);
    assert_eq!(r.error(), "unauthorized_client", "{}", r.raw);
    assert!(!r.raw.contains(&at1));
}

#[tokio::test]
async fn without_the_service_table_a_txn_token_is_an_unsupported_requested_token_type() {
    let d = Domains::start().await;
    let at1 = d.at1("a:read").await;
    let r = txn_request(
        &d,
        ("gateway", "gw-secret"),
        &[
            ("subject_token", &at1),
            ("audience", "trust.b.example"),
            ("scope", "b:read"),
        ],
    )
    .await;
    assert_eq!(r.error(), "invalid_request", "{}", r.raw);
}

#[tokio::test]
async fn scope_is_required_and_never_wider_than_the_subject_tokens() {
    let d = Domains::start_with(SERVICE).await;
    let at1 = d.at1("a:read").await;
    let missing = txn_request(
        &d,
        ("gateway", "gw-secret"),
        &[("subject_token", &at1), ("audience", "trust.b.example")],
    )
    .await;
    assert_eq!(missing.error(), "invalid_request", "{}", missing.raw);
    // a:read maps to b:read only: b:write is beyond the subject token (§12.6).
    let wider = txn_request(
        &d,
        ("gateway", "gw-secret"),
        &[
            ("subject_token", &at1),
            ("audience", "trust.b.example"),
            ("scope", "b:write"),
        ],
    )
    .await;
    assert_eq!(wider.error(), "invalid_scope", "{}", wider.raw);
}

#[tokio::test]
async fn request_context_that_is_not_a_json_object_is_invalid_request() {
    let d = Domains::start_with(SERVICE).await;
    let at1 = d.at1("a:read").await;
    let r = txn_request(
        &d,
        ("gateway", "gw-secret"),
        &[
            ("subject_token", &at1),
            ("audience", "trust.b.example"),
            ("scope", "b:read"),
            ("request_context", "[1,2]"),
        ],
    )
    .await;
    assert_eq!(r.error(), "invalid_request", "{}", r.raw);
}

#[test]
fn config_names_the_key_of_an_unknown_client_and_of_a_long_lifetime() {
    let base = "listen = \"127.0.0.1:0\"\n[[clients]]\nclient_id = \"gw\"\nclient_secret = \"s\"\ngrants = [\"client_credentials\"]\n";
    let unknown =
        format!("{base}[txn_token_service]\naudiences = [\"t\"]\nclients = [\"nobody\"]\n");
    let e = chaingate_authority::AuthorityConfig::from_toml(&unknown).unwrap_err();
    assert!(
        e.to_string().contains("txn_token_service.clients[0]"),
        "{e}"
    );
    let no_grant = format!("{base}[txn_token_service]\naudiences = [\"t\"]\nclients = [\"gw\"]\n");
    let e = chaingate_authority::AuthorityConfig::from_toml(&no_grant).unwrap_err();
    assert!(e.to_string().contains("token-exchange"), "{e}");
    let long = format!(
        "{base}[txn_token_service]\naudiences = [\"t\"]\nclients = []\nlifetime = \"1h\"\n"
    );
    let e = chaingate_authority::AuthorityConfig::from_toml(&long).unwrap_err();
    assert!(e.to_string().contains("txn_token_service.lifetime"), "{e}");
    let typo =
        format!("{base}[txn_token_service]\naudiences = [\"t\"]\nclients = []\nlifetim = \"1s\"\n");
    assert!(chaingate_authority::AuthorityConfig::from_toml(&typo).is_err());
}
