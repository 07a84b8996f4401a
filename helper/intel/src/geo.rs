//! Geo-IP and ASN: which country and which autonomous system (with its organisation) an
//! address belongs to, for the monitor, the history and the `- DE`, `- AS1234` and continent
//! rules.
//!
//! - [`GeoDb`] is an immutable, `Send + Sync` value: the helper loads a new one off the verdict
//!   path ([`GeoDb::load`]) and swaps it in whole (e.g. behind an `Arc`), so lookups never wait.
//! - Lookups ([`GeoDb::lookup`], [`GeoDb::country`], [`GeoDb::asn`]) allocate nothing and take
//!   O(log n): sorted range tables (IPv4 as `u32`, IPv6 as `u128`) with a 16-bit first-level
//!   index, values as small indices (a country is two bytes; an ASN is an index into a table
//!   of `(number, organisation)` with deduplicated names).
//! - IPv4-mapped (`::ffff:a.b.c.d`) and NAT64 (`64:ff9b::a.b.c.d`) addresses are looked up as
//!   the IPv4 address they carry. Addresses that are not globally routed (private, loopback,
//!   link-local, shared, documentation, multicast, …) have no country or ASN.
//! - [`GeoDbBuilder`] builds a database from the shipped files (DB-IP's country MaxMind DB, the
//!   ASN CSVs; see `data/intel/SOURCES`) or from ranges given in code (tests, fixtures).
//!
//! What it must not do: read files or allocate on a lookup, panic on bad input, or log
//! addresses above DEBUG. Bad files are errors that name the file and the line or network.

mod continent;
mod csv;
mod mmdb;
mod table;

use std::collections::HashMap;
use std::fs::File;
use std::io::{self, BufReader};
use std::net::{IpAddr, Ipv4Addr};
use std::path::{Path, PathBuf};

pub use continent::{Continent, Country};
use table::{RangeRows, RangeTable, Slot};

/// The attribution the shipped geo data requires wherever its results are shown (CC BY 4.0);
/// the About view shows it with `data/intel/ATTRIBUTION.md`.
pub const ATTRIBUTION: &str = "IP Geolocation by DB-IP (https://db-ip.com). ASN data by \
    RouteViews (https://www.routeviews.org), the NRO (https://www.nro.net) and DB-IP, compiled \
    by ip-location-db (https://github.com/sapics/ip-location-db). Licensed CC BY 4.0.";

/// Loading geo data failed. Nothing was changed: the caller keeps its current [`GeoDb`].
#[derive(Debug, thiserror::Error)]
pub enum GeoError {
    /// A data file could not be opened or read.
    #[error("cannot read {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: io::Error,
    },
    /// Reading a stream failed part-way.
    #[error("{file}: read failed: {source}")]
    ReadStream {
        /// The file or fixture name.
        file: String,
        /// Why.
        #[source]
        source: io::Error,
    },
    /// The country database is not a valid MaxMind DB file (truncated, corrupt, not MMDB).
    #[error("{file}: not a valid MaxMind DB file: {source}")]
    Mmdb {
        /// The file or fixture name.
        file: String,
        /// What the MMDB reader found.
        #[source]
        source: maxminddb::MaxMindDbError,
    },
    /// A network of the country database has an unusable record.
    #[error("{file}: network {network}: {detail}")]
    MmdbRecord {
        /// The file or fixture name.
        file: String,
        /// The network, as CIDR.
        network: String,
        /// What is wrong.
        detail: String,
    },
    /// A line of an ASN CSV file is malformed.
    #[error("{file}: line {line}: {detail}")]
    Csv {
        /// The file or fixture name.
        file: String,
        /// The line, counting from 1.
        line: u64,
        /// What is wrong.
        detail: String,
    },
    /// A range given in code is unusable.
    #[error("range {first} - {last}: {problem}")]
    Range {
        /// Its first address.
        first: IpAddr,
        /// Its last address.
        last: IpAddr,
        /// What is wrong.
        problem: &'static str,
    },
    /// More ranges than the tables can index (over 4 billion; a bug or a hostile file).
    #[error("too many {what} ranges")]
    TooLarge {
        /// Which table.
        what: &'static str,
    },
}

