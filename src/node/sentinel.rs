//! Sentinel-managed nodes: a Redlock node that is a Redis master group watched by Sentinel.
//!
//! Every connection to such a node starts by asking the sentinels for the group's current
//! master (`SENTINEL GET-MASTER-ADDR-BY-NAME`), then checks with `ROLE` that the server found
//! really is a master, as the Sentinel client specification asks. After a failover the old
//! connections fail (the old master died, or was demoted and answers writes with READONLY),
//! the node's health logic retires them, and the next connection goes to the new master.
//!
//! The resolution is written here over redis-rs connections rather than taken from
//! `redis::sentinel`: that module's blocking client opens its connections without a connect
//! timeout and reads without a read timeout, so one stopped sentinel would hang a connecting
//! thread for good. Here every step shares the connect timeout.

use std::fmt;
use std::str::FromStr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use redis::{
    Client, Connection, ConnectionAddr, ConnectionInfo, ErrorKind, IntoConnectionInfo,
    RedisConnectionInfo, RedisError, RedisResult, Role,
};

use super::MIN_TIMEOUT;
use crate::error::Error;

/// The port sentinels listen on by default.
pub const DEFAULT_SENTINEL_PORT: u16 = 26379;

/// A Redlock node that is a Sentinel-managed master group: the sentinels to ask, the name of
/// the master they watch, and how to log in to the master and to the sentinels.
///
/// Give it to [`RedLockFactoryBuilder::sentinel_node`](crate::RedLockFactoryBuilder::sentinel_node)
/// (or [`node`](crate::RedLockFactoryBuilder::node)), or write it as a URL:
/// `redis+sentinel://[[user]:password@]host[:port][,host[:port]...]/master_name[/db]`
/// (see [`from_url`](Self::from_url)).
///
/// Each connection to the node is opened to the master the sentinels name at that moment,
/// after checking with `ROLE` that it is a master; after a failover the node reconnects to the
/// new master by itself. Sentinel makes each node highly available, but does not make a lock
/// on one group safe: replication is asynchronous, so a promoted replica may lack a lock that
/// its old master granted. Use a quorum of independent groups (see `docs/sentinel.md`).
///
/// Setters never fail; [`build`](crate::RedLockFactoryBuilder::build) checks the whole node.
///
/// # Examples
///
/// ```no_run
/// use redmutex::{RedLockFactory, SentinelNode};
///
/// let group = |name: &str| {
///     SentinelNode::new(name, [("10.0.0.1", 26379), ("10.0.0.2", 26379), ("10.0.0.3", 26379)])
///         .password("lock-secret")
/// };
/// let factory = RedLockFactory::builder()
///     .sentinel_node(group("locks-a"))
///     .sentinel_node(group("locks-b"))
///     .node("redis+sentinel://10.0.0.1,10.0.0.2,10.0.0.3/locks-c")
///     .build()?;
/// # Ok::<(), redmutex::Error>(())
/// ```
#[derive(Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct SentinelNode {
    sentinels: Vec<(String, u16)>,
    master_name: String,
    db: i64,
    username: Option<String>,
    password: Option<String>,
    sentinel_username: Option<String>,
    sentinel_password: Option<String>,
    tls: bool,
    sentinel_tls: bool,
}

impl fmt::Debug for SentinelNode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let redact = |p: &Option<String>| p.as_ref().map(|_| "<redacted>");
        f.debug_struct("SentinelNode")
            .field("sentinels", &self.sentinels)
            .field("master_name", &self.master_name)
            .field("db", &self.db)
            .field("username", &self.username)
            .field("password", &redact(&self.password))
            .field("sentinel_username", &self.sentinel_username)
            .field("sentinel_password", &redact(&self.sentinel_password))
            .field("tls", &self.tls)
            .field("sentinel_tls", &self.sentinel_tls)
            .finish()
    }
}

impl SentinelNode {
    /// The group whose master the sentinels know as `master_name`, found through the
    /// sentinels at `sentinels` (`(host, port)` pairs). Database 0, no passwords, no TLS.
    pub fn new<H, I>(master_name: impl Into<String>, sentinels: I) -> Self
    where
        H: Into<String>,
        I: IntoIterator<Item = (H, u16)>,
    {
        Self {
            sentinels: sentinels.into_iter().map(|(h, p)| (h.into(), p)).collect(),
            master_name: master_name.into(),
            db: 0,
            username: None,
            password: None,
            sentinel_username: None,
            sentinel_password: None,
            tls: false,
            sentinel_tls: false,
        }
    }

