//! The cache-hit path, in process: bearer parsing, key digest, and a hit in the token cache.
//!
//! Run: `cargo bench --bench cache`. Reference (2-vCPU Xeon, the project's CI machine kind,
//! 2026-11-23): see the README's "Benchmarks" section for the latest figures.

use std::sync::Arc;
use std::time::Duration;

use chaingate::authn;
use chaingate::cache::{CacheKey, CacheMetrics, TokenCache};
use chaingate::config::CacheSettings;
use chaingate::error::Error;
use chaingate::exchange::Issued;
use chaingate::secret::Secret;
use http::{HeaderMap, HeaderValue, Uri};

fn main() {
    divan::main();
}

const TOKEN: &str = "eyJhbGciOiJFUzI1NiIsInR5cCI6ImF0K2p3dCJ9.eyJpc3MiOiJodHRwOi8vYSIsInN1YiI6ImFsaWNlIn0.c2lnbmF0dXJl";

fn headers() -> HeaderMap {
    let mut headers = HeaderMap::new();
    headers.insert(
        "authorization",
        HeaderValue::from_str(&format!("Bearer {TOKEN}")).unwrap(),
    );
    headers
}

#[divan::bench]
fn bearer_parse(bencher: divan::Bencher<'_, '_>) {
    let headers = headers();
    let uri: Uri = "/invoices/42".parse().unwrap();
    bencher
        .bench_local(|| authn::bearer(divan::black_box(&headers), &uri).map(|t| t.expose().len()));
}

#[divan::bench]
fn cache_key_digest(bencher: divan::Bencher<'_, '_>) {
    let headers = headers();
    let uri: Uri = "/".parse().unwrap();
    let token = authn::bearer(&headers, &uri).unwrap();
    bencher
        .bench_local(|| CacheKey::new(divan::black_box("billing"), Some("invoices.read"), token));
}

/// Parse + digest + cache hit: everything the gateway does for a token on a warm cache.
#[divan::bench]
fn hit_x1(bencher: divan::Bencher<'_, '_>) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let mut registry = prometheus_client::registry::Registry::default();
    let metrics = CacheMetrics::register(&mut registry);
    let settings = CacheSettings {
        max_entries: 100_000,
        max_bytes: 256 * 1024 * 1024,
        negative_ttl: Duration::from_secs(5),
        refresh_ahead: Some(0.8),
        expiry_skew: Duration::from_secs(30),
        default_ttl: Duration::from_secs(60),
    };
    let cache = Arc::new(TokenCache::new(&Arc::from("billing"), &settings, &metrics));
    let headers = headers();
    let uri: Uri = "/".parse().unwrap();
    let warm = async {
        Ok::<_, Error>(Issued {
            access_token: Secret::new("downstream-token"),
            expires_in: Some(Duration::from_secs(3600)),
            bearer: true,
            reciprocal: None,
            scope: None,
            links: Default::default(),
        })
    };
    let token = authn::bearer(&headers, &uri).unwrap();
    let key = CacheKey::new("billing", Some("invoices.read"), token);
    rt.block_on(cache.get_or_exchange(key, token, warm))
        .unwrap();
    bencher.bench_local(|| {
        rt.block_on(async {
            let token = authn::bearer(&headers, &uri).unwrap();
            let key = CacheKey::new("billing", Some("invoices.read"), token);
            let miss = async { Err::<Issued, _>(Error::ExchangeTimeout) };
            cache
                .get_or_exchange(key, token, miss)
                .await
                .unwrap()
                .0
                .authorization
                .len()
        })
    });
}
