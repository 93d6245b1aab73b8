//! Per-route matching, targets and exchange modes: what loads, and the key each refusal names.

use super::*;

const BASE: &str = r#"
listen = "127.0.0.1:8080"
admin_listen = "127.0.0.1:9901"

[domains.billing]
token_endpoint = "https://as.billing.example/token"
grant = "chain"
client_id = "gateway-a"
client_secret = "s3cret"

[domains.te]
token_endpoint = "https://as.te.example/token"
grant = "token-exchange"
client_id = "gateway-a"
client_secret = "s3cret"
audience = "urn:te:default"
resource = "https://default.example/api"
"#;

const VALIDATE: &str = r#"
[routes.validate]
issuer = "https://idp.example"
jwks_uri = "https://idp.example/jwks"
audience = "urn:chaingate"
"#;

/// One route on `domain` with `keys`, and `table` after it (e.g. `[routes.validate]`).
fn with_route(domain: &str, keys: &str, table: &str) -> String {
    format!(
        "{BASE}\n[[routes]]\nupstream = \"http://127.0.0.1:3000\"\ndomain = \"{domain}\"\n{keys}\n{table}"
    )
}

fn refused(domain: &str, keys: &str, table: &str) -> String {
    Config::from_toml(&with_route(domain, keys, table))
        .unwrap_err()
        .to_string()
}

fn loaded(domain: &str, keys: &str, table: &str) -> Route {
    Config::from_toml(&with_route(domain, keys, table))
        .unwrap()
        .routes
        .remove(0)
}

#[test]
fn path_is_exact_and_exclusive_with_path_prefix() {
    let route = loaded("billing", "path = \"/mcp\"", "");
    assert!(route.path_exact);
    assert_eq!(&*route.name, "/mcp");
    let get = |path: &str| http::Request::get(path).body(()).unwrap();
    assert!(route.matches("/mcp", &get("/mcp")));
    assert!(!route.matches("/mcp/x", &get("/mcp/x")));
    let both = refused("billing", "path = \"/a\"\npath_prefix = \"/a\"", "");
    assert!(both.contains("routes[0].path"), "{both}");
    let neither = refused("billing", "", "");
    assert!(neither.contains("routes[0].path_prefix"), "{neither}");
    let relative = refused("billing", "path = \"mcp\"", "");
    assert!(relative.contains("routes[0].path"), "{relative}");
}

#[test]
fn host_methods_and_headers_are_checked_at_load() {
    for (keys, key) in [
        ("host = \"a b\"", "routes[0].host"),
        ("host = \"a.example:x\"", "routes[0].host"),
        ("host = \"user@a.example\"", "routes[0].host"),
        ("methods = []", "routes[0].methods"),
        ("methods = [\"GET\", \"G T\"]", "routes[0].methods[1]"),
        (
            "headers = { \"bad name\" = \"x\" }",
            "routes[0].headers.bad name",
        ),
        ("headers = { \"x-a\" = \"\\n\" }", "routes[0].headers.x-a"),
        (
            "headers = { authorization = \"Bearer x\" }",
            "routes[0].headers.authorization",
        ),
    ] {
        let error = refused("billing", &format!("path_prefix = \"/\"\n{keys}"), "");
        assert!(error.contains(key), "{keys}: {error}");
    }
}

