//! Threat and network intelligence for Portcullis: filter lists (parsers, a compact domain
//! matcher with parent-domain walk, an IP/CIDR range matcher), geo-IP and ASN lookups, and
//! signed data bundles.
//!
//! Everything here is pure data handling: no I/O on the verdict path, no global state. The
//! helper loads data through this crate and swaps complete sets in without pausing lookups.

pub mod bundle;
pub mod geo;
pub mod ipset;
pub mod lists;
pub mod matcher;
