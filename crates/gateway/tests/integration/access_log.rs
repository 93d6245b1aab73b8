//! `log.access_log`: one line per request by default, written through the gateway's own batched
//! writer; `access_log = false` writes none.

use chaingate_test_support as support;

use support::logs::Logs;
use support::*;

async fn lines_for(extra: &str, path: &str) -> String {
    // The access log honours RUST_LOG-style filtering through the global subscriber: the shared
    // test subscriber enables every target.
    let _ = Logs::global();
    let sts = TokenServer::start().await;
    let upstream = Upstream::start().await;
    let sink = Logs::default();
    chaingate_core::tls::install_crypto_provider();
    let gw = chaingate_gateway::start(
        chaingate_gateway::config::Config::from_toml(&config(&sts.url(), &upstream.url(), extra))
            .unwrap(),
        chaingate_gateway::Options {
            access_log: Some(Box::new(sink.clone())),
            ..Default::default()
        },
    )
    .await
    .unwrap();
    for _ in 0..3 {
        assert_eq!(
            get(gw.addr, path, Some("access-log-caller")).await.status,
            200
        );
    }
    assert_eq!(get(gw.addr, path, None).await.status, 401);
    // The drain ends by flushing the access log: every line is written when `wait` returns.
    gw.begin_shutdown();
    gw.wait().await;
    sink.text()
}

#[tokio::test(flavor = "multi_thread")]
async fn each_request_gets_one_line_by_default_and_none_with_access_log_false() {
    let on = lines_for("", "/logged-path").await;
    let lines: Vec<&str> = on.lines().filter(|l| l.contains("/logged-path")).collect();
    assert_eq!(lines.len(), 4, "{on}");
    assert_eq!(
        lines.iter().filter(|l| l.contains("200")).count(),
        3,
        "{on}"
    );
    assert_eq!(
        lines.iter().filter(|l| l.contains("401")).count(),
        1,
        "{on}"
    );
    assert!(
        !on.contains("access-log-caller"),
        "no token in the access log"
    );

    let off = lines_for("[log]\naccess_log = false\n", "/unlogged-path").await;
    assert!(!off.contains("/unlogged-path"), "{off}");
    assert!(off.is_empty(), "{off}");
}

/// `GET /metrics` speaks OpenMetrics to a scraper that asks for it (Prometheus sends
/// `Accept: application/openmetrics-text`), and the 0.0.4 text format otherwise.
#[tokio::test(flavor = "multi_thread")]
async fn metrics_negotiate_openmetrics_or_the_prometheus_text_format() {
    let sts = TokenServer::start().await;
    let upstream = Upstream::start().await;
    let gw = gateway(&config(&sts.url(), &upstream.url(), "")).await;
    assert_eq!(get(gw.addr, "/", Some("metrics-caller")).await.status, 200);
    let admin = gw.admin_addr;
    let scrape = |accept: Option<&'static str>| async move {
        let mut request = http::Request::get(format!("http://{admin}/metrics"));
        if let Some(accept) = accept {
            request = request.header("accept", accept);
        }
        send(&client(), request.body(Default::default()).unwrap()).await
    };

    let open = scrape(Some(
        "application/openmetrics-text;version=1.0.0;q=0.5,text/plain;version=0.0.4;q=0.4",
    ))
    .await;
    assert_eq!(
        open.header("content-type"),
        Some("application/openmetrics-text; version=1.0.0; charset=utf-8")
    );
    assert!(open.body.trim_end().ends_with("# EOF"), "{}", open.body);
    // OpenMetrics names the counter family without `_total`, the sample with it.
    assert!(
        open.body.contains("# TYPE chaingate_requests counter"),
        "{}",
        open.body
    );

    for accept in [None, Some("text/plain")] {
        let text = scrape(accept).await;
        assert_eq!(
            text.header("content-type"),
            Some("text/plain; version=0.0.4; charset=utf-8"),
            "{accept:?}"
        );
        assert!(!text.body.contains("# EOF"), "{}", text.body);
        assert!(
            text.body
                .contains("# TYPE chaingate_requests_total counter"),
            "{}",
            text.body
        );
    }
}
