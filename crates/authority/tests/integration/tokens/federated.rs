//! `[[clients]] federated`: a client authenticated by its platform's JWT (a projected service
//! account token, a JWT-SVID) as the client assertion, with the workload issuer's keys from
//! a fetched `jwks_uri` or a `jwks_file`. Every failed check is the same 401 invalid_client.

use std::sync::Arc;

use bytes::Bytes;
use chaingate_authority::{spawn, AuthorityConfig, RunningAuthority};
use http::StatusCode;
use serde_json::{json, Value};

use super::support::*;

const CLUSTER: &str = "https://kubernetes.default.svc.cluster.local";
const SA: &str = "system:serviceaccount:demo:chaingate";
const SPIFFE: &str = "urn:ietf:params:oauth:client-assertion-type:jwt-spiffe";

struct Cluster {
    authority: RunningAuthority,
    key: TestKey,
    _dir: tempfile::TempDir,
}

/// An authority with `wid` (keys at a loopback `jwks_uri`) and `wid-once` (`jwks_file`,
/// `single_use`), both trusting the cluster's service account issuer for one subject.
async fn cluster() -> Cluster {
    let key = TestKey::new("cluster-1");
    let jwks = Arc::new(key.jwks());
    let jwks_addr = chaingate_test_support::serve(move |_req| {
        let jwks = jwks.clone();
        async move { http::Response::new(http_body_util::Full::new(Bytes::from((*jwks).clone()))) }
    })
    .await;
    let dir = tempfile::tempdir().unwrap();
    let jwks_file = dir.path().join("cluster.json");
    std::fs::write(&jwks_file, key.jwks()).unwrap();
    let toml = format!(
        r#"
listen = "127.0.0.1:0"

[[clients]]
client_id = "wid"
grants = ["client_credentials"]
scope = "b:read"
federated = {{ issuer = "{CLUSTER}", subject = "{SA}", jwks_uri = "http://{jwks_addr}/jwks", allow_insecure_http = true }}

[[clients]]
client_id = "wid-once"
grants = ["client_credentials"]
scope = "b:read"
federated = {{ issuer = "{CLUSTER}", subject = "{SA}", jwks_file = {jwks_file:?}, single_use = true }}
"#
    );
    let authority = spawn(AuthorityConfig::from_toml(&toml).unwrap())
        .await
        .unwrap();
    Cluster {
        authority,
        key,
        _dir: dir,
    }
}

impl Cluster {
    /// A projected-token-shaped JWT: `aud` the authority's issuer, one hour, a `jti`.
    fn token(&self, overrides: Value) -> String {
        let mut claims = json!({
            "iss": CLUSTER, "sub": SA, "aud": [self.authority.issuer()],
            "iat": now(), "nbf": now(), "exp": now() + 3600,
            "jti": format!("jti-{}", now_nanos()),
            "kubernetes.io": {"namespace": "demo", "serviceaccount": {"name": "chaingate"}},
        });
        for (k, v) in overrides.as_object().unwrap() {
            claims[k] = v.clone();
        }
        self.key.sign("JWT", &claims)
    }

    async fn token_request(&self, client_id: &str, assertion: &str, kind: &str) -> Reply {
        post(
            &format!("{}/token", self.authority.issuer()),
            None,
            &[
                ("grant_type", "client_credentials"),
                ("client_id", client_id),
                ("client_assertion_type", kind),
                ("client_assertion", assertion),
            ],
        )
        .await
    }
}

fn now_nanos() -> u128 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos()
}

fn refused(r: &Reply, assertion: &str, what: &str) {
    assert_eq!(
        (r.status, r.error()),
        (StatusCode::UNAUTHORIZED, "invalid_client"),
        "{what}: {}",
        r.raw
    );
    assert_eq!(
        r.body["error_description"], "client authentication failed",
        "{what}"
    );
    for part in assertion.split('.') {
        assert!(
            !r.raw.contains(part),
            "{what}: the body echoes the assertion"
        );
    }
}

