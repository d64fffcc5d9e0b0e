//! A small threaded TCP proxy that tests put between the client and one node, to inject network
//! faults without root: latency (per direction, so per request or per reply), a black hole
//! (connections stay open, nothing is forwarded), connection resets (RST), and a cut (a
//! partition: existing connections are reset and new ones refused with a reset).
//!
//! Rules pick out single requests by their bytes ([`ProxyHandle::delay_requests_if`],
//! [`ProxyHandle::drop_requests_if`], [`ProxyHandle::delay_replies_to_if`]): e.g. only the
//! fencing write-back, or only an extension to one TTL, is delayed while everything else on the
//! same node passes.
//!
//! Every setting can be switched while the proxy runs. Each accepted connection gets two pump
//! threads (client→server, server→client) that poll with a short read timeout, so a switch
//! takes effect within a few milliseconds. Dropping the proxy stops and joins every thread.
//!
//! ```text
//! let proxy = Proxy::start(cluster.port(0));
//! let url = proxy.url();          // give this to the client instead of the node's URL
//! proxy.blackhole();              // ... the node is now unreachable but connections hang
//! proxy.heal();
//! ```

use std::io::{self, Read, Write};
use std::net::{Ipv4Addr, Shutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicU8, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::{self, JoinHandle};
use std::time::Duration;

/// How often the acceptor looks for new connections and the switches.
const POLL: Duration = Duration::from_millis(2);
/// How often an idle pump looks at the switches (data is forwarded as soon as it arrives; this
/// only bounds how late a pump notices a reset, a stop or the end of its peer). Kept long: a
/// hundred idle pumps waking every few milliseconds would load a 2-core machine by themselves.
const PUMP_POLL: Duration = Duration::from_millis(20);
/// How long the proxy waits for the node when a client connects.
const UPSTREAM_CONNECT_TIMEOUT: Duration = Duration::from_secs(1);

const PASS: u8 = 0;
const BLACKHOLE: u8 = 1;
const CUT: u8 = 2;

/// Decides whether a rule applies to one chunk of request bytes, as read from the client (a
/// request normally arrives as one chunk; pipelined requests may share one).
pub type Matcher = Arc<dyn Fn(&[u8]) -> bool + Send + Sync>;

/// What a rule does to a request it matches.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RuleAction {
    /// Hold the request for this long before forwarding it (later bytes of the same connection
    /// queue behind it, as on a slow link).
    DelayRequest(Duration),
    /// Swallow the request: the node never sees it (the connection stays open).
    DropRequest,
    /// Forward the request at once, but hold the next reply chunk on the same connection (its
    /// reply) for this long.
    DelayReply(Duration),
    /// Forward the request at once, and when its reply comes back, reset the connection (RST,
    /// both sides) instead of delivering it: the node ran the command, the client never hears
    /// (a CLIENT KILL, a proxy or load-balancer reset between the write and the read).
    ResetReply,
}

struct Rule {
    matcher: Matcher,
    action: RuleAction,
}

/// Whether `needle` occurs in `haystack`.
pub fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    needle.is_empty() || haystack.windows(needle.len()).any(|w| w == needle)
}

/// `s` as a RESP bulk string (`$<len>\r\n<s>\r\n`): the form every argument of a command
/// takes on the wire, so a matcher can look for one whole argument (`"300"` and not `"3000"`).
pub fn bulk(s: &str) -> Vec<u8> {
    let mut out = format!("${}\r\n", s.len()).into_bytes();
    out.extend_from_slice(s.as_bytes());
    out.extend_from_slice(b"\r\n");
    out
}

/// What the proxy did so far.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct ProxyCounters {
    /// Client connections accepted and connected through to the node.
    pub accepted: u64,
    /// Client connections refused with a reset (cut, or node unreachable).
    pub refused: u64,
    /// Established connections reset by [`Proxy::reset`] or [`Proxy::cut`].
    pub reset: u64,
    /// Bytes forwarded client→node.
    pub bytes_up: u64,
    /// Bytes forwarded node→client.
    pub bytes_down: u64,
    /// Bytes swallowed by the black hole (both directions).
    pub bytes_dropped: u64,
    /// Connections open right now.
    pub open: u64,
    /// Request chunks a rule applied to.
    pub matched: u64,
}

