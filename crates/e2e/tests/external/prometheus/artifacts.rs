//! Reading the shipped artifacts: rule expressions, durations scaled for a test, and the
//! dashboard's queries made concrete PromQL.

use std::collections::BTreeMap;

use serde_json::Value;

use super::{INTERVAL, NAMESPACE, POD, SPEEDUP};

/// A Prometheus duration (`90s`, `5m`, `1h30m`), in milliseconds.
fn duration_ms(text: &str) -> Option<u64> {
    let mut total = 0u64;
    let mut rest = text;
    if rest.is_empty() {
        return None;
    }
    while !rest.is_empty() {
        let digits = rest
            .find(|c: char| !c.is_ascii_digit())
            .unwrap_or(rest.len());
        let n: u64 = rest[..digits].parse().ok()?;
        rest = &rest[digits..];
        let unit_len = rest
            .find(|c: char| c.is_ascii_digit())
            .unwrap_or(rest.len());
        let unit = match &rest[..unit_len] {
            "ms" => 1,
            "s" => 1_000,
            "m" => 60_000,
            "h" => 3_600_000,
            "d" => 86_400_000,
            "w" => 604_800_000,
            "y" => 31_536_000_000,
            _ => return None,
        };
        rest = &rest[unit_len..];
        total += n * unit;
    }
    Some(total)
}

fn shortened_duration(text: &str) -> Option<String> {
    let ms = duration_ms(text)? / u64::from(SPEEDUP);
    Some(if ms % 1_000 == 0 {
        format!("{}s", ms / 1_000)
    } else {
        format!("{ms}ms")
    })
}

/// `rules` with every `for:` and every range window (`[5m]`) divided by [`SPEEDUP`], and how
/// many it changed. The shipped thresholds are minutes to hours: at their length the alerts
/// could not fire within a test.
pub(super) fn shortened(rules: &str) -> (String, usize) {
    let mut changed = 0;
    let mut out = String::new();
    for line in rules.lines() {
        let trimmed = line.trim_start();
        if let Some(value) = trimmed.strip_prefix("for:") {
            let short = shortened_duration(value.trim())
                .unwrap_or_else(|| panic!("`{line}`: not a Prometheus duration"));
            out += &format!("{}for: {short}\n", &line[..line.len() - trimmed.len()]);
            changed += 1;
            continue;
        }
        let mut rest = line;
        while let Some(open) = rest.find('[') {
            out += &rest[..=open];
            rest = &rest[open + 1..];
            let window = rest.find(']').map(|close| &rest[..close]);
            if let Some(short) = window.and_then(shortened_duration) {
                out += &short;
                rest = &rest[window.unwrap().len()..];
                changed += 1;
            }
        }
        out += rest;
        out.push('\n');
    }
    (out, changed)
}

/// `(rule name, expr)` for every rule of a Prometheus rule file, as the file spells them:
/// `- alert:` / `- record:` names, `expr:` as a block scalar (`|`, `>`) or a plain one-liner,
/// the forms the shipped file uses. The caller checks the count against what the server
/// loaded, so a form this misses cannot go unnoticed.
pub(super) fn rule_exprs(text: &str) -> Vec<(String, String)> {
    let lines: Vec<&str> = text.lines().collect();
    let mut name = String::new();
    let mut exprs = Vec::new();
    for (i, line) in lines.iter().enumerate() {
        let trimmed = line.trim_start();
        let indent = line.len() - trimmed.len();
        let item = trimmed.strip_prefix("- ").unwrap_or(trimmed);
        if let Some(n) = item
            .strip_prefix("alert:")
            .or_else(|| item.strip_prefix("record:"))
        {
            name = n.trim().to_string();
        }
        let Some(value) = trimmed.strip_prefix("expr:").map(str::trim) else {
            continue;
        };
        let expr = if value.starts_with('|') || value.starts_with('>') {
            lines[i + 1..]
                .iter()
                .take_while(|l| l.trim().is_empty() || l.len() - l.trim_start().len() > indent)
                .map(|l| l.trim())
                .collect::<Vec<_>>()
                .join("\n")
        } else {
            value.trim_matches(['"', '\'']).to_string()
        };
        exprs.push((name.clone(), expr.trim().to_string()));
    }
    exprs
}

