//! Hot reload with the layout Kubernetes uses for mounted ConfigMaps and Secrets:
//! `chaingate.toml -> ..data/chaingate.toml`, `..data -> ..<timestamp>`, swapped atomically.

use chaingate_test_support as support;

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use chaingate_gateway::config::Config;
use chaingate_gateway::reload::ReloadSource;
use support::logs::Logs;
use support::*;

const AT1: &str = "reload-caller-token";

/// A directory laid out like a kubelet-managed volume.
struct Volume {
    dir: tempfile::TempDir,
    generation: usize,
}

impl Volume {
    fn new(config: &str, secret: &str) -> Self {
        let mut volume = Self {
            dir: tempfile::tempdir().unwrap(),
            generation: 0,
        };
        volume.publish(config, secret);
        for name in ["chaingate.toml", "secret"] {
            std::os::unix::fs::symlink(format!("..data/{name}"), volume.dir.path().join(name))
                .unwrap();
        }
        volume
    }

    /// Writes a new generation and swaps `..data` to it in one rename, as the kubelet does.
    fn publish(&mut self, config: &str, secret: &str) {
        self.generation += 1;
        let name = format!("..gen{}", self.generation);
        let generation = self.dir.path().join(&name);
        std::fs::create_dir(&generation).unwrap();
        std::fs::write(generation.join("chaingate.toml"), config).unwrap();
        std::fs::write(generation.join("secret"), secret).unwrap();
        let tmp = self.dir.path().join("..data_tmp");
        std::os::unix::fs::symlink(&name, &tmp).unwrap();
        std::fs::rename(&tmp, self.dir.path().join("..data")).unwrap();
    }

    fn config_path(&self) -> PathBuf {
        self.dir.path().join("chaingate.toml")
    }

    fn secret_path(&self) -> PathBuf {
        self.dir.path().join("secret")
    }
}

fn gateway_config(
    sts: &TokenServer,
    upstream: &Upstream,
    secret_file: &Path,
    extra_route: bool,
) -> String {
    let mut text = config(
        &sts.url(),
        &upstream.url(),
        "[reload]\ninterval = \"50ms\"\n",
    )
    .replace(
        "client_secret = \"gateway-secret-value\"",
        &format!(
            "client_secret_file = {:?}",
            secret_file.display().to_string()
        ),
    );
    if extra_route {
        // Routes are tried in order: the new one goes first so it is reachable.
        text = text.replace(
            "[[routes]]\nname = \"default\"",
            &format!(
                "[[routes]]\nname = \"v2\"\npath_prefix = \"/v2\"\nupstream = \"{}\"\ndomain = \"billing\"\n\n[[routes]]\nname = \"default\"",
                upstream.url()
            ),
        );
    }
    text
}

