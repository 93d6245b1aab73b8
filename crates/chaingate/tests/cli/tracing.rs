//! `[tracing]` end to end: the real binary exports OTLP/HTTP to a receiver that decodes the
//! official protobuf messages; W3C Trace Context continues from the caller to the token server
//! and the upstream; exemplars and audit events carry the same trace id; nothing secret leaves.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use http::{Request, Response};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::common::v1::any_value::Value;
use opentelemetry_proto::tonic::trace::v1::span::SpanKind;
use opentelemetry_proto::tonic::trace::v1::Span;
use prost::Message;

use chaingate_test_support::{client, config, get, send, serve, Reply, TokenServer, Upstream};

use crate::process::Process;

const AT1: &str = "caller-token-for-tracing-0123456789";
const REFUSED: &str = "caller-token-the-server-refuses-42";
const CALLER_TRACE: &str = "4bf92f3577b34da6a3ce929d0e0e4736";
const CALLER_SPAN: &str = "00f067aa0ba902b7";
const UNSAMPLED_TRACE: &str = "0af7651916cd43dd8448eb211c80319c";

/// What the OTLP receiver got: every span, and the headers of every export.
#[derive(Clone, Default)]
struct Received {
    spans: Arc<Mutex<Vec<Span>>>,
    headers: Arc<Mutex<Vec<http::HeaderMap>>>,
    bodies: Arc<Mutex<Vec<Bytes>>>,
}

