//! Metadata, JWKS, introspection, revocation, configuration errors and shutdown.

use http::StatusCode;
use serde_json::Value;

use chaingate_authority::{spawn, AuthorityConfig};

use super::support::*;

#[tokio::test]
async fn metadata_describes_endpoints_grants_and_auth_methods() {
    let d = Domains::start().await;
    for path in [
        "/.well-known/oauth-authorization-server",
        "/.well-known/openid-configuration",
    ] {
        let r = get(&d.b_url(path)).await;
        assert_eq!(r.status, StatusCode::OK);
        assert!(r.headers["content-type"]
            .to_str()
            .unwrap()
            .starts_with("application/json"));
        let m = &r.body;
        let iss = d.b.issuer();
        assert_eq!(m["issuer"], iss);
        assert_eq!(m["token_endpoint"], format!("{iss}/token"));
        assert_eq!(m["jwks_uri"], format!("{iss}/jwks.json"));
        assert_eq!(m["introspection_endpoint"], format!("{iss}/introspect"));
        assert_eq!(m["revocation_endpoint"], format!("{iss}/revoke"));
        let grants: Vec<&str> = m["grant_types_supported"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_str().unwrap())
            .collect();
        for g in ["client_credentials", CHAIN, EXCHANGE] {
            assert!(grants.contains(&g), "{g}");
        }
        let methods = m["token_endpoint_auth_methods_supported"].to_string();
        for method in [
            "client_secret_basic",
            "client_secret_post",
            "private_key_jwt",
        ] {
            assert!(methods.contains(method), "{method}");
        }
        let algs = m["token_endpoint_auth_signing_alg_values_supported"]
            .as_array()
            .unwrap();
        assert!(
            !algs.is_empty()
                && !algs
                    .iter()
                    .any(|a| a == "none" || a.as_str().unwrap().starts_with("HS"))
        );
        assert!(m["scopes_supported"]
            .as_array()
            .unwrap()
            .iter()
            .any(|s| s == "b:read"));
    }
}

#[tokio::test]
async fn jwks_publishes_only_the_public_key_with_kid_alg_and_use() {
    let d = Domains::start().await;
    let r = get(&d.b_url("/jwks.json")).await;
    assert_eq!(r.status, StatusCode::OK);
    let key = &r.body["keys"][0];
    assert_eq!(key["kty"], "EC");
    assert_eq!(key["alg"], "ES256");
    assert_eq!(key["use"], "sig");
    assert!(key["kid"].as_str().is_some_and(|k| !k.is_empty()));
    assert!(key.get("d").is_none(), "private part must not be published");
}

async fn introspect(d: &Domains, auth: Option<&str>, token: &str) -> Reply {
    post(&d.b_url("/introspect"), auth, &[("token", token)]).await
}

#[tokio::test]
async fn introspection_reports_active_tokens_and_only_active_false_otherwise() {
    let d = Domains::start().await;
    let auth = basic("limited", "limited-secret");
    let at2 = d.chain(&d.at1("a:read").await, &[]).await.token();
    let r = introspect(&d, Some(&auth), &at2).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.raw);
    let c = claims(&at2);
    assert_eq!(r.body["active"], true);
    for name in [
        "scope",
        "client_id",
        "sub",
        "aud",
        "iss",
        "exp",
        "iat",
        "jti",
    ] {
        assert_eq!(r.body[name], c[name], "{name}");
    }
    assert_eq!(r.body["token_type"], "Bearer");
    // Foreign, forged and garbage tokens are simply inactive.
    let at1 = d.at1("a:read").await;
    let forged = d.forge.sign("at+jwt", &forge_claims("a:read"));
    for token in [at1.as_str(), forged.as_str(), "garbage"] {
        let r = introspect(&d, Some(&auth), token).await;
        assert_eq!(r.status, StatusCode::OK);
        assert_eq!(r.body, serde_json::json!({ "active": false }));
    }
    let r = introspect(&d, None, &at2).await;
    assert_eq!(
        (r.status, r.error()),
        (StatusCode::UNAUTHORIZED, "invalid_client")
    );
}

#[tokio::test]
async fn revoked_tokens_introspect_inactive_and_revoke_always_answers_200() {
    let d = Domains::start().await;
    let gw = basic("gateway", "gw-secret");
    let token = post(
        &d.b_url("/token"),
        Some(&gw),
        &[("grant_type", "client_credentials")],
    )
    .await
    .token();
    // Another client cannot revoke it (silently ignored).
    let r = post(
        &d.b_url("/revoke"),
        Some(&basic("limited", "limited-secret")),
        &[("token", &token)],
    )
    .await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(introspect(&d, Some(&gw), &token).await.body["active"], true);
    let r = post(
        &d.b_url("/revoke"),
        Some(&gw),
        &[("token", &token), ("token_type_hint", "access_token")],
    )
    .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.raw);
    assert_eq!(
        introspect(&d, Some(&gw), &token).await.body,
        serde_json::json!({ "active": false })
    );
    let r = post(&d.b_url("/revoke"), Some(&gw), &[("token", "not-a-token")]).await;
    assert_eq!(r.status, StatusCode::OK);
    let r = post(&d.b_url("/revoke"), None, &[("token", &token)]).await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED);
    let r = post(&d.b_url("/revoke"), Some(&gw), &[]).await;
    assert_eq!(r.error(), "invalid_request");
}

