//! Shared by the examples: where the nodes are.

/// The node URLs from `REDMUTEX_NODES`, or three local default ports. The list is read as the
/// `redmutex` command reads it ([`redmutex::split_node_list`]): URLs separated by spaces or
/// `;` (a comma separates nodes only where a URL follows it, `redis://a,redis://b`; inside a
/// Sentinel URL, `redis+sentinel://h1,h2/master`, commas separate its sentinels).
pub fn nodes() -> Vec<String> {
    let list = std::env::var("REDMUTEX_NODES").unwrap_or_else(|_| {
        "redis://127.0.0.1:7001 redis://127.0.0.1:7002 redis://127.0.0.1:7003".to_owned()
    });
    redmutex::split_node_list(&list)
}