/// An autonomous system: its number and the organisation that holds it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Asn<'a> {
    /// The AS number, e.g. 13335.
    pub number: u32,
    /// The organisation's name as the data gives it, e.g. "Cloudflare, Inc."; may be empty.
    pub org: &'a str,
}

/// Everything known about one address.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Geo<'a> {
    /// The country the address is registered or located in.
    pub country: Option<Country>,
    /// The autonomous system that announces it.
    pub asn: Option<Asn<'a>>,
}

impl Geo<'_> {
    /// The country's continent, for continent rules.
    pub fn continent(&self) -> Option<Continent> {
        self.country.and_then(Country::continent)
    }
}

/// Sizes of a loaded database, for logs, the About view and benchmarks.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct GeoStats {
    /// Boundaries (ranges with a country plus gap markers) in the IPv4 country table.
    pub country_v4: usize,
    /// The same for IPv6.
    pub country_v6: usize,
    /// Boundaries in the IPv4 ASN table.
    pub asn_v4: usize,
    /// Boundaries in the IPv6 ASN table.
    pub asn_v6: usize,
    /// Distinct `(AS number, organisation)` pairs.
    pub asns: usize,
    /// Distinct organisation names.
    pub orgs: usize,
    /// Input rows that overlapped an earlier row (the later-starting one wins).
    pub overlaps: usize,
    /// Heap bytes the database holds.
    pub heap_bytes: usize,
}

/// The shipped files, as `scripts/fetch-intel-data` installs them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GeoFiles {
    /// DB-IP's country database (MaxMind DB, IPv4 and IPv6).
    pub country_mmdb: PathBuf,
    /// ASN CSV files (`first,last,number,organisation`).
    pub asn_csv: Vec<PathBuf>,
}

impl GeoFiles {
    /// The files under a data directory laid out like `data/intel/dist/`.
    pub fn in_dir(dir: &Path) -> Self {
        let geo = dir.join("geo");
        Self {
            country_mmdb: geo.join("dbip-country.mmdb"),
            asn_csv: vec![geo.join("asn-ipv4.csv"), geo.join("asn-ipv6.csv")],
        }
    }
}

/// The geo database in force, swapped whole (signed updates) while lookups go on: readers
/// load it without locks and see the old database or the new one, never a mix.
#[derive(Debug)]
pub struct LiveGeo {
    current: arc_swap::ArcSwap<GeoDb>,
}

impl LiveGeo {
    /// Starts with `db`.
    #[must_use]
    pub fn new(db: GeoDb) -> Self {
        Self {
            current: arc_swap::ArcSwap::from_pointee(db),
        }
    }

    /// The current database, for one or more lookups; hold it briefly.
    #[must_use]
    pub fn load(&self) -> arc_swap::Guard<std::sync::Arc<GeoDb>> {
        self.current.load()
    }

    /// Replaces the database; lookups already running finish on the old one.
    pub fn swap(&self, db: GeoDb) -> std::sync::Arc<GeoDb> {
        self.current.swap(std::sync::Arc::new(db))
    }
}

impl Default for LiveGeo {
    fn default() -> Self {
        Self::new(GeoDb::empty())
    }
}

/// Country and ASN tables, immutable once built. See the module docs.
pub struct GeoDb {
    country_v4: RangeTable<u32, u16>,
    country_v6: RangeTable<u128, u16>,
    asn_v4: RangeTable<u32, u32>,
    asn_v6: RangeTable<u128, u32>,
    /// `(AS number, organisation start, organisation end)`, indexed by the ASN tables'
    /// values; the organisation is `org_text[start..end]`. One hop from the range table to
    /// everything an [`Asn`] holds.
    asns: Box<[(u32, u32, u32)]>,
    /// Every distinct organisation name, back to back.
    org_text: Box<str>,
    stats: GeoStats,
}

