//! Spans and events of the operations: a span per acquisition, extension, renewal batch and
//! release, and an event per judged round. Empty for now: the compiler removes them.

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
        _quorum: usize,
        _verdict: &'static str,
    ) {
    }
}

pub(crate) use on::{OpSpan, round};
