//! [`MetricsHandler`]: the event handler of the `metrics` feature.

use ::metrics::{
    Label, Unit, counter, describe_counter, describe_gauge, describe_histogram, gauge, histogram,
};

use super::events::{
    AcquireEvent, ExtendFailedEvent, GiveUpEvent, HandleEvent, LossEvent, NodeDownEvent,
    NodeUpEvent, NodeWarningEvent,
};
use super::outcome;

/// An [`HandleEvent`] that records the factory's events through the
/// [`metrics`](https://docs.rs/metrics) facade (feature `metrics`), for whatever recorder
/// the application installs (a Prometheus exporter, StatsD, ...). Without a recorder, each
/// event costs an atomic load.
///
/// The names are fixed and the labels few, so the number of series stays small whatever the
/// traffic:
///
/// | metric | type | labels |
/// |---|---|---|
/// | `redmutex_acquisitions_total` | counter | |
/// | `redmutex_contended_acquisitions_total` | counter | |
/// | `redmutex_acquire_wait_seconds` | histogram | |
/// | `redmutex_acquire_rounds` | histogram | |
/// | `redmutex_acquire_failures_total` | counter | `reason`: `timeout`, `cancelled`, `no_quorum`, `too_late`, `invalid`, `already_ran` (a run-once epoch that had run) |
/// | `redmutex_extend_failures_total` | counter | `by`: `extend`, `keep_alive`; `reason`: `no_quorum`, `too_late`, `expired`, `lock_lost` |
/// | `redmutex_losses_total` | counter | `reason`: `expired`, `token_gone`, `hold_limit` |
/// | `redmutex_node_up` | gauge | `node` (`host:port`): 0 from the node's failure, 1 once it answers again |
/// | `redmutex_node_failures_total` | counter | `node`, `kind` ([`NodeErrorKind`](crate::NodeErrorKind)) |
///
/// The `node` label takes one value per node (32 at most). A `resource` label on the
/// acquisition, extension and loss metrics is off by default, since every lock name would make
/// new series: turn it on with [`with_resource_label`](Self::with_resource_label) only when
/// the names are few and fixed.
///
/// The gauge and the node counter only move when a node changes state, so a node that never
/// failed has no series yet; [`RedLockFactory::stats`](crate::RedLockFactory::stats) has every
/// node's state at any time.
///
/// # Examples
///
/// ```no_run
/// use redmutex::{MetricsHandler, RedLockFactory};
///
/// // Install a recorder first (e.g. metrics-exporter-prometheus): see examples/metrics.rs.
/// let factory = RedLockFactory::builder()
///     .nodes(["redis://127.0.0.1:7001", "redis://127.0.0.1:7002", "redis://127.0.0.1:7003"])
///     .event_handler(MetricsHandler::new())
///     .build()?;
/// # Ok::<(), redmutex::Error>(())
/// ```
#[derive(Debug, Clone, Default)]
#[must_use]
pub struct MetricsHandler {
    resource_label: bool,
}

impl MetricsHandler {
    /// A handler with the fixed labels only. It also describes the metrics (unit and help
    /// text) to the recorder installed now, so create it after installing the recorder.
    pub fn new() -> Self {
        describe();
        Self::default()
    }

    /// Also label the acquisition, extension and loss metrics with the resource name.
    ///
    /// Defaults to off. Each resource name makes its own series: turn it on only for a small,
    /// fixed set of names.
    pub const fn with_resource_label(mut self, on: bool) -> Self {
        self.resource_label = on;
        self
    }

    /// The labels every metric of `resource` gets, plus `extra`.
    fn labels(&self, resource: &str, extra: &[(&'static str, &'static str)]) -> Vec<Label> {
        let mut labels: Vec<Label> = extra.iter().map(|(k, v)| Label::new(*k, *v)).collect();
        if self.resource_label {
            labels.push(Label::new("resource", resource.to_owned()));
        }
        labels
    }
}

impl HandleEvent for MetricsHandler {
    fn on_acquire(&self, e: &AcquireEvent<'_>) {
        counter!("redmutex_acquisitions_total", self.labels(e.resource, &[])).increment(1);
        if e.contended {
            counter!(
                "redmutex_contended_acquisitions_total",
                self.labels(e.resource, &[])
            )
            .increment(1);
        }
        histogram!(
            "redmutex_acquire_wait_seconds",
            self.labels(e.resource, &[])
        )
        .record(e.waited.as_secs_f64());
        histogram!("redmutex_acquire_rounds", self.labels(e.resource, &[]))
            .record(f64::from(e.rounds));
    }

    fn on_give_up(&self, e: &GiveUpEvent<'_>) {
        let labels = self.labels(e.resource, &[("reason", outcome(e.error))]);
        counter!("redmutex_acquire_failures_total", labels).increment(1);
    }

    fn on_extend_failed(&self, e: &ExtendFailedEvent<'_>) {
        let by = if e.keep_alive { "keep_alive" } else { "extend" };
        let labels = self.labels(e.resource, &[("by", by), ("reason", outcome(e.error))]);
        counter!("redmutex_extend_failures_total", labels).increment(1);
    }

    fn on_loss(&self, e: &LossEvent<'_>) {
        let labels = self.labels(e.resource, &[("reason", e.reason.as_str())]);
        counter!("redmutex_losses_total", labels).increment(1);
    }

    fn on_node_down(&self, e: &NodeDownEvent<'_>) {
        let node = e.node.to_owned();
        gauge!("redmutex_node_up", "node" => node.clone()).set(0.0);
        counter!("redmutex_node_failures_total", "node" => node, "kind" => e.kind.as_str())
            .increment(1);
    }

    fn on_node_up(&self, e: &NodeUpEvent<'_>) {
        gauge!("redmutex_node_up", "node" => e.node.to_owned()).set(1.0);
    }

    fn on_node_warning(&self, e: &NodeWarningEvent<'_>) {
        let labels = [
            ("node", e.node.to_owned()),
            ("kind", e.warning.as_str().to_owned()),
        ];
        counter!("redmutex_node_warnings_total", &labels).increment(1);
    }
}

/// Describes every metric to the installed recorder.
fn describe() {
    describe_counter!(
        "redmutex_acquisitions_total",
        Unit::Count,
        "Locks taken (acquire, acquire_timeout, acquire_with, try_acquire)."
    );
    describe_counter!(
        "redmutex_contended_acquisitions_total",
        Unit::Count,
        "Locks taken after finding them held elsewhere."
    );
    describe_histogram!(
        "redmutex_acquire_wait_seconds",
        Unit::Seconds,
        "Time from an acquire call to holding the lock."
    );
    describe_histogram!(
        "redmutex_acquire_rounds",
        Unit::Count,
        "Acquisition rounds per lock taken."
    );
    describe_counter!(
        "redmutex_acquire_failures_total",
        Unit::Count,
        "Acquisitions that ended without the lock, by reason."
    );
    describe_counter!(
        "redmutex_extend_failures_total",
        Unit::Count,
        "Failed extensions (extend) and keep-alive renewals (keep_alive), by reason."
    );
    describe_counter!(
        "redmutex_losses_total",
        Unit::Count,
        "Held locks lost, by reason."
    );
    describe_gauge!(
        "redmutex_node_up",
        Unit::Count,
        "1 while the node answers, 0 from a failure until it answers again."
    );
    describe_counter!(
        "redmutex_node_failures_total",
        Unit::Count,
        "Times the node was marked down, by the kind of failure."
    );
    describe_counter!(
        "redmutex_node_warnings_total",
        Unit::Count,
        "Risks found when connecting to a node (quarantined, evicts, unwatched, not_durable)."
    );
}
