use super::*;

/// The proof of RFC 9449 §4.2, made in 2019 for `POST https://server.example.com/token`.
const RFC_PROOF: &str = "eyJ0eXAiOiJkcG9wK2p3dCIsImFsZyI6IkVTMjU2IiwiandrIjp7Imt0eSI6IkVDIiwieCI6Imw4dEZyaHgtMzR0VjNoUklDUkRZOXpDa0RscEJoRjQyVVFVZldWQVdCRnMiLCJ5IjoiOVZFNGpmX09rX282NHpiVFRsY3VOSmFqSG10NnY5VERWclUwQ2R2R1JEQSIsImNydiI6IlAtMjU2In19.eyJqdGkiOiItQndDM0VTYzZhY2MybFRjIiwiaHRtIjoiUE9TVCIsImh0dSI6Imh0dHBzOi8vc2VydmVyLmV4YW1wbGUuY29tL3Rva2VuIiwiaWF0IjoxNTYyMjYyNjE2fQ.2-GxA6T8lP4vfrg8v-FdWP0A0zdrj8igiMLvqRMUvwnQg4PtFLbdLXiOSsX0x7NVY-FNyJK70nfbV37xRZT3Lg";

fn expect<'a>(htm: &'a str, htu: &'a str) -> Expect<'a> {
    Expect {
        htm,
        htu,
        access_token: None,
        nonces: &[],
        max_age: 60,
        skew: 5,
    }
}

#[test]
fn the_rfc_example_proof_verifies_with_its_thumbprint_and_is_too_old_today() {
    let old = Expect {
        max_age: u64::MAX,
        ..expect("POST", "https://server.example.com/token")
    };
    let proof = verify(RFC_PROOF, &old).unwrap();
    // RFC 9449 §6.1: the thumbprint of the §4.2 example key.
    assert_eq!(proof.jkt, "0ZcOCORZNYy-DWpqq30jZyJGHTN0d2HglBV3uiguA4I");
    assert_eq!(proof.jti, "-BwC3ESc6acc2lTc");
    assert_eq!(
        verify(
            RFC_PROOF,
            &expect("POST", "https://server.example.com/token")
        ),
        Err(ProofError::Time)
    );
}

#[test]
fn a_made_proof_verifies_and_binds_to_the_keys_thumbprint() {
    let key = ProofKey::generate().unwrap();
    let token = "at2-value";
    let proof = key
        .proof("GET", "https://api.example/x", Some(token), Some("n-1"))
        .unwrap();
    let check = Expect {
        access_token: Some(token),
        nonces: &["n-0", "n-1"],
        ..expect("GET", "HTTPS://API.example:443/x?q=1")
    };
    let verified = verify(&proof, &check).unwrap();
    assert_eq!(verified.jkt, key.jkt());
    // Every proof is fresh.
    let again = key
        .proof("GET", "https://api.example/x", Some(token), Some("n-1"))
        .unwrap();
    assert_ne!(verify(&again, &check).unwrap().jti, verified.jti);
    assert!(!format!("{key:?}").contains(&proof[..20]));
}

#[test]
fn each_mismatch_has_its_own_refusal() {
    use ProofError::*;
    let key = ProofKey::generate().unwrap();
    let good = |at: Option<&str>, nonce: Option<&str>| {
        key.proof("POST", "https://as.example/token", at, nonce)
            .unwrap()
    };
    let base = expect("POST", "https://as.example/token");
    assert_eq!(
        verify(
            &good(None, None),
            &expect("GET", "https://as.example/token")
        ),
        Err(Method)
    );
    assert_eq!(
        verify(
            &good(None, None),
            &expect("POST", "https://as.example/other")
        ),
        Err(Uri)
    );
    assert_eq!(
        verify(
            &good(None, None),
            &expect("POST", "http://as.example/token")
        ),
        Err(Uri)
    );
    let with_token = Expect {
        access_token: Some("t"),
        ..base
    };
    assert_eq!(verify(&good(None, None), &with_token), Err(TokenHash));
    assert_eq!(
        verify(&good(Some("other"), None), &with_token),
        Err(TokenHash)
    );
    assert!(verify(&good(Some("t"), None), &with_token).is_ok());
    let nonce = Expect {
        nonces: &["fresh"],
        ..base
    };
    assert_eq!(verify(&good(None, None), &nonce), Err(Nonce));
    assert_eq!(verify(&good(None, Some("stale")), &nonce), Err(Nonce));
    assert!(verify(&good(None, Some("fresh")), &nonce).is_ok());

    // A tampered payload, a foreign signature, a wrong typ, alg none, a private jwk.
    let proof = good(None, None);
    let parts: Vec<&str> = proof.split('.').collect();
    let other = ProofKey::generate()
        .unwrap()
        .proof("POST", "https://as.example/token", None, None)
        .unwrap();
    let other_sig = other.rsplit('.').next().unwrap();
    let resigned = format!("{}.{}.{other_sig}", parts[0], parts[1]);
    assert_eq!(verify(&resigned, &base), Err(Signature));
    let header = |h: Value| URL_SAFE_NO_PAD.encode(serde_json::to_vec(&h).unwrap());
    let original: Value =
        serde_json::from_slice(&URL_SAFE_NO_PAD.decode(parts[0]).unwrap()).unwrap();
    let mut typ = original.clone();
    typ["typ"] = json!("JWT");
    let typ = format!("{}.{}.{}", header(typ), parts[1], parts[2]);
    assert_eq!(verify(&typ, &base), Err(Type));
    let mut none = original.clone();
    none["alg"] = json!("none");
    assert_eq!(
        verify(&format!("{}.{}.", header(none), parts[1]), &base),
        Err(Algorithm)
    );
    let mut hs = original.clone();
    hs["alg"] = json!("HS256");
    assert_eq!(
        verify(&format!("{}.{}.{}", header(hs), parts[1], parts[2]), &base),
        Err(Algorithm)
    );
    let mut private = original.clone();
    private["jwk"]["d"] = json!("AAAA");
    assert_eq!(
        verify(
            &format!("{}.{}.{}", header(private), parts[1], parts[2]),
            &base
        ),
        Err(Key)
    );
    let mut no_key = original;
    no_key.as_object_mut().unwrap().remove("jwk");
    assert_eq!(
        verify(
            &format!("{}.{}.{}", header(no_key), parts[1], parts[2]),
            &base
        ),
        Err(Key)
    );
    assert_eq!(verify("not-a-jwt", &base), Err(Malformed));
    assert_eq!(
        verify(&"a".repeat(MAX_PROOF_LEN + 1), &base),
        Err(Malformed)
    );
}

#[test]
fn htu_compares_scheme_host_and_path_only() {
    assert_eq!(htu("HTTP", "Svc.NS:80", "/a/b?x=1"), "http://svc.ns/a/b");
    assert_eq!(htu("https", "h:8443", ""), "https://h:8443/");
    assert_eq!(
        normalize_htu("https://h.example:443/p#f").as_deref(),
        Some("https://h.example/p")
    );
    assert_eq!(normalize_htu("/relative"), None);
    assert_eq!(normalize_htu("https://user@h/p"), None);
}

#[test]
fn bound_jkt_reads_cnf() {
    assert_eq!(bound_jkt(&json!({"cnf": {"jkt": "abc"}})), Some("abc"));
    assert_eq!(bound_jkt(&json!({"cnf": {"x5t#S256": "abc"}})), None);
    assert_eq!(bound_jkt(&json!({})), None);
}
