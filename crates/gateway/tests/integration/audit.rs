//! Audit events (`chaingate::audit`): exactly one per token decision, of every kind (issued,
//! refused, error, a background renewal, an eviction on an upstream's `invalid_token`), none for
//! a cache hit, each correlated with the caller's trace id; `log.audit = false` writes none.

use chaingate_test_support as support;

use std::time::Duration;

use serde_json::Value;
use support::logs::Logs;
use support::*;

/// A W3C trace context (W3C Trace Context §3.2) naming `trace_id`, sampled.
fn traceparent(trace_id: &str) -> String {
    format!("00-{trace_id}-00f067aa0ba902b7-01")
}

async fn request(gw: std::net::SocketAddr, token: &str, trace_id: &str) -> Answer {
    let request = http::Request::get(format!("http://{gw}/invoices"))
        .header("authorization", format!("Bearer {token}"))
        .header("traceparent", traceparent(trace_id))
        .body(http_body_util::Full::new(bytes::Bytes::new()))
        .unwrap();
    send(&client(), request).await
}

/// The audit events correlated with `trace_id`, oldest first: their fields.
fn events(logs: &Logs, trace_id: &str) -> Vec<Value> {
    logs.text()
        .lines()
        .filter_map(|line| serde_json::from_str::<Value>(line).ok())
        .filter(|v| v["target"] == "chaingate::audit")
        .map(|v| v["fields"].clone())
        .filter(|f| f["correlation_id"] == trace_id)
        .collect()
}

/// What an event says, in the order the schema lists it (the digest aside).
fn summary(event: &Value) -> (String, String, String, bool, String) {
    let s = |k: &str| event[k].as_str().unwrap_or("?").to_string();
    (
        s("decision"),
        s("route"),
        s("error"),
        event["renewal"].as_bool().unwrap(),
        s("origin"),
    )
}

fn digest(token: &str) -> String {
    chaingate_oauth::digest::hex(&chaingate_oauth::digest::sha256(token.as_bytes())[..16])
}

/// A token server issuing 2-second tokens, refusing `audit-refused` and failing for
/// `audit-down`; an upstream that considers the first renewed token (`at2-1`) revoked.
async fn setup(extra: &str) -> (TokenServer, chaingate_gateway::Running) {
    let sts = TokenServer::scripted(|n, req| match req.param("oauth_token") {
        Some("audit-refused") => Reply::error(400, "invalid_grant"),
        Some("audit-down") => Reply::error(500, "server_error"),
        _ => Reply::issue(n, Some(2)),
    })
    .await;
    let upstream = serve(|req: http::Request<hyper::body::Incoming>| async move {
        let mut response = http::Response::new(http_body_util::Full::new(bytes::Bytes::new()));
        if req.headers()["authorization"] == "Bearer at2-1" {
            *response.status_mut() = http::StatusCode::UNAUTHORIZED;
            response.headers_mut().insert(
                "www-authenticate",
                "Bearer error=\"invalid_token\"".parse().unwrap(),
            );
        }
        response
    })
    .await;
    let toml = config(
        &sts.url(),
        &format!("http://{upstream}"),
        &format!("{extra}\n"),
    )
    .replace("timeout = \"5s\"", "timeout = \"5s\"\nretries = 0")
    .replace(
        "expiry_skew = \"0s\"",
        "expiry_skew = \"0s\"\nrefresh_ahead = 0.5",
    );
    (sts, gateway(&toml).await)
}