    /// Parses the URL form of a Sentinel node:
    ///
    /// ```text
    /// redis+sentinel://[[user]:password@]host[:port][,host[:port]...]/master_name[/db][?options]
    /// rediss+sentinel://...   (TLS to the master and to the sentinels; needs the `tls` feature)
    /// ```
    ///
    /// This is the form of Python's `redis+sentinel` URLs (Celery, Flask-Caching, Kombu):
    /// sentinel addresses separated by commas (port 26379 when omitted, IPv6 addresses in
    /// brackets), then the master name and an optional database. The user and password are the
    /// master's. The sentinels' own credentials, when they have some, go in the query:
    /// `?sentinel_username=...&sentinel_password=...`. Reserved characters in names and
    /// passwords are percent-encoded.
    ///
    /// # Errors
    ///
    /// [`Error::InvalidConfig`] naming what is wrong (never showing the password).
    pub fn from_url(url: &str) -> crate::Result<Self> {
        parse_url(url).map_err(|e| Error::InvalidConfig(format!("sentinel URL: {e}")))
    }

    /// Adds a sentinel to ask.
    pub fn sentinel(mut self, host: impl Into<String>, port: u16) -> Self {
        self.sentinels.push((host.into(), port));
        self
    }

    /// The database to use on the master.
    ///
    /// Defaults to 0.
    pub fn db(mut self, db: i64) -> Self {
        self.db = db;
        self
    }

    /// The ACL user to log in to the master (and its replicas) as. The user needs the lock
    /// commands and `ROLE`.
    ///
    /// Defaults to none (the default user).
    pub fn username(mut self, username: impl Into<String>) -> Self {
        self.username = Some(username.into());
        self
    }

    /// The password of the master (and its replicas).
    ///
    /// Defaults to none.
    pub fn password(mut self, password: impl Into<String>) -> Self {
        self.password = Some(password.into());
        self
    }

    /// The ACL user to log in to the sentinels as.
    ///
    /// Defaults to none.
    pub fn sentinel_username(mut self, username: impl Into<String>) -> Self {
        self.sentinel_username = Some(username.into());
        self
    }

    /// The sentinels' password (`requirepass` in their configuration).
    ///
    /// Defaults to none.
    pub fn sentinel_password(mut self, password: impl Into<String>) -> Self {
        self.sentinel_password = Some(password.into());
        self
    }

    /// Connect to the master over TLS, verifying its certificate (needs the `tls` or
    /// `tls-native-tls` feature).
    ///
    /// Defaults to off.
    pub fn tls(mut self, on: bool) -> Self {
        self.tls = on;
        self
    }

    /// Connect to the sentinels over TLS, verifying their certificates (needs the `tls` or
    /// `tls-native-tls` feature).
    ///
    /// Defaults to off.
    pub fn sentinel_tls(mut self, on: bool) -> Self {
        self.sentinel_tls = on;
        self
    }

    /// The master name the sentinels know the group by.
    #[must_use]
    pub fn master_name(&self) -> &str {
        &self.master_name
    }

    /// The sentinels' addresses.
    #[must_use]
    pub fn sentinels(&self) -> &[(String, u16)] {
        &self.sentinels
    }

    /// The node's name in errors and logs: `sentinel:master@host:port,host:port[/db]`
    /// (never a password).
    pub(crate) fn name(&self) -> String {
        let sentinels: Vec<String> = self
            .sentinels
            .iter()
            .map(|(h, p)| host_port(h, *p))
            .collect();
        let mut name = format!("sentinel:{}@{}", self.master_name, sentinels.join(","));
        if self.db != 0 {
            name.push_str(&format!("/{}", self.db));
        }
        name
    }

    /// Whether `other` is the same group: the same master name and database, through a
    /// common sentinel (a sentinel watches one master per name). Two such nodes would fake a
    /// quorum.
    pub(crate) fn same_group(&self, other: &Self) -> bool {
        self.master_name == other.master_name
            && self.db == other.db
            && self.sentinels.iter().any(|(h, p)| {
                other
                    .sentinels
                    .iter()
                    .any(|(oh, op)| p == op && h.eq_ignore_ascii_case(oh))
            })
    }

