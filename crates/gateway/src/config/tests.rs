use super::*;
use base64::Engine as _;
use chaingate_oauth::secret::Secret;
use client_auth::basic_authorization;

const MINIMAL: &str = r#"
listen = "127.0.0.1:8080"
admin_listen = "127.0.0.1:9901"

[domains.billing]
token_endpoint = "https://as.billing.example/token"
grant = "chain"
client_id = "gateway-a"
client_secret = "s3cret"
auth_method = "client_secret_basic"
scope = "invoices.read"

[[routes]]
path_prefix = "/"
upstream = "http://127.0.0.1:3000"
domain = "billing"
scope = "invoices.read invoices.write"
"#;

fn error_for(text: &str) -> String {
    Config::from_toml(text).unwrap_err().to_string()
}

#[test]
fn the_documented_example_loads() {
    let config = Config::from_toml(MINIMAL).unwrap();
    assert_eq!(
        config.routes[0].scope.as_deref(),
        Some("invoices.read invoices.write")
    );
    assert_eq!(&*config.routes[0].domain.name, "billing");
    assert_eq!(
        config.routes[0].upstream.authority.as_str(),
        "127.0.0.1:3000"
    );
}

#[test]
fn debug_output_never_contains_the_secret() {
    let config = Config::from_toml(MINIMAL).unwrap();
    let shown = format!("{config:?}");
    assert!(!shown.contains("s3cret"), "{shown}");
    // Nor its Basic encoding.
    assert!(!shown.contains("Z2F0ZXdheS1hOnMzY3JldA"), "{shown}");
}

#[test]
fn basic_credentials_are_form_encoded_first() {
    let value = basic_authorization("a:b ü", &Secret::new("p w+"));
    let encoded = value.to_str().unwrap().strip_prefix("Basic ").unwrap();
    let decoded = base64::engine::general_purpose::STANDARD
        .decode(encoded)
        .unwrap();
    assert_eq!(String::from_utf8(decoded).unwrap(), "a%3Ab+%C3%BC:p+w%2B");
}

#[test]
fn unknown_keys_are_named() {
    let text = MINIMAL.replace("scope = \"invoices.read\"\n", "scop = \"x\"\n");
    assert!(
        error_for(&text).contains("domains.billing.scop"),
        "{}",
        error_for(&text)
    );
}

#[test]
fn plain_http_token_endpoints_need_an_explicit_opt_in() {
    let text = MINIMAL.replace("https://as.billing", "http://as.billing");
    assert!(error_for(&text).contains("domains.billing.token_endpoint"));
    let allowed = text.replace(
        "grant = \"chain\"",
        "grant = \"chain\"\nallow_insecure_http = true",
    );
    assert!(Config::from_toml(&allowed).is_ok());
}

#[test]
fn routes_must_name_a_defined_domain() {
    let text = MINIMAL.replace("domain = \"billing\"", "domain = \"payroll\"");
    assert!(error_for(&text).contains("routes[0].domain"));
}

#[test]
fn upstreams_are_origins_only() {
    let text = MINIMAL.replace("http://127.0.0.1:3000", "http://127.0.0.1:3000/api");
    assert!(error_for(&text).contains("routes[0].upstream"));
}

#[test]
fn secret_and_secret_file_are_exclusive_and_one_is_required() {
    let both = MINIMAL.replace(
        "client_secret = \"s3cret\"",
        "client_secret = \"a\"\nclient_secret_file = \"/x\"",
    );
    assert!(error_for(&both).contains("domains.billing.client_secret"));
    let neither = MINIMAL.replace("client_secret = \"s3cret\"\n", "");
    assert!(error_for(&neither).contains("domains.billing.client_secret"));
}

#[test]
fn secret_file_is_read_and_trailing_newline_dropped() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("secret");
    std::fs::write(&path, "from-file\n").unwrap();
    let text = MINIMAL.replace(
        "client_secret = \"s3cret\"",
        &format!("client_secret_file = {:?}", path.display().to_string()),
    );
    let text = text.replace("client_secret_basic", "client_secret_post");
    let config = Config::from_toml(&text).unwrap();
    match &config.domains[0].client_auth {
        ClientAuth::Post(secret) => assert!(secret.ct_eq("from-file")),
        other => panic!("expected post, got {other:?}"),
    }
}

#[test]
fn bad_scopes_and_durations_are_named() {
    let text = MINIMAL.replace("scope = \"invoices.read\"\n", "scope = \"a  b\"\n");
    assert!(error_for(&text).contains("domains.billing.scope"));
    let text = format!("{MINIMAL}\n[cache]\nexpiry_skew = \"ten\"\n");
    assert!(error_for(&text).contains("cache.expiry_skew"));
}

