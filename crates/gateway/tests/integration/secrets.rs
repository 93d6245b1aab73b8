//! Runs the flows that handle secrets with trace-level JSON logs captured, then searches the
//! logs, the metrics and every error body for the caller's token, the downstream token, the client
//! secret, the client assertion and their base64 pieces.

use chaingate_test_support as support;

use base64::Engine as _;
use support::*;

fn jwt_like(sub: &str) -> String {
    let b64 = |s: &str| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(s);
    format!(
        "{}.{}.{}",
        b64(r#"{"alg":"ES256","typ":"at+jwt"}"#),
        b64(&format!(r#"{{"sub":"{sub}","exp":9999999999}}"#)),
        b64("signature-bytes-of-the-caller")
    )
}

#[tokio::test(flavor = "multi_thread")]
async fn no_token_secret_or_assertion_appears_in_logs_metrics_or_error_bodies() {
    // Process-wide: other tests of this binary log here too, which only adds to the search.
    let captured = chaingate_test_support::logs::Logs::global();

    let at1 = jwt_like("alice-the-caller");
    let rejected_at1 = jwt_like("mallory-the-caller");
    let dir = tempfile::tempdir().unwrap();
    let key = rcgen::KeyPair::generate().unwrap();
    let pem = dir.path().join("key.pem");
    std::fs::write(&pem, key.serialize_pem()).unwrap();

    let refused = rejected_at1.clone();
    let sts = TokenServer::scripted(move |n, req| match req.param("oauth_token") {
        Some(t) if t == refused => Reply::error(400, "invalid_grant"),
        _ => Reply::raw(200, &format!(r#"{{"access_token":"downstream-AT2-value-{n}","token_type":"Bearer","expires_in":60}}"#)),
    })
    .await;
    let upstream = Upstream::start().await;
    let extra = format!(
        "[domains.pk]\ntoken_endpoint = \"{}\"\nclient_id = \"gw-pk\"\nauth_method = \"private_key_jwt\"\nclient_key_file = {:?}\nallow_insecure_http = true\n\n[[routes]]\nname = \"pk\"\npath_prefix = \"/pk\"\nupstream = \"{}\"\ndomain = \"pk\"\n",
        sts.url(),
        pem.display().to_string(),
        upstream.url()
    );
    // Self-registration at an authority, the token requests still going to the scripted server.
    let iat = "initial-access-token-of-the-secrets-test";
    let registrar = chaingate_authority::spawn(
        chaingate_authority::AuthorityConfig::from_toml(&format!(
            "listen = \"127.0.0.1:0\"\n[registration]\ninitial_access_tokens = [\"{iat}\"]\nscope = \"invoices.read\"\n"
        ))
        .unwrap(),
    )
    .await
    .unwrap();
    let iat_file = dir.path().join("iat");
    std::fs::write(&iat_file, iat).unwrap();
    let state_file = dir.path().join("registration.json");
    let extra = format!(
        "{extra}\n[domains.reg]\ntoken_endpoint = \"{}\"\nallow_insecure_http = true\nscope = \"invoices.read\"\n[domains.reg.registration]\nendpoint = \"{}/register\"\ninitial_access_token_file = {:?}\nstate_file = {:?}\ndelete_on_shutdown = true\nend_user_application = {{ name = \"App\" }}\n\n[[routes]]\nname = \"reg\"\npath_prefix = \"/reg\"\nupstream = \"{}\"\ndomain = \"reg\"\n",
        sts.url(),
        registrar.issuer(),
        iat_file.display().to_string(),
        state_file.display().to_string(),
        upstream.url()
    );
    // Reciprocal OAuth: the code party A issues and chaingate's agent secret there.
    let code = "reciprocal-code-value-of-the-secrets-test";
    let party_a = TokenServer::scripted(move |_, _| {
        Reply::raw(200, &format!(r#"{{"code":"{code}","expires_in":60}}"#))
    })
    .await;
    let party_b = TokenServer::scripted(|n, req| {
        if req.param("grant_type") == Some(chaingate_oauth::grant::RECIPROCAL_GRANT) {
            return Reply::raw(200, "{}");
        }
        Reply::raw(200, &format!(r#"{{"access_token":"downstream-AT2-value-rc{n}","token_type":"Bearer","expires_in":60,"reciprocal":"a:read"}}"#))
    })
    .await;
    let extra = format!(
        "{extra}\n[domains.rc]\ntoken_endpoint = \"{}\"\nclient_id = \"gw-rc\"\nclient_secret = \"gateway-secret-value\"\nallow_insecure_http = true\n[domains.rc.reciprocal]\ncode_endpoint = \"http://{}/reciprocal/code\"\nrecipient = \"b-at-a\"\nclient_id = \"agent\"\nclient_secret = \"agent-secret-value\"\nscopes = [\"a:read\"]\nallow_insecure_http = true\n\n[[routes]]\nname = \"rc\"\npath_prefix = \"/rc\"\nupstream = \"{}\"\ndomain = \"rc\"\n",
        party_b.url(),
        party_a.addr,
        upstream.url()
    );
    // The /pk, /reg and /rc routes must come before the catch-all.
    let toml = config(&sts.url(), &upstream.url(), &extra);
    let toml = toml.replacen(
        "[[routes]]\nname = \"default\"",
        "[[routes]]\nname = \"default-later\"",
        1,
    );
    // The access log has a writer of its own; here it writes into the same captured buffer.
    chaingate_core::tls::install_crypto_provider();
    let gw = chaingate_gateway::start(
        chaingate_gateway::config::Config::from_toml(&toml).unwrap(),
        chaingate_gateway::Options {
            access_log: Some(Box::new(captured.clone())),
            ..Default::default()
        },
    )
    .await
    .unwrap();
    for _ in 0..400 {
        if get(gw.admin_addr, "/ready", None).await.status == 200 {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(25)).await;
    }
    let registered: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&state_file).unwrap()).unwrap();

    let mut bodies = Vec::new();
    for (path, token) in [
        ("/reg/x", Some(at1.as_str())),
        ("/rc/x", Some(at1.as_str())),
        ("/pk/x", Some(at1.as_str())),
        ("/a?q=1", Some(at1.as_str())),
        ("/a", Some(rejected_at1.as_str())),
        ("/a", Some("two words")),
        ("/a", None),
    ] {
        let answer = get(gw.addr, path, token).await;
        // Successful answers come from the echo upstream, which shows the AT2 it received.
        if answer.status.as_u16() >= 400 {
            bodies.push(answer.body);
        }
    }
    let delivered = r#"chaingate_reciprocal_deliveries_total{domain="rc",outcome="delivered"}"#;
    for _ in 0..400 {
        if sample(&metrics(&gw).await, delivered) == Some(1.0) {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(25)).await;
    }
    let scrape = metrics(&gw).await;
    assert_eq!(
        sample(&scrape, delivered),
        Some(1.0),
        "the code was delivered"
    );
    gw.begin_shutdown();
    gw.wait().await;

    let assertion = sts
        .requests()
        .iter()
        .find_map(|r| r.param("client_assertion").map(str::to_string))
        .expect("an assertion was sent");
    let basic = base64::engine::general_purpose::STANDARD.encode("gateway-a:gateway-secret-value");
    let mut needles: Vec<String> = vec![
        at1.clone(),
        rejected_at1.clone(),
        "downstream-AT2-value".into(),
        "gateway-secret-value".into(),
        basic,
        assertion.clone(),
        iat.into(),
        code.into(),
        "agent-secret-value".into(),
        base64::engine::general_purpose::STANDARD.encode("agent:agent-secret-value"),
    ];
    for key in ["client_secret", "registration_access_token"] {
        needles.push(registered[key].as_str().unwrap().to_string());
    }
    let issued = format!(
        "{}:{}",
        registered["client_id"].as_str().unwrap(),
        registered["client_secret"].as_str().unwrap()
    );
    needles.push(base64::engine::general_purpose::STANDARD.encode(issued));
    assert!(!state_file.exists(), "deleted at shutdown");
    // Each base64 piece of each JWT on its own (header pieces are public and shared, skip them).
    for jwt in [&at1, &rejected_at1, &assertion] {
        needles.extend(jwt.split('.').skip(1).map(str::to_string));
    }
    assert_eq!(bodies.len(), 3, "three refused requests");
    let logs = captured.text();
    assert!(logs.contains("chaingate::access"), "the logs were captured");
    for needle in &needles {
        assert!(!logs.contains(needle.as_str()), "in the logs: {needle}");
        assert!(
            !scrape.contains(needle.as_str()),
            "in the metrics: {needle}"
        );
        for body in &bodies {
            assert!(
                !body.contains(needle.as_str()),
                "in an error body: {needle}"
            );
        }
    }
}
