//! Property tests (proptest) of the quorum and validity arithmetic, through the public API:
//! which configurations the builder accepts, the quorum it picks, and the validity of real
//! acquisitions on real nodes.

use std::time::{Duration, Instant};

use crate::support::{self, RedisCluster};
use proptest::prelude::*;
use proptest::test_runner::FileFailurePersistence;
use redmutex::{Error, MAX_NODES, RedLockFactory};

const MAX_TTL: Duration = Duration::from_millis(1 << 40);

fn urls(n: usize) -> Vec<String> {
    (0..n)
        .map(|i| format!("redis://127.0.0.1:{}", i + 1))
        .collect()
}

/// The drift allowance as documented: `ttl * factor + 2 ms`.
fn drift(ttl: Duration, factor: f64) -> Duration {
    ttl.mul_f64(factor) + Duration::from_millis(2)
}

/// `cases` cases, with the failures proptest finds kept next to this file
/// (`props.proptest-regressions`, checked in) and replayed first on every run.
fn config(cases: u32) -> ProptestConfig {
    ProptestConfig {
        cases,
        failure_persistence: Some(Box::new(FileFailurePersistence::WithSource(
            "proptest-regressions",
        ))),
        ..ProptestConfig::default()
    }
}

proptest! {
    #![proptest_config(config(256))]

    /// The default quorum is a strict majority, and a quorum is accepted iff it is one.
    #[test]
    fn quorum_is_a_strict_majority(n in 1..=MAX_NODES, q in 0usize..70) {
        let f = RedLockFactory::new(urls(n)).unwrap();
        prop_assert_eq!(f.quorum(), n / 2 + 1);
        prop_assert!(2 * f.quorum() > n);
        prop_assert!(f.quorum() <= n);
        // Two quorums always share a node.
        prop_assert!(2 * f.quorum() - n >= 1);
        let built = RedLockFactory::builder().nodes(urls(n)).quorum(q).build();
        let strict_majority = 2 * q > n && q <= n;
        match built {
            Ok(f) => {
                prop_assert!(strict_majority, "quorum {} of {} accepted", q, n);
                prop_assert_eq!(f.quorum(), q);
            }
            Err(Error::InvalidConfig(m)) => {
                prop_assert!(!strict_majority, "quorum {} of {} rejected: {}", q, n, m);
                prop_assert!(m.contains("quorum"));
            }
            Err(e) => prop_assert!(false, "{:?}", e),
        }
    }

    /// A TTL is accepted iff it is at least 1 ms, at most the maximum, and longer than its
    /// drift allowance; a drift factor iff it is in [0, 1).
    #[test]
    fn ttl_and_drift_acceptance(
        ttl_us in prop_oneof![0u64..20_000, 0u64..u64::MAX / 1_000_000],
        factor in prop_oneof![0.0f64..1.0, -2.0f64..2.0, Just(f64::NAN), Just(f64::INFINITY)],
    ) {
        let ttl = Duration::from_micros(ttl_us);
        // The longest TTL as long as any TTL may be, so that only the TTL's own bounds count.
        let built = RedLockFactory::builder()
            .nodes(urls(3))
            .ttl(ttl)
            .longest_ttl(MAX_TTL)
            .clock_drift_factor(factor)
            .build();
        let factor_ok = factor.is_finite() && (0.0..1.0).contains(&factor);
        let ttl_ok = ttl >= Duration::from_millis(1)
            && ttl <= MAX_TTL
            && (!factor_ok || ttl > drift(ttl, factor));
        match built {
            Ok(f) => {
                prop_assert!(factor_ok && ttl_ok, "accepted ttl {:?} factor {}", ttl, factor);
                prop_assert_eq!(f.ttl(), ttl);
            }
            Err(Error::InvalidConfig(m)) => {
                prop_assert!(!(factor_ok && ttl_ok), "rejected ttl {:?} factor {}: {}", ttl, factor, m);
            }
            Err(e) => prop_assert!(false, "{:?}", e),
        }
    }
}

/// The validity of a fresh guard is `ttl - round - drift`: never more than `ttl - drift`, never
/// less than that minus the time the call took; an extension restarts it likewise. Each case is
/// a real acquisition on three real nodes, owned by this test (and dropped, with their
/// processes and directories, when it ends).
#[test]
fn validity_is_ttl_minus_round_minus_drift() {
    let cluster = RedisCluster::start(3);
    proptest!(config(48), |(
        ttl_ms in 1_000u64..120_000,
        factor in 0.0f64..0.2,
        ext_ms in 1_000u64..120_000,
    )| {
        let ttl = Duration::from_millis(ttl_ms);
        let f = support::factory(&cluster)
            .ttl(ttl)
            .clock_drift_factor(factor)
            .io_timeout(Duration::from_secs(1))
            // Other tests build factories concurrently: a fresh pool's first connection may
            // take a while on a loaded machine.
            .connect_timeout(Duration::from_secs(5))
            .build()
            .unwrap();
        let lock = f.create_lock(format!("prop:{ttl_ms}:{ext_ms}"));
        let t0 = Instant::now();
        let g = lock.acquire_timeout(Duration::from_secs(30)).unwrap();
        let call = t0.elapsed();
        let v = g.validity();
        let most = ttl - drift(ttl, factor);
        prop_assert!(v <= most, "validity {:?} > ttl - drift {:?}", v, most);
        prop_assert!(v + call + Duration::from_millis(1) >= most, "validity {:?}, call {:?}, bound {:?}", v, call, most);

        // Extending never shortens: the validity becomes at least `ext - drift` from the
        // round, and at most the longer of that and what was left before.
        let ext = Duration::from_millis(ext_ms);
        let before = g.validity();
        let t0 = Instant::now();
        g.extend(ext).unwrap();
        let call = t0.elapsed();
        let v = g.validity();
        let least = ext - drift(ext, factor);
        let most = least.max(before);
        prop_assert!(v <= most, "extended validity {:?} > {:?}", v, most);
        prop_assert!(v + call + Duration::from_millis(1) >= least, "extended validity {:?}, call {:?}", v, call);
        g.release().unwrap();
    });
}