impl std::fmt::Debug for GeoDb {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GeoDb").field("stats", &self.stats).finish()
    }
}

impl Default for GeoDb {
    fn default() -> Self {
        Self::empty()
    }
}

impl GeoDb {
    /// A database that knows nothing: every lookup is empty. What the helper runs with until
    /// (or if never) data is loaded.
    pub fn empty() -> Self {
        Self {
            country_v4: RangeTable::empty(),
            country_v6: RangeTable::empty(),
            asn_v4: RangeTable::empty(),
            asn_v6: RangeTable::empty(),
            asns: Box::new([]),
            org_text: "".into(),
            stats: GeoStats::default(),
        }
    }

    /// Loads the shipped files. Takes up to a second for the real data (see
    /// docs/performance.md): call it off the verdict path and swap the result in.
    pub fn load(files: &GeoFiles) -> Result<Self, GeoError> {
        fn read(path: &Path) -> impl FnOnce(io::Error) -> GeoError + '_ {
            move |source| GeoError::Read {
                path: path.to_owned(),
                source,
            }
        }
        let mut builder = GeoDbBuilder::new();
        let bytes = std::fs::read(&files.country_mmdb).map_err(read(&files.country_mmdb))?;
        builder.country_mmdb(&bytes, &files.country_mmdb.display().to_string())?;
        drop(bytes);
        for path in &files.asn_csv {
            let file = File::open(path).map_err(read(path))?;
            builder.asn_csv(
                BufReader::with_capacity(1 << 16, file),
                &path.display().to_string(),
            )?;
        }
        builder.build()
    }

    /// Country and ASN of `ip`. No allocation.
    #[inline]
    pub fn lookup(&self, ip: IpAddr) -> Geo<'_> {
        match routed(ip) {
            Some(addr) => Geo {
                country: self.country_of(addr),
                asn: self.asn_of(addr),
            },
            None => Geo::default(),
        }
    }

    /// The country of `ip`. No allocation.
    #[inline]
    pub fn country(&self, ip: IpAddr) -> Option<Country> {
        self.country_of(routed(ip)?)
    }

    /// The autonomous system of `ip`. No allocation.
    #[inline]
    pub fn asn(&self, ip: IpAddr) -> Option<Asn<'_>> {
        self.asn_of(routed(ip)?)
    }

    /// Sizes of the tables.
    pub fn stats(&self) -> GeoStats {
        self.stats
    }

    fn country_of(&self, addr: Addr) -> Option<Country> {
        let slot = match addr {
            Addr::V4(a) => self.country_v4.get(a),
            Addr::V6(a) => self.country_v6.get(a),
        }?;
        Some(Country::from_slot(slot))
    }

    fn asn_of(&self, addr: Addr) -> Option<Asn<'_>> {
        let id = match addr {
            Addr::V4(a) => self.asn_v4.get(a),
            Addr::V6(a) => self.asn_v6.get(a),
        }?;
        let (number, start, end) = *self.asns.get(id as usize)?;
        let org = self.org_text.get(start as usize..end as usize)?;
        Some(Asn { number, org })
    }
}

/// An address as a table key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Addr {
    V4(u32),
    V6(u128),
}

/// The table key of a globally routed address, IPv4 inside IPv6 unwrapped; `None` for
/// addresses that no geo database can place.
#[inline]
fn routed(ip: IpAddr) -> Option<Addr> {
    match ip {
        IpAddr::V4(v4) => routed_v4(v4),
        IpAddr::V6(v6) => {
            let bits = u128::from(v6);
            if let Some(v4) = v6.to_ipv4_mapped() {
                return routed_v4(v4);
            }
            // NAT64 well-known prefix 64:ff9b::/96 (RFC 6052): the IPv4 host it reaches.
            if bits >> 32 == 0x0064_ff9b_0000_0000_0000_0000 {
                return routed_v4(Ipv4Addr::from(bits as u32));
            }
            let top16 = (bits >> 112) as u16;
            let local = bits >> 32 == 0                      // ::/96, unspecified, loopback, v4-compatible
                || top16 & 0xfe00 == 0xfc00                  // fc00::/7 unique local
                || top16 & 0xffc0 == 0xfe80                  // fe80::/10 link-local
                || top16 & 0xffc0 == 0xfec0                  // fec0::/10 old site-local
                || top16 & 0xff00 == 0xff00                  // multicast
                || bits >> 96 == 0x2001_0db8; // documentation
            (!local).then_some(Addr::V6(bits))
        }
    }
}

