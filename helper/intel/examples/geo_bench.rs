//! Geo-IP and ASN lookups on the real shipped data, beside baselines measured in the same run:
//! the `maxminddb` crate's own lookup on the same country database, and a `BTreeMap` range
//! lookup for IPv4 ASNs (the obvious in-memory structure).
//!
//! ```sh
//! make intel-data
//! cargo run --release -p portcullis-intel --example geo_bench [-- DATA_DIR]
//! ```

#![expect(
    clippy::indexing_slicing,
    reason = "a benchmark indexing arrays it built itself, with indices below their lengths"
)]

use std::collections::BTreeMap;
use std::hint::black_box;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::path::PathBuf;
use std::time::{Duration, Instant};

use portcullis_intel::geo::{GeoDb, GeoFiles};

const ADDRESSES: usize = 200_000;
const ROUNDS: usize = 5;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let dir = std::env::args_os()
        .nth(1)
        .map_or_else(|| PathBuf::from("data/intel/dist"), PathBuf::from);
    let files = GeoFiles::in_dir(&dir);
    if !files.country_mmdb.exists() {
        return Err(format!("no geo data in {} (run `make intel-data`)", dir.display()).into());
    }

    let rss0 = status_kib("VmRSS");
    let started = Instant::now();
    let db = GeoDb::load(&files)?;
    let load = started.elapsed();
    let rss1 = status_kib("VmRSS");
    let peak = status_kib("VmHWM");
    let stats = db.stats();

    // Baselines: maxminddb's reader over the same file (kept in memory, as a reader would),
    // and a BTreeMap of IPv4 ASN ranges.
    let mmdb_bytes = std::fs::read(&files.country_mmdb)?;
    let mmdb_len = mmdb_bytes.len();
    let reader = maxminddb::Reader::from_source(mmdb_bytes)?;
    let mut btree: BTreeMap<u32, (u32, u32)> = BTreeMap::new();
    let csv = std::fs::read_to_string(files.asn_csv.first().ok_or("no ASN file")?)?;
    for line in csv.lines() {
        let mut f = line.splitn(4, ',');
        let (Some(a), Some(b), Some(n)) = (f.next(), f.next(), f.next()) else {
            continue;
        };
        let (Ok(a), Ok(b), Ok(n)) = (a.parse::<Ipv4Addr>(), b.parse::<Ipv4Addr>(), n.parse())
        else {
            continue;
        };
        btree.insert(u32::from(a), (u32::from(b), n));
    }
    drop(csv);

    let v4: Vec<IpAddr> = addresses(ADDRESSES, 1, |x| IpAddr::V4(Ipv4Addr::from(x as u32)));
    let v6: Vec<IpAddr> = addresses(ADDRESSES, 2, |x| {
        // Global unicast prefixes that carry most IPv6 allocations.
        let prefixes: [u128; 4] = [0x2001, 0x2400, 0x2600, 0x2a00];
        let top = prefixes[(x % 4) as usize] << 112;
        let low = (u128::from(x) << 64 | u128::from(x.rotate_left(17))) >> 24;
        IpAddr::V6(Ipv6Addr::from(top | low))
    });

    // Agreement check: our country equals maxminddb's on every sampled address.
    let mut disagree = 0usize;
    for ip in v4.iter().chain(&v6) {
        if db.country(*ip).map(|c| c.to_string()) != mmdb_country(&reader, *ip) {
            disagree += 1;
        }
    }

    type Arm<'a> = (&'static str, Box<dyn Fn(&[IpAddr]) -> usize + 'a>);
    let arms: Vec<Arm<'_>> = vec![
        (
            "maxminddb 0.32 country (baseline)",
            Box::new(|ips| {
                ips.iter()
                    .filter(|ip| black_box(mmdb_country(&reader, **ip)).is_some())
                    .count()
            }),
        ),
        (
            "BTreeMap IPv4 ASN (baseline)",
            Box::new(|ips| {
                ips.iter()
                    .filter(|ip| match ip {
                        IpAddr::V4(a) => {
                            let a = u32::from(*a);
                            black_box(
                                btree
                                    .range(..=a)
                                    .next_back()
                                    .filter(|(_, (end, _))| *end >= a),
                            )
                            .is_some()
                        }
                        IpAddr::V6(_) => false,
                    })
                    .count()
            }),
        ),
        (
            "Portcullis country",
            Box::new(|ips| {
                ips.iter()
                    .filter(|ip| black_box(db.country(**ip)).is_some())
                    .count()
            }),
        ),
        (
            "Portcullis ASN",
            Box::new(|ips| {
                ips.iter()
                    .filter(|ip| black_box(db.asn(**ip)).is_some())
                    .count()
            }),
        ),
        (
            "Portcullis country + ASN",
            Box::new(|ips| {
                ips.iter()
                    .filter(|ip| {
                        let g = black_box(db.lookup(**ip));
                        g.country.is_some() || g.asn.is_some()
                    })
                    .count()
            }),
        ),
    ];

    println!(
        "Geo-IP and ASN lookups ({ADDRESSES} random addresses per family × {ROUNDS} interleaved rounds, medians)"
    );
    println!(
        "data: {} ({} KiB mmdb); load {:.0} ms; tables {:.1} MiB heap; RSS +{:.1} MiB after load (peak {:.1} MiB during)",
        dir.display(),
        mmdb_len / 1024,
        load.as_secs_f64() * 1e3,
        stats.heap_bytes as f64 / 1048576.0,
        rss1.saturating_sub(rss0) as f64 / 1024.0,
        peak as f64 / 1024.0,
    );
    println!(
        "tables: {} + {} country boundaries (v4 + v6), {} + {} ASN boundaries, {} ASNs, {} organisations, {} overlapping row(s) resolved",
        stats.country_v4,
        stats.country_v6,
        stats.asn_v4,
        stats.asn_v6,
        stats.asns,
        stats.orgs,
        stats.overlaps
    );
    println!(
        "country agreement with maxminddb on the sample: {} of {} differ",
        disagree,
        v4.len() + v6.len()
    );
    println!(
        "  {:<36} {:>14} {:>14} {:>10}",
        "arm", "IPv4 lookups/s", "IPv6 lookups/s", "ns/lookup"
    );
    let mut results: Vec<(Vec<Duration>, Vec<Duration>)> =
        vec![(Vec::new(), Vec::new()); arms.len()];
    for round in 0..ROUNDS {
        for k in 0..arms.len() {
            let i = (k + round) % arms.len();
            let (_, f) = &arms[i];
            let t = Instant::now();
            black_box(f(black_box(&v4)));
            results[i].0.push(t.elapsed());
            let t = Instant::now();
            black_box(f(black_box(&v6)));
            results[i].1.push(t.elapsed());
        }
    }
    for ((name, _), (t4, t6)) in arms.iter().zip(results) {
        let (m4, m6) = (median(t4), median(t6));
        let per4 = m4.as_secs_f64() / ADDRESSES as f64;
        let per6 = m6.as_secs_f64() / ADDRESSES as f64;
        let v6rate = if name.contains("IPv4") {
            "—".to_owned()
        } else {
            rate(per6)
        };
        println!(
            "  {:<36} {:>14} {:>14} {:>10.0}",
            name,
            rate(per4),
            v6rate,
            per4 * 1e9
        );
    }
    Ok(())
}