#[derive(Default)]
struct Counters {
    accepted: AtomicU64,
    refused: AtomicU64,
    reset: AtomicU64,
    bytes_up: AtomicU64,
    bytes_down: AtomicU64,
    bytes_dropped: AtomicU64,
    open: AtomicU64,
    matched: AtomicU64,
}

struct Inner {
    upstream: SocketAddr,
    mode: AtomicU8,
    /// Microseconds added before forwarding each chunk client→node (a request).
    latency_up: AtomicU64,
    /// Microseconds added before forwarding each chunk node→client (a reply).
    latency_down: AtomicU64,
    /// Bumped to reset every established connection.
    epoch: AtomicU64,
    /// Rules for single requests; the first that matches applies.
    rules: Mutex<Vec<Rule>>,
    stop: AtomicBool,
    counters: Counters,
    pumps: Mutex<Vec<JoinHandle<()>>>,
}

/// A TCP proxy on a free loopback port in front of `127.0.0.1:<node port>`.
///
/// The switches are methods of [`ProxyHandle`], reached through `Deref`; [`Proxy::handle`]
/// gives a clone to another thread.
pub struct Proxy {
    port: u16,
    control: ProxyHandle,
    acceptor: Option<JoinHandle<()>>,
}

/// The switches of a [`Proxy`], cheap to clone and send to another thread. They keep working
/// (as no-ops) after the proxy is dropped.
#[derive(Clone)]
pub struct ProxyHandle {
    inner: Arc<Inner>,
}

impl std::ops::Deref for Proxy {
    type Target = ProxyHandle;

    fn deref(&self) -> &ProxyHandle {
        &self.control
    }
}

impl Proxy {
    /// Starts a proxy in front of the node listening on `127.0.0.1:node_port`, forwarding
    /// everything unchanged.
    ///
    /// # Panics
    /// If no loopback port can be bound.
    pub fn start(node_port: u16) -> Self {
        let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).unwrap();
        listener.set_nonblocking(true).unwrap();
        let port = listener.local_addr().unwrap().port();
        let inner = Arc::new(Inner {
            upstream: SocketAddr::from((Ipv4Addr::LOCALHOST, node_port)),
            mode: AtomicU8::new(PASS),
            latency_up: AtomicU64::new(0),
            latency_down: AtomicU64::new(0),
            epoch: AtomicU64::new(0),
            rules: Mutex::new(Vec::new()),
            stop: AtomicBool::new(false),
            counters: Counters::default(),
            pumps: Mutex::new(Vec::new()),
        });
        let acceptor = {
            let inner = Arc::clone(&inner);
            thread::Builder::new()
                .name(format!("proxy-{port}"))
                .spawn(move || accept_loop(&listener, &inner))
                .unwrap()
        };
        Self {
            port,
            control: ProxyHandle { inner },
            acceptor: Some(acceptor),
        }
    }

    /// A handle on the switches, for another thread.
    pub fn handle(&self) -> ProxyHandle {
        self.control.clone()
    }

    /// The proxy's loopback port.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// `redis://127.0.0.1:<proxy port>`: the URL clients use to reach the node through us.
    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }
}

impl ProxyHandle {
    /// Delays every chunk of bytes going client→node (each request) by `d`.
    pub fn set_latency_up(&self, d: Duration) {
        self.inner.latency_up.store(micros(d), Ordering::SeqCst);
    }

    /// Delays every chunk of bytes going node→client (each reply) by `d`.
    pub fn set_latency_down(&self, d: Duration) {
        self.inner.latency_down.store(micros(d), Ordering::SeqCst);
    }

    /// Delays both directions by `d` (a round trip costs `2 * d` more).
    pub fn set_latency(&self, d: Duration) {
        self.set_latency_up(d);
        self.set_latency_down(d);
    }

    /// Black hole: connections (old and new) stay open, but nothing is forwarded in either
    /// direction; bytes sent meanwhile are lost. The client sees timeouts, never an error.
    pub fn blackhole(&self) {
        self.inner.mode.store(BLACKHOLE, Ordering::SeqCst);
    }

    /// Partition: every established connection is reset and new ones are reset on accept, so
    /// the client sees connection errors at once, until [`Self::heal`].
    pub fn cut(&self) {
        self.inner.mode.store(CUT, Ordering::SeqCst);
        self.reset();
    }

