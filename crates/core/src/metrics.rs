//! Shared metric plumbing: histogram buckets and the two text exposition formats.
//!
//! Each stage registers its own metric struct on the registry passed in (no globals). Label
//! values come from config names, never from requests, so cardinality is bounded by the config.

use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};

/// Latency buckets from 100 µs to ~6.5 s, doubling.
pub fn latency_histogram() -> Histogram {
    Histogram::new(latency_buckets())
}

/// The bucket bounds of [`latency_histogram`]: 100 µs doubling to ~6.5 s.
pub fn latency_buckets() -> impl Iterator<Item = f64> {
    exponential_buckets(0.0001, 2.0, 17)
}

/// The content type of the text `prometheus_client::encoding::text::encode` writes.
pub const OPENMETRICS_CONTENT_TYPE: &str =
    "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// The classic Prometheus text exposition format.
pub const PROMETHEUS_TEXT_CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// Rewrites OpenMetrics text as the Prometheus 0.0.4 text format: counter families are named
/// with their `_total` suffix in `# HELP`/`# TYPE`, and `# UNIT` and `# EOF` are dropped.
pub fn to_prometheus_text(openmetrics: &str) -> String {
    let mut counters = std::collections::HashSet::new();
    for line in openmetrics.lines() {
        if let Some(rest) = line.strip_prefix("# TYPE ") {
            if let Some(name) = rest.strip_suffix(" counter") {
                counters.insert(name.to_string());
            }
        }
    }
    let mut out = String::with_capacity(openmetrics.len());
    for line in openmetrics.lines() {
        if line.starts_with("# UNIT ") || line == "# EOF" {
            continue;
        }
        let renamed = ["# HELP ", "# TYPE "].iter().find_map(|prefix| {
            let rest = line.strip_prefix(prefix)?;
            let (name, tail) = rest.split_once(' ')?;
            counters
                .contains(name)
                .then(|| format!("{prefix}{name}_total {tail}"))
        });
        let line = renamed.as_deref().unwrap_or(line);
        // Exemplars (`value # {labels} value`) exist in OpenMetrics only; the 0.0.4 parser would
        // take them for garbage. Label values come from config names, which never hold " # {".
        let line = match line.starts_with('#') {
            false => line.find(" # {").map_or(line, |at| &line[..at]),
            true => line,
        };
        out.push_str(line);
        out.push('\n');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counters_are_renamed_and_openmetrics_only_lines_dropped() {
        let om = "# HELP chaingate_requests Requests.\n# TYPE chaingate_requests counter\nchaingate_requests_total{route=\"a\"} 1\n\
                  # HELP chaingate_d Time.\n# TYPE chaingate_d histogram\n# UNIT chaingate_d seconds\nchaingate_d_count 1\n# EOF\n";
        let text = to_prometheus_text(om);
        assert!(text.contains("# HELP chaingate_requests_total Requests."));
        assert!(text.contains("# TYPE chaingate_requests_total counter"));
        assert!(text.contains("# TYPE chaingate_d histogram"));
        assert!(!text.contains("# UNIT") && !text.contains("# EOF"));
        assert!(text.contains("chaingate_requests_total{route=\"a\"} 1"));
        let with_exemplar = "chaingate_d_bucket{le=\"0.1\"} 3 # {trace_id=\"4bf9\"} 0.05\n# EOF\n";
        assert_eq!(
            to_prometheus_text(with_exemplar),
            "chaingate_d_bucket{le=\"0.1\"} 3\n"
        );
    }
}
