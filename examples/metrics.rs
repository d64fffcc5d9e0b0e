//! Prometheus metrics for a service that uses redmutex: the factory's events recorded through
//! the `metrics` facade ([`MetricsHandler`]), rendered by `metrics-exporter-prometheus`, and
//! served as `GET /metrics` on loopback, while four threads contend for one lock.
//!
//! ```sh
//! cargo run --example metrics --features metrics            # 30 s on 127.0.0.1:9898
//! cargo run --example metrics --features metrics -- 120     # 120 s
//! curl -s http://127.0.0.1:9898/metrics | grep redmutex
//! ```
//!
//! The nodes come from `REDMUTEX_NODES` (URLs separated by spaces or `;`, as for the
//! `redmutex` command: [`redmutex::split_node_list`]), or three local default ports;
//! `METRICS_ADDR` changes the address (loopback only here: expose it through your own server
//! or a proxy). The exporter is used without its HTTP listener, so nothing here needs tokio:
//! a plain `std::net` loop serves the text the exporter renders. (With the exporter's
//! `http-listener` feature, `PrometheusBuilder::new().with_http_listener(addr).install()`
//! serves it instead, on a tokio runtime of its own.)

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread;
use std::time::{Duration, Instant};

use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};
use redmutex::{MetricsHandler, RedLockFactory};

mod support;

const THREADS: usize = 4;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let secs: u64 = std::env::args().nth(1).map_or(Ok(30), |s| s.parse())?;
    let addr: SocketAddr = std::env::var("METRICS_ADDR")
        .unwrap_or_else(|_| "127.0.0.1:9898".to_owned())
        .parse()?;
    if !addr.ip().is_loopback() {
        return Err(format!("METRICS_ADDR {addr} is not a loopback address").into());
    }

    // 1. The recorder, installed before the handler is created (the handler describes its
    //    metrics to it). Waits as a histogram with buckets; other histograms as summaries.
    let prometheus = PrometheusBuilder::new()
        .set_buckets_for_metric(
            Matcher::Full("redmutex_acquire_wait_seconds".to_owned()),
            &[0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1.0, 5.0, 30.0],
        )?
        .install_recorder()?;

    // 2. The factory, with the handler.
    let factory = RedLockFactory::builder()
        .nodes(support::nodes())
        .retry_delay(Duration::from_millis(5))
        .retry_jitter(Duration::from_millis(5))
        .event_handler(MetricsHandler::new())
        .build()?;

    // 3. The endpoint.
    let listener = TcpListener::bind(addr)?;
    listener.set_nonblocking(true)?;
    let stop = Arc::new(AtomicBool::new(false));
    let server = {
        let (prometheus, stop) = (prometheus.clone(), Arc::clone(&stop));
        thread::spawn(move || serve(&listener, &prometheus, &stop))
    };
    println!("serving http://{addr}/metrics for {secs} s ({THREADS} threads contend for one lock)");

    // 4. Some work to measure.
    let end = Instant::now() + Duration::from_secs(secs);
    let workers: Vec<_> = (0..THREADS)
        .map(|_| {
            let lock = factory.create_lock("redmutex:example:metrics");
            thread::spawn(move || {
                while Instant::now() < end {
                    match lock.acquire_timeout(Duration::from_millis(200)) {
                        Ok(guard) => {
                            thread::sleep(Duration::from_millis(5));
                            let _ = guard.release();
                        }
                        Err(e) => eprintln!("{e}"),
                    }
                }
            })
        })
        .collect();
    for w in workers {
        let _ = w.join();
    }
    stop.store(true, Ordering::Release);
    let _ = server.join();

    prometheus.run_upkeep();
    println!("\nthe redmutex metrics at the end:");
    for line in prometheus.render().lines() {
        if line.starts_with("redmutex_") {
            println!("  {line}");
        }
    }
    let stats = factory.stats();
    println!(
        "\nfactory.stats(): {} acquisitions ({} contended, {:?} waited), {} timeouts, {} rounds",
        stats.acquisitions, stats.contended, stats.waited, stats.timeouts, stats.rounds
    );
    Ok(())
}

/// Answers `GET /metrics` until `stop` is set (polling: the listener is non-blocking).
fn serve(listener: &TcpListener, prometheus: &PrometheusHandle, stop: &AtomicBool) {
    while !stop.load(Ordering::Acquire) {
        match listener.accept() {
            Ok((stream, _)) => {
                if let Err(e) = answer(stream, prometheus) {
                    eprintln!("metrics endpoint: {e}");
                }
            }
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                thread::sleep(Duration::from_millis(20));
            }
            Err(e) => {
                eprintln!("metrics endpoint: {e}");
                return;
            }
        }
    }
}

/// Reads one request's first line and answers it.
fn answer(stream: TcpStream, prometheus: &PrometheusHandle) -> std::io::Result<()> {
    stream.set_nonblocking(false)?;
    stream.set_read_timeout(Some(Duration::from_secs(2)))?;
    stream.set_write_timeout(Some(Duration::from_secs(2)))?;
    let mut request = String::new();
    BufReader::new((&stream).take(8192)).read_line(&mut request)?;
    let (status, body) = if request.starts_with("GET /metrics ") {
        // The exporter's upkeep (draining histograms) is left to the caller without its
        // listener: run it at each scrape.
        prometheus.run_upkeep();
        ("200 OK", prometheus.render())
    } else {
        ("404 Not Found", "try /metrics\n".to_owned())
    };
    let mut stream = stream;
    write!(
        stream,
        "HTTP/1.1 {status}\r\nContent-Type: text/plain; version=0.0.4\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )?;
    stream.flush()
}
