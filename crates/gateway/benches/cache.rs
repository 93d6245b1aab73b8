//! The cache-hit path the gateway takes, in process: route, bearer parsing and the token phase
//! (key digest, cache lookup, refresh-ahead check, the forwardability checks) against a warm
//! cache, through the same functions `Gateway::handle` calls.
//!
//! Run: `cargo bench -p chaingate-gateway --bench cache`. Figures: docs/testing.md.

use chaingate_gateway::bench::{bearer_len, HitPath};
use chaingate_gateway::config::Config;
use chaingate_test_support::{config, TokenServer};
use http::{HeaderMap, HeaderValue, Request, Uri};

fn main() {
    divan::main();
}

const TOKEN: &str = "eyJhbGciOiJFUzI1NiIsInR5cCI6ImF0K2p3dCJ9.eyJpc3MiOiJodHRwOi8vYSIsInN1YiI6ImFsaWNlIn0.c2lnbmF0dXJl";

fn request() -> Request<()> {
    Request::builder()
        .uri("/invoices/42")
        .header("authorization", format!("Bearer {TOKEN}"))
        .body(())
        .unwrap()
}

#[divan::bench]
fn bearer_parse(bencher: divan::Bencher<'_, '_>) {
    let mut headers = HeaderMap::new();
    headers.insert(
        "authorization",
        HeaderValue::from_str(&format!("Bearer {TOKEN}")).unwrap(),
    );
    let uri: Uri = "/invoices/42".parse().unwrap();
    bencher.bench_local(|| bearer_len(divan::black_box(&headers), &uri));
}

/// Route + authn + tokens on a warm cache: everything the gateway does before forwarding.
#[divan::bench]
fn hit_path(bencher: divan::Bencher<'_, '_>) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let (_server, hit) = rt.block_on(async {
        chaingate_core::tls::install_crypto_provider();
        let server = TokenServer::start().await;
        let toml = config(&server.url(), "http://127.0.0.1:9", "");
        let hit = HitPath::new(&Config::from_toml(&toml).unwrap()).unwrap();
        (server, hit)
    });
    let request = request();
    // The first call exchanges (a miss); every measured call is a hit.
    rt.block_on(hit.token(&request))
        .expect("the warm-up exchange succeeds");
    bencher.bench_local(|| rt.block_on(hit.token(divan::black_box(&request))).unwrap());
}