    /// Checks the node; the message says what is wrong.
    pub(crate) fn check(&self) -> Result<(), String> {
        if self.master_name.is_empty() {
            return Err("no master name given".into());
        }
        if self.sentinels.is_empty() {
            return Err(format!(
                "no sentinel addresses given for master {:?}",
                self.master_name
            ));
        }
        for (host, port) in &self.sentinels {
            if host.is_empty() || *port == 0 {
                return Err(format!(
                    "invalid sentinel address {:?} for master {:?}",
                    host_port(host, *port),
                    self.master_name
                ));
            }
        }
        if self.db < 0 {
            return Err(format!("database {} is negative", self.db));
        }
        if (self.tls || self.sentinel_tls) && !tls_addr(String::new(), 1).is_supported() {
            return Err("TLS needs the `tls` or `tls-native-tls` feature".into());
        }
        Ok(())
    }
}

impl FromStr for SentinelNode {
    type Err = Error;

    fn from_str(url: &str) -> crate::Result<Self> {
        Self::from_url(url)
    }
}

/// Whether `url` is in the Sentinel URL form (by its scheme).
pub(crate) fn is_sentinel_url(url: &str) -> bool {
    url.split_once("://").is_some_and(|(scheme, _)| {
        scheme.eq_ignore_ascii_case("redis+sentinel")
            || scheme.eq_ignore_ascii_case("rediss+sentinel")
    })
}

fn host_port(host: &str, port: u16) -> String {
    if host.contains(':') {
        format!("[{host}]:{port}")
    } else {
        format!("{host}:{port}")
    }
}

fn tls_addr(host: String, port: u16) -> ConnectionAddr {
    ConnectionAddr::TcpTls {
        host,
        port,
        insecure: false,
        tls_params: None,
    }
}

fn parse_url(url: &str) -> Result<SentinelNode, String> {
    let (scheme, rest) = url
        .split_once("://")
        .ok_or("expected redis+sentinel://...")?;
    let tls = if scheme.eq_ignore_ascii_case("redis+sentinel") {
        false
    } else if scheme.eq_ignore_ascii_case("rediss+sentinel") {
        true
    } else {
        return Err("the scheme must be redis+sentinel or rediss+sentinel".into());
    };
    if rest.contains('#') {
        return Err("fragments (#...) are not supported".into());
    }
    let (rest, query) = match rest.split_once('?') {
        Some((r, q)) => (r, Some(q)),
        None => (rest, None),
    };
    let (authority, path) = rest.split_once('/').ok_or("no master name given")?;
    // The password may contain '@' if it is not encoded: the hosts follow the last one.
    let (userinfo, hosts) = match authority.rsplit_once('@') {
        Some((u, h)) => (Some(u), h),
        None => (None, authority),
    };
    let mut sentinels = Vec::new();
    for host in hosts.split(',') {
        sentinels.push(parse_host(host)?);
    }
    let mut segments = path.split('/');
    let master_name = decode(segments.next().unwrap_or_default())?;
    if master_name.is_empty() {
        return Err("no master name given".into());
    }
    let db = match segments.next() {
        None | Some("") => 0,
        Some(db) => db
            .parse::<i64>()
            .ok()
            .filter(|db| *db >= 0)
            .ok_or_else(|| format!("invalid database {db:?}"))?,
    };
    if segments.any(|s| !s.is_empty()) {
        return Err("expected /master_name[/db] after the sentinels".into());
    }
    let mut node = SentinelNode::new(master_name, sentinels).db(db);
    node.tls = tls;
    node.sentinel_tls = tls;
    if let Some(userinfo) = userinfo {
        let (user, password) = match userinfo.split_once(':') {
            Some((u, p)) => (u, Some(p)),
            None => (userinfo, None),
        };
        if !user.is_empty() {
            node.username = Some(decode(user).map_err(|_| "invalid user name")?);
        }
        if let Some(password) = password {
            node.password = Some(decode(password).map_err(|_| "invalid password encoding")?);
        }
    }
    for pair in query
        .unwrap_or_default()
        .split('&')
        .filter(|p| !p.is_empty())
    {
        let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
        match key {
            "sentinel_username" => {
                node.sentinel_username = Some(decode(value).map_err(|_| "invalid user name")?);
            }
            "sentinel_password" => {
                node.sentinel_password =
                    Some(decode(value).map_err(|_| "invalid password encoding")?);
            }
            other => {
                return Err(format!(
                    "unknown option {:?} (known: sentinel_username, sentinel_password)",
                    decode(other).unwrap_or_default()
                ));
            }
        }
    }
    Ok(node)
}

