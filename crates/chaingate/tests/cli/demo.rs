//! `chaingate demo` as a new user runs it: start, follow the printed curl line, Ctrl-C.

use chaingate_test_support as support;

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::Duration;

#[tokio::test(flavor = "multi_thread")]
async fn the_printed_curl_line_reaches_the_upstream_with_a_domain_b_token() {
    let mut child = KillOnDrop(
        Command::new(env!("CARGO_BIN_EXE_chaingate"))
            .args(["demo", "--port", "0"])
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    let stdout = child.0.stdout.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let mut seen = Vec::new();
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            seen.push(line.clone());
            if line.contains("Ctrl-C stops everything") {
                let _ = tx.send(seen.clone());
            }
        }
    });
    let printed = rx
        .recv_timeout(Duration::from_secs(30))
        .expect("the demo prints its instructions");
    let field = |label: &str| {
        printed
            .iter()
            .find(|l| l.trim_start().starts_with(label))
            .and_then(|l| l.split_whitespace().find(|w| w.starts_with("http://")))
            .unwrap_or_else(|| panic!("no {label} line in {printed:#?}"))
            .to_string()
    };
    let authority_b = field("authority B");
    let curl = printed
        .iter()
        .find(|l| l.trim_start().starts_with("curl -s -H"))
        .expect("a curl line");
    let at1 = curl
        .split("Bearer ")
        .nth(1)
        .unwrap()
        .split('"')
        .next()
        .unwrap()
        .to_string();
    let url: String = curl.rsplit(' ').next().unwrap().to_string();
    let addr = url
        .trim_start_matches("http://")
        .split('/')
        .next()
        .unwrap()
        .parse()
        .unwrap();

    let answer = support::get(addr, "/hello", Some(&at1)).await;
    assert_eq!(answer.status, 200, "{}", answer.body);
    let claims = &answer.json()["received_token_claims"];
    assert_eq!(
        claims["iss"],
        authority_b.as_str(),
        "the upstream got a token from domain B"
    );
    assert_eq!(claims["scope"], "b:read");
    assert_eq!(claims["sub"], "demo-app");
    assert!(!answer.body.contains(&at1));
    // Under /txn the upstream also gets a Txn-Token from authority B as TTS.
    let answer = support::get(addr, "/txn/orders", Some(&at1)).await;
    assert_eq!(answer.status, 200, "{}", answer.body);
    let txn = &answer.json()["received_txn_token_claims"];
    assert_eq!(txn["iss"], authority_b.as_str(), "{}", answer.body);
    assert_eq!(txn["aud"], "urn:demo:trust");
    assert_eq!(txn["tctx"]["path"], "/txn/orders");
    assert_eq!(answer.json()["received_token_claims"]["scope"], "b:read");
    assert!(
        printed.iter().any(|l| l.contains("/txn/orders")),
        "{printed:#?}"
    );

    let interrupted = Command::new("kill")
        .args(["-INT", &child.0.id().to_string()])
        .status()
        .unwrap();
    assert!(interrupted.success());
    let status = tokio::task::block_in_place(|| {
        for _ in 0..500 {
            if let Some(status) = child.0.try_wait().unwrap() {
                return status;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = child.0.kill();
        panic!("the demo did not stop on Ctrl-C");
    });
    assert!(status.success(), "{status:?}");
}

/// Stops the demo when the test fails before its Ctrl-C: a leaked demo keeps the file
/// descriptors it inherited (the build lock of whoever ran the tests) and its ports.
struct KillOnDrop(std::process::Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}
