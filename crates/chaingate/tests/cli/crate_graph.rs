//! The crate graph is the architecture: crates depend downward only, and the gateway's own
//! modules form no cycle, with `tokens` the only caller of the cache and the exchange. Read from
//! `cargo metadata` and the sources, so a change that breaks a rule fails here, in CI.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::Command;

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// Each workspace package's normal (non-dev) dependencies on other workspace packages.
fn workspace_graph() -> BTreeMap<String, BTreeSet<String>> {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let out = Command::new(cargo)
        .args([
            "metadata",
            "--format-version",
            "1",
            "--no-deps",
            "--offline",
        ])
        .current_dir(root())
        .output()
        .expect("cargo metadata runs");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let meta: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let members: BTreeSet<String> = meta["packages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["name"].as_str().unwrap().to_string())
        .collect();
    meta["packages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| {
            let deps = p["dependencies"]
                .as_array()
                .unwrap()
                .iter()
                .filter(|d| d["kind"].is_null()) // normal, not dev or build
                .map(|d| d["name"].as_str().unwrap().to_string())
                .filter(|name| members.contains(name))
                .collect();
            (p["name"].as_str().unwrap().to_string(), deps)
        })
        .collect()
}

#[test]
fn crates_depend_downward_only() {
    let graph = workspace_graph();
    let allowed: BTreeMap<&str, &[&str]> = BTreeMap::from([
        // The protocol and the plumbing know no product and no server crate of ours.
        ("chaingate-oauth", &[][..]),
        ("chaingate-core", &[][..]),
        // The two products stand on those, never on each other.
        (
            "chaingate-gateway",
            &["chaingate-core", "chaingate-oauth"][..],
        ),
        (
            "chaingate-authority",
            &["chaingate-core", "chaingate-oauth"][..],
        ),
        // The binary on top; the authority only with its cargo feature.
        (
            "chaingate",
            &[
                "chaingate-authority",
                "chaingate-core",
                "chaingate-gateway",
                "chaingate-oauth",
            ][..],
        ),
        (
            "chaingate-test-support",
            &[
                "chaingate-authority",
                "chaingate-core",
                "chaingate-gateway",
                "chaingate-oauth",
            ][..],
        ),
        ("chaingate-e2e", &[][..]),
    ]);
    assert_eq!(
        graph.keys().map(String::as_str).collect::<BTreeSet<_>>(),
        allowed.keys().copied().collect::<BTreeSet<_>>(),
        "a new workspace crate needs its place in this graph"
    );
    for (package, deps) in &graph {
        let ok: BTreeSet<&str> = allowed[package.as_str()].iter().copied().collect();
        for dep in deps {
            assert!(
                ok.contains(dep.as_str()),
                "{package} depends on {dep}: crates depend downward only"
            );
        }
    }
}

#[test]
fn the_authority_is_optional_in_the_binary() {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let out = Command::new(cargo)
        .args([
            "metadata",
            "--format-version",
            "1",
            "--no-deps",
            "--offline",
        ])
        .current_dir(root())
        .output()
        .unwrap();
    let meta: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let binary = meta["packages"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["name"] == "chaingate")
        .unwrap();
    let authority = binary["dependencies"]
        .as_array()
        .unwrap()
        .iter()
        .find(|d| d["name"] == "chaingate-authority" && d["kind"].is_null())
        .unwrap();
    assert_eq!(
        authority["optional"], true,
        "the production build must not carry it"
    );
    assert!(binary["features"]["default"].as_array().unwrap().is_empty());
}

/// `crate::<module>` references between the gateway's top-level modules.
fn gateway_modules() -> BTreeMap<String, BTreeSet<String>> {
    let src = root().join("crates/gateway/src");
    let mut graph: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    let mut files = vec![src.clone()];
    while let Some(path) = files.pop() {
        if path.is_dir() {
            files.extend(std::fs::read_dir(&path).unwrap().map(|e| e.unwrap().path()));
            continue;
        }
        if path.extension().is_none_or(|e| e != "rs") {
            continue;
        }
        let rel = path.strip_prefix(&src).unwrap();
        let top = rel
            .components()
            .next()
            .unwrap()
            .as_os_str()
            .to_string_lossy()
            .trim_end_matches(".rs")
            .to_string();
        if top == "lib" {
            continue;
        }
        let text = std::fs::read_to_string(&path).unwrap();
        let used = graph.entry(top.clone()).or_default();
        for (at, _) in text.match_indices("crate::") {
            let rest = &text[at + "crate::".len()..];
            let names: Vec<&str> = match rest.strip_prefix('{') {
                // `use crate::{a::X, b}`: every path in the group.
                Some(group) => group[..group.find('}').unwrap_or(0)]
                    .split(',')
                    .map(|p| p.trim().split("::").next().unwrap_or(""))
                    .collect(),
                None => vec![rest
                    .split(|c: char| !(c.is_alphanumeric() || c == '_'))
                    .next()
                    .unwrap_or("")],
            };
            for name in names {
                // Lower-case names are modules; `crate::Body` and the like are root items.
                if !name.is_empty() && name != top && name.starts_with(|c: char| c.is_lowercase()) {
                    used.insert(name.to_string());
                }
            }
        }
    }
    graph
}

#[test]
fn the_gateway_has_no_module_cycle() {
    let graph = gateway_modules();
    assert!(
        graph.contains_key("tokens") && graph.contains_key("cache"),
        "{graph:?}"
    );
    // Depth-first search for a back edge.
    fn visit<'a>(
        node: &'a str,
        graph: &'a BTreeMap<String, BTreeSet<String>>,
        path: &mut Vec<&'a str>,
        done: &mut BTreeSet<&'a str>,
    ) {
        if done.contains(node) {
            return;
        }
        if let Some(at) = path.iter().position(|n| *n == node) {
            panic!(
                "module cycle in the gateway: {}",
                path[at..].join(" → ") + " → " + node
            );
        }
        path.push(node);
        for next in graph.get(node).into_iter().flatten() {
            visit(next, graph, path, done);
        }
        path.pop();
        done.insert(node);
    }
    let mut done = BTreeSet::new();
    for node in graph.keys() {
        visit(node, &graph, &mut Vec::new(), &mut done);
    }
}

#[test]
fn tokens_is_the_only_caller_of_cache_and_exchange() {
    let graph = gateway_modules();
    for (module, used) in &graph {
        if used.contains("cache") {
            assert_eq!(module, "tokens", "{module} uses the cache directly");
        }
        // The fleet's tier (Redis) sits behind the cache, for the tokens stage alone.
        if used.contains("fleet") {
            assert_eq!(module, "tokens", "{module} uses the fleet's tier directly");
        }
        // The fuzz entry points drive the exchange's response parser on its own.
        if used.contains("exchange") {
            assert!(
                module == "tokens" || module == "fuzzing",
                "{module} uses the exchange directly"
            );
        }
    }
    // The cache is generic: it knows no OAuth type of ours.
    for forbidden in ["exchange", "authn", "config", "tokens", "error"] {
        assert!(
            !graph["cache"].contains(forbidden),
            "the cache depends on {forbidden}"
        );
    }
}
