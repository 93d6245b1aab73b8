//! Configuration errors of the user-facing side name their key.

use chaingate_authority::AuthorityConfig;

fn error(toml: &str) -> String {
    AuthorityConfig::from_toml(&format!("listen = \"127.0.0.1:0\"\n{toml}"))
        .unwrap_err()
        .to_string()
}

#[test]
fn bad_user_facing_config_is_refused_with_the_key() {
    let cases = [
        ("[[clients]]\nclient_id = \"p\"\npublic = true\nclient_secret = \"x\"\ngrants = [\"authorization_code\"]\nredirect_uris = [\"https://a.example/cb\"]", "clients[0].public"),
        ("[[clients]]\nclient_id = \"p\"\npublic = true\ngrants = [\"client_credentials\"]", "clients[0].grants"),
        ("[[clients]]\nclient_id = \"c\"\nclient_secret = \"x\"\ngrants = [\"authorization_code\"]", "clients[0].redirect_uris"),
        ("[[clients]]\nclient_id = \"c\"\nclient_secret = \"x\"\nredirect_uris = [\"http://a.example/cb\"]", "clients[0].redirect_uris[0]"),
        ("[[users]]\nusername = \"a\"", "users[0].password"),
        ("[[users]]\nusername = \"a\"\npassword = \"x\"\n[[users]]\nusername = \"a\"\npassword = \"y\"", "users[1].username"),
        ("[registration]\nscope = \"read\"", "registration.initial_access_tokens"),
        ("[registration]\ninitial_access_tokens = [\"short\"]", "registration.initial_access_tokens"),
        ("max_scopes_per_request = 0", "max_scopes_per_request"),
        ("code_ttl = \"0s\"", "code_ttl"),
    ];
    for (toml, key) in cases {
        let message = error(toml);
        assert!(message.contains(&format!("`{key}`")), "{key}: {message}");
    }
    // dev_mode allows http redirect URIs on any host; loopback http is always fine.
    let ok = "dev_mode = true\n[[clients]]\nclient_id = \"c\"\nclient_secret = \"x\"\nredirect_uris = [\"http://a.example/cb\", \"http://127.0.0.1:8080/cb\"]";
    AuthorityConfig::from_toml(&format!("listen = \"127.0.0.1:0\"\n{ok}")).unwrap();
}
