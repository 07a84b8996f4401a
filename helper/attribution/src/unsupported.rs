//! Placeholder for platforms without an attribution backend yet (Windows' extended TCP/UDP
//! tables come later). It keeps the crate compiling there: no attributor can be made, so no
//! lookup can pretend to have found anything.

use std::path::PathBuf;
use std::time::Duration;

use crate::{
    Attributed, AttributionConfig, AttributionError, AttributionStats, EbpfStatus, FastDecision,
    FastEvent, FastMarks, Flow,
};

/// Has no values: [`Attributor::new`] always fails here.
#[derive(Debug)]
pub(crate) enum Attributor {}

impl Attributor {
    pub(crate) fn new(_config: AttributionConfig) -> Result<Attributor, AttributionError> {
        Err(AttributionError::Unsupported {
            what: "socket attribution",
        })
    }

    pub(crate) fn attribute(&mut self, _flow: &Flow) -> Attributed {
        match *self {}
    }

    pub(crate) fn fast_path(&mut self) -> Option<FastPath> {
        match *self {}
    }

    pub(crate) fn traffic(&mut self) -> Option<TrafficEvents> {
        match *self {}
    }

    pub(crate) fn stats(&self) -> AttributionStats {
        match *self {}
    }

    pub(crate) fn ebpf_status(&self) -> Option<EbpfStatus> {
        match *self {}
    }
}

/// Has no values: no attributor, so no fast path.
#[derive(Debug, Clone)]
pub(crate) enum FastPath {}

impl FastPath {
    pub(crate) fn configure(&self, _marks: Option<FastMarks>, _gen: u64) -> std::io::Result<()> {
        match *self {}
    }

    pub(crate) fn set_generation(&self, _generation: u64) -> std::io::Result<()> {
        match *self {}
    }

    pub(crate) fn remember(&self, _decision: &FastDecision) -> std::io::Result<()> {
        match *self {}
    }

    pub(crate) fn take_events(&self) -> Option<FastEvents> {
        match *self {}
    }
}

/// Has no values.
#[derive(Debug)]
pub(crate) enum FastEvents {}

impl FastEvents {
    pub(crate) fn next(&mut self, _timeout: Duration) -> Option<FastEvent> {
        match *self {}
    }
}

/// Has no values.
#[derive(Debug)]
pub(crate) enum TrafficEvents {}

impl TrafficEvents {
    pub(crate) fn next(&mut self, _timeout: Duration) -> Option<crate::TrafficEvent> {
        match *self {}
    }
}

/// Has no values.
#[derive(Debug)]
pub(crate) enum TcpSampler {}

impl TcpSampler {
    pub(crate) fn new() -> std::io::Result<TcpSampler> {
        Err(std::io::Error::new(
            std::io::ErrorKind::Unsupported,
            "TCP sampling is not built for this platform yet",
        ))
    }

    pub(crate) fn sample(&mut self, _max: usize) -> std::io::Result<Vec<crate::TcpSample>> {
        match *self {}
    }
}

/// No cgroup2 here.
pub(crate) fn cgroup2_mount() -> Option<PathBuf> {
    None
}
