//! What DPoP (RFC 9449) costs per request: the proof chaingate signs for every upstream request
//! carrying a bound token (ES256, the per-process key's algorithm), and the check a proof from
//! a caller goes through (signature, claims, thumbprint).
//!
//! Run: `cargo bench -p chaingate-gateway --bench dpop`. Figures: docs/testing.md.

use chaingate_oauth::dpop::{self, Expect, ProofKey};

fn main() {
    divan::main();
}

const AT2: &str = "eyJhbGciOiJFUzI1NiIsInR5cCI6ImF0K2p3dCJ9.eyJpc3MiOiJodHRwOi8vYiIsInN1YiI6ImFsaWNlIn0.c2lnbmF0dXJl";

/// One upstream proof: claims, base64url, one ES256 signature.
#[divan::bench]
fn sign_upstream_proof(bencher: divan::Bencher<'_, '_>) {
    let key = ProofKey::generate().unwrap();
    bencher.bench_local(|| {
        key.proof(
            "GET",
            divan::black_box("http://127.0.0.1:3000/invoices/42"),
            Some(AT2),
            Some("rs-nonce"),
        )
        .unwrap()
    });
}

/// The same with an Ed25519 `dpop_key_file` (EdDSA, RFC 8037).
#[divan::bench]
fn sign_upstream_proof_ed25519(bencher: divan::Bencher<'_, '_>) {
    use base64::Engine as _;
    let pkcs8 =
        aws_lc_rs::signature::Ed25519KeyPair::generate_pkcs8(&aws_lc_rs::rand::SystemRandom::new())
            .unwrap();
    let pem = format!(
        "-----BEGIN PRIVATE KEY-----\n{}\n-----END PRIVATE KEY-----\n",
        base64::engine::general_purpose::STANDARD.encode(pkcs8.as_ref())
    );
    let key = ProofKey::from_pem(pem.as_bytes()).unwrap();
    bencher.bench_local(|| {
        key.proof(
            "GET",
            divan::black_box("http://127.0.0.1:3000/invoices/42"),
            Some(AT2),
            Some("rs-nonce"),
        )
        .unwrap()
    });
}

/// One proof checked as a resource server or token endpoint checks it (replay store aside).
#[divan::bench]
fn verify_proof(bencher: divan::Bencher<'_, '_>) {
    let key = ProofKey::generate().unwrap();
    let htu = "http://127.0.0.1:8080/invoices/42";
    let proof = key.proof("GET", htu, Some(AT2), None).unwrap();
    let check = Expect {
        htm: "GET",
        htu,
        access_token: Some(AT2),
        nonces: &[],
        max_age: 60,
        skew: 5,
    };
    bencher.bench_local(|| dpop::verify(divan::black_box(&proof), &check).unwrap());
}
