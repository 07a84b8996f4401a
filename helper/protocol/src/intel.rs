//! What the helper knows of an address (`portcullisctl intel lookup IP`): its country,
//! continent and network (ASN), from the geo-IP and ASN data in force.

use std::net::IpAddr;

use serde::{Deserialize, Serialize};

use crate::settings::ListCategory;

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

/// The answer to `ListsStatus`: every filter list the helper knows, in force or not.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "ts", derive(ts_rs::TS))]
pub struct ListsStatus {
    /// The lists, shipped ones first, then the local files of `[[intel.lists]]`.
    pub lists: Vec<ListState>,
    /// The categories in force for apps that set none of their own (`filter_lists`, global).
    pub enabled: Vec<ListCategory>,
}

/// One filter list.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "ts", derive(ts_rs::TS))]
pub struct ListState {
    /// Its id (`easylist`, or a local list's).
    pub id: String,
    /// Its name.
    pub name: String,
    /// What it blocks; `filter_lists` turns categories on and off.
    pub category: ListCategory,
    /// Shipped with Portcullis (and updated by signed bundles), or a local file.
    pub shipped: bool,
    /// The file it was read from.
    pub source: String,
    /// Domain entries in force.
    pub domains: u64,
    /// Address and network entries in force.
    pub networks: u64,
    /// Lines that are no entry of the list (comments, cosmetic rules, …).
    pub skipped: u64,
    /// Bad lines (left out; the rest of the list is in force).
    pub bad_lines: u64,
    /// Why it is not in force, when it is not.
    #[serde(default)]
    pub error: Option<String>,
}
