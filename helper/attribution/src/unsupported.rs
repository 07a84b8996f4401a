//! Placeholder for platforms without an attribution backend yet (Windows' extended TCP/UDP
//! tables come later). It keeps the crate compiling there: no attributor can be made, so no
//! lookup can pretend to have found anything.

use std::path::PathBuf;

use crate::{Attribution, AttributionConfig, AttributionError, AttributionStats, EbpfStatus, Flow};

/// Has no values: [`Attributor::new`] always fails here.
#[derive(Debug)]
pub(crate) enum Attributor {}

impl Attributor {
    pub(crate) fn new(_config: AttributionConfig) -> Result<Attributor, AttributionError> {
        Err(AttributionError::Unsupported {
            what: "socket attribution",
        })
    }

    pub(crate) fn attribute(&mut self, _flow: &Flow) -> Attribution {
        match *self {}
    }

    pub(crate) fn stats(&self) -> AttributionStats {
        match *self {}
    }

    pub(crate) fn ebpf_status(&self) -> Option<EbpfStatus> {
        match *self {}
    }
}

/// No cgroup2 here.
pub(crate) fn cgroup2_mount() -> Option<PathBuf> {
    None
}
