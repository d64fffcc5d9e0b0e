//! What a node is, as the user names it: [`IntoNode`] and the parsed [`NodeSpec`].

use redis::{ConnectionAddr, ConnectionInfo, IntoConnectionInfo};

use super::sentinel::{SentinelNode, is_sentinel_url};
use crate::error::Error;

/// What a node is, as given to the factory.
///
/// `pub` only so the sealed `IntoNode` trait can return it; this module is private, so users
/// cannot name it.
#[derive(Debug, Clone)]
pub enum NodeSpec {
    /// A Redis server at a fixed address.
    Direct(ConnectionInfo),
    /// A Sentinel-managed master group.
    Sentinel(SentinelNode),
}

impl NodeSpec {
    /// A display name that never includes credentials.
    pub(crate) fn name(&self) -> String {
        match self {
            Self::Direct(info) => node_name(info),
            Self::Sentinel(node) => node.name(),
        }
    }

    /// Whether two specs name the same node (which would fake a quorum).
    pub(crate) fn same_node(&self, other: &Self) -> bool {
        match (self, other) {
            (Self::Direct(a), Self::Direct(b)) => node_name(a) == node_name(b),
            (Self::Sentinel(a), Self::Sentinel(b)) => a.same_group(b),
            _ => false,
        }
    }

    /// Parses one node, as the user wrote it, naming what is wrong without showing a password.
    pub(crate) fn parse(node: impl IntoNode) -> Result<Self, String> {
        let spec = node.into_spec()?;
        if let Self::Sentinel(sentinel) = &spec {
            sentinel.check()?;
        }
        Ok(spec)
    }
}

/// A display name for a node that never includes credentials: `host:port` or the socket path,
/// plus `/db` when not 0.
pub(crate) fn node_name(info: &ConnectionInfo) -> String {
    let db = info.redis_settings().db();
    if db == 0 {
        info.addr().to_string()
    } else {
        format!("{}/{db}", info.addr())
    }
}

mod sealed {
    /// Keeps [`IntoNode`](super::IntoNode) implemented by this crate only.
    pub trait Sealed {
        /// The node, or why it is invalid (never showing a password).
        fn into_spec(self) -> Result<super::NodeSpec, String>;
    }
}

/// Something that names one node of a factory: a URL (`&str` or `String`), a `(host, port)`
/// pair, a [`redis::ConnectionInfo`] or [`redis::ConnectionAddr`], or a
/// [`SentinelNode`](crate::SentinelNode).
///
/// URLs: `redis://[user][:password@]host[:port][/db]`, `rediss://` (with the `tls` feature),
/// `redis+unix:///path`, and the Sentinel form
/// `redis+sentinel://[[user]:password@]host[:port][,host[:port]...]/master_name[/db]` (see
/// [`SentinelNode::from_url`](crate::SentinelNode::from_url)).
pub trait IntoNode: sealed::Sealed {}

/// A parse error of redis-rs as text, without the URL.
fn redis_spec(info: redis::RedisResult<ConnectionInfo>) -> Result<NodeSpec, String> {
    info.map(NodeSpec::Direct)
        .map_err(|e| redacted_redis_error(&e))
}

fn url_spec(url: &str) -> Result<NodeSpec, String> {
    if is_sentinel_url(url) {
        SentinelNode::from_url(url)
            .map(NodeSpec::Sentinel)
            .map_err(|e| match e {
                Error::InvalidConfig(m) => m,
                other => other.to_string(),
            })
    } else {
        url.into_connection_info()
            .map(NodeSpec::Direct)
            .map_err(|e| bad_url(url, &e))
    }
}

/// The forms of a node URL, with an example, for the error of one that did not parse.
const URL_FORMS: &str = "write redis://[user][:password@]host[:port][/db], e.g. \
    redis://127.0.0.1:6379/0 (or rediss://... for TLS, redis+unix:///path/to/redis.sock, \
    redis+sentinel://host[:port][,host[:port]...]/master)";

