//! What the helper knows of an address (`portcullisctl intel lookup IP`): its country,
//! continent and network (ASN), from the geo-IP and ASN data in force.

use std::net::IpAddr;

use serde::{Deserialize, Serialize};

/// The answer to `IntelLookup`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "ts", derive(ts_rs::TS))]
pub struct IntelInfo {
    /// The address asked about.
    #[cfg_attr(feature = "ts", ts(type = "string"))]
    pub ip: IpAddr,
    /// Whether geo-IP data is loaded at all (without it, everything below is unknown).
    pub geo_loaded: bool,
    /// ISO 3166-1 alpha-2 country code, when known (never for private or reserved addresses).
    #[serde(default)]
    pub country: Option<String>,
    /// The continent's two-letter code (`EU`, `NA`, …), when the country is known.
    #[serde(default)]
    pub continent: Option<String>,
    /// The continent's name.
    #[serde(default)]
    pub continent_name: Option<String>,
    /// The autonomous system that announces the address, when known.
    #[serde(default)]
    pub asn: Option<u32>,
    /// The AS's organisation as the data names it (may be empty).
    #[serde(default)]
    pub as_org: Option<String>,
}