/// Every panel query of the dashboard (rows' nested panels too), with its panel title.
pub(super) fn dashboard_queries(dashboard: &Value) -> Vec<(String, String)> {
    fn walk(panels: &Value, out: &mut Vec<(String, String)>) {
        for panel in panels.as_array().into_iter().flatten() {
            let title = panel["title"].as_str().unwrap_or("?").to_string();
            for target in panel["targets"].as_array().into_iter().flatten() {
                if let Some(expr) = target["expr"].as_str() {
                    out.push((title.clone(), expr.to_string()));
                }
            }
            walk(&panel["panels"], out);
        }
    }
    let mut out = Vec::new();
    walk(&dashboard["panels"], &mut out);
    out
}

/// `expr` as Grafana would send it with namespace and pod picked (the test's target labels)
/// and every other variable on "All" (its `allValue`). Grafana's `$__rate_interval` is
/// max(4 × scrape interval, `$__interval` + scrape interval), with `$__interval` the scrape
/// interval on short ranges: 4 × [`INTERVAL`].
pub(super) fn concrete(expr: &str, all_values: &BTreeMap<String, String>) -> String {
    let mut out = String::new();
    let mut rest = expr;
    while let Some(at) = rest.find('$') {
        out += &rest[..at];
        rest = &rest[at + 1..];
        let braced = rest.starts_with('{');
        let start = usize::from(braced);
        let len = rest[start..]
            .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
            .unwrap_or(rest.len() - start);
        let name = &rest[start..start + len];
        rest = &rest[start + len + usize::from(braced)..];
        let interval = INTERVAL.as_secs();
        out += &match name {
            "__rate_interval" => format!("{}s", 4 * interval),
            "__interval" => format!("{interval}s"),
            "namespace" => NAMESPACE.to_string(),
            "pod" => POD.to_string(),
            other => all_values.get(other).cloned().unwrap_or_else(|| {
                panic!("dashboard variable ${other} in `{expr}` has no allValue")
            }),
        };
    }
    out + rest
}

#[test]
fn durations_are_shortened_in_for_and_range_windows_only() {
    let (text, changed) = shortened(
        "    for: 10m\n  expr: rate(x{a=~\"[0-9]\"}[5m]) / rate(y[1h30m]) > 0\n  for: 2h\n",
    );
    assert_eq!(
        text,
        "    for: 10s\n  expr: rate(x{a=~\"[0-9]\"}[5s]) / rate(y[90s]) > 0\n  for: 120s\n"
    );
    assert_eq!(changed, 4);
    assert_eq!(shortened_duration("30s").as_deref(), Some("500ms"));
    assert_eq!(duration_ms("5x"), None);
}

#[test]
fn rule_expressions_are_read_as_the_file_spells_them() {
    let rules = "groups:\n  - name: g\n    rules:\n      - alert: A\n        expr: |\n          sum(x)\n            > 1\n        for: 5m\n      - record: r:b\n        expr: \"up == 1\"\n";
    assert_eq!(
        rule_exprs(rules),
        [
            ("A".to_string(), "sum(x)\n> 1".to_string()),
            ("r:b".to_string(), "up == 1".to_string()),
        ]
    );
}

#[test]
fn dashboard_variables_become_concrete_promql() {
    let all = BTreeMap::from([("route".to_string(), ".*".to_string())]);
    assert_eq!(
        concrete(
            r#"rate(m{namespace=~"$namespace", pod=~"${pod}", route=~"$route"}[$__rate_interval])"#,
            &all
        ),
        format!(r#"rate(m{{namespace=~"{NAMESPACE}", pod=~"{POD}", route=~".*"}}[4s])"#)
    );
}