#[test]
fn a_request_matches_on_host_method_and_headers() {
    let route = loaded(
        "billing",
        "path_prefix = \"/\"\nhost = \"API.example\"\nmethods = [\"POST\"]\nheaders = { \"Mcp-Method\" = \"tools/call\" }",
        "",
    );
    let request = |host: &str, method: &str, mcp: &[&str]| {
        let mut builder = http::Request::builder()
            .method(method)
            .uri("/mcp")
            .header("host", host);
        for value in mcp {
            builder = builder.header("mcp-method", *value);
        }
        builder.body(()).unwrap()
    };
    let matches = |r: &http::Request<()>| route.matches(r.uri().path(), r);
    assert!(matches(&request(
        "api.EXAMPLE:8443",
        "POST",
        &["tools/call"]
    )));
    assert!(matches(&request("api.example.", "POST", &["tools/call"])));
    assert!(!matches(&request("other.example", "POST", &["tools/call"])));
    assert!(!matches(&request("api.example", "GET", &["tools/call"])));
    assert!(!matches(&request("api.example", "POST", &["tools/list"])));
    assert!(!matches(&request("api.example", "POST", &[])));
    // Twice, the field has no single value to compare.
    assert!(!matches(&request(
        "api.example",
        "POST",
        &["tools/call", "tools/call"]
    )));
    // HTTP/2's :authority (the URI's authority) names the host.
    let h2 = http::Request::post("https://api.example/mcp")
        .header("mcp-method", "tools/call")
        .body(())
        .unwrap();
    assert!(matches(&h2));

    let with_port = loaded(
        "billing",
        "path_prefix = \"/\"\nhost = \"api.example:8443\"",
        "",
    );
    let at = |host: &str| {
        let r = request(host, "GET", &[]);
        with_port.matches("/mcp", &r)
    };
    assert!(at("api.example:8443"));
    assert!(!at("api.example:9443"));
    assert!(!at("api.example"));
    let v6 = loaded("billing", "path_prefix = \"/\"\nhost = \"[::1]\"", "");
    let r = request("[::1]:8080", "GET", &[]);
    assert!(v6.matches("/", &r));
}

#[test]
fn a_route_an_earlier_one_covers_is_warned_about() {
    let config = |routes: &[&str]| {
        let mut text = BASE.to_string();
        for keys in routes {
            text += &format!(
                "\n[[routes]]\nupstream = \"http://127.0.0.1:3000\"\ndomain = \"billing\"\n{keys}\n"
            );
        }
        Config::from_toml(&text).unwrap().warnings()
    };
    let warnings = config(&[
        "path_prefix = \"/api\"",
        "name = \"late\"\npath = \"/api/x\"",
    ]);
    assert_eq!(warnings.len(), 1, "{warnings:?}");
    assert!(warnings[0].contains("routes[1]") && warnings[0].contains("late"));
    assert!(warnings[0].contains("routes[0]"));
    // The earlier one is narrower in some way: the later one can still match.
    for pair in [
        ["path_prefix = \"/api/x\"", "path_prefix = \"/api\""],
        ["path = \"/api\"", "path_prefix = \"/api\""],
        [
            "path_prefix = \"/\"\nmethods = [\"GET\"]",
            "path_prefix = \"/\"",
        ],
        [
            "path_prefix = \"/\"\nmethods = [\"GET\"]",
            "path_prefix = \"/\"\nmethods = [\"GET\", \"POST\"]",
        ],
        [
            "path_prefix = \"/\"\nhost = \"a.example\"",
            "path_prefix = \"/\"",
        ],
        [
            "path_prefix = \"/\"\nhost = \"a.example:80\"",
            "path_prefix = \"/\"\nhost = \"a.example\"",
        ],
        [
            "path_prefix = \"/\"\nheaders = { \"mcp-method\" = \"tools/call\" }",
            "path_prefix = \"/\"",
        ],
    ] {
        assert!(config(&pair).is_empty(), "{pair:?}");
    }
    // Covering conditions: absent, or admitting more.
    for pair in [
        [
            "path_prefix = \"/\"",
            "path_prefix = \"/\"\nmethods = [\"GET\"]",
        ],
        [
            "path_prefix = \"/\"\nmethods = [\"GET\", \"POST\"]",
            "path_prefix = \"/x\"\nmethods = [\"POST\"]",
        ],
        [
            "path_prefix = \"/\"\nhost = \"a.example\"",
            "path_prefix = \"/\"\nhost = \"A.example:8443\"",
        ],
        [
            "path_prefix = \"/\"\nheaders = { \"mcp-method\" = \"tools/call\" }",
            "path_prefix = \"/\"\nheaders = { \"Mcp-Method\" = \"tools/call\", x = \"1\" }",
        ],
        ["path = \"/a\"", "path = \"/a\"\nmethods = [\"GET\"]"],
    ] {
        assert_eq!(config(&pair).len(), 1, "{pair:?}");
    }
}