/// `host`, `host:port`, `[v6]` or `[v6]:port`.
fn parse_host(text: &str) -> Result<(String, u16), String> {
    let bad = || format!("invalid sentinel address {text:?}");
    let (host, port) = if let Some(rest) = text.strip_prefix('[') {
        let (host, after) = rest.split_once(']').ok_or_else(bad)?;
        match after {
            "" => (host, None),
            _ => (host, Some(after.strip_prefix(':').ok_or_else(bad)?)),
        }
    } else {
        match text.split_once(':') {
            Some((h, p)) => (h, Some(p)),
            None => (text, None),
        }
    };
    if host.is_empty() || host.contains(['/', '@', ' ']) {
        return Err(bad());
    }
    let port = match port {
        None => DEFAULT_SENTINEL_PORT,
        Some(p) => p.parse::<u16>().ok().filter(|p| *p != 0).ok_or_else(bad)?,
    };
    Ok((decode(host)?, port))
}

/// Percent-decoding (`%40` is `@`).
fn decode(text: &str) -> Result<String, String> {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while let Some(&b) = bytes.get(i) {
        if b == b'%' {
            let hex = bytes
                .get(i + 1..i + 3)
                .and_then(|h| std::str::from_utf8(h).ok())
                .and_then(|h| u8::from_str_radix(h, 16).ok())
                .ok_or("invalid percent-encoding")?;
            out.push(hex);
            i += 3;
        } else {
            out.push(b);
            i += 1;
        }
    }
    String::from_utf8(out).map_err(|_| "percent-encoding is not UTF-8".to_owned())
}

/// Opens connections to the current master of a group, for a node's pool and its release
/// subscriber.
#[derive(Debug)]
pub(crate) struct Resolver {
    master_name: String,
    /// One client per sentinel, and its address for messages.
    sentinels: Vec<(Client, String)>,
    /// How to log in to the master.
    master: RedisConnectionInfo,
    tls: bool,
    /// The sentinel to ask first: the last one that answered, or the one after the last that
    /// failed, so a dead or stopped sentinel does not cost every connection a timeout.
    first: AtomicUsize,
}

impl Resolver {
    pub(crate) fn new(node: &SentinelNode) -> RedisResult<Self> {
        let mut sentinels = Vec::with_capacity(node.sentinels.len());
        for (host, port) in &node.sentinels {
            let addr = if node.sentinel_tls {
                tls_addr(host.clone(), *port)
            } else {
                ConnectionAddr::Tcp(host.clone(), *port)
            };
            let mut settings = RedisConnectionInfo::default();
            if let Some(user) = &node.sentinel_username {
                settings = settings.set_username(user);
            }
            if let Some(password) = &node.sentinel_password {
                settings = settings.set_password(password);
            }
            let info = addr.into_connection_info()?.set_redis_settings(settings);
            sentinels.push((Client::open(info)?, host_port(host, *port)));
        }
        let mut master = RedisConnectionInfo::default().set_db(node.db);
        if let Some(user) = &node.username {
            master = master.set_username(user);
        }
        if let Some(password) = &node.password {
            master = master.set_password(password);
        }
        Ok(Self {
            master_name: node.master_name.clone(),
            sentinels,
            master,
            tls: node.tls,
            first: AtomicUsize::new(0),
        })
    }

