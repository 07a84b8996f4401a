//! Reads DB-IP's country database in MaxMind DB form (`dbip-country.mmdb`) once, at load
//! time, with the `maxminddb` crate, and turns every network into a range of our own tables.
//! Lookups never touch the file afterwards. A truncated or corrupt file is an error naming
//! the file; nothing here panics on any input.

use std::collections::HashMap;
use std::net::IpAddr;

use maxminddb::{PathElement, Reader, WithinOptions};

use super::{Country, GeoDbBuilder, GeoError};

/// The record field that holds the country code in ip-location-db's country databases.
const FIELD: &str = "country_code";

impl GeoDbBuilder {
    /// Adds every network of a MaxMind DB country database held in `bytes`; `file` names it
    /// in errors. Returns the number of networks read. Networks whose code is `ZZ` (unknown)
    /// or that carry no record are left without a country.
    pub fn country_mmdb(&mut self, bytes: &[u8], file: &str) -> Result<usize, GeoError> {
        let mmdb = |source| GeoError::Mmdb {
            file: file.to_owned(),
            source,
        };
        let reader = Reader::from_source(bytes).map_err(mmdb)?;
        // Many networks share one record: decode each record once.
        let mut decoded: HashMap<usize, Option<Country>> = HashMap::new();
        let mut networks = 0usize;
        for item in reader.networks(WithinOptions::default()).map_err(mmdb)? {
            let found = item.map_err(mmdb)?;
            let network = found.network().map_err(mmdb)?;
            let Some(offset) = found.offset() else {
                continue;
            };
            let country = match decoded.get(&offset) {
                Some(country) => *country,
                None => {
                    let code: Option<&str> = found
                        .decode_path(&[PathElement::Key(FIELD)])
                        .map_err(mmdb)?;
                    let country = match code {
                        None | Some("ZZ") => None,
                        Some(code) => {
                            Some(Country::from_letters(code.as_bytes()).ok_or_else(|| {
                                GeoError::MmdbRecord {
                                    file: file.to_owned(),
                                    network: network.to_string(),
                                    detail: format!("{FIELD} {code:?} is not a two-letter code"),
                                }
                            })?)
                        }
                    };
                    decoded.insert(offset, country);
                    country
                }
            };
            let Some(country) = country else { continue };
            let (first, last) = match (network.network(), network.prefix()) {
                (IpAddr::V4(addr), prefix) => {
                    let (a, b) = span(u128::from(u32::from(addr)), prefix, 32);
                    (ip4(a), ip4(b))
                }
                (IpAddr::V6(addr), prefix) => {
                    let (a, b) = span(u128::from(addr), prefix, 128);
                    (IpAddr::V6(a.into()), IpAddr::V6(b.into()))
                }
            };
            self.country_range(first, last, country)
                .map_err(|e| GeoError::MmdbRecord {
                    file: file.to_owned(),
                    network: network.to_string(),
                    detail: e.to_string(),
                })?;
            networks += 1;
        }
        Ok(networks)
    }
}

/// First and last address of `base/prefix` in a `bits`-wide space.
fn span(base: u128, prefix: u8, bits: u32) -> (u128, u128) {
    let host_bits = bits.saturating_sub(u32::from(prefix));
    let host_mask = if host_bits >= 128 {
        u128::MAX
    } else {
        (1u128 << host_bits) - 1
    };
    (base & !host_mask, base | host_mask)
}

fn ip4(value: u128) -> IpAddr {
    IpAddr::V4(u32::try_from(value).unwrap_or(u32::MAX).into())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spans() {
        assert_eq!(span(0x0a00_0000, 8, 32), (0x0a00_0000, 0x0aff_ffff));
        assert_eq!(span(0, 0, 128), (0, u128::MAX));
        assert_eq!(span(5, 32, 32), (5, 5));
    }
}