#[inline]
fn routed_v4(ip: Ipv4Addr) -> Option<Addr> {
    let [a, b, c, _] = ip.octets();
    let local = a == 0                                       // "this network"
        || a == 10                                           // private
        || a == 127                                          // loopback
        || a >= 224                                          // multicast, reserved, broadcast
        || (a == 100 && b & 0xc0 == 64)                      // 100.64/10 shared (CGNAT)
        || (a == 169 && b == 254)                            // link-local
        || (a == 172 && b & 0xf0 == 16)                      // private
        || (a == 192 && b == 168)                            // private
        || (a == 192 && b == 0 && c == 0)                    // IETF protocol assignments
        || (a == 192 && b == 0 && c == 2)                    // documentation
        || (a == 198 && b & 0xfe == 18)                      // benchmarking
        || (a == 198 && b == 51 && c == 100)                 // documentation
        || (a == 203 && b == 0 && c == 113); // documentation
    (!local).then_some(Addr::V4(u32::from(ip)))
}

/// A range given in code or read from a file, as table keys.
enum Span {
    V4(u32, u32),
    V6(u128, u128),
}

/// Checks a range and maps IPv4-mapped IPv6 ranges to IPv4.
fn span(first: IpAddr, last: IpAddr) -> Result<Span, GeoError> {
    let problem = |problem| GeoError::Range {
        first,
        last,
        problem,
    };
    let span = match (first, last) {
        (IpAddr::V4(a), IpAddr::V4(b)) => Span::V4(a.into(), b.into()),
        (IpAddr::V6(a), IpAddr::V6(b)) => match (a.to_ipv4_mapped(), b.to_ipv4_mapped()) {
            (Some(a), Some(b)) => Span::V4(a.into(), b.into()),
            (None, None) => Span::V6(a.into(), b.into()),
            _ => return Err(problem("crosses the edge of ::ffff:0:0/96")),
        },
        _ => return Err(problem("mixes IPv4 and IPv6")),
    };
    match span {
        Span::V4(a, b) if a > b => Err(problem("first address after last")),
        Span::V6(a, b) if a > b => Err(problem("first address after last")),
        span => Ok(span),
    }
}

/// Collects ranges, then [`build`](GeoDbBuilder::build)s a [`GeoDb`]. Rows may come in any
/// order; where rows overlap, the one that starts later wins from its start.
pub struct GeoDbBuilder {
    country_v4: RangeRows<u32, u16>,
    country_v6: RangeRows<u128, u16>,
    asn_v4: RangeRows<u32, u32>,
    asn_v6: RangeRows<u128, u32>,
    asns: Vec<(u32, u32)>,
    asn_ids: HashMap<(u32, u32), u32>,
    org_text: String,
    org_spans: Vec<(u32, u32)>,
    org_ids: HashMap<Box<str>, u32>,
}

impl std::fmt::Debug for GeoDbBuilder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GeoDbBuilder")
            .field("asns", &self.asns.len())
            .field("orgs", &self.org_spans.len())
            .finish_non_exhaustive()
    }
}

impl Default for GeoDbBuilder {
    fn default() -> Self {
        Self::new()
    }
}

impl GeoDbBuilder {
    /// An empty builder.
    pub fn new() -> Self {
        Self {
            country_v4: RangeRows::new(),
            country_v6: RangeRows::new(),
            asn_v4: RangeRows::new(),
            asn_v6: RangeRows::new(),
            asns: Vec::new(),
            asn_ids: HashMap::new(),
            org_text: String::new(),
            org_spans: Vec::new(),
            org_ids: HashMap::new(),
        }
    }