    /// Opens a connection to the group's current master, checked with `ROLE`. Everything
    /// (asking the sentinels, connecting to the master, its handshake and `ROLE`) fits in
    /// `timeout`.
    pub(crate) fn connect(&self, timeout: Duration) -> RedisResult<Connection> {
        let deadline = Instant::now() + timeout;
        let n = self.sentinels.len();
        if n == 0 {
            return Err(RedisError::from((
                ErrorKind::InvalidClientConfig,
                "no sentinel addresses given",
            )));
        }
        let first = self.first.load(Ordering::Relaxed);
        let mut tried: Vec<(String, u16)> = Vec::new();
        let mut problems: Vec<String> = Vec::new();
        // The kind of the last error met on a master the sentinels named, if any.
        let mut master_error = None;
        for k in 0..n {
            let i = (first + k) % n;
            let Some((sentinel, sentinel_name)) = self.sentinels.get(i) else {
                continue;
            };
            let Some(left) = remaining(deadline) else {
                problems.push("out of time".into());
                break;
            };
            let addr = match self.ask(sentinel, left) {
                Ok(Some(addr)) => addr,
                Ok(None) => {
                    problems.push(format!("sentinel {sentinel_name} does not know the master"));
                    self.move_past(i, n);
                    continue;
                }
                Err(e) => {
                    problems.push(format!("sentinel {sentinel_name}: {e}"));
                    self.move_past(i, n);
                    continue;
                }
            };
            // Sentinels usually agree: a master that just failed is not tried again.
            if tried.contains(&addr) {
                continue;
            }
            let Some(left) = remaining(deadline) else {
                problems.push("out of time".into());
                break;
            };
            match self.open_master(&addr, left) {
                Ok(con) => {
                    self.first.store(i, Ordering::Relaxed);
                    return Ok(con);
                }
                Err(e) => {
                    master_error = Some(e.kind());
                    problems.push(format!(
                        "master {} named by sentinel {sentinel_name}: {e}",
                        host_port(&addr.0, addr.1)
                    ));
                }
            }
            tried.push(addr);
        }
        Err(RedisError::from((
            master_error.unwrap_or(ErrorKind::MasterNameNotFoundBySentinel),
            "no master found through the sentinels",
            format!("{:?}: {}", self.master_name, problems.join("; ")),
        )))
    }

    /// Starts the next resolution after sentinel `i`, unless another one succeeded meanwhile.
    fn move_past(&self, i: usize, n: usize) {
        let _ = self
            .first
            .compare_exchange(i, (i + 1) % n, Ordering::Relaxed, Ordering::Relaxed);
    }

    /// Asks one sentinel for the master's address.
    fn ask(&self, sentinel: &Client, timeout: Duration) -> RedisResult<Option<(String, u16)>> {
        let deadline = Instant::now() + timeout;
        let mut con = sentinel.get_connection_with_timeout(timeout)?;
        let left = remaining(deadline).unwrap_or(MIN_TIMEOUT);
        con.set_read_timeout(Some(left))?;
        con.set_write_timeout(Some(left))?;
        redis::cmd("SENTINEL")
            .arg("GET-MASTER-ADDR-BY-NAME")
            .arg(&self.master_name)
            .query(&mut con)
    }

    /// Connects to the address a sentinel gave and checks that it is a master.
    fn open_master(&self, addr: &(String, u16), timeout: Duration) -> RedisResult<Connection> {
        let deadline = Instant::now() + timeout;
        let (host, port) = addr.clone();
        let addr = if self.tls {
            tls_addr(host, port)
        } else {
            ConnectionAddr::Tcp(host, port)
        };
        let info: ConnectionInfo = addr
            .into_connection_info()?
            .set_redis_settings(self.master.clone());
        let mut con = Client::open(info)?.get_connection_with_timeout(timeout)?;
        let left = remaining(deadline).unwrap_or(MIN_TIMEOUT);
        con.set_read_timeout(Some(left))?;
        con.set_write_timeout(Some(left))?;
        match redis::cmd("ROLE").query::<Role>(&mut con)? {
            Role::Primary { .. } => Ok(con),
            Role::Replica { .. } => Err(RedisError::from((
                ErrorKind::Client,
                "not a master",
                "the server is a replica (a failover is under way or the sentinels are stale)"
                    .to_owned(),
            ))),
            _ => Err(RedisError::from((
                ErrorKind::Client,
                "not a master",
                "the server is not a master".to_owned(),
            ))),
        }
    }
}

