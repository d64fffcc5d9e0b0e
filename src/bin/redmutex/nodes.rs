//! The node list, as given by `--node` and `REDMUTEX_NODES`: where one node's URL ends and
//! the next begins, by [`redmutex::split_node_list`] (whitespace or `;`, and a comma only
//! where a URL follows it, since a Sentinel URL lists its sentinels with commas). What a node
//! URL means (and how it is named in messages) is the library's business: every item goes to
//! `RedLockFactoryBuilder::node` as it is.

/// Splits every `--node` value (or the one `REDMUTEX_NODES` value) into node URLs, as
/// [`redmutex::split_node_list`] does (the examples read `REDMUTEX_NODES` the same way).
pub fn split<S: AsRef<str>>(values: &[S]) -> Vec<String> {
    values
        .iter()
        .flat_map(|v| redmutex::split_node_list(v.as_ref()))
        .collect()
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
    fn every_value_is_split() {
        assert_eq!(
            split(&[
                "redis://a:1 redis://b:2",
                "redis+sentinel://h1,h2/m;redis://c:3"
            ]),
            [
                "redis://a:1",
                "redis://b:2",
                "redis+sentinel://h1,h2/m",
                "redis://c:3"
            ]
        );
        assert!(split(&["", " ; "]).is_empty());
    }

    #[test]
    fn a_comma_without_a_url_after_it_gets_a_hint() {
        assert!(comma_hint(&split(&["127.0.0.1:1,127.0.0.1:2"])).is_some());
        assert!(comma_hint(&split(&["redis://a redis://b"])).is_none());
    }
}
