//! A list of nodes in one string (an environment variable, a config value): where one node's
//! URL ends and the next begins. The `redmutex` command and the examples read
//! `REDMUTEX_NODES` through it, and so can an application.

/// Splits a list of node URLs into the URLs, for [`RedLockFactoryBuilder::nodes`]: the way
/// the `redmutex` command reads `--node` and `REDMUTEX_NODES`.
///
/// Nodes are separated by whitespace (spaces, tabs, newlines) or `;`. A comma cannot be the
/// separator, since a Sentinel URL lists its sentinels with commas
/// (`redis+sentinel://h1,h2,h3/master`); but a comma directly followed by a URL scheme
/// (`,redis://`, `,rediss://`, `,redis+sentinel://`, ...) cannot belong to a sentinel list, so
/// it separates nodes too, which keeps the comma-separated form `redis://a,redis://b`
/// working. Any other comma stays in its URL, for the factory to judge. Nothing is parsed
/// here: a bad URL fails [`RedLockFactoryBuilder::build`], which names what is wrong.
///
/// ```
/// let nodes = redmutex::split_node_list(
///     "redis://10.0.0.1:6379 redis://10.0.0.2:6379;redis+sentinel://s1,s2/locks",
/// );
/// assert_eq!(
///     nodes,
///     ["redis://10.0.0.1:6379", "redis://10.0.0.2:6379", "redis+sentinel://s1,s2/locks"]
/// );
/// assert_eq!(
///     redmutex::split_node_list("redis://a:1,redis://b:2"),
///     ["redis://a:1", "redis://b:2"]
/// );
/// ```
///
/// [`RedLockFactoryBuilder::nodes`]: crate::RedLockFactoryBuilder::nodes
/// [`RedLockFactoryBuilder::build`]: crate::RedLockFactoryBuilder::build
#[must_use]
pub fn split_node_list(list: &str) -> Vec<String> {
    let mut nodes = Vec::new();
    for item in list
        .split(|c: char| c.is_whitespace() || c == ';')
        .filter(|s| !s.is_empty())
    {
        split_commas(item, &mut nodes);
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn whitespace_and_semicolons_separate_nodes() {
        assert_eq!(
            split_node_list("redis://a:1 redis://b:2;redis://c:3\n\tredis://d:4 ; "),
            ["redis://a:1", "redis://b:2", "redis://c:3", "redis://d:4"]
        );
        assert!(split_node_list(" ; ").is_empty());
    }

    #[test]
    fn sentinel_urls_keep_their_commas() {
        let s = "redis+sentinel://:pw@h1:26379,h2,[::1]:26380/locks/2?sentinel_password=x";
        assert_eq!(split_node_list(s), [s]);
        assert_eq!(
            split_node_list(&format!("{s} redis://c:3;rediss+sentinel://h3,h4/m")),
            [s, "redis://c:3", "rediss+sentinel://h3,h4/m"]
        );
    }

    #[test]
    fn a_comma_before_a_url_still_separates_nodes() {
        assert_eq!(
            split_node_list("redis://a:1,redis://b:2,rediss://c:3"),
            ["redis://a:1", "redis://b:2", "rediss://c:3"]
        );
        assert_eq!(
            split_node_list("redis+sentinel://h1,h2/m,redis://c:3,redis+unix:///tmp/r.sock"),
            [
                "redis+sentinel://h1,h2/m",
                "redis://c:3",
                "redis+unix:///tmp/r.sock"
            ]
        );
        // Not followed by a scheme: left in the URL, for the factory to judge.
        assert_eq!(
            split_node_list("127.0.0.1:1,127.0.0.1:2"),
            ["127.0.0.1:1,127.0.0.1:2"]
        );
        assert_eq!(split_node_list("redis://a:1,"), ["redis://a:1,"]);
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
