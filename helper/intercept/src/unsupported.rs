//! Platforms without an interception backend yet (Windows gets WinDivert later). It keeps the
//! crate compiling there and fails closed: nothing can be installed or opened, so every entry
//! point returns [`InterceptError::Unsupported`]. The handle types are uninhabited: no value of
//! them can exist, so their methods need no bodies. It must not pretend to intercept anything.

use std::time::Instant;

use portcullis_protocol::{Direction, Verdict};

use crate::error::InterceptError;
use crate::marks::Marks;
use crate::packet::{PacketError, PacketInfo};
use crate::rules::{Backend, Removed};
use crate::stats::QueueStats;
use crate::{ForgetFilter, InterceptConfig};

#[derive(Debug)]
pub(crate) enum InstalledRules {}

impl InstalledRules {
    pub(crate) fn install(_config: &InterceptConfig) -> Result<InstalledRules, InterceptError> {
        Err(InterceptError::Unsupported)
    }

    pub(crate) fn remove(&mut self) -> Result<Removed, InterceptError> {
        match *self {}
    }

    pub(crate) fn is_removed(&self) -> bool {
        match *self {}
    }

    pub(crate) fn set_fail_open(&self, _config: &InterceptConfig) -> Result<(), InterceptError> {
        match *self {}
    }

    pub(crate) fn backend(&self) -> Backend {
        match *self {}
    }
}

pub(crate) fn recover() -> Result<Removed, InterceptError> {
    Err(InterceptError::Unsupported)
}

#[derive(Debug)]
pub(crate) enum Queue {}

impl Queue {
    pub(crate) fn open(_config: &InterceptConfig) -> Result<Queue, InterceptError> {
        Err(InterceptError::Unsupported)
    }

    pub(crate) fn queue_num(&self) -> u16 {
        match *self {}
    }

    pub(crate) fn marks(&self) -> Marks {
        match *self {}
    }

    pub(crate) fn stopper(&self) -> QueueStopper {
        match *self {}
    }

    pub(crate) fn recv_until(
        &mut self,
        _deadline: Option<Instant>,
    ) -> Result<Option<Pending>, InterceptError> {
        match *self {}
    }

    pub(crate) fn verdict(&mut self, _p: Pending, _v: Verdict) -> Result<(), InterceptError> {
        match *self {}
    }
}

#[derive(Debug, Clone)]
pub(crate) enum QueueStopper {}

impl QueueStopper {
    pub(crate) fn stop(&self) {
        match *self {}
    }

    pub(crate) fn set_fail_open(&self, _fail_open: bool) {
        match *self {}
    }
}

#[derive(Debug)]
pub(crate) enum Pending {}

impl Pending {
    pub(crate) fn packet(&self) -> Result<PacketInfo, PacketError> {
        match *self {}
    }

    pub(crate) fn mark(&self) -> u32 {
        match *self {}
    }

    pub(crate) fn direction(&self) -> Option<Direction> {
        match *self {}
    }

    pub(crate) fn uid(&self) -> Option<u32> {
        match *self {}
    }

    pub(crate) fn gid(&self) -> Option<u32> {
        match *self {}
    }

    pub(crate) fn packet_id(&self) -> u32 {
        match *self {}
    }
}

pub(crate) fn queue_stats(_queue_num: u16) -> Option<QueueStats> {
    None
}

pub(crate) fn forget_connections(
    _marks: &Marks,
    _filter: &ForgetFilter,
) -> Result<usize, InterceptError> {
    Err(InterceptError::Unsupported)
}

pub(crate) fn set_accounting(_on: bool) -> Result<Option<bool>, InterceptError> {
    Ok(None)
}

pub(crate) fn allowed_udp_flows(
    _marks: &Marks,
) -> Result<Vec<crate::AllowedConnection>, InterceptError> {
    Err(InterceptError::Unsupported)
}

pub(crate) fn allowed_connections(
    _marks: &Marks,
) -> Result<Vec<crate::AllowedConnection>, InterceptError> {
    Err(InterceptError::Unsupported)
}

pub(crate) fn original_destination(
    _protocol: portcullis_protocol::Protocol,
    _peer: std::net::SocketAddr,
    _reached: std::net::SocketAddr,
) -> Result<Option<std::net::SocketAddr>, InterceptError> {
    Err(InterceptError::Unsupported)
}
