//! RFC 8288 `Link` header values, as token responses carry them (draft-sakimura-oauth-meta:
//! `rel="ruri"`, `rel="duri"`). Only what those need: target URI and `rel` values.

/// One link: its target and its relation types.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Link {
    /// The target URI between `<` and `>` (RFC 8288 §3.1), as written, not resolved.
    pub target: String,
    /// The `rel` parameter's relation types (RFC 8288 §3.3), lowercased, in order.
    pub rels: Vec<String>,
}

/// Parses a `Link` field value (`<uri>; rel="a b", <uri2>; rel=c`). Malformed links are skipped,
/// never guessed at; parameters other than `rel` are ignored.
pub fn parse(value: &str) -> Vec<Link> {
    let mut links = Vec::new();
    let mut rest = value;
    loop {
        rest = rest.trim_start_matches([' ', '\t', ',']);
        let Some(after_open) = rest.strip_prefix('<') else {
            break;
        };
        let Some(close) = after_open.find('>') else {
            break;
        };
        let target = after_open[..close].trim().to_string();
        rest = &after_open[close + 1..];
        let mut rels = Vec::new();
        // Parameters up to the next top-level comma (commas inside quotes do not count).
        let mut in_quotes = false;
        let end = rest
            .char_indices()
            .find(|&(_, c)| {
                if c == '"' {
                    in_quotes = !in_quotes;
                }
                c == ',' && !in_quotes
            })
            .map_or(rest.len(), |(i, _)| i);
        for param in rest[..end]
            .split(';')
            .map(str::trim)
            .filter(|p| !p.is_empty())
        {
            let Some((name, value)) = param.split_once('=') else {
                continue;
            };
            if name.trim().eq_ignore_ascii_case("rel") {
                let value = value.trim().trim_matches('"');
                rels.extend(value.split_ascii_whitespace().map(str::to_ascii_lowercase));
            }
        }
        if !target.is_empty() {
            links.push(Link { target, rels });
        }
        rest = &rest[end..];
    }
    links
}

/// The target of the first link with relation `rel`.
pub fn find<'a>(links: &'a [Link], rel: &str) -> Option<&'a str> {
    links
        .iter()
        .find(|l| l.rels.iter().any(|r| r == rel))
        .map(|l| l.target.as_str())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_drafts_example_parses() {
        let links = parse(
            r#"<https://rs.example/userinfo>; rel="ruri", <https://as.example/.well-known/openid-configuration>; rel="duri""#,
        );
        assert_eq!(find(&links, "ruri"), Some("https://rs.example/userinfo"));
        assert_eq!(
            find(&links, "duri"),
            Some("https://as.example/.well-known/openid-configuration")
        );
    }

    #[test]
    fn several_rels_quotes_commas_and_junk() {
        let links =
            parse(r#"<a>;rel="x ruri";title="a, b", <b>; rel=DURI ; foo, garbage, <>; rel=x, <c"#);
        assert_eq!(find(&links, "ruri"), Some("a"));
        assert_eq!(find(&links, "duri"), Some("b"));
        assert_eq!(links.len(), 2);
        assert!(parse("").is_empty());
        assert!(parse("no angle brackets; rel=ruri").is_empty());
    }
}
