//! Revocation by shared signals (OpenID SSF push, RFC 8935): a transmitter in the test signs
//! real SETs with its key; a CAEP `session-revoked` or `credential-change` evicts the cached
//! tokens of that subject only, so its next request is exchanged again.

use bytes::Bytes;
use chaingate_oauth::keys::SigningKey;
use chaingate_oauth::util::now_secs;
use chaingate_test_support::{
    client, config, gateway, get, logs::Logs, metrics, sample, send, tamper_signature, TokenServer,
    Upstream,
};
use http::Request;
use http_body_util::Full;
use serde_json::{json, Value};

const TRANSMITTER: &str = "https://idp.test.invalid";
const RECEIVER: &str = "https://gateway.test.invalid/";
const SESSION_REVOKED: &str = "https://schemas.openid.net/secevent/caep/event-type/session-revoked";
const CREDENTIAL_CHANGE: &str =
    "https://schemas.openid.net/secevent/caep/event-type/credential-change";

struct Setup {
    gw: chaingate_gateway::Running,
    tokens: TokenServer,
    key: SigningKey,
    _dir: tempfile::TempDir,
}

async fn setup() -> Setup {
    let key = SigningKey::generate().unwrap().with_kid("tx-1".into());
    let dir = tempfile::tempdir().unwrap();
    let jwks = dir.path().join("transmitter.jwks");
    std::fs::write(&jwks, json!({ "keys": [key.public_jwk()] }).to_string()).unwrap();
    let tokens = TokenServer::start().await;
    let upstream = Upstream::start().await;
    let extra = format!(
        "[shared_signals]\nissuer = \"{TRANSMITTER}\"\naudience = \"{RECEIVER}\"\njwks_file = \"{}\"\n",
        jwks.display()
    );
    let gw = gateway(&config(&tokens.url(), &upstream.url(), &extra)).await;
    Setup {
        gw,
        tokens,
        key,
        _dir: dir,
    }
}

/// A caller's token as domain A would issue it: a JWT naming its subject.
fn at1(sub: &str, email: &str) -> String {
    let issuer = SigningKey::generate().unwrap();
    let claims = json!({"iss": "https://a.test.invalid", "sub": sub, "email": email,
        "exp": now_secs() + 600, "jti": format!("at1-{sub}")});
    issuer.sign("at+jwt", &claims).unwrap()
}

fn set(key: &SigningKey, jti: &str, events: Value, extra: Value) -> String {
    let mut claims = json!({"iss": TRANSMITTER, "aud": RECEIVER, "iat": now_secs(),
        "jti": jti, "events": events});
    for (k, v) in extra.as_object().unwrap() {
        claims[k] = v.clone();
    }
    key.sign("secevent+jwt", &claims).unwrap()
}

async fn push(gw: &chaingate_gateway::Running, content_type: &str, body: &str) -> (u16, Value) {
    let request = Request::post(format!("http://{}/ssf/events", gw.addr))
        .header("content-type", content_type)
        .body(Full::new(Bytes::from(body.to_owned())))
        .unwrap();
    let answer = send(&client(), request).await;
    let json = serde_json::from_str(&answer.body).unwrap_or(Value::Null);
    (answer.status.as_u16(), json)
}

const SET_TYPE: &str = "application/secevent+jwt";

