//! `rediss://` nodes (feature `tls`): real `redis-server --tls-port` processes with a CA and
//! certificates generated at test time by the `openssl` command-line tool.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use crate::support::{self, RedisCluster, free_port};
use redis::TlsCertificates;
use redmutex::Error;

/// A CA and a server certificate for 127.0.0.1 signed by it, in a temporary directory.
struct Pki {
    dir: PathBuf,
}

fn openssl(dir: &Path, args: &[&str]) {
    let out = Command::new("openssl")
        .args(args)
        .current_dir(dir)
        .output()
        .unwrap_or_else(|e| {
            panic!("openssl not runnable ({e}): install it (apt-get install openssl)")
        });
    assert!(
        out.status.success(),
        "openssl {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

impl Pki {
    /// `name` distinguishes two independent CAs; `san` is the server certificate's subject
    /// alternative name.
    fn new(name: &str, san: &str) -> Self {
        let dir = std::env::temp_dir().join(format!(
            "redmutex-tls-{}-{name}-{}",
            std::process::id(),
            free_port()
        ));
        std::fs::create_dir_all(&dir).unwrap();
        openssl(
            &dir,
            &[
                "req",
                "-x509",
                "-newkey",
                "rsa:2048",
                "-nodes",
                "-days",
                "2",
                "-keyout",
                "ca.key",
                "-out",
                "ca.crt",
                "-subj",
                &format!("/CN=redmutex test CA {name}"),
            ],
        );
        openssl(
            &dir,
            &[
                "req",
                "-newkey",
                "rsa:2048",
                "-nodes",
                "-keyout",
                "server.key",
                "-out",
                "server.csr",
                "-subj",
                "/CN=redmutex test server",
            ],
        );
        std::fs::write(dir.join("ext.cnf"), format!("subjectAltName={san}\n")).unwrap();
        openssl(
            &dir,
            &[
                "x509",
                "-req",
                "-in",
                "server.csr",
                "-CA",
                "ca.crt",
                "-CAkey",
                "ca.key",
                "-CAcreateserial",
                "-out",
                "server.crt",
                "-days",
                "2",
                "-extfile",
                "ext.cnf",
            ],
        );
        Self { dir }
    }

    fn path(&self, file: &str) -> String {
        self.dir.join(file).to_string_lossy().into_owned()
    }

    fn ca_pem(&self) -> Vec<u8> {
        std::fs::read(self.dir.join("ca.crt")).unwrap()
    }
}

impl Drop for Pki {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// One redis-server with a plain port (for the harness) and a TLS port; returns the TLS port.
fn tls_node(pki: &Pki) -> (RedisCluster, u16) {
    let tls_port = free_port();
    let cluster = RedisCluster::start_with_args(
        1,
        &[
            "--tls-port",
            &tls_port.to_string(),
            "--tls-cert-file",
            &pki.path("server.crt"),
            "--tls-key-file",
            &pki.path("server.key"),
            "--tls-ca-cert-file",
            &pki.path("ca.crt"),
            "--tls-auth-clients",
            "no",
        ],
    );
    (cluster, tls_port)
}

/// A `rediss://` node trusting `ca` only.
fn tls_info(url: &str, ca: Vec<u8>) -> redis::ConnectionInfo {
    redis::Client::build_with_tls(
        url,
        TlsCertificates {
            client_tls: None,
            root_cert: Some(ca),
        },
    )
    .unwrap()
    .get_connection_info()
    .clone()
}

/// Generous for a loaded machine: a TLS handshake (RSA, unoptimised build) is slow.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(2);
const IO_TIMEOUT: Duration = Duration::from_millis(500);

#[test]
fn lock_over_tls_nodes_and_a_wrong_certificate_is_a_node_error() {
    let pki = Pki::new("good", "IP:127.0.0.1");
    let other = Pki::new("other", "IP:127.0.0.1");
    let nodes: Vec<(RedisCluster, u16)> = (0..3).map(|_| tls_node(&pki)).collect();
    // A fourth node whose certificate comes from a CA the client does not trust.
    let (stranger, stranger_port) = tls_node(&other);

    let good: Vec<_> = nodes
        .iter()
        .map(|(_, p)| tls_info(&format!("rediss://127.0.0.1:{p}"), pki.ca_pem()))
        .collect();
    let f = support::builder()
        .nodes(good.clone())
        .connect_timeout(CONNECT_TIMEOUT)
        .io_timeout(IO_TIMEOUT)
        .max_retries(1)
        .build()
        .unwrap();
    let g = f.create_lock("tls:k").acquire().unwrap();
    for (c, _) in &nodes {
        assert_eq!(
            c.cmd(0, &["GET", "tls:k"]),
            g.token(),
            "the key went over TLS"
        );
    }
    g.release().unwrap();

    // Only the untrusted node: a node error naming it, with a certificate cause.
    let bad = tls_info(&format!("rediss://127.0.0.1:{stranger_port}"), pki.ca_pem());
    let e = support::builder()
        .nodes(vec![bad.clone()])
        .connect_timeout(CONNECT_TIMEOUT)
        .io_timeout(IO_TIMEOUT)
        .max_retries(1)
        .build()
        .unwrap()
        .create_lock("tls:k")
        .acquire()
        .unwrap_err();
    assert!(matches!(e, Error::NoQuorum { answered: 0, .. }), "{e:?}");
    let shown = e.to_string();
    assert!(
        shown.contains(&format!("127.0.0.1:{stranger_port}")),
        "{shown}"
    );
    assert!(
        shown.to_lowercase().contains("certificate") || shown.contains("UnknownIssuer"),
        "{shown}"
    );
    assert_eq!(stranger.cmd(0, &["DBSIZE"]), "0");

    // Two trusted nodes and the stranger: a quorum still works.
    let mixed = support::builder()
        .nodes(vec![good[0].clone(), good[1].clone(), bad])
        .connect_timeout(CONNECT_TIMEOUT)
        .io_timeout(IO_TIMEOUT)
        .max_retries(1)
        .build()
        .unwrap();
    mixed
        .create_lock("tls:m")
        .acquire()
        .unwrap()
        .release()
        .unwrap();
}

#[test]
fn certificate_for_another_name_is_refused() {
    let pki = Pki::new("name", "DNS:not-this-host.example");
    let (c, port) = tls_node(&pki);
    let info = tls_info(&format!("rediss://127.0.0.1:{port}"), pki.ca_pem());
    let e = support::builder()
        .nodes(vec![info])
        .connect_timeout(CONNECT_TIMEOUT)
        .io_timeout(IO_TIMEOUT)
        .max_retries(1)
        .build()
        .unwrap()
        .create_lock("k")
        .try_acquire()
        .unwrap_err();
    assert!(matches!(e, Error::NoQuorum { .. }), "{e:?}");
    assert_eq!(c.cmd(0, &["DBSIZE"]), "0");
}

#[test]
fn plain_client_on_a_tls_port_fails_cleanly() {
    let pki = Pki::new("plain", "IP:127.0.0.1");
    let (_c, port) = tls_node(&pki);
    let f = support::builder()
        .node(format!("redis://127.0.0.1:{port}"))
        .connect_timeout(Duration::from_millis(500))
        .io_timeout(Duration::from_millis(300))
        .max_retries(1)
        .build()
        .unwrap();
    let e = f.create_lock("k").acquire().unwrap_err();
    assert!(matches!(e, Error::NoQuorum { .. }), "{e:?}");
}
