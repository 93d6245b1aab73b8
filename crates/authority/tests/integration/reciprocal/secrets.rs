//! Codes, tokens and secrets of the reciprocal flow never reach the authorities' logs.

use http::StatusCode;

use super::support::*;

#[tokio::test]
async fn no_code_token_or_secret_appears_in_the_logs() {
    // Process-wide: other tests of this binary log here too, which only adds to the search.
    let captured = chaingate_test_support::logs::Logs::global();

    let p = Parties::start().await;
    let at_b = alice_at_b(&p).await.field("access_token");
    let at_a = alice_at_a(&p).await;
    let code = code_request(
        &p,
        ("gateway", "gw-secret"),
        &at_a,
        "party-b",
        "contacts.read",
    )
    .await
    .field("code");
    assert_eq!(deliver(&p, &code, &at_b).await.status, StatusCode::OK);
    assert_eq!(redemptions(&p, 1).await, (1, 0));
    let grant = p.b.reciprocal_grant("alice", "gateway-at-b").unwrap();
    let refused = deliver(&p, "refused-code-0123456789", &at_b).await;
    assert_eq!(refused.status, StatusCode::OK);
    assert_eq!(redemptions(&p, 2).await, (1, 1));

    let logs = captured.text();
    assert!(
        logs.contains("reciprocal code redeemed"),
        "the outcome is logged"
    );
    assert!(logs.contains("reciprocal code redemption failed"));
    let refresh = grant.refresh_token.clone().unwrap();
    for (name, secret) in [
        ("code", code.as_str()),
        ("refused code", "refused-code-0123456789"),
        ("access token at A", at_a.as_str()),
        ("access token at B", at_b.as_str()),
        ("redeemed access token", grant.access_token.expose()),
        ("redeemed refresh token", refresh.expose()),
        ("B's secret at A", "b-at-a-secret"),
        ("gateway's secret at B", "gwb-secret"),
    ] {
        assert!(!logs.contains(secret), "{name} is in the logs");
        // The signature part of a JWT is its secret-bearing tail.
        if let Some(sig) = secret.rsplit('.').next().filter(|s| s.len() > 20) {
            assert!(!logs.contains(sig), "{name}'s signature is in the logs");
        }
    }
    assert!(!format!("{grant:?}").contains(grant.access_token.expose()));
}