#[test]
fn config_errors_name_the_offending_key() {
    let err = |toml: &str| AuthorityConfig::from_toml(toml).unwrap_err().to_string();
    let base = "listen = \"127.0.0.1:0\"\n";
    let e = err(&format!(
        "{base}[[clients]]\nclient_id = \"x\"\nclient_secret = \"s\"\nauth_method = \"magic\"\n"
    ));
    assert!(e.contains("clients[0].auth_method"), "{e}");
    let e = err(&format!("{base}tokn_ttl = \"5m\"\n"));
    assert!(e.contains("tokn_ttl"), "{e}");
    let e = err(&format!("{base}token_ttl = \"5 minutes\"\n"));
    assert!(e.contains("token_ttl"), "{e}");
    let e = err(&format!("{base}[[trusted_issuers]]\nissuer = \"https://a\"\njwks_uri = \"http://a.example/jwks\"\naudiences = [\"x\"]\n"));
    assert!(e.contains("trusted_issuers[0].jwks_uri"), "{e}");
    let e = err(&format!("{base}[[trusted_issuers]]\nissuer = \"https://a\"\njwks_uri = \"https://a/jwks\"\naudiences = [\"x\"]\nalgorithms = [\"HS256\"]\n"));
    assert!(e.contains("trusted_issuers[0].algorithms[0]"), "{e}");
    let e = err(&format!(
        "{base}[[clients]]\nclient_id = \"x\"\nclient_secret = \"s\"\ngrants = [\"password\"]\n"
    ));
    assert!(e.contains("clients[0].grants[0]"), "{e}");
}

#[test]
fn config_debug_output_never_shows_secrets() {
    let cfg = AuthorityConfig::from_toml("listen = \"127.0.0.1:0\"\n[[clients]]\nclient_id = \"x\"\nclient_secret = \"hunter2-secret\"\n").unwrap();
    assert!(!format!("{cfg:?}").contains("hunter2"));
}

#[tokio::test]
async fn issuer_defaults_to_the_bound_address_and_shutdown_stops_serving() {
    let running = spawn(AuthorityConfig::from_toml("listen = \"127.0.0.1:0\"").unwrap())
        .await
        .unwrap();
    let addr = running.local_addr();
    assert_ne!(addr.port(), 0);
    assert_eq!(running.issuer(), format!("http://{addr}"));
    let r = get(&format!(
        "http://{addr}/.well-known/oauth-authorization-server"
    ))
    .await;
    assert_eq!(r.body["issuer"], Value::String(format!("http://{addr}")));
    running.shutdown().await;
    assert!(tokio::net::TcpStream::connect(addr).await.is_err());
}

#[tokio::test]
async fn signing_key_file_selects_es256_for_ec_and_rs256_for_rsa_keys() {
    let dir = tempfile::tempdir().unwrap();
    let ec = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
    let rsa = rcgen::KeyPair::generate_for(&rcgen::PKCS_RSA_SHA256).unwrap();
    for (name, pair, alg, kty) in [
        ("ec.pem", ec, "ES256", "EC"),
        ("rsa.pem", rsa, "RS256", "RSA"),
    ] {
        let path = dir.path().join(name);
        std::fs::write(&path, pair.serialize_pem()).unwrap();
        let toml = format!(
            "listen = \"127.0.0.1:0\"\nsigning_key_file = \"{}\"\n[[clients]]\nclient_id = \"c\"\nclient_secret = \"s\"\ngrants = [\"client_credentials\"]\n",
            path.display()
        );
        let running = spawn(AuthorityConfig::from_toml(&toml).unwrap())
            .await
            .unwrap();
        let iss = running.issuer().to_string();
        let r = post(
            &format!("{iss}/token"),
            Some(&basic("c", "s")),
            &[("grant_type", "client_credentials")],
        )
        .await;
        let token = r.token();
        assert_eq!(header(&token)["alg"], alg);
        let jwks = get(&format!("{iss}/jwks.json")).await.body;
        assert_eq!(jwks["keys"][0]["kty"], kty);
        assert_eq!(jwks["keys"][0]["kid"], header(&token)["kid"]);
        let jwk: jsonwebtoken::jwk::Jwk = serde_json::from_value(jwks["keys"][0].clone()).unwrap();
        let mut v = jsonwebtoken::Validation::new(alg.parse().unwrap());
        v.set_audience(&[iss.as_str()]);
        jsonwebtoken::decode::<Value>(
            &token,
            &jsonwebtoken::DecodingKey::from_jwk(&jwk).unwrap(),
            &v,
        )
        .expect("verifies with the published key");
        running.shutdown().await;
    }
}