#[tokio::test(start_paused = true)]
async fn every_token_decision_is_one_audit_event_with_the_callers_trace_id() {
    let logs = Logs::global();
    let (sts, gw) = setup("").await;
    let trace = |n: u8| format!("a0d170000000000000000000000000{n:02x}");

    // A miss: one exchange, `issued`, for the caller's token digest.
    assert_eq!(
        request(gw.addr, "audit-caller", &trace(1)).await.status,
        200
    );
    let issued = events(&logs, &trace(1));
    assert_eq!(issued.len(), 1, "{issued:#?}");
    assert_eq!(
        summary(&issued[0]),
        (
            "issued".into(),
            "default".into(),
            "".into(),
            false,
            "".into()
        )
    );
    assert_eq!(issued[0]["domain"], "billing");
    assert_eq!(issued[0]["grant"], "chain");
    assert_eq!(issued[0]["scope_requested"], "invoices.read");
    assert_eq!(issued[0]["scope_granted"], "invoices.read");
    assert_eq!(issued[0]["subject_digest"], digest("audit-caller"));

    // A hit before half its life: no decision, no event.
    assert_eq!(
        request(gw.addr, "audit-caller", &trace(2)).await.status,
        200
    );
    // A hit past half its life answers at once and renews in the background: `refreshed`,
    // correlated with the request that started it.
    tokio::time::sleep(Duration::from_millis(1200)).await;
    assert_eq!(
        request(gw.addr, "audit-caller", &trace(3)).await.status,
        200
    );
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(sts.calls(), 2);
    assert_eq!(events(&logs, &trace(2)), Vec::<Value>::new());
    let refreshed = events(&logs, &trace(3));
    assert_eq!(refreshed.len(), 1, "{refreshed:#?}");
    assert_eq!(
        summary(&refreshed[0]),
        (
            "refreshed".into(),
            "default".into(),
            "".into(),
            true,
            "".into()
        )
    );
    assert_eq!(refreshed[0]["subject_digest"], digest("audit-caller"));

    // The upstream refuses the renewed token (RFC 6750 §3.1): `evicted` from the upstream, then
    // the exchange that replaces it.
    assert_eq!(
        request(gw.addr, "audit-caller", &trace(4)).await.status,
        200
    );
    let evicted: Vec<_> = events(&logs, &trace(4)).iter().map(summary).collect();
    assert_eq!(
        evicted,
        [
            (
                "evicted".into(),
                "default".into(),
                "".into(),
                false,
                "upstream".into()
            ),
            (
                "issued".into(),
                "default".into(),
                "".into(),
                false,
                "".into()
            ),
        ]
    );

    // The token server refuses, or fails: `refused` with its OAuth error, `error` with the class.
    assert_eq!(
        request(gw.addr, "audit-refused", &trace(5)).await.status,
        401
    );
    let refused = events(&logs, &trace(5));
    assert_eq!(refused.len(), 1, "{refused:#?}");
    assert_eq!(refused[0]["decision"], "refused");
    assert_eq!(refused[0]["error"], "invalid_grant");
    assert_eq!(refused[0]["scope_granted"], "invoices.read");
    assert_eq!(refused[0]["subject_digest"], digest("audit-refused"));
    assert_eq!(request(gw.addr, "audit-down", &trace(6)).await.status, 503);
    let failed = events(&logs, &trace(6));
    assert_eq!(failed.len(), 1, "{failed:#?}");
    assert_eq!(failed[0]["decision"], "error");
    assert!(
        !failed[0]["error"].as_str().unwrap().is_empty(),
        "{failed:#?}"
    );

    // Nothing of a caller's or an issued token is in any event.
    for n in 1..=6 {
        for event in events(&logs, &trace(n)) {
            let text = event.to_string();
            for secret in ["audit-caller", "audit-refused", "audit-down", "at2-"] {
                assert!(!text.contains(secret), "{secret} in {text}");
            }
        }
    }
}

#[tokio::test(start_paused = true)]
async fn log_audit_false_writes_no_event() {
    let logs = Logs::global();
    let (sts, gw) = setup("[log]\naudit = false").await;
    let trace = "a0d170000000000000000000000000ff";
    assert_eq!(request(gw.addr, "audit-caller", trace).await.status, 200);
    assert_eq!(request(gw.addr, "audit-refused", trace).await.status, 401);
    assert_eq!(request(gw.addr, "audit-down", trace).await.status, 503);
    tokio::time::sleep(Duration::from_millis(1200)).await;
    assert_eq!(request(gw.addr, "audit-caller", trace).await.status, 200);
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(sts.calls(), 4, "the renewal ran");
    assert_eq!(events(&logs, trace), Vec::<Value>::new());
}