#[tokio::test]
async fn a_revoked_session_is_exchanged_again_and_no_one_elses() {
    let Setup {
        gw, tokens, key, ..
    } = setup().await;
    let (alice, bob) = (at1("alice", "alice@a.test"), at1("bob", "bob@a.test"));
    for token in [&alice, &alice, &bob, &bob] {
        assert_eq!(get(gw.addr, "/x", Some(token)).await.status, 200);
    }
    assert_eq!(tokens.calls(), 2, "one exchange per caller, then cached");

    let revoked = set(
        &key,
        "set-1",
        json!({ SESSION_REVOKED: {"event_timestamp": now_secs()} }),
        json!({"sub_id": {"format": "iss_sub", "iss": "https://a.test.invalid", "sub": "alice"}}),
    );
    let (status, _) = push(&gw, SET_TYPE, &revoked).await;
    assert_eq!(status, 202);
    assert_eq!(get(gw.addr, "/x", Some(&alice)).await.status, 200);
    assert_eq!(
        tokens.calls(),
        3,
        "alice's token was evicted and exchanged again"
    );
    assert_eq!(get(gw.addr, "/x", Some(&bob)).await.status, 200);
    assert_eq!(tokens.calls(), 3, "bob's stays cached");

    // A retried push (same jti) is acknowledged and not applied again.
    assert_eq!(push(&gw, SET_TYPE, &revoked).await.0, 202);
    assert_eq!(get(gw.addr, "/x", Some(&alice)).await.status, 200);
    assert_eq!(tokens.calls(), 3);

    // CAEP's per-event subject, by email.
    let changed = set(
        &key,
        "set-2",
        json!({ CREDENTIAL_CHANGE: {"subject": {"format": "email", "email": "BOB@a.test"},
            "credential_type": "password", "change_type": "update"} }),
        json!({}),
    );
    assert_eq!(push(&gw, SET_TYPE, &changed).await.0, 202);
    assert_eq!(get(gw.addr, "/x", Some(&bob)).await.status, 200);
    assert_eq!(tokens.calls(), 4, "bob's token was evicted");

    let scrape = metrics(&gw).await;
    let count = |series: &str| sample(&scrape, series).unwrap_or(0.0);
    assert_eq!(
        count("chaingate_revocation_evictions_total{domain=\"billing\"}"),
        2.0
    );
    assert_eq!(
        count("chaingate_security_events_total{event=\"session_revoked\",result=\"applied\"}"),
        1.0
    );
    assert_eq!(
        count("chaingate_security_events_total{event=\"session_revoked\",result=\"duplicate\"}"),
        1.0
    );
    assert_eq!(
        count("chaingate_security_events_total{event=\"credential_change\",result=\"applied\"}"),
        1.0
    );
    let logs = Logs::global().text();
    assert!(!logs.contains(&revoked) && !logs.contains("alice@a.test") && !logs.contains(&alice));
}

#[tokio::test]
async fn a_set_that_fails_a_check_is_refused_with_its_rfc8935_code_and_evicts_nothing() {
    let Setup {
        gw, tokens, key, ..
    } = setup().await;
    let alice = at1("carol", "carol@a.test");
    assert_eq!(get(gw.addr, "/x", Some(&alice)).await.status, 200);
    let events = json!({ SESSION_REVOKED: {} });
    let sub = json!({"sub_id": {"format": "opaque", "id": "carol"}});
    let impostor = SigningKey::generate().unwrap().with_kid("tx-1".into());
    let wrong = |claim: &str, value: Value| {
        let mut extra = sub.clone();
        extra[claim] = value;
        set(&key, &format!("bad-{claim}"), events.clone(), extra)
    };
    let cases = [
        (
            SET_TYPE,
            set(&impostor, "j1", events.clone(), sub.clone()),
            "invalid_key",
        ),
        (
            SET_TYPE,
            tamper_signature(&set(&key, "j2", events.clone(), sub.clone())),
            "invalid_key",
        ),
        (
            SET_TYPE,
            wrong("iss", json!("https://other.invalid")),
            "invalid_issuer",
        ),
        (
            SET_TYPE,
            wrong("aud", json!("https://someone-else.invalid")),
            "invalid_audience",
        ),
        (
            SET_TYPE,
            wrong("iat", json!(now_secs() + 3600)),
            "invalid_request",
        ),
        (
            SET_TYPE,
            wrong("exp", json!(now_secs() - 10)),
            "invalid_request",
        ),
        (SET_TYPE, wrong("events", json!({})), "invalid_request"),
        (SET_TYPE, "not-a-jwt".to_string(), "invalid_request"),
        (
            SET_TYPE,
            key.sign(
                "JWT",
                &json!({"iss": TRANSMITTER, "aud": RECEIVER,
            "iat": now_secs(), "jti": "j3", "events": events}),
            )
            .unwrap(),
            "invalid_request",
        ),
        (
            "application/json",
            set(&key, "j4", events.clone(), sub.clone()),
            "invalid_request",
        ),
    ];
    for (content_type, body, code) in &cases {
        let (status, answer) = push(&gw, content_type, body).await;
        assert_eq!(
            (status, answer["err"].as_str()),
            (400, Some(*code)),
            "{answer}"
        );
        assert!(!answer.to_string().contains(body.as_str()));
    }
    assert_eq!(get(gw.addr, "/x", Some(&alice)).await.status, 200);
    assert_eq!(tokens.calls(), 1, "nothing was evicted");
    let scrape = metrics(&gw).await;
    assert_eq!(
        sample(
            &scrape,
            "chaingate_security_events_total{event=\"none\",result=\"invalid_key\"}"
        ),
        Some(2.0)
    );
    // The valid one still works afterwards.
    let good = set(&key, "j5", events.clone(), sub.clone());
    assert_eq!(push(&gw, SET_TYPE, &good).await.0, 202);
    assert_eq!(get(gw.addr, "/x", Some(&alice)).await.status, 200);
    assert_eq!(tokens.calls(), 2);
}