    /// Places `first ..= last` in `country`. Both ends must be the same family;
    /// `::ffff:a.b.c.d` ranges count as IPv4.
    pub fn country_range(
        &mut self,
        first: IpAddr,
        last: IpAddr,
        country: Country,
    ) -> Result<(), GeoError> {
        match span(first, last)? {
            Span::V4(a, b) => self.country_v4.push(a, b, country.to_slot()),
            Span::V6(a, b) => self.country_v6.push(a, b, country.to_slot()),
        }
        Ok(())
    }

    /// Places `first ..= last` in AS `number`, held by `org`.
    pub fn asn_range(
        &mut self,
        first: IpAddr,
        last: IpAddr,
        number: u32,
        org: &str,
    ) -> Result<(), GeoError> {
        let span = span(first, last)?;
        let id = self
            .asn_id(number, org)
            .ok_or(GeoError::TooLarge { what: "ASN" })?;
        match span {
            Span::V4(a, b) => self.asn_v4.push(a, b, id),
            Span::V6(a, b) => self.asn_v6.push(a, b, id),
        }
        Ok(())
    }

    /// The id of `(number, org)`, added if new; `None` once ids or text run out of `u32`.
    fn asn_id(&mut self, number: u32, org: &str) -> Option<u32> {
        let org_id = match self.org_ids.get(org) {
            Some(id) => *id,
            None => {
                let id = u32::try_from(self.org_spans.len()).ok()?;
                let start = u32::try_from(self.org_text.len()).ok()?;
                self.org_text.push_str(org);
                let end = u32::try_from(self.org_text.len()).ok()?;
                self.org_spans.push((start, end));
                self.org_ids.insert(org.into(), id);
                id
            }
        };
        if let Some(id) = self.asn_ids.get(&(number, org_id)) {
            return Some(*id);
        }
        let id = u32::try_from(self.asns.len())
            .ok()
            .filter(|id| *id != u32::NONE)?;
        self.asns.push((number, org_id));
        self.asn_ids.insert((number, org_id), id);
        Some(id)
    }

    /// Sorts and packs the tables.
    pub fn build(self) -> Result<GeoDb, GeoError> {
        let too_large = |what| move |_| GeoError::TooLarge { what };
        let (country_v4, c4) = self.country_v4.build().map_err(too_large("IPv4 country"))?;
        let (country_v6, c6) = self.country_v6.build().map_err(too_large("IPv6 country"))?;
        let (asn_v4, a4) = self.asn_v4.build().map_err(too_large("IPv4 ASN"))?;
        let (asn_v6, a6) = self.asn_v6.build().map_err(too_large("IPv6 ASN"))?;
        let orgs = self.org_spans.len();
        let asns: Box<[(u32, u32, u32)]> = self
            .asns
            .iter()
            .map(|&(number, org)| {
                let (start, end) = self.org_spans.get(org as usize).copied().unwrap_or((0, 0));
                (number, start, end)
            })
            .collect();
        let org_text = self.org_text.into_boxed_str();
        let heap_bytes = country_v4.heap_bytes()
            + country_v6.heap_bytes()
            + asn_v4.heap_bytes()
            + asn_v6.heap_bytes()
            + size_of_val(&*asns)
            + org_text.len();
        let stats = GeoStats {
            country_v4: country_v4.boundaries(),
            country_v6: country_v6.boundaries(),
            asn_v4: asn_v4.boundaries(),
            asn_v6: asn_v6.boundaries(),
            asns: asns.len(),
            orgs,
            overlaps: c4.overlaps + c6.overlaps + a4.overlaps + a6.overlaps,
            heap_bytes,
        };
        Ok(GeoDb {
            country_v4,
            country_v6,
            asn_v4,
            asn_v6,
            asns,
            org_text,
            stats,
        })
    }
}

#[cfg(test)]
mod tests;