/// The time left until `deadline`, if at least the smallest socket timeout.
fn remaining(deadline: Instant) -> Option<Duration> {
    Some(deadline.saturating_duration_since(Instant::now())).filter(|d| *d >= MIN_TIMEOUT)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(url: &str) -> SentinelNode {
        SentinelNode::from_url(url).unwrap()
    }

    fn parse_err(url: &str) -> String {
        match SentinelNode::from_url(url) {
            Err(Error::InvalidConfig(m)) => m,
            other => panic!("{url}: {other:?}"),
        }
    }

    #[test]
    fn url_forms() {
        let n = parse("redis+sentinel://h1:26380,h2,[::1]:5000/mymaster/3");
        assert_eq!(
            n.sentinels(),
            [
                ("h1".to_owned(), 26380),
                ("h2".to_owned(), DEFAULT_SENTINEL_PORT),
                ("::1".to_owned(), 5000)
            ]
        );
        assert_eq!(n.master_name(), "mymaster");
        assert_eq!(n.db, 3);
        assert!(!n.tls && !n.sentinel_tls);
        assert_eq!(n.name(), "sentinel:mymaster@h1:26380,h2:26379,[::1]:5000/3");

        let n = parse(
            "REDISS+SENTINEL://u%40x:p%3Ass@h/m%2F1/?sentinel_password=s%26p&sentinel_username=su",
        );
        assert_eq!(n.username.as_deref(), Some("u@x"));
        assert_eq!(n.password.as_deref(), Some("p:ss"));
        assert_eq!(n.sentinel_username.as_deref(), Some("su"));
        assert_eq!(n.sentinel_password.as_deref(), Some("s&p"));
        assert_eq!(n.master_name(), "m/1");
        assert_eq!(n.db, 0);
        assert!(n.tls && n.sentinel_tls);

        let n = parse("redis+sentinel://:secret@h:1/m");
        assert_eq!((n.username, n.password.as_deref()), (None, Some("secret")));
        let n = parse("redis+sentinel://p@ss@h/m");
        assert_eq!(n.username.as_deref(), Some("p@ss"));
        assert_eq!(n.sentinels(), [("h".to_owned(), DEFAULT_SENTINEL_PORT)]);
    }

    #[test]
    fn bad_urls_say_why_without_the_password() {
        for (url, why) in [
            ("redis+sentinel://h1", "master name"),
            ("redis+sentinel://h1/", "master name"),
            ("redis+sentinel://h1:0/m", "address"),
            ("redis+sentinel://h1:x/m", "address"),
            ("redis+sentinel://h1,,h2/m", "address"),
            ("redis+sentinel://[::1/m", "address"),
            ("redis+sentinel://h/m/-1", "database"),
            ("redis+sentinel://h/m/x", "database"),
            ("redis+sentinel://h/m/1/2", "/master_name"),
            ("redis+sentinel://h/m?master=x", "unknown option"),
            ("redis+sentinel://h/m#x", "fragment"),
            ("redis://h/m", "scheme"),
            ("redis+sentinel://u:hunter2%zz@h/m", "password"),
        ] {
            let e = parse_err(url);
            assert!(e.contains(why), "{url}: {e}");
            assert!(!e.contains("hunter2"), "{url}: {e}");
        }
    }

    #[test]
    fn checks_and_names() {
        let ok = SentinelNode::new("m", [("h", 1)]);
        assert!(ok.check().is_ok());
        assert!(SentinelNode::new("", [("h", 1)]).check().is_err());
        let none: [(&str, u16); 0] = [];
        assert!(SentinelNode::new("m", none).check().is_err());
        assert!(SentinelNode::new("m", [("h", 0)]).check().is_err());
        assert!(ok.clone().db(-1).check().is_err());
        let shown = format!(
            "{:?}",
            ok.clone().password("hunter2").sentinel_password("x")
        );
        assert!(!shown.contains("hunter2"), "{shown}");
        assert_eq!(ok.db(2).name(), "sentinel:m@h:1/2");
    }

    #[test]
    fn same_group_shares_name_db_and_a_sentinel() {
        let a = SentinelNode::new("m", [("h1", 1), ("h2", 2)]);
        assert!(a.same_group(&SentinelNode::new("m", [("H2", 2), ("h3", 3)])));
        assert!(!a.same_group(&SentinelNode::new("m2", [("h1", 1)])));
        assert!(!a.same_group(&SentinelNode::new("m", [("h1", 1)]).db(1)));
        assert!(!a.same_group(&SentinelNode::new("m", [("h3", 3)])));
    }

    #[test]
    fn sentinel_urls_are_recognised_by_scheme() {
        assert!(is_sentinel_url("redis+sentinel://h/m"));
        assert!(is_sentinel_url("Rediss+Sentinel://h/m"));
        assert!(!is_sentinel_url("redis://h"));
        assert!(!is_sentinel_url("redis+sentinel"));
    }
}
