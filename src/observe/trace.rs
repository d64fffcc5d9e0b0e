//! Spans and events for the `tracing` feature: a span per acquisition, extension, renewal batch
//! and release (target `redmutex`, with the resource and, once known, the outcome), and a
//! `debug` event per judged round with its votes. Without the feature, these are empty types
//! and functions the compiler removes.

#[cfg(feature = "tracing")]
mod on {
    use tracing::field::Empty;

    /// A span of one operation on a lock.
    #[derive(Debug)]
    pub(crate) struct OpSpan(tracing::Span);

    impl OpSpan {
        pub(crate) fn acquire(resource: &str) -> Self {
            Self(
                tracing::info_span!(target: "redmutex", "acquire", resource, outcome = Empty, rounds = Empty),
            )
        }

        pub(crate) fn extend(resource: &str) -> Self {
            Self(tracing::info_span!(target: "redmutex", "extend", resource, outcome = Empty))
        }

        pub(crate) fn release(resource: &str) -> Self {
            Self(tracing::info_span!(target: "redmutex", "release", resource, outcome = Empty))
        }

        pub(crate) fn renew(leases: usize) -> Self {
            Self(tracing::debug_span!(target: "redmutex", "renew", leases, outcome = Empty))
        }

        pub(crate) fn in_scope<R>(&self, f: impl FnOnce() -> R) -> R {
            self.0.in_scope(f)
        }

        pub(crate) fn outcome(&self, outcome: &'static str) {
            self.0.record("outcome", outcome);
        }

        pub(crate) fn rounds(&self, rounds: u32) {
            self.0.record("rounds", rounds);
        }
    }

    /// A judged round, as an event in the current span.
    pub(crate) fn round(
        question: &'static str,
        yes: usize,
        no: usize,
        failed: usize,
        unread: usize,
        quorum: usize,
        verdict: &'static str,
    ) {
        tracing::debug!(
            target: "redmutex",
            question,
            yes,
            no,
            failed,
            unread,
            quorum,
            verdict,
            "round"
        );
    }
}

#[cfg(not(feature = "tracing"))]
mod on {
    /// Without the `tracing` feature: nothing.
    #[derive(Debug)]
    pub(crate) struct OpSpan;

    impl OpSpan {
        pub(crate) fn acquire(_resource: &str) -> Self {
            Self
        }

        pub(crate) fn extend(_resource: &str) -> Self {
            Self
        }

        pub(crate) fn release(_resource: &str) -> Self {
            Self
        }

        pub(crate) fn renew(_leases: usize) -> Self {
            Self
        }

        pub(crate) fn in_scope<R>(&self, f: impl FnOnce() -> R) -> R {
            f()
        }

        pub(crate) fn outcome(&self, _outcome: &'static str) {}

        pub(crate) fn rounds(&self, _rounds: u32) {}
    }

    pub(crate) fn round(
        _question: &'static str,
        _yes: usize,
        _no: usize,
        _failed: usize,
        _unread: usize,
        _quorum: usize,
        _verdict: &'static str,
    ) {
    }
}

pub(crate) use on::{OpSpan, round};
