//! The node list, as given by `--node` and `REDMUTEX_NODES`: where one node's URL ends and
//! the next begins. What a node URL means (and how it is named in messages) is the library's
//! business: every item goes to `RedLockFactoryBuilder::node` as it is.
//!
//! Nodes are separated by whitespace or `;`. A comma cannot be the separator, since a Sentinel
//! URL lists its sentinels with commas (`redis+sentinel://h1,h2,h3/master`); but a comma that
//! is directly followed by a URL scheme (`,redis://`, `,rediss://`, `,redis+sentinel://`...)
//! cannot belong to a sentinel list, so it separates nodes too, which keeps the older
//! comma-separated form `redis://a,redis://b` working. Any other comma stays in its URL.

/// Splits every `--node` value (or the one `REDMUTEX_NODES` value) into node URLs.
pub fn split<S: AsRef<str>>(values: &[S]) -> Vec<String> {
    let mut nodes = Vec::new();
    for value in values {
        for item in value
            .as_ref()
            .split(|c: char| c.is_whitespace() || c == ';')
            .filter(|s| !s.is_empty())
        {
            split_commas(item, &mut nodes);
        }
    }
    nodes
}

/// Splits `item` at each comma that a URL scheme follows.
fn split_commas(item: &str, nodes: &mut Vec<String>) {
    let mut start = 0;
    for (i, _) in item.match_indices(',') {
        if starts_with_scheme(&item[i + 1..]) {
            push(&item[start..i], nodes);
            start = i + 1;
        }
    }
    push(&item[start..], nodes);
}

fn push(node: &str, nodes: &mut Vec<String>) {
    if !node.is_empty() {
        nodes.push(node.to_owned());
    }
}

/// Whether `s` starts with `scheme://` (RFC 3986: a letter, then letters, digits, `+`, `-`,
/// `.`).
fn starts_with_scheme(s: &str) -> bool {
    let Some((scheme, _)) = s.split_once("://") else {
        return false;
    };
    let mut chars = scheme.chars();
    chars.next().is_some_and(|c| c.is_ascii_alphabetic())
        && chars.all(|c| c.is_ascii_alphanumeric() || matches!(c, '+' | '-' | '.'))
}

/// A hint for a node that did not parse and that holds a comma: the user may have meant a list.
pub fn comma_hint(nodes: &[String]) -> Option<&'static str> {
    nodes.iter().any(|n| n.contains(',')).then_some(
        "separate nodes with spaces or ';' (commas only separate the sentinels of a \
         redis+sentinel:// URL, or nodes written as full URLs)",
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn whitespace_and_semicolons_separate_nodes() {
        assert_eq!(
            split(&["redis://a:1 redis://b:2;redis://c:3\n\tredis://d:4 ; "]),
            ["redis://a:1", "redis://b:2", "redis://c:3", "redis://d:4"]
        );
        assert_eq!(
            split(&["redis://a:1", "redis://b:2"]),
            ["redis://a:1", "redis://b:2"]
        );
        assert!(split(&["", " ; "]).is_empty());
    }

    #[test]
    fn sentinel_urls_keep_their_commas() {
        let s = "redis+sentinel://:pw@h1:26379,h2,[::1]:26380/locks/2?sentinel_password=x";
        assert_eq!(split(&[s]), [s]);
        assert_eq!(
            split(&[format!("{s} redis://c:3;rediss+sentinel://h3,h4/m")]),
            [s, "redis://c:3", "rediss+sentinel://h3,h4/m"]
        );
    }

    #[test]
    fn a_comma_before_a_url_still_separates_nodes() {
        assert_eq!(
            split(&["redis://a:1,redis://b:2,rediss://c:3"]),
            ["redis://a:1", "redis://b:2", "rediss://c:3"]
        );
        assert_eq!(
            split(&["redis+sentinel://h1,h2/m,redis://c:3,redis+unix:///tmp/r.sock"]),
            [
                "redis+sentinel://h1,h2/m",
                "redis://c:3",
                "redis+unix:///tmp/r.sock"
            ]
        );
        // Not followed by a scheme: left in the URL, for the library to judge.
        assert_eq!(
            split(&["127.0.0.1:1,127.0.0.1:2"]),
            ["127.0.0.1:1,127.0.0.1:2"]
        );
        assert_eq!(split(&["redis://a:1,"]), ["redis://a:1,"]);
        assert!(comma_hint(&split(&["127.0.0.1:1,127.0.0.1:2"])).is_some());
        assert!(comma_hint(&split(&["redis://a redis://b"])).is_none());
    }

    #[test]
    fn schemes() {
        for s in ["redis://", "rediss+sentinel://x", "a1.b-c://", "valkey://h"] {
            assert!(starts_with_scheme(s), "{s}");
        }
        for s in ["h2/m", "1redis://", "://", "red is://", "h2:26379/m"] {
            assert!(!starts_with_scheme(s), "{s}");
        }
    }
}