async fn wait_for(running: &chaingate_gateway::Running, series: &str, value: f64) {
    for _ in 0..200 {
        if sample(&metrics(running).await, series) == Some(value) {
            return;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!(
        "{series} never reached {value}:\n{}",
        metrics(running).await
    );
}

fn basic_secret(request: &TokenRequest) -> String {
    use base64::Engine as _;
    let value = request
        .authorization
        .as_deref()
        .unwrap()
        .strip_prefix("Basic ")
        .unwrap();
    let pair = base64::engine::general_purpose::STANDARD
        .decode(value)
        .unwrap();
    String::from_utf8(pair)
        .unwrap()
        .split_once(':')
        .unwrap()
        .1
        .to_string()
}

#[tokio::test(flavor = "multi_thread")]
async fn reloads_apply_atomically_keep_unchanged_tokens_and_reject_bad_configs() {
    chaingate_core::tls::install_crypto_provider();
    let sts = TokenServer::start().await;
    let upstream = Upstream::start().await;
    let placeholder = Path::new("/placeholder");
    let mut volume = Volume::new(
        &gateway_config(&sts, &upstream, placeholder, false),
        "first-secret",
    );
    let secret_file = volume.secret_path();
    volume.publish(
        &gateway_config(&sts, &upstream, &secret_file, false),
        "first-secret",
    );

    let config = Config::load(&volume.config_path(), std::iter::empty()).unwrap();
    let source = ReloadSource {
        path: volume.config_path(),
        env: Vec::new(),
    };
    let gw = chaingate_gateway::spawn_with_reload(config, Some(source))
        .await
        .unwrap();
    assert_eq!(get(gw.addr, "/", Some(AT1)).await.status, 200);
    assert_eq!(sts.calls(), 1);

    // Load runs through every swap below; not one request may fail.
    let stop = Arc::new(AtomicBool::new(false));
    let sent = Arc::new(AtomicUsize::new(0));
    let addr = gw.addr;
    let load = {
        let (stop, sent) = (stop.clone(), sent.clone());
        tokio::spawn(async move {
            let mut failures = Vec::new();
            while !stop.load(Ordering::Relaxed) {
                let answer = get(addr, "/load", Some(AT1)).await;
                if answer.status != 200 {
                    failures.push(answer.status);
                }
                sent.fetch_add(1, Ordering::Relaxed);
            }
            failures
        })
    };

    // A new route: applied, and the billing domain's cached token survives.
    volume.publish(
        &gateway_config(&sts, &upstream, &secret_file, true),
        "first-secret",
    );
    wait_for(
        &gw,
        r#"chaingate_config_reloads_total{result="success"}"#,
        1.0,
    )
    .await;
    let v2 = get(gw.addr, "/v2/x", Some(AT1)).await;
    assert_eq!(v2.status, 200);
    assert_eq!(
        sts.calls(),
        1,
        "an unchanged domain keeps its cached tokens across a reload"
    );
    assert!(metrics(&gw).await.contains(r#"route="v2""#));

    // An invalid config is counted and ignored; the running one keeps serving.
    volume.publish("listen = \"127.0.0.1:0\"\nnot_a_key = 1\n", "first-secret");
    wait_for(
        &gw,
        r#"chaingate_config_reloads_total{result="error"}"#,
        1.0,
    )
    .await;
    assert_eq!(get(gw.addr, "/v2/y", Some(AT1)).await.status, 200);

    // A rotated secret (same config text) is picked up; that domain starts a fresh cache.
    volume.publish(
        &gateway_config(&sts, &upstream, &secret_file, true),
        "rotated-secret",
    );
    wait_for(
        &gw,
        r#"chaingate_config_reloads_total{result="success"}"#,
        2.0,
    )
    .await;
    assert_eq!(get(gw.addr, "/", Some(AT1)).await.status, 200);
    let requests = sts.requests();
    assert_eq!(basic_secret(&requests[0]), "first-secret");
    assert_eq!(basic_secret(requests.last().unwrap()), "rotated-secret");

    stop.store(true, Ordering::Relaxed);
    let failures = load.await.unwrap();
    assert!(sent.load(Ordering::Relaxed) > 10, "the load ran");
    assert!(
        failures.is_empty(),
        "requests failed during reloads: {failures:?}"
    );
    // The error was counted once, not once per poll.
    assert_eq!(
        sample(
            &metrics(&gw).await,
            r#"chaingate_config_reloads_total{result="error"}"#
        ),
        Some(1.0)
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_restart_only_key_is_named_in_a_warning_and_keeps_its_running_value() {
    chaingate_core::tls::install_crypto_provider();
    let logs = Logs::global();
    let sts = TokenServer::start().await;
    let upstream = Upstream::start().await;
    let mut volume = Volume::new("", "s3cret-for-restart-test");
    let secret_file = volume.secret_path();
    let base = gateway_config(&sts, &upstream, &secret_file, false);
    volume.publish(&base, "s3cret-for-restart-test");
    let config = Config::load(&volume.config_path(), std::iter::empty()).unwrap();
    let source = ReloadSource {
        path: volume.config_path(),
        env: Vec::new(),
    };
    let gw = chaingate_gateway::spawn_with_reload(config, Some(source))
        .await
        .unwrap();
    // 60 header fields pass under the running limit (100).
    let many = |n: usize| {
        let mut request = http::Request::get(format!("http://{}/", gw.addr))
            .header("authorization", format!("Bearer {AT1}"));
        for i in 0..n {
            request = request.header(format!("x-field-{i}"), "v");
        }
        request.body(Default::default()).unwrap()
    };
    assert_eq!(send(&client(), many(60)).await.status, 200);

    // The new file lowers it to 50: the reload succeeds, warns that the key needs a restart,
    // and the running limit stays.
    let lowered = base.replace(
        "[reload]\ninterval = \"50ms\"\n",
        "[reload]\ninterval = \"50ms\"\n\n[limits]\nmax_headers = 50\n",
    );
    volume.publish(&lowered, "s3cret-for-restart-test");
    wait_for(
        &gw,
        r#"chaingate_config_reloads_total{result="success"}"#,
        1.0,
    )
    .await;
    let warned = logs
        .text()
        .lines()
        .any(|l| l.contains("take effect only at restart") && l.contains("limits.max_headers"));
    assert!(warned, "no warning naming limits.max_headers");
    assert_eq!(
        send(&client(), many(60)).await.status,
        200,
        "the running value stays"
    );
}