#[test]
fn route_targets_override_the_domains_and_are_checked() {
    let plain = loaded("te", "path_prefix = \"/\"", "");
    assert!(plain.targets.is_none(), "no route key: the domain's alone");
    let route = loaded(
        "te",
        "path_prefix = \"/\"\naudience = [\"urn:a\", \"urn:b\"]\n[[routes.authorization_details]]\ntype = \"payment_initiation\"\nactions = [\"initiate\"]",
        "",
    );
    let targets = route.targets.unwrap();
    assert_eq!(targets.audience, ["urn:a", "urn:b"]);
    assert_eq!(targets.resource, ["https://default.example/api"]);
    assert_eq!(
        targets.authorization_details.as_deref(),
        Some(r#"[{"actions":["initiate"],"type":"payment_initiation"}]"#)
    );
    let other = loaded("te", "path_prefix = \"/\"\naudience = \"urn:a\"", "");
    assert_ne!(other.targets.unwrap().digest, targets.digest);
    // `resource` is RFC 8707's, good on any grant.
    let chain = loaded(
        "billing",
        "path_prefix = \"/\"\nresource = \"https://api.example/\"",
        "",
    );
    assert_eq!(chain.targets.unwrap().resource, ["https://api.example/"]);

    for (domain, keys, key) in [
        ("billing", "audience = \"urn:a\"", "routes[0].audience"),
        ("te", "audience = []", "routes[0].audience"),
        ("te", "resource = [\"/relative\"]", "routes[0].resource[0]"),
        (
            "te",
            "resource = [\"https://a/\", \"https://a/#f\"]",
            "routes[0].resource[1]",
        ),
        (
            "te",
            "authorization_details = []",
            "routes[0].authorization_details",
        ),
        (
            "te",
            "[[routes.authorization_details]]\nactions = [\"read\"]",
            "routes[0].authorization_details[0]",
        ),
        (
            "te",
            "[[routes.authorization_details]]\ntype = 7",
            "routes[0].authorization_details[0]",
        ),
    ] {
        let error = refused(domain, &format!("path_prefix = \"/\"\n{keys}"), "");
        assert!(error.contains(key), "{keys}: {error}");
    }
}

#[test]
fn exchange_modes_need_what_they_rely_on() {
    assert_eq!(
        loaded("te", "path_prefix = \"/\"", "").exchange,
        ExchangeMode::Always
    );
    let if_needed = loaded(
        "te",
        "path_prefix = \"/\"\nexchange = \"if_needed\"",
        VALIDATE,
    );
    assert_eq!(if_needed.exchange, ExchangeMode::IfNeeded);
    let validate = if_needed.validate.unwrap();
    assert_eq!(validate.target_audiences, ["urn:te:default"]);
    assert_eq!(validate.audiences, ["urn:chaingate"]);
    let never = loaded(
        "billing",
        "path_prefix = \"/\"\nexchange = \"never\"",
        VALIDATE,
    );
    assert_eq!(never.exchange, ExchangeMode::Never);
    assert!(never.validate.unwrap().target_audiences.is_empty());

    for (domain, keys, table, key) in [
        ("te", "exchange = \"if_needed\"", "", "routes[0].exchange"),
        ("te", "exchange = \"never\"", "", "routes[0].exchange"),
        ("te", "exchange = \"sometimes\"", "", "routes[0].exchange"),
        // No target audience to compare the caller's `aud` with.
        (
            "billing",
            "exchange = \"if_needed\"",
            VALIDATE,
            "routes[0].audience",
        ),
        (
            "te",
            "exchange = \"never\"\ndpop = \"allowed\"",
            VALIDATE,
            "routes[0].exchange",
        ),
    ] {
        let error = refused(domain, &format!("path_prefix = \"/\"\n{keys}"), table);
        assert!(error.contains(key), "{keys}: {error}");
    }
    let te_without_audience = BASE.replace("audience = \"urn:te:default\"\n", "")
        + "\n[[routes]]\npath_prefix = \"/\"\nupstream = \"http://127.0.0.1:3000\"\ndomain = \"te\"\nexchange = \"if_needed\"\n"
        + VALIDATE;
    let error = Config::from_toml(&te_without_audience)
        .unwrap_err()
        .to_string();
    assert!(error.contains("routes[0].audience"), "{error}");
}
