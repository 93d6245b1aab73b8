//! Replays the committed fuzz corpus (and every crash turned regression) through the same entry
//! points the cargo-fuzz targets in `fuzz/` use. Parsers must return on any input, never panic.

fn replay(target: &str, entry: fn(&[u8])) {
    let root = chaingate_test_support::workspace_root().join("fuzz");
    let mut replayed = 0;
    for dir in [
        root.join("corpus").join(target),
        root.join("regressions").join(target),
    ] {
        let Ok(entries) = std::fs::read_dir(&dir) else {
            continue;
        };
        for file in entries {
            let path = file.unwrap().path();
            let input = std::fs::read(&path).unwrap();
            let outcome = std::panic::catch_unwind(|| entry(&input));
            assert!(outcome.is_ok(), "{target} panicked on {}", path.display());
            replayed += 1;
        }
    }
    assert!(replayed > 0, "no corpus for {target}");
}

#[test]
fn bearer_corpus() {
    replay("bearer", chaingate_gateway::fuzzing::bearer);
}

#[test]
fn token_response_corpus() {
    replay("token_response", chaingate_gateway::fuzzing::token_response);
}

#[test]
fn jwt_peek_corpus() {
    replay("jwt_peek", chaingate_gateway::fuzzing::jwt_peek);
}

#[test]
fn config_corpus() {
    replay("config", chaingate_gateway::fuzzing::config);
}

#[test]
fn link_corpus() {
    replay("link", chaingate_gateway::fuzzing::link);
}
