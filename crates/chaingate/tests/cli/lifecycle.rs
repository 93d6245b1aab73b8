//! The `chaingate` binary: `check`, start-up, SIGTERM drain, and what its logs never contain.

use chaingate_test_support as support;

use std::process::Command;
use std::time::Duration;

use support::*;

use crate::process::{write_config, Process, BIN};
const AT1: &str = "lifecycle-caller-token";

#[test]
fn check_accepts_a_valid_config_and_names_the_bad_key_otherwise() {
    let good = config("http://127.0.0.1:1/token", "http://127.0.0.1:2", "");
    let (_dir, path) = write_config(&good);
    let ok = Command::new(BIN)
        .args(["check", "--config"])
        .arg(&path)
        .output()
        .unwrap();
    assert!(
        ok.status.success(),
        "{}",
        String::from_utf8_lossy(&ok.stderr)
    );

    // CHAINGATE_CONFIG stands in for --config.
    let via_env = Command::new(BIN)
        .arg("check")
        .env("CHAINGATE_CONFIG", &path)
        .output()
        .unwrap();
    assert!(via_env.status.success());

    let bad = good.replace(
        "client_id = \"gateway-a\"",
        "client_id = \"gateway-a\"\nclient_idd = \"typo\"",
    );
    let (_dir, path) = write_config(&bad);
    let out = Command::new(BIN)
        .args(["check", "--config"])
        .arg(&path)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(64));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(stderr.trim_end().lines().count(), 1, "{stderr}");
    assert!(stderr.contains("domains.billing.client_idd"), "{stderr}");
    assert!(!stderr.contains("gateway-secret-value"));

    // `run` refuses the same config the same way.
    let out = Command::new(BIN)
        .args(["run", "--config"])
        .arg(&path)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(64));
}