    /// Resets (RST) every established connection once; new connections are served normally.
    pub fn reset(&self) {
        self.inner.epoch.fetch_add(1, Ordering::SeqCst);
    }

    /// Back to forwarding everything (latencies and rules are kept; clear them separately).
    pub fn heal(&self) {
        self.inner.mode.store(PASS, Ordering::SeqCst);
    }

    /// Adds a rule: every request chunk for which `matcher` is true is held for `d` before it
    /// is forwarded (on top of any latency). Rules are tried in the order they were added.
    pub fn delay_requests_if(
        &self,
        matcher: impl Fn(&[u8]) -> bool + Send + Sync + 'static,
        d: Duration,
    ) {
        self.add_rule(Arc::new(matcher), RuleAction::DelayRequest(d));
    }

    /// Adds a rule: every request chunk for which `matcher` is true is swallowed (never reaches
    /// the node; the client sees a timeout).
    pub fn drop_requests_if(&self, matcher: impl Fn(&[u8]) -> bool + Send + Sync + 'static) {
        self.add_rule(Arc::new(matcher), RuleAction::DropRequest);
    }

    /// Adds a rule: a request chunk for which `matcher` is true goes through at once (the node
    /// applies it), but the reply that follows on that connection is held for `d`.
    pub fn delay_replies_to_if(
        &self,
        matcher: impl Fn(&[u8]) -> bool + Send + Sync + 'static,
        d: Duration,
    ) {
        self.add_rule(Arc::new(matcher), RuleAction::DelayReply(d));
    }

    /// Adds a rule: a request chunk for which `matcher` is true goes through at once (the node
    /// applies it), and the connection is reset when its reply comes back, so the client never
    /// hears it.
    pub fn reset_replies_to_if(&self, matcher: impl Fn(&[u8]) -> bool + Send + Sync + 'static) {
        self.add_rule(Arc::new(matcher), RuleAction::ResetReply);
    }

    /// Adds a rule (see [`RuleAction`]).
    pub fn add_rule(&self, matcher: Matcher, action: RuleAction) {
        lock(&self.inner.rules).push(Rule { matcher, action });
    }

    /// Removes every rule.
    pub fn clear_rules(&self) {
        lock(&self.inner.rules).clear();
    }