async fn otlp_receiver() -> (std::net::SocketAddr, Received) {
    let received = Received::default();
    let sink = received.clone();
    let addr = serve(move |request: Request<Incoming>| {
        let sink = sink.clone();
        async move {
            assert_eq!(request.uri().path(), "/v1/traces");
            assert_eq!(
                request.headers()["content-type"],
                "application/x-protobuf",
                "OTLP/HTTP binary protobuf"
            );
            sink.headers.lock().unwrap().push(request.headers().clone());
            let body = request.into_body().collect().await.unwrap().to_bytes();
            let export = ExportTraceServiceRequest::decode(body.clone()).expect("OTLP protobuf");
            sink.bodies.lock().unwrap().push(body);
            let mut spans = sink.spans.lock().unwrap();
            for resource in export.resource_spans {
                let service = resource
                    .resource
                    .iter()
                    .flat_map(|r| &r.attributes)
                    .find(|a| a.key == "service.name")
                    .and_then(|a| a.value.clone())
                    .and_then(|v| v.value);
                assert_eq!(service, Some(Value::StringValue("edge-gateway".into())));
                spans.extend(resource.scope_spans.into_iter().flat_map(|s| s.spans));
            }
            // An empty ExportTraceServiceResponse: full success.
            let mut response = Response::new(Full::new(Bytes::new()));
            response
                .headers_mut()
                .insert("content-type", "application/x-protobuf".parse().unwrap());
            response
        }
    })
    .await;
    (addr, received)
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn attribute(span: &Span, key: &str) -> Option<Value> {
    span.attributes
        .iter()
        .find(|a| a.key == key)
        .and_then(|a| a.value.clone())
        .and_then(|v| v.value)
}

fn string(span: &Span, key: &str) -> Option<String> {
    match attribute(span, key) {
        Some(Value::StringValue(s)) => Some(s),
        _ => None,
    }
}

fn int(span: &Span, key: &str) -> Option<i64> {
    match attribute(span, key) {
        Some(Value::IntValue(n)) => Some(n),
        _ => None,
    }
}

async fn request_with(addr: std::net::SocketAddr, token: &str, traceparent: Option<&str>) -> u16 {
    let mut request = Request::get(format!("http://{addr}/orders"))
        .header("authorization", format!("Bearer {token}"));
    if let Some(tp) = traceparent {
        request = request.header("traceparent", tp);
    }
    send(&client(), request.body(Full::new(Bytes::new())).unwrap())
        .await
        .status
        .as_u16()
}

/// Waits for spans until `done` holds (the batch processor sends every 100 ms here).
async fn spans_until(received: &Received, done: impl Fn(&[Span]) -> bool) -> Vec<Span> {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        let spans = received.spans.lock().unwrap().clone();
        if done(&spans) {
            return spans;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "spans never arrived; got {spans:#?}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_request_is_one_trace_from_caller_to_token_server_and_upstream_and_nothing_secret_leaves()
{
    let (otlp, received) = otlp_receiver().await;
    let sts = TokenServer::scripted(|n, request| match request.param("oauth_token") {
        Some(REFUSED) => Reply::error(400, "invalid_grant"),
        _ => Reply::issue(n, Some(300)),
    })
    .await;
    let upstream = Upstream::start().await;
    let dir = tempfile::tempdir().unwrap();
    let headers_file = dir.path().join("otlp-headers");
    std::fs::write(
        &headers_file,
        "# the collector's key\nx-collector-key: k-77\n",
    )
    .unwrap();
    let extra = format!(
        r#"
[tracing]
otlp_endpoint = "http://{otlp}"
service_name = "edge-gateway"
headers_file = "{}"

[tracing.batch]
scheduled_delay = "100ms"
"#,
        headers_file.display()
    );
    let mut gw = Process::start_logging(&config(&sts.url(), &upstream.url(), &extra), "info");

    // 1. A sampled caller trace, a cache miss: server span, exchange span, both propagated.
    let caller = format!("00-{CALLER_TRACE}-{CALLER_SPAN}-01");
    assert_eq!(request_with(gw.addr, AT1, Some(&caller)).await, 200);
    // 2. No trace context, a hit: a new trace, sampled at ratio 1.0.
    assert_eq!(request_with(gw.addr, AT1, None).await, 200);
    // 3. The caller decided not to sample: followed (parent-based), still propagated.
    let unsampled = format!("00-{UNSAMPLED_TRACE}-{CALLER_SPAN}-00");
    assert_eq!(request_with(gw.addr, AT1, Some(&unsampled)).await, 200);
    // 4. A token the token server refuses: 401, an exchange span that failed.
    assert_eq!(request_with(gw.addr, REFUSED, None).await, 401);

    let spans = spans_until(&received, |spans| {
        spans.iter().filter(|s| s.name == "GET /").count() >= 3
            && spans.iter().filter(|s| s.name == "token exchange").count() >= 2
    })
    .await;

    let server: Vec<&Span> = spans.iter().filter(|s| s.name == "GET /").collect();
    let exchanges: Vec<&Span> = spans
        .iter()
        .filter(|s| s.name == "token exchange")
        .collect();
    assert_eq!(
        server.len(),
        3,
        "the unsampled request exports nothing: {server:#?}"
    );
    assert!(
        spans.iter().all(|s| hex(&s.trace_id) != UNSAMPLED_TRACE),
        "a caller's unsampled decision is followed"
    );

    // 1: the caller's trace continued, the exchange a child of the request.
    let first = server
        .iter()
        .find(|s| hex(&s.trace_id) == CALLER_TRACE)
        .expect("the caller's trace is continued");
    assert_eq!(hex(&first.parent_span_id), CALLER_SPAN);
    assert_eq!(first.kind, SpanKind::Server as i32);
    assert_eq!(int(first, "http.response.status_code"), Some(200));
    assert_eq!(string(first, "http.request.method").as_deref(), Some("GET"));
    assert_eq!(string(first, "http.route").as_deref(), Some("/"));
    assert_eq!(string(first, "chaingate.route").as_deref(), Some("default"));
    assert_eq!(string(first, "chaingate.cache").as_deref(), Some("miss"));
    assert_eq!(
        attribute(first, "chaingate.coalesced"),
        Some(Value::BoolValue(false))
    );
    let exchange = exchanges
        .iter()
        .find(|s| s.trace_id == first.trace_id)
        .expect("the exchange is in the request's trace");
    assert_eq!(exchange.parent_span_id, first.span_id);
    assert_eq!(exchange.kind, SpanKind::Client as i32);
    assert_eq!(
        string(exchange, "chaingate.domain").as_deref(),
        Some("billing")
    );
    assert_eq!(
        string(exchange, "chaingate.grant").as_deref(),
        Some("chain")
    );
    assert_eq!(
        string(exchange, "chaingate.outcome").as_deref(),
        Some("issued")
    );
    assert_eq!(
        attribute(exchange, "chaingate.renewal"),
        Some(Value::BoolValue(false))
    );

    // The token server and the upstream see chaingate's spans as their parents.
    let token_requests = sts.requests();
    assert_eq!(
        token_requests[0].traceparent.as_deref(),
        Some(format!("00-{CALLER_TRACE}-{}-01", hex(&exchange.span_id)).as_str())
    );
    let at_upstream: Vec<Option<String>> = upstream
        .received()
        .iter()
        .map(|r| r.header("traceparent").map(str::to_owned))
        .collect();
    assert_eq!(at_upstream.len(), 3);
    assert_eq!(
        at_upstream[0].as_deref(),
        Some(format!("00-{CALLER_TRACE}-{}-01", hex(&first.span_id)).as_str())
    );

    // 2: a root span of a new trace, the hit recorded, its context at the upstream.
    let second = server
        .iter()
        .find(|s| s.parent_span_id.is_empty())
        .expect("a trace started for a request without traceparent");
    assert_eq!(string(second, "chaingate.cache").as_deref(), Some("hit"));
    assert_eq!(
        at_upstream[1].as_deref(),
        Some(format!("00-{}-{}-01", hex(&second.trace_id), hex(&second.span_id)).as_str())
    );
    // 3: the caller's unsampled context is passed on with chaingate's span id, flag 00.
    let third = at_upstream[2].as_deref().unwrap();
    assert!(third.starts_with(&format!("00-{UNSAMPLED_TRACE}-")) && third.ends_with("-00"));
    assert!(
        !third.contains(CALLER_SPAN),
        "the next hop's parent is chaingate's span"
    );

    // 4: the refusal, as the token server's error code.
    let refused = exchanges
        .iter()
        .find(|s| string(s, "chaingate.outcome").as_deref() == Some("rejected"))
        .expect("the refused exchange's span");
    assert_eq!(
        string(refused, "oauth.error").as_deref(),
        Some("invalid_grant")
    );
    let refused_request = server
        .iter()
        .find(|s| s.span_id == refused.parent_span_id)
        .expect("its request span");
    assert_eq!(int(refused_request, "http.response.status_code"), Some(401));

    // The collector's headers came from tracing.headers_file.
    assert!(received
        .headers
        .lock()
        .unwrap()
        .iter()
        .all(|h| h.get("x-collector-key").is_some_and(|v| v == "k-77")));

    // Exemplars: OpenMetrics scrapes carry trace ids of exported requests; 0.0.4 has none.
    let openmetrics = {
        let request = Request::get(format!("http://{}/metrics", gw.admin))
            .header("accept", "application/openmetrics-text; version=1.0.0")
            .body(Full::new(Bytes::new()))
            .unwrap();
        send(&client(), request).await.body
    };
    let exemplar_ids: Vec<&str> = openmetrics
        .lines()
        .filter(|l| l.starts_with("chaingate_request_duration_seconds_bucket"))
        .filter_map(|l| l.split("trace_id=\"").nth(1)?.split('"').next())
        .collect();
    assert!(!exemplar_ids.is_empty(), "no exemplar in:\n{openmetrics}");
    let exported: Vec<String> = server.iter().map(|s| hex(&s.trace_id)).collect();
    for id in &exemplar_ids {
        assert!(
            exported.iter().any(|e| e == id),
            "exemplar {id} is no exported trace"
        );
    }
    let classic = get(gw.admin, "/metrics", None).await.body;
    assert!(!classic.contains(" # {"), "exemplars in the 0.0.4 format");

    // Audit events: one per decision, with the trace's id as the correlation id.
    gw.terminate();
    tokio::task::block_in_place(|| gw.wait_exit(Duration::from_secs(10)));
    let logs = gw.logs.lock().unwrap().clone();
    let audit: Vec<serde_json::Value> = logs
        .iter()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter(|v| v["target"] == "chaingate::audit")
        .collect();
    assert_eq!(audit.len(), 2, "one issued, one refused: {audit:#?}");
    let issued = &audit[0];
    assert_eq!(issued["decision"], "issued");
    assert_eq!(issued["domain"], "billing");
    assert_eq!(issued["route"], "default");
    assert_eq!(issued["grant"], "chain");
    assert_eq!(issued["scope_requested"], "invoices.read");
    assert_eq!(issued["scope_granted"], "invoices.read");
    assert_eq!(issued["correlation_id"], CALLER_TRACE);
    let digest = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, AT1.as_bytes());
    assert_eq!(issued["subject_digest"], hex(&digest.as_ref()[..16]));
    let refusal = &audit[1];
    assert_eq!(refusal["decision"], "refused");
    assert_eq!(refusal["error"], "invalid_grant");
    assert_eq!(refusal["correlation_id"], hex(&refused.trace_id));

    // Nothing secret in any span, export or log line.
    use base64::Engine as _;
    let basic = base64::engine::general_purpose::STANDARD.encode("gateway-a:gateway-secret-value");
    let exports = received.bodies.lock().unwrap().concat();
    let everything = format!("{spans:?}\n{}", logs.join("\n"));
    for secret in [
        AT1,
        REFUSED,
        "at2-0",
        "gateway-secret-value",
        basic.as_str(),
        "k-77",
    ] {
        assert!(
            !everything.contains(secret),
            "{secret} was exported or logged"
        );
        assert!(
            !exports
                .windows(secret.len())
                .any(|w| w == secret.as_bytes()),
            "{secret} is in an OTLP export"
        );
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn without_tracing_no_span_is_made_and_traceparent_passes_through_untouched() {
    let sts = TokenServer::start().await;
    let upstream = Upstream::start().await;
    let mut gw = Process::start_logging(&config(&sts.url(), &upstream.url(), ""), "trace");
    let caller = format!("00-{CALLER_TRACE}-{CALLER_SPAN}-01");
    assert_eq!(request_with(gw.addr, AT1, Some(&caller)).await, 200);
    gw.terminate();
    tokio::task::block_in_place(|| gw.wait_exit(Duration::from_secs(10)));
    assert_eq!(
        upstream.received()[0].header("traceparent"),
        Some(caller.as_str())
    );
    assert_eq!(sts.requests()[0].traceparent, None);
    // Even at `RUST_LOG=trace` the log layer never writes the exported spans.
    let logs = gw.logs.lock().unwrap().join("\n");
    assert!(!logs.contains("chaingate::trace"), "{logs}");
    // The audit event still correlates with the caller's trace.
    assert!(
        logs.contains(&format!("\"correlation_id\":\"{CALLER_TRACE}\"")),
        "{logs}"
    );
}