/// Why `url` is not a node URL, in one line, with the forms a node URL takes: redis-rs's
/// own reasons ("Redis URL did not parse - InvalidClientConfig") say neither what is wrong
/// nor what is right. The URL is shown with its credentials masked.
fn bad_url(url: &str, e: &redis::RedisError) -> String {
    let reason = url_problem(url).unwrap_or_else(|| {
        let text = redacted_redis_error(e).replace(" - InvalidClientConfig", "");
        let mut chars = text.chars();
        chars.next().map_or_else(String::new, |c| {
            c.to_lowercase().chain(chars).collect::<String>()
        })
    });
    format!(
        "{:?} is not a valid node URL: {reason}; {URL_FORMS}",
        masked(url)
    )
}

/// `url` with everything between the scheme and the last `@` (user and password) masked.
fn masked(url: &str) -> String {
    let Some(at) = url.rfind('@') else {
        return url.to_owned();
    };
    let start = url.find("://").map_or(0, |i| i + 3).min(at);
    format!("{}***{}", &url[..start], &url[at..])
}

/// What is wrong with a URL that redis-rs rejected, when it is one of the common mistakes.
fn url_problem(url: &str) -> Option<String> {
    const SCHEMES: [&str; 7] = [
        "redis",
        "rediss",
        "redis+unix",
        "unix",
        "valkey",
        "valkeys",
        "valkey+unix",
    ];
    let Some((scheme, rest)) = url.split_once("://") else {
        return Some("it has no scheme (redis://)".to_owned());
    };
    if !SCHEMES.contains(&scheme) {
        return Some(format!(
            "the scheme {scheme:?} is not redis, rediss or redis+unix"
        ));
    }
    if scheme.ends_with("unix") {
        return None;
    }
    let authority = rest.split(['/', '?', '#']).next().unwrap_or_default();
    let host_port = authority.rsplit_once('@').map_or(authority, |(_, h)| h);
    let port = if let Some(v6) = host_port.strip_prefix('[') {
        let Some((_, after)) = v6.split_once(']') else {
            return Some("the IPv6 address has no closing ']'".to_owned());
        };
        after.strip_prefix(':')
    } else {
        host_port.split_once(':').map(|(_, p)| p)
    };
    if host_port.is_empty() || host_port.starts_with(':') {
        return Some("it names no host".to_owned());
    }
    match port {
        Some(p) if p.parse::<u16>().is_err() => {
            Some(format!("the port {p:?} is not a number from 0 to 65535"))
        }
        _ => None,
    }
}

/// A redis-rs error as text, with anything that looks like a URL with credentials removed.
///
/// redis-rs does not put URLs in its parse errors today; this keeps it that way if it ever does.
pub(crate) fn redacted_redis_error(e: &redis::RedisError) -> String {
    let text = e.to_string();
    if text.contains('@') {
        "the node URL is invalid".to_owned()
    } else {
        text
    }
}

impl sealed::Sealed for &str {
    fn into_spec(self) -> Result<NodeSpec, String> {
        url_spec(self)
    }
}
impl IntoNode for &str {}

impl sealed::Sealed for String {
    fn into_spec(self) -> Result<NodeSpec, String> {
        url_spec(&self)
    }
}
impl IntoNode for String {}

impl sealed::Sealed for &String {
    fn into_spec(self) -> Result<NodeSpec, String> {
        url_spec(self)
    }
}
impl IntoNode for &String {}

impl<T: Into<String>> sealed::Sealed for (T, u16) {
    fn into_spec(self) -> Result<NodeSpec, String> {
        redis_spec(self.into_connection_info())
    }
}
impl<T: Into<String>> IntoNode for (T, u16) {}

impl sealed::Sealed for ConnectionInfo {
    fn into_spec(self) -> Result<NodeSpec, String> {
        Ok(NodeSpec::Direct(self))
    }
}
impl IntoNode for ConnectionInfo {}

impl sealed::Sealed for ConnectionAddr {
    fn into_spec(self) -> Result<NodeSpec, String> {
        redis_spec(self.into_connection_info())
    }
}
impl IntoNode for ConnectionAddr {}

impl sealed::Sealed for SentinelNode {
    fn into_spec(self) -> Result<NodeSpec, String> {
        Ok(NodeSpec::Sentinel(self))
    }
}
impl IntoNode for SentinelNode {}