    /// What the proxy did so far.
    pub fn counters(&self) -> ProxyCounters {
        let c = &self.inner.counters;
        ProxyCounters {
            accepted: c.accepted.load(Ordering::SeqCst),
            refused: c.refused.load(Ordering::SeqCst),
            reset: c.reset.load(Ordering::SeqCst),
            bytes_up: c.bytes_up.load(Ordering::SeqCst),
            bytes_down: c.bytes_down.load(Ordering::SeqCst),
            bytes_dropped: c.bytes_dropped.load(Ordering::SeqCst),
            open: c.open.load(Ordering::SeqCst),
            matched: c.matched.load(Ordering::SeqCst),
        }
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        let inner = &self.control.inner;
        inner.stop.store(true, Ordering::SeqCst);
        if let Some(h) = self.acceptor.take() {
            let _ = h.join();
        }
        let pumps = std::mem::take(&mut *inner.pumps.lock().unwrap_or_else(|e| e.into_inner()));
        for h in pumps {
            let _ = h.join();
        }
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl Inner {
    /// The action of the first rule matching a request chunk, if any.
    fn rule_for(&self, chunk: &[u8]) -> Option<RuleAction> {
        let rules = lock(&self.rules);
        let action = rules
            .iter()
            .find(|r| (r.matcher)(chunk))
            .map(|r| r.action)?;
        self.counters.matched.fetch_add(1, Ordering::SeqCst);
        Some(action)
    }
}

fn micros(d: Duration) -> u64 {
    u64::try_from(d.as_micros()).unwrap_or(u64::MAX)
}

/// Closes `s` with a reset (SO_LINGER 0) instead of an orderly FIN.
fn set_rst_on_close(s: &TcpStream) {
    let _ = socket2::SockRef::from(s).set_linger(Some(Duration::ZERO));
}

fn accept_loop(listener: &TcpListener, inner: &Arc<Inner>) {
    while !inner.stop.load(Ordering::SeqCst) {
        let client = match listener.accept() {
            Ok((client, _)) => client,
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                thread::sleep(POLL);
                continue;
            }
            Err(_) => {
                thread::sleep(POLL);
                continue;
            }
        };
        let _ = client.set_nonblocking(false);
        if inner.mode.load(Ordering::SeqCst) == CUT {
            set_rst_on_close(&client);
            inner.counters.refused.fetch_add(1, Ordering::SeqCst);
            continue; // dropped: RST
        }
        let Ok(server) = TcpStream::connect_timeout(&inner.upstream, UPSTREAM_CONNECT_TIMEOUT)
        else {
            // The node is down: the client sees what it would see without the proxy.
            set_rst_on_close(&client);
            inner.counters.refused.fetch_add(1, Ordering::SeqCst);
            continue;
        };
        inner.counters.accepted.fetch_add(1, Ordering::SeqCst);
        inner.counters.open.fetch_add(1, Ordering::SeqCst);
        for s in [&client, &server] {
            let _ = s.set_nodelay(true);
            // A peer that stops reading must not wedge a pump (and the proxy's drop) forever.
            let _ = s.set_write_timeout(Some(Duration::from_secs(1)));
        }
        let epoch = inner.epoch.load(Ordering::SeqCst);
        let conn = Arc::new(Conn {
            client,
            server,
            closed: AtomicBool::new(false),
            pumps_left: AtomicU8::new(2),
            reply_delay: AtomicU64::new(0),
            reset_reply: AtomicBool::new(false),
        });
        let mut pumps = inner.pumps.lock().unwrap_or_else(|e| e.into_inner());
        pumps.retain(|h| !h.is_finished());
        for up in [true, false] {
            let inner = Arc::clone(inner);
            let conn = Arc::clone(&conn);
            pumps.push(thread::spawn(move || pump(&inner, &conn, up, epoch)));
        }
    }
}

/// One proxied connection, shared by its two pumps.
struct Conn {
    client: TcpStream,
    server: TcpStream,
    /// Set when one side ended: the other pump stops too.
    closed: AtomicBool,
    pumps_left: AtomicU8,
    /// Microseconds to hold the next reply chunk (set by a [`RuleAction::DelayReply`] rule).
    reply_delay: AtomicU64,
    /// Reset the connection instead of forwarding the next reply chunk (set by a
    /// [`RuleAction::ResetReply`] rule).
    reset_reply: AtomicBool,
}

/// Copies one direction until either side closes, the connection is reset, or the proxy stops.
fn pump(inner: &Inner, conn: &Conn, up: bool, epoch: u64) {
    let (mut from, mut to) = if up {
        (&conn.client, &conn.server)
    } else {
        (&conn.server, &conn.client)
    };
    let _ = from.set_read_timeout(Some(PUMP_POLL));
    let (latency, bytes) = if up {
        (&inner.latency_up, &inner.counters.bytes_up)
    } else {
        (&inner.latency_down, &inner.counters.bytes_down)
    };
    let mut buf = vec![0u8; 16 * 1024];
    let mut reset = false;
    loop {
        if inner.stop.load(Ordering::SeqCst) || conn.closed.load(Ordering::SeqCst) {
            break;
        }
        if inner.epoch.load(Ordering::SeqCst) != epoch {
            reset = true;
            break;
        }
        let n = match from.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                ) =>
            {
                continue;
            }
            Err(_) => break,
        };
        if inner.mode.load(Ordering::SeqCst) == BLACKHOLE {
            inner
                .counters
                .bytes_dropped
                .fetch_add(n as u64, Ordering::SeqCst);
            continue;
        }
        let mut delay = latency.load(Ordering::SeqCst);
        if up {
            match inner.rule_for(&buf[..n]) {
                Some(RuleAction::DelayRequest(d)) => delay = delay.saturating_add(micros(d)),
                Some(RuleAction::DropRequest) => {
                    inner
                        .counters
                        .bytes_dropped
                        .fetch_add(n as u64, Ordering::SeqCst);
                    continue;
                }
                Some(RuleAction::DelayReply(d)) => {
                    conn.reply_delay.fetch_max(micros(d), Ordering::SeqCst);
                }
                Some(RuleAction::ResetReply) => conn.reset_reply.store(true, Ordering::SeqCst),
                None => {}
            }
        } else if conn.reset_reply.swap(false, Ordering::SeqCst) {
            // The node answered: swallow the reply and cut the client off at once (it reads the
            // end of the stream, then a reset), however late the other pump notices.
            inner
                .counters
                .bytes_dropped
                .fetch_add(n as u64, Ordering::SeqCst);
            set_rst_on_close(&conn.client);
            let _ = conn.client.shutdown(Shutdown::Both);
            reset = true;
            break;
        } else {
            delay = delay.saturating_add(conn.reply_delay.swap(0, Ordering::SeqCst));
        }
        if delay > 0 {
            sleep_unless_stopped(inner, conn, Duration::from_micros(delay));
        }
        if to.write_all(&buf[..n]).is_err() {
            break;
        }
        bytes.fetch_add(n as u64, Ordering::SeqCst);
    }
    if reset && !conn.closed.swap(true, Ordering::SeqCst) {
        set_rst_on_close(&conn.client);
        set_rst_on_close(&conn.server);
        inner.counters.reset.fetch_add(1, Ordering::SeqCst);
    }
    conn.closed.store(true, Ordering::SeqCst);
    if !reset {
        // Pass the orderly end on: the other side reads EOF.
        let _ = to.shutdown(Shutdown::Write);
    }
    if conn.pumps_left.fetch_sub(1, Ordering::SeqCst) == 1 {
        inner.counters.open.fetch_sub(1, Ordering::SeqCst);
    }
}