#[test]
fn the_shipped_example_config_loads() {
    let config = Config::from_toml(include_str!("../../../../config/chaingate.toml")).unwrap();
    assert_eq!(config.routes.len(), 2);
    assert_eq!(&*config.routes[0].name, "invoices");
}

fn env(vars: &[(&str, &str)]) -> Vec<(String, String)> {
    vars.iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

#[test]
fn environment_overrides_any_key_including_nested_and_array_entries() {
    let config = Config::from_toml_with_env(
        MINIMAL,
        env(&[
            ("CHAINGATE_LISTEN", "127.0.0.1:18080"),
            ("CHAINGATE_DOMAINS__BILLING__CLIENT_ID", "from-env"),
            ("CHAINGATE_ROUTES__0__UPSTREAM", "http://127.0.0.1:4000"),
            ("CHAINGATE_CACHE__MAX_ENTRIES", "7"),
            ("CHAINGATE_LOG__ACCESS_LOG", "false"),
            ("CHAINGATE_CONFIG", "/not/a/key"),
            ("HOME", "/root"),
        ]),
    )
    .unwrap();
    assert_eq!(config.listen.port(), 18080);
    assert_eq!(config.domains[0].client_id, "from-env");
    assert_eq!(
        config.routes[0].upstream.authority.as_str(),
        "127.0.0.1:4000"
    );
    assert_eq!(config.cache.max_entries, 7);
    assert!(!config.log.access_log);
}

#[test]
fn a_mistyped_override_is_named_like_a_mistyped_key() {
    let err = Config::from_toml_with_env(MINIMAL, env(&[("CHAINGATE_CACHE__MAX_ENTRYS", "7")]))
        .unwrap_err();
    assert!(err.to_string().contains("cache.max_entrys"), "{err}");
    let err = Config::from_toml_with_env(MINIMAL, env(&[("CHAINGATE_ROUTES__3__UPSTREAM", "x")]))
        .unwrap_err();
    assert!(err.to_string().contains("routes[3]"), "{err}");
}

#[test]
fn effective_config_shows_overrides_and_hides_secrets() {
    let shown = effective_toml(
        MINIMAL,
        env(&[("CHAINGATE_DOMAINS__BILLING__CLIENT_SECRET", "env-secret")]),
    )
    .unwrap();
    assert!(
        !shown.contains("s3cret") && !shown.contains("env-secret"),
        "{shown}"
    );
    assert!(shown.contains("[redacted]"));
    assert!(shown.contains("gateway-a"));
}

#[test]
fn typed_sections_keep_their_messages_and_key_paths() {
    // Parsed by serde now: the message is the duration parser's, the key is serde's path.
    let text = format!("{MINIMAL}\n[timeouts]\nheader_read = \"5x\"\n");
    assert_eq!(
        error_for(&text),
        "config key `timeouts.header_read`: has no unit; use ms, s, m, h or d"
    );
    let err =
        Config::from_toml_with_env(MINIMAL, env(&[("CHAINGATE_LIMITS__RETRY_AFTER", "soon")]))
            .unwrap_err();
    assert_eq!(
        err.to_string(),
        "config key `limits.retry_after`: not a duration like 250ms, 30s, 5m, 1h or 1d"
    );
    let text = MINIMAL.replace("\"127.0.0.1:9901\"", "\"localhost\"");
    assert_eq!(
        error_for(&text),
        "config key `admin_listen`: not an address like 127.0.0.1:8080"
    );
    let text = format!("{MINIMAL}\n[log]\nformat = \"xml\"\n");
    assert_eq!(
        error_for(&text),
        "config key `log.format`: not plain or json"
    );
    let text = format!("{MINIMAL}\n[limits]\nmax_connections = 0\n");
    assert_eq!(
        error_for(&text),
        "config key `limits.max_connections`: must be at least 1"
    );
    // Days, as the authority always took them; and every default from one place.
    let text = format!("{MINIMAL}\n[shutdown]\ndrain_timeout = \"1d\"\n");
    let config = Config::from_toml(&text).unwrap();
    assert_eq!(config.shutdown.drain_timeout, Duration::from_secs(86_400));
    assert_eq!(config.shutdown.drain_delay, Duration::ZERO);
    assert_eq!(config.timeouts.header_read, Duration::from_secs(10));
    assert_eq!(config.cache.refresh_ahead, Some(0.8));
    assert_eq!(config.limits.max_connections, 16_384);
    assert!(config.reload.enabled && config.log.access_log);
}

#[test]
fn access_log_batching_has_nginx_like_defaults_and_bounds() {
    let config = Config::from_toml(MINIMAL).unwrap();
    assert_eq!(config.log.access_log_buffer, 64 * 1024);
    assert_eq!(config.log.access_log_flush, Duration::from_secs(1));
    let with = |log: &str| format!("{MINIMAL}\n[log]\n{log}\n");
    let config =
        Config::from_toml(&with("access_log_buffer = 0\naccess_log_flush = \"250ms\"")).unwrap();
    assert_eq!(
        config.log.access_log_buffer, 0,
        "0 writes each line at once"
    );
    assert_eq!(config.log.access_log_flush, Duration::from_millis(250));
    assert!(error_for(&with("access_log_flush = \"0s\"")).contains("log.access_log_flush"));
    assert!(error_for(&with("access_log_flush = \"2m\"")).contains("log.access_log_flush"));
    assert!(error_for(&with("access_log_buffer = 99999999")).contains("log.access_log_buffer"));
    assert!(error_for(&with("access_log_buffer = \"64k\"")).contains("log.access_log_buffer"));
}

#[test]
fn max_header_bytes_defaults_to_envoys_60_kib_and_is_bounded() {
    assert_eq!(
        Config::from_toml(MINIMAL).unwrap().limits.max_header_bytes,
        60 * 1024
    );
    let with = |v: &str| format!("{MINIMAL}\n[limits]\nmax_header_bytes = {v}\n");
    assert_eq!(
        Config::from_toml(&with("16384"))
            .unwrap()
            .limits
            .max_header_bytes,
        16384
    );
    // Below hyper's smallest read buffer, or past any real head.
    for bad in ["4096", "2000000"] {
        let e = error_for(&with(bad));
        assert!(e.contains("limits.max_header_bytes"), "{e}");
    }
}

#[test]
fn a_client_secret_from_the_environment_is_taken_as_written() {
    for raw in ["12345678", "0x1f", "1e9", "inf", "true"] {
        let config = Config::from_toml_with_env(
            MINIMAL,
            env(&[("CHAINGATE_DOMAINS__BILLING__CLIENT_SECRET", raw)]),
        )
        .unwrap_or_else(|e| panic!("{raw}: {e}"));
        let ClientAuth::Basic(value) = &config.domains[0].client_auth else {
            panic!("basic");
        };
        assert_eq!(*value, basic_authorization("gateway-a", &Secret::new(raw)));
    }
}

#[test]
fn config_errors_name_the_key_never_the_value() {
    let cases = [
        env(&[("CHAINGATE_CACHE__MAX_ENTRIES", "s3cr3t-in-the-wrong-key")]),
        env(&[("CHAINGATE_LIMITS__RETRY_AFTER", "s3cr3t-in-the-wrong-key")]),
        env(&[("CHAINGATE_LOG__FORMAT", "s3cr3t-in-the-wrong-key")]),
        env(&[(
            "CHAINGATE_DOMAINS__BILLING__GRANT",
            "s3cr3t-in-the-wrong-key",
        )]),
        env(&[(
            "CHAINGATE_DOMAINS__BILLING__AUTH_METHOD",
            "s3cr3t-in-the-wrong-key",
        )]),
        env(&[("CHAINGATE_ADMIN_LISTEN", "s3cr3t-in-the-wrong-key")]),
        env(&[("CHAINGATE_LIMITS__MAX_HEADERS", "987654321987654321987")]),
    ];
    for vars in cases {
        let e = Config::from_toml_with_env(MINIMAL, vars.clone())
            .unwrap_err()
            .to_string();
        assert!(!e.contains("s3cr3t") && !e.contains("987654321"), "{e}");
        let key = vars[0]
            .0
            .trim_start_matches("CHAINGATE_")
            .replace("__", ".");
        assert!(e.contains(&key.to_ascii_lowercase()), "{e}");
    }
}

#[test]
fn config_print_redacts_every_secret_by_type_not_by_name() {
    let text = MINIMAL.replace(
        "scope = \"invoices.read\"\n",
        "scope = \"invoices.read\"\nextra_params = { api_key = \"param-value-1\", resource_hint = \"param-value-2\" }\n",
    );
    let shown = effective_toml(
        &text,
        env(&[("CHAINGATE_DOMAINS__BILLING__CLIENT_SECRET", "424242")]),
    )
    .unwrap();
    for value in ["s3cret", "424242", "param-value-1", "param-value-2"] {
        assert!(!shown.contains(value), "{value} shown:\n{shown}");
    }
    assert!(
        shown.contains("api_key") && shown.contains("resource_hint"),
        "{shown}"
    );
    assert!(
        shown.contains("gateway-a") && shown.contains("invoices.read"),
        "{shown}"
    );
}
