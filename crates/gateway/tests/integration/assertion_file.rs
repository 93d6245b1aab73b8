//! `client_assertion_file`: the token server receives the file's JWT as the client assertion
//! (RFC 7523 §2.2, draft-ietf-oauth-spiffe-client-auth) and no secret; a kubelet-style `..data`
//! swap under a burst of requests fails none of them; a missing or expired file answers 503
//! with Retry-After, is counted and logged by domain and path (never the JWT), shows on
//! `/ready`, and heals when a good file appears.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;

use base64::Engine as _;
use chaingate_oauth::util::now_secs;
use chaingate_test_support as support;
use support::*;

const JWT_BEARER: &str = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer";
const JWT_SPIFFE: &str = "urn:ietf:params:oauth:client-assertion-type:jwt-spiffe";

/// A projected-token-shaped JWT (the token server here does not verify it; the authority's
/// `federated` tests do).
fn token(sub: &str, exp: u64) -> String {
    let b64 = |s: &str| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(s);
    format!(
        "{}.{}.{}",
        b64(r#"{"alg":"RS256","kid":"cluster"}"#),
        b64(&format!(
            r#"{{"iss":"https://kubernetes.default.svc","sub":"{sub}","aud":"sts","exp":{exp}}}"#
        )),
        b64(&format!("signature-of-{sub}"))
    )
}

/// A gateway whose one domain `wid` authenticates with the file at `path`.
fn config(token_url: &str, upstream: &str, path: &Path, kind: Option<&str>) -> String {
    let kind = kind
        .map(|k| format!("client_assertion_type = \"{k}\"\n"))
        .unwrap_or_default();
    format!(
        r#"
listen = "127.0.0.1:0"
admin_listen = "127.0.0.1:0"

[cache]
expiry_skew = "0s"

[domains.wid]
token_endpoint = "{token_url}"
grant = "chain"
client_id = "gateway-wid"
client_assertion_file = {path:?}
{kind}allow_insecure_http = true
timeout = "5s"

[[routes]]
name = "default"
path_prefix = "/"
upstream = "{upstream}"
domain = "wid"
"#
    )
}

/// The kubelet's layout for a projected volume: `<dir>/chaingate -> ..data/chaingate`,
/// `..data -> ..<generation>`; a new generation is a new directory and an atomic rename of a
/// fresh `..data` link over the old one (atomic_writer.go).
struct Projected {
    dir: tempfile::TempDir,
    generation: usize,
}

impl Projected {
    fn new(first: &str) -> Self {
        let mut projected = Self {
            dir: tempfile::tempdir().unwrap(),
            generation: 0,
        };
        projected.write(first);
        std::os::unix::fs::symlink("..data/chaingate", projected.path()).unwrap();
        projected
    }

    fn path(&self) -> PathBuf {
        self.dir.path().join("chaingate")
    }

    fn write(&mut self, content: &str) {
        self.generation += 1;
        let generation = format!("..gen_{}", self.generation);
        std::fs::create_dir(self.dir.path().join(&generation)).unwrap();
        std::fs::write(self.dir.path().join(&generation).join("chaingate"), content).unwrap();
        let tmp = self.dir.path().join("..data_tmp");
        std::os::unix::fs::symlink(&generation, &tmp).unwrap();
        std::fs::rename(&tmp, self.dir.path().join("..data")).unwrap();
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn the_token_server_sees_the_files_jwt_as_client_assertion_and_no_secret() {
    for (kind, urn) in [
        (None, JWT_BEARER),
        (Some("jwt-bearer"), JWT_BEARER),
        (Some("jwt-spiffe"), JWT_SPIFFE),
    ] {
        let jwt = token("spiffe://cluster.local/ns/demo/sa/chaingate", now_secs() + 3600);
        let projected = Projected::new(&jwt);
        let sts = TokenServer::start().await;
        let upstream = Upstream::start().await;
        let gw = gateway(&config(&sts.url(), &upstream.url(), &projected.path(), kind)).await;

        let answer = get(gw.addr, "/x", Some("caller-at1")).await;
        assert_eq!(answer.status, 200, "{kind:?}: {}", answer.body);
        let request = &sts.requests()[0];
        assert_eq!(request.param("client_assertion"), Some(jwt.as_str()));
        assert_eq!(request.param("client_assertion_type"), Some(urn));
        assert_eq!(request.param("client_id"), Some("gateway-wid"));
        assert_eq!(request.param("client_secret"), None);
        assert_eq!(request.authorization, None, "{kind:?}: no Basic credentials");
        assert_eq!(get(gw.admin_addr, "/ready", None).await.status, 200);
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_kubelet_symlink_swap_under_a_burst_fails_no_request_and_the_new_token_is_sent() {
    let old = token("system:serviceaccount:demo:chaingate-1", now_secs() + 3600);
    let new = token("system:serviceaccount:demo:chaingate-2", now_secs() + 7200);
    let mut projected = Projected::new(&old);
    let (seen_tx, mut seen) = tokio::sync::mpsc::unbounded_channel::<String>();
    let sts = TokenServer::scripted(move |n, req| {
        let _ = seen_tx.send(req.param("client_assertion").unwrap_or("").to_string());
        Reply::issue(n, Some(300))
    })
    .await;
    let upstream = Upstream::start().await;
    let gw = gateway(&config(&sts.url(), &upstream.url(), &projected.path(), None)).await;

    // Eight callers, each request with its own AT1 so that each one is an exchange.
    let stop = Arc::new(AtomicBool::new(false));
    let next = Arc::new(AtomicUsize::new(0));
    let workers: Vec<_> = (0..8)
        .map(|_| {
            let (stop, next, addr) = (stop.clone(), next.clone(), gw.addr);
            tokio::spawn(async move {
                let mut failed = Vec::new();
                while !stop.load(Ordering::Acquire) {
                    let n = next.fetch_add(1, Ordering::Relaxed);
                    let answer = get(addr, "/x", Some(&format!("caller-{n}"))).await;
                    if answer.status != 200 {
                        failed.push((n, answer.status, answer.body));
                    }
                }
                failed
            })
        })
        .collect();

    let mut before = 0;
    while before < 40 {
        assert_eq!(seen.recv().await.unwrap(), old);
        before += 1;
    }
    projected.write(&new);
    // Requests built before the swap may still land; every one after is the new token, and
    // nothing else (a torn read) ever is.
    let switched = async {
        let mut after_new = 0;
        while after_new < 40 {
            let assertion = seen.recv().await.unwrap();
            assert!(assertion == old || assertion == new, "torn assertion");
            if assertion == new {
                after_new += 1;
            } else {
                assert_eq!(after_new, 0, "the old token was sent after the new one");
            }
        }
    };
    // A bound for a broken build only: the switch itself comes within a few requests.
    tokio::time::timeout(std::time::Duration::from_secs(20), switched)
        .await
        .expect("the token server never saw the rotated token");
    stop.store(true, Ordering::Release);
    for worker in workers {
        assert_eq!(worker.await.unwrap(), Vec::new(), "failed requests");
    }
    assert_eq!(get(gw.addr, "/x", Some("caller-last")).await.status, 200);
    assert_eq!(
        sts.requests().last().unwrap().param("client_assertion"),
        Some(new.as_str())
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_missing_or_expired_file_is_a_503_counted_logged_and_on_ready_until_a_good_one_comes() {
    let captured = support::logs::Logs::global();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("chaingate");
    let sts = TokenServer::start().await;
    let upstream = Upstream::start().await;
    let gw = gateway(&config(&sts.url(), &upstream.url(), &path, None)).await;
    let errors = |reason: &str| {
        format!("chaingate_client_assertion_errors_total{{domain=\"wid\",reason=\"{reason}\"}}")
    };

    // More failures than the breaker's threshold (5): the file is our fault, not the server's.
    for n in 0..6 {
        let answer = get(gw.addr, "/x", Some(&format!("caller-{n}"))).await;
        assert_eq!(answer.status, 503, "{}", answer.body);
        assert!(answer.header("retry-after").is_some());
    }
    assert_eq!(sample(&metrics(&gw).await, &errors("missing")), Some(6.0));
    let ready = get(gw.admin_addr, "/ready", None).await;
    assert_eq!(ready.status, 503);
    assert_eq!(
        ready.body,
        "not ready\ndomain wid: client_assertion_file missing\n"
    );

    // Expired: read, but never sent.
    let expired = token("system:serviceaccount:demo:expired", now_secs() - 10);
    std::fs::write(&path, &expired).unwrap();
    let answer = get(gw.addr, "/x", Some("caller-expired")).await;
    assert_eq!(answer.status, 503, "{}", answer.body);
    assert!(answer.header("retry-after").is_some());
    assert!(!answer.body.contains(&expired));
    let scrape = metrics(&gw).await;
    assert_eq!(sample(&scrape, &errors("expired")), Some(1.0));
    assert!(!scrape.contains(&expired));
    assert_eq!(
        get(gw.admin_addr, "/ready", None).await.body,
        "not ready\ndomain wid: client_assertion_file expired\n"
    );
    assert_eq!(sts.calls(), 0, "nothing was sent with a missing or expired token");

    let logs = captured.text();
    let line = logs
        .lines()
        .find(|l| l.contains("client_assertion_file unusable") && l.contains("\"expired\""))
        .expect("a warn line for the expired file");
    assert!(line.contains("\"wid\""), "names the domain: {line}");
    assert!(line.contains(&path.display().to_string()), "names the path: {line}");
    assert!(!logs.contains(&expired), "the JWT is in the logs");
    assert!(!logs.contains(expired.split('.').nth(1).unwrap()));

    // A good token heals the domain (no breaker opened by our own file's faults).
    let good = token("system:serviceaccount:demo:chaingate", now_secs() + 3600);
    std::fs::write(&path, &good).unwrap();
    for n in 0..3 {
        let answer = get(gw.addr, "/x", Some(&format!("caller-good-{n}"))).await;
        assert_eq!(answer.status, 200, "{}", answer.body);
    }
    assert_eq!(get(gw.admin_addr, "/ready", None).await.status, 200);
    assert_eq!(
        sts.requests()[0].param("client_assertion"),
        Some(good.as_str())
    );
}
