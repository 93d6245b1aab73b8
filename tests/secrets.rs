//! Runs the flows that handle secrets with trace-level JSON logs captured, then searches the
//! logs, the metrics and every error body for the caller's token, the downstream token, the client
//! secret, the client assertion and their base64 pieces.

mod support;

use std::io::Write;
use std::sync::{Arc, Mutex};

use base64::Engine as _;
use support::*;

#[derive(Clone, Default)]
struct Captured(Arc<Mutex<Vec<u8>>>);

impl Write for Captured {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

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
    let captured = Captured::default();
    let sink = captured.clone();
    tracing_subscriber::fmt()
        .json()
        .with_max_level(tracing::Level::TRACE)
        .with_writer(move || sink.clone())
        .init();

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
    // The /pk route must come before the catch-all.
    let toml = config(&sts.url(), &upstream.url(), &extra);
    let toml = toml.replacen(
        "[[routes]]\nname = \"default\"",
        "[[routes]]\nname = \"default-later\"",
        1,
    );
    let gw = gateway(&toml).await;

    let mut bodies = Vec::new();
    for (path, token) in [
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
    let scrape = metrics(&gw).await;
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
    ];
    // Each base64 piece of each JWT on its own (header pieces are public and shared, skip them).
    for jwt in [&at1, &rejected_at1, &assertion] {
        needles.extend(jwt.split('.').skip(1).map(str::to_string));
    }
    assert_eq!(bodies.len(), 3, "three refused requests");
    let logs = String::from_utf8(captured.0.lock().unwrap().clone()).unwrap();
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