fn mmdb_country(reader: &maxminddb::Reader<Vec<u8>>, ip: IpAddr) -> Option<String> {
    let found = reader.lookup(ip).ok()?;
    let code: Option<&str> = found
        .decode_path(&[maxminddb::PathElement::Key("country_code")])
        .ok()?;
    code.filter(|c| *c != "ZZ")
        .map(str::to_owned)
        .filter(|_| is_routed(ip))
}

/// The same "globally routed" notion the geo module applies, for a fair agreement check.
fn is_routed(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(a) => {
            let [x, y, z, _] = a.octets();
            !(x == 0
                || x == 10
                || x == 127
                || x >= 224
                || (x == 100 && y & 0xc0 == 64)
                || (x == 169 && y == 254)
                || (x == 172 && y & 0xf0 == 16)
                || (x == 192 && y == 168)
                || (x == 192 && y == 0 && (z == 0 || z == 2))
                || (x == 198 && y & 0xfe == 18)
                || (x == 198 && y == 51 && z == 100)
                || (x == 203 && y == 0 && z == 113))
        }
        IpAddr::V6(_) => true,
    }
}

fn addresses(n: usize, seed: u64, f: impl Fn(u64) -> IpAddr) -> Vec<IpAddr> {
    let mut x = seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1;
    (0..n)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            f(x)
        })
        .collect()
}

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v.get(v.len() / 2).copied().unwrap_or_default()
}

fn rate(seconds_per_lookup: f64) -> String {
    let r = 1.0 / seconds_per_lookup;
    if r >= 1e6 {
        format!("{:.1} M", r / 1e6)
    } else {
        format!("{:.0} k", r / 1e3)
    }
}

fn status_kib(field: &str) -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with(field))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|v| v.parse().ok())
        })
        .unwrap_or(0)
}