#[tokio::test]
async fn a_projected_token_from_the_trusted_cluster_gets_a_token_by_jwks_uri_and_jwks_file() {
    let c = cluster().await;
    let token = c.token(json!({}));
    for client in ["wid", "wid-once"] {
        let assertion = c.token(json!({}));
        let r = c.token_request(client, &assertion, JWT_BEARER).await;
        assert_eq!(claims(&r.token())["client_id"], client);
    }
    // jwt-spiffe is the same check; and the token endpoint URL is an accepted audience too.
    let r = c.token_request("wid", &token, SPIFFE).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.raw);
    let aimed = c.token(json!({"aud": format!("{}/token", c.authority.issuer())}));
    let r = c.token_request("wid", &aimed, JWT_BEARER).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.raw);
    // Not single_use: the kubelet hands the same token to every request until it rotates it.
    let r = c.token_request("wid", &token, JWT_BEARER).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.raw);
}

#[tokio::test]
async fn every_failed_check_is_the_same_invalid_client() {
    let captured = chaingate_test_support::logs::Logs::global();
    let mut sent = Vec::new();
    let c = cluster().await;
    let other = TestKey::new("cluster-1");
    let forged = other.sign("JWT", &claims(&c.token(json!({}))));
    refused(
        &c.token_request("wid", &forged, JWT_BEARER).await,
        &forged,
        "wrong key",
    );
    refused(
        &c.token_request("wid-once", &forged, JWT_BEARER).await,
        &forged,
        "wrong key (jwks_file)",
    );
    for (what, overrides) in [
        ("wrong iss", json!({"iss": "https://other-cluster.example"})),
        (
            "wrong sub",
            json!({"sub": "system:serviceaccount:demo:intruder"}),
        ),
        ("wrong aud", json!({"aud": ["https://sts.other.example"]})),
        (
            "expired",
            json!({"iat": now() - 7200, "nbf": now() - 7200, "exp": now() - 3600}),
        ),
        ("not yet valid", json!({"nbf": now() + 3600})),
    ] {
        let assertion = c.token(overrides);
        refused(
            &c.token_request("wid", &assertion, JWT_BEARER).await,
            &assertion,
            what,
        );
        sent.push(assertion);
    }
    sent.push(forged);
    // The log says which check failed, for which client; nothing of the assertion.
    let logs = captured.text();
    let line = logs
        .lines()
        .find(|l| l.contains("federated client assertion refused") && l.contains("\"sub\""))
        .expect("a log line for the wrong sub");
    assert!(line.contains("\"wid\""), "{line}");
    for assertion in &sent {
        for part in assertion.split('.').skip(1) {
            assert!(
                !logs.contains(part),
                "a piece of an assertion is in the logs"
            );
        }
    }
}

#[tokio::test]
async fn with_single_use_a_replayed_assertion_is_invalid_client() {
    let c = cluster().await;
    let assertion = c.token(json!({}));
    let r = c.token_request("wid-once", &assertion, JWT_BEARER).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.raw);
    refused(
        &c.token_request("wid-once", &assertion, JWT_BEARER).await,
        &assertion,
        "replay",
    );
    let no_jti = c.token(json!({"jti": null}));
    refused(
        &c.token_request("wid-once", &no_jti, JWT_BEARER).await,
        &no_jti,
        "single_use without jti",
    );
}

#[tokio::test]
async fn config_errors_name_the_key() {
    let base = |federated: &str, extra: &str| {
        format!(
            "listen = \"127.0.0.1:0\"\n[[clients]]\nclient_id = \"wid\"\ngrants = [\"client_credentials\"]\n{extra}federated = {{ {federated} }}\n"
        )
    };
    let error = |toml: String| AuthorityConfig::from_toml(&toml).unwrap_err().to_string();
    let ok = format!("issuer = \"{CLUSTER}\", subject = \"{SA}\", jwks_uri = \"https://k8s.example/openid/v1/jwks\"");
    assert!(AuthorityConfig::from_toml(&base(&ok, "")).is_ok());
    let e = error(base(&ok, "client_secret = \"s\"\n"));
    assert!(e.contains("clients[0].client_secret"), "{e}");
    let e = error(base(&format!("{ok}, jwks_file = \"x.json\""), ""));
    assert!(e.contains("clients[0].federated.jwks_uri"), "{e}");
    let e = error(base(&format!("{ok}, secret = \"x\""), ""));
    assert!(e.contains("secret"), "unknown key named: {e}");
    let e = error(base(
        &format!(
            "issuer = \"{CLUSTER}\", subject = \"{SA}\", jwks_uri = \"http://k8s.example/jwks\""
        ),
        "",
    ));
    assert!(e.contains("clients[0].federated.jwks_uri"), "{e}");
}