// ---------------------------------------------------------------------------------------------
// Random faults on a few proxies, for property tests (`deadline_rule`, `rwlock::deadline`).

/// A fault on one or two of three proxies, for one step of a property test. The masks have bit
/// `i` set for proxy `i`; never all three (a lease would simply run out).
#[derive(Debug, Clone, Copy)]
pub enum Fault {
    /// Nothing wrong.
    None,
    /// Replies from these nodes arrive this many ms late (past the I/O timeout).
    LateReplies(u8, u64),
    /// Requests to these nodes arrive this many ms late (and are applied then, after later
    /// rounds).
    LateRequests(u8, u64),
    /// Nothing reaches these nodes.
    Blackhole(u8),
}

impl Fault {
    /// Switches this fault on, on the proxies it names (the others are left as they are).
    pub fn apply(self, proxies: &[ProxyHandle]) {
        for (i, p) in proxies.iter().enumerate() {
            let hit = |m: u8| m & (1 << i) != 0;
            match self {
                Self::LateReplies(m, d) if hit(m) => p.set_latency_down(Duration::from_millis(d)),
                Self::LateRequests(m, d) if hit(m) => p.set_latency_up(Duration::from_millis(d)),
                Self::Blackhole(m) if hit(m) => p.blackhole(),
                _ => {}
            }
        }
    }
}

/// A random [`Fault`] on one or two of three proxies, delays of 150 to 400 ms.
pub fn fault() -> impl proptest::strategy::Strategy<Value = Fault> {
    use proptest::prelude::*;
    let mask = prop_oneof![Just(1u8), Just(2), Just(4), Just(3), Just(5), Just(6)];
    prop_oneof![
        Just(Fault::None),
        (mask.clone(), 150u64..400).prop_map(|(m, d)| Fault::LateReplies(m, d)),
        (mask.clone(), 150u64..400).prop_map(|(m, d)| Fault::LateRequests(m, d)),
        mask.prop_map(Fault::Blackhole),
    ]
}

/// Ends every [`Fault`]: each proxy forwards again, without latency.
pub fn heal_all(proxies: &[ProxyHandle]) {
    for p in proxies {
        p.heal();
        p.set_latency(Duration::ZERO);
    }
}

fn sleep_unless_stopped(inner: &Inner, conn: &Conn, d: Duration) {
    let end = std::time::Instant::now() + d;
    loop {
        let now = std::time::Instant::now();
        if now >= end || inner.stop.load(Ordering::SeqCst) || conn.closed.load(Ordering::SeqCst) {
            return;
        }
        thread::sleep((end - now).min(Duration::from_millis(10)));
    }
}