#[test]
fn secrets_set_from_the_environment_load_and_config_errors_never_echo_a_value() {
    let good = config("http://127.0.0.1:1/token", "http://127.0.0.1:2", "");
    let (_dir, path) = write_config(&good);
    // Numbers, hex, floats and booleans are secrets too when the key wants a string.
    for secret in ["12345678", "0x1f", "1e9", "inf", "true"] {
        let out = Command::new(BIN)
            .args(["check", "--config"])
            .arg(&path)
            .env("CHAINGATE_DOMAINS__BILLING__CLIENT_SECRET", secret)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{secret}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    // A secret pasted into the wrong key: the error names the key and leaves the value out.
    for (var, value) in [
        ("CHAINGATE_CACHE__MAX_ENTRIES", "hunter2-pasted-here"),
        ("CHAINGATE_DOMAINS__BILLING__GRANT", "hunter2-pasted-here"),
        ("CHAINGATE_LIMITS__MAX_HEADERS", "99999999999999999999999"),
    ] {
        for command in ["check", "run"] {
            let out = Command::new(BIN)
                .args([command, "--config"])
                .arg(&path)
                .env(var, value)
                .output()
                .unwrap();
            assert_eq!(out.status.code(), Some(64), "{command} {var}");
            let stderr = String::from_utf8_lossy(&out.stderr);
            assert!(
                !stderr.contains("hunter2") && !stderr.contains("9999999999"),
                "{stderr}"
            );
            let key = var.trim_start_matches("CHAINGATE_").replace("__", ".");
            assert!(stderr.contains(&key.to_ascii_lowercase()), "{stderr}");
        }
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn sigterm_turns_ready_off_finishes_in_flight_requests_and_exits_zero() {
    let sts = TokenServer::start().await;
    let upstream = Upstream::start().await;
    let mut gw = Process::start(&config(
        &sts.url(),
        &upstream.url(),
        "[shutdown]\ndrain_timeout = \"10s\"\n",
    ));
    assert_eq!(get(gw.admin, "/ready", None).await.status, 200);
    // Warm the cache so in-flight requests are only waiting on the upstream.
    assert_eq!(get(gw.addr, "/", Some(AT1)).await.status, 200);

    let addr = gw.addr;
    let in_flight: Vec<_> = (0..8)
        .map(|_| tokio::spawn(async move { get(addr, "/slow/4000", Some(AT1)).await.status }))
        .collect();
    // All eight are in flight once the upstream has them: wait for that, not for a guess.
    upstream.wait_for(8, "/slow/").await;
    gw.terminate();

    // Readiness flips at once, while the admin port still answers.
    let mut ready = 200;
    for _ in 0..300 {
        ready = get(gw.admin, "/ready", None).await.status.as_u16();
        if ready == 503 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(ready, 503);
    // New connections are refused once draining has begun (the listener closes just after
    // readiness turns off: polled, while the in-flight requests still have seconds to go).
    let mut refused = false;
    for _ in 0..200 {
        if tokio::net::TcpStream::connect(addr).await.is_err() {
            refused = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert!(refused, "listener still open while draining");
    assert!(
        in_flight.iter().all(|r| !r.is_finished()),
        "the listener closed only after the in-flight requests ended"
    );

    for request in in_flight {
        assert_eq!(
            request.await.unwrap(),
            200,
            "an in-flight request was cut off"
        );
    }
    let status = tokio::task::block_in_place(|| gw.wait_exit(Duration::from_secs(10)));
    assert!(status.success(), "exit status {status:?}");
}

#[tokio::test(flavor = "multi_thread")]
async fn trace_level_logs_hold_no_token_or_secret() {
    let sts = TokenServer::start().await;
    let upstream = Upstream::start().await;
    let mut gw = Process::start(&config(&sts.url(), &upstream.url(), ""));
    assert_eq!(get(gw.addr, "/path?q=1", Some(AT1)).await.status, 200);
    assert_eq!(
        get(gw.addr, "/path", Some("malformed token")).await.status,
        400
    );
    gw.terminate();
    tokio::task::block_in_place(|| gw.wait_exit(Duration::from_secs(10)));
    let logs = gw.logs.lock().unwrap().join("\n");
    assert!(
        logs.contains("chaingate::access"),
        "no access log line:\n{logs}"
    );
    use base64::Engine as _;
    let basic = base64::engine::general_purpose::STANDARD.encode("gateway-a:gateway-secret-value");
    for secret in [
        AT1,
        "at2-0",
        "gateway-secret-value",
        basic.as_str(),
        "malformed token",
    ] {
        assert!(!logs.contains(secret), "{secret} appears in the logs");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn worker_threads_sets_the_runtime_workers_and_one_runs_on_the_main_thread() {
    let sts = TokenServer::start().await;
    let upstream = Upstream::start().await;
    // tokio names its worker threads `tokio-rt-worker` (`tokio-runtime-worker` before 1.50;
    // the kernel keeps 15 bytes of a name).
    let workers = |gw: &Process| {
        std::fs::read_dir(format!("/proc/{}/task", gw.child.id()))
            .unwrap()
            .filter_map(|task| std::fs::read_to_string(task.ok()?.path().join("comm")).ok())
            .filter(|name| name.starts_with("tokio-r"))
            .count()
    };
    for (configured, expected) in [(3, 3), (1, 0)] {
        let toml = format!(
            "worker_threads = {configured}\n{}",
            config(&sts.url(), &upstream.url(), "")
        );
        let gw = Process::start_logging(&toml, "info");
        assert_eq!(get(gw.addr, "/", Some(AT1)).await.status, 200);
        assert_eq!(workers(&gw), expected, "worker_threads = {configured}");
    }
}

#[test]
fn check_warns_about_a_route_an_earlier_one_shadows_and_still_exits_0() {
    let base = config("http://127.0.0.1:1/token", "http://127.0.0.1:2", "");
    // After the catch-all `/` route, a `/late` route can never match.
    let shadowed = base
        + "\n[[routes]]\nname = \"late\"\npath_prefix = \"/late\"\nupstream = \"http://127.0.0.1:2\"\ndomain = \"billing\"\n";
    let (_dir, path) = write_config(&shadowed);
    let out = Command::new(BIN)
        .args(["check", "--config"])
        .arg(&path)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert!(
        stderr.contains("warning") && stderr.contains("routes[1]") && stderr.contains("late"),
        "{stderr}"
    );
    // Narrowed to GET, the first leaves the second its other methods: no warning.
    let narrowed = shadowed.replacen(
        "path_prefix = \"/\"",
        "path_prefix = \"/\"\nmethods = [\"GET\"]",
        1,
    );
    let (_dir, path) = write_config(&narrowed);
    let out = Command::new(BIN)
        .args(["check", "--config"])
        .arg(&path)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert!(!stderr.contains("warning"), "{stderr}");
}
