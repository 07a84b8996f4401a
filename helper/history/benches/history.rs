//! History benchmarks, each beside a same-run baseline. Prints a table; asserts nothing.
//!
//!     CARGO_TARGET_DIR=… cargo bench -p portcullis-history [-- ROWS]
//!
//! ROWS (default 1,000,000) is the size of the database the queries run on. Everything is
//! synthetic and deterministic: 200 apps, 20,000 domains picked with a skew (a few are very
//! common, most are rare), 7 days of rows.
#![expect(
    clippy::expect_used,
    clippy::indexing_slicing,
    reason = "a benchmark program: any failure should stop it loudly"
)]

use std::net::{IpAddr, Ipv4Addr};
use std::path::Path;
use std::time::{Duration, Instant};

use portcullis_history::{
    Bucket, Direction, Filter, Kind, Protocol, Record, Scope, Store, TopBy, TopOrder, Verdict,
    Verify, Writer, WriterConfig,
};

const APPS: u64 = 200;
const DOMAINS: u64 = 20_000;
const DAY_MS: i64 = 86_400_000;
const T_END: i64 = 1_767_225_600_000;

/// xorshift64*: deterministic, dependency-free.
struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
    fn unit(&mut self) -> f64 {
        (self.next() >> 11) as f64 / (1u64 << 53) as f64
    }
    /// Skewed pick in 0..n: index ~ n·u³.
    fn skewed(&mut self, n: u64) -> u64 {
        let u = self.unit();
        ((n as f64) * u * u * u) as u64 % n
    }
}

const WORDS: [&str; 16] = [
    "cdn",
    "api",
    "static",
    "telemetry",
    "update",
    "mail",
    "img",
    "video",
    "push",
    "auth",
    "tracker",
    "ads",
    "sync",
    "chat",
    "news",
    "shop",
];
const TLDS: [&str; 6] = ["com", "net", "org", "io", "de", "example"];

fn app_name(i: u64) -> String {
    format!("/usr/bin/{}-{}", WORDS[(i % 16) as usize], i)
}

fn domain_name(i: u64) -> String {
    format!(
        "{}{}.{}{}.{}",
        WORDS[(i % 16) as usize],
        i % 97,
        WORDS[((i / 16) % 16) as usize],
        i,
        TLDS[(i % 6) as usize]
    )
}

fn synth(rng: &mut Rng, i: u64, n: u64, span_ms: i64) -> Record {
    let app = rng.skewed(APPS);
    let domain = rng.skewed(DOMAINS);
    let blocked = rng.next().is_multiple_of(10);
    // Spread n rows evenly over the span before T_END.
    let ts = T_END - span_ms + (i as i64) * span_ms / (n as i64).max(1);
    let bytes = if blocked { 0 } else { rng.next() % 100_000 };
    Record {
        kind: if i.is_multiple_of(8) {
            Kind::Dns
        } else {
            Kind::Connection
        },
        unix_ms: ts,
        app: app_name(app),
        pid: Some(1_000 + (app as u32)),
        exe: Some(app_name(app)),
        direction: Direction::Outbound,
        protocol: if i.is_multiple_of(5) {
            Protocol::Udp
        } else {
            Protocol::Tcp
        },
        local: IpAddr::V4(Ipv4Addr::new(10, 0, 0, 2)),
        local_port: Some(30_000 + (i % 30_000) as u16),
        remote: IpAddr::V4(Ipv4Addr::from((domain as u32).wrapping_mul(2_654_435_761))),
        remote_port: Some(443),
        domain: (!i.is_multiple_of(10)).then(|| domain_name(domain)),
        country: Some(["US", "DE", "FR", "NL", "JP", "BR"][(domain % 6) as usize].into()),
        asn: Some(64_500 + (domain % 300) as u32),
        scope: Scope::Internet,
        verdict: if blocked {
            Verdict::Block
        } else {
            Verdict::Allow
        },
        explanation: if blocked {
            format!(
                "blocked by rule `- {}` of app {}",
                domain_name(domain),
                app_name(app)
            )
        } else {
            "allowed by default_action of global settings".into()
        },
        bytes_out: bytes / 10,
        bytes_in: bytes,
        packets_out: 1 + bytes / 14_000,
        packets_in: bytes / 1_400,
        start_ms: Some(ts),
        end_ms: (!blocked).then_some(ts + 1_500),
    }
}

/// `n` records spread over `span_ms` before `T_END`.
fn records(seed: u64, n: u64, span_ms: i64) -> Vec<Record> {
    let mut rng = Rng(seed);
    (0..n).map(|i| synth(&mut rng, i, n, span_ms)).collect()
}

struct Timing(Vec<Duration>);
impl Timing {
    fn pct(&self, p: f64) -> Duration {
        let mut v = self.0.clone();
        v.sort();
        let i = ((v.len() as f64 - 1.0) * p).round() as usize;
        v.get(i).copied().unwrap_or_default()
    }
}

fn ms(d: Duration) -> String {
    format!("{:.3} ms", d.as_secs_f64() * 1e3)
}

fn verdict(ok: bool) -> &'static str {
    if ok { "MET" } else { "NOT MET" }
}

fn time<T>(f: impl FnOnce() -> T) -> (T, Duration) {
    let t = Instant::now();
    let v = f();
    (v, t.elapsed())
}

fn fresh(dir: &Path, name: &str) -> Store {
    Store::open(&dir.join(name), Verify::Schema)
        .expect("open")
        .store
}

/// The ceiling: the same rows into one bare table (same columns, names inline, no secondary
/// index, no dictionaries, no rollup), same batches. Returns rows/s.
fn bare(dir: &Path, round: usize, sample: &[Record]) -> f64 {
    {
        let mut conn =
            rusqlite::Connection::open(dir.join(format!("bare-{round}.sqlite3"))).expect("bare");
        conn.execute_batch(
            "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;
             CREATE TABLE bare (id INTEGER PRIMARY KEY, kind, ts, app, pid, exe, direction,
               protocol, local_ip, local_port, remote_ip, remote_port, domain, country, asn,
               scope, verdict, explanation, bytes_out, bytes_in, packets_out, packets_in,
               start_ms, end_ms);",
        )
        .expect("bare schema");
        let ((), d) = time(|| {
            for chunk in sample.chunks(16_384) {
                let tx = conn.transaction().expect("tx");
                {
                    let mut ins = tx
                        .prepare_cached(
                            "INSERT INTO bare (kind, ts, app, pid, exe, direction, protocol,
                              local_ip, local_port, remote_ip, remote_port, domain, country,
                              asn, scope, verdict, explanation, bytes_out, bytes_in,
                              packets_out, packets_in, start_ms, end_ms)
                             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13,
                              ?14, ?15, ?16, ?17, ?18, ?19, ?20, ?21, ?22, ?23)",
                        )
                        .expect("prepare");
                    for r in chunk {
                        ins.execute(rusqlite::params![
                            r.kind.code(),
                            r.unix_ms,
                            r.app,
                            r.pid,
                            r.exe,
                            r.direction.code(),
                            r.protocol.code(),
                            r.local.to_string(),
                            r.local_port,
                            r.remote.to_string(),
                            r.remote_port,
                            r.domain,
                            r.country,
                            r.asn,
                            r.scope.code(),
                            r.verdict.code(),
                            r.explanation,
                            r.bytes_out as i64,
                            r.bytes_in as i64,
                            r.packets_out as i64,
                            r.packets_in as i64,
                            r.start_ms,
                            r.end_ms
                        ])
                        .expect("insert");
                    }
                }
                tx.commit().expect("commit");
            }
        });
        sample.len() as f64 / d.as_secs_f64()
    }
}

/// How many times the noisiest arms run, interleaved.
const ROUNDS: usize = 3;

fn median(v: &mut [f64]) -> f64 {
    v.sort_by(f64::total_cmp);
    v.get(v.len() / 2).copied().unwrap_or(0.0)
}

fn main() {
    let rows: u64 = std::env::args()
        .skip(1)
        .find_map(|a| a.parse().ok())
        .unwrap_or(1_000_000);
    let dir = tempfile::tempdir().expect("tempdir");
    let dir = dir.path();
    println!("portcullis-history benchmarks ({rows} rows for queries; WAL, synchronous=NORMAL)\n");

    // ---- inserts ----------------------------------------------------------------------
    // As the helper would see them at 10,000 connections/s: 20 seconds of traffic.
    let sample = records(1, 200_000, 20_000);
    let naive_n = 20_000usize;
    let mut naive = fresh(dir, "naive.sqlite3");
    let ((), d_naive) = time(|| {
        for r in sample.iter().take(naive_n) {
            naive.insert(std::slice::from_ref(r)).expect("insert");
        }
    });
    let naive_rate = naive_n as f64 / d_naive.as_secs_f64();

    // Batch sizes, into a fresh database (every app, domain and explanation is new)...
    let mut by_size = Vec::new();
    for size in [1_024usize, 4_096, 16_384, 65_536] {
        let mut b = fresh(dir, &format!("batched-{size}.sqlite3"));
        let ((), d) = time(|| {
            for chunk in sample.chunks(size) {
                b.insert(chunk).expect("insert");
            }
        });
        by_size.push((size, sample.len() as f64 / d.as_secs_f64()));
    }
    // ...and into one that has seen these names before (the steady state of a desktop:
    // the same apps and domains again and again): a second 20 s of traffic. This arm and
    // the bare-table ceiling run ROUNDS times, interleaved, and report their medians: the
    // machine is shared, and one run of either is noisy.
    let warm_sample = records(2, 200_000, 20_000);
    let mut warm_rates = Vec::new();
    let mut bare_rates = Vec::new();
    let mut d_warm = Duration::ZERO;
    for round in 0..ROUNDS {
        let mut warm = fresh(dir, &format!("warm-{round}.sqlite3"));
        for chunk in sample.chunks(16_384) {
            warm.insert(chunk).expect("insert");
        }
        let ((), d) = time(|| {
            for chunk in warm_sample.chunks(16_384) {
                warm.insert(chunk).expect("insert");
            }
        });
        d_warm = d;
        warm_rates.push(warm_sample.len() as f64 / d.as_secs_f64());
        drop(warm);
        bare_rates.push(bare(dir, round, &sample));
    }
    let warm_rate = median(&mut warm_rates);
    let bare_rate = median(&mut bare_rates);
    let mut batched = fresh(dir, "batched.sqlite3");
    let ((), d_batch) = time(|| {
        for chunk in sample.chunks(4_096) {
            batched.insert(chunk).expect("insert");
        }
    });
    let batch_rate = sample.len() as f64 / d_batch.as_secs_f64();

    let cfg = WriterConfig {
        capacity: 262_144,
        ..WriterConfig::default()
    };
    let (writer, _) = Writer::start(&dir.join("writer.sqlite3"), cfg, None).expect("writer");
    let sender = writer.sender();
    let to_send = sample.clone();
    let ((), d_writer) = time(|| {
        let mut slowest = Duration::ZERO;
        for r in to_send {
            let t = Instant::now();
            sender.record(r);
            slowest = slowest.max(t.elapsed());
        }
        writer.flush().expect("flush");
        println!("  (slowest single record() call on the caller's side: {slowest:?})");
    });
    let stats = writer.stats();
    drop(writer);
    let writer_rate = stats.written as f64 / d_writer.as_secs_f64();

    println!("inserts (same run, same schema and indexes)");
    println!("  arm                                   rows      time        rows/s");
    println!(
        "  naive: one transaction per row        {naive_n:<9} {:<11} {:>9.0}",
        ms(d_naive),
        naive_rate
    );
    println!(
        "  ceiling: bare table, no index, 16,384 {:<9} {:<11} {:>9.0}   (median of {ROUNDS})",
        sample.len(),
        "",
        bare_rate
    );
    for (size, rate) in &by_size {
        println!(
            "  Store::insert, fresh db, batch {size:<6} {:<9} {:<11} {rate:>9.0}   x{:.0} vs naive",
            sample.len(),
            "",
            rate / naive_rate
        );
    }
    println!(
        "  Store::insert, names known, 16,384    {:<9} {:<11} {warm_rate:>9.0}   x{:.0} vs naive, {:.0}% of ceiling (median of {ROUNDS})   target ≥ 300,000  {}",
        warm_sample.len(),
        ms(d_warm),
        warm_rate / naive_rate,
        100.0 * warm_rate / bare_rate,
        verdict(warm_rate >= 300_000.0)
    );
    println!(
        "  Store::insert, batches of 4,096       {:<9} {:<11} {:>9.0}   x{:.0} vs naive",
        sample.len(),
        ms(d_batch),
        batch_rate,
        batch_rate / naive_rate
    );
    println!(
        "  Writer (channel + thread), fresh db   {:<9} {:<11} {:>9.0}   lost {}",
        stats.written,
        ms(d_writer),
        writer_rate,
        stats.lost
    );

    // ---- the big database ------------------------------------------------------------
    let big_path = dir.join("big.sqlite3");
    let mut big = fresh(dir, "big.sqlite3");
    let all = records(7, rows, 7 * DAY_MS);
    let ((), d_fill) = time(|| {
        for chunk in all.chunks(4_096) {
            big.insert(chunk).expect("insert");
        }
    });
    drop(big);
    let size = std::fs::metadata(&big_path).map(|m| m.len()).unwrap_or(0)
        + std::fs::metadata(dir.join("big.sqlite3-wal"))
            .map(|m| m.len())
            .unwrap_or(0);
    println!(
        "\nfilling {rows} rows: {} ({:.0} rows/s); file {:.1} MB ({:.0} B/row)",
        ms(d_fill),
        rows as f64 / d_fill.as_secs_f64(),
        size as f64 / 1e6,
        size as f64 / rows as f64
    );
    let (_, d_open) = time(|| Store::open(&big_path, Verify::Schema).expect("open"));
    let (_, d_check) = time(|| Store::open(&big_path, Verify::QuickCheck).expect("open"));
    println!(
        "open: schema check {}, with quick_check {}",
        ms(d_open),
        ms(d_check)
    );

    // The naive baseline for search: one flat table, names inline, an index on time.
    let flat_path = dir.join("flat.sqlite3");
    {
        let mut conn = rusqlite::Connection::open(&flat_path).expect("flat");
        conn.execute_batch(
            "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;
             CREATE TABLE flat (id INTEGER PRIMARY KEY, ts INTEGER, app TEXT, domain TEXT);
             CREATE INDEX flat_ts ON flat (ts);",
        )
        .expect("flat schema");
        let tx = conn.transaction().expect("tx");
        {
            let mut ins = tx
                .prepare("INSERT INTO flat (ts, app, domain) VALUES (?1, ?2, ?3)")
                .expect("prepare");
            for r in &all {
                ins.execute(rusqlite::params![r.unix_ms, r.app, r.domain])
                    .expect("insert");
            }
        }
        tx.commit().expect("commit");
    }
    let flat = rusqlite::Connection::open(&flat_path).expect("flat");
    let store = Store::open_reader(&big_path).expect("reader");

    // ---- substring search --------------------------------------------------------------
    let mut rng = Rng(99);
    let needles: Vec<String> = (0..200u32)
        .map(|k| {
            let name = if k.is_multiple_of(4) {
                app_name(rng.next() % APPS)
            } else {
                domain_name(rng.next() % DOMAINS)
            };
            let chars: Vec<char> = name.chars().collect();
            let len = 3 + (rng.next() % 6) as usize;
            let len = len.min(chars.len());
            let start = (rng.next() as usize) % (chars.len() - len + 1);
            chars[start..start + len].iter().collect()
        })
        .collect();
    let mut ours = Vec::new();
    let mut found = 0usize;
    for n in &needles {
        let f = Filter {
            search: Some(n.clone()),
            ..Filter::default()
        };
        let (page, d) = time(|| store.query(&f, None, 50).expect("search"));
        found += page.rows.len();
        ours.push(d);
    }
    let mut base = Vec::new();
    let mut base_found = 0usize;
    let mut stmt = flat
        .prepare(
            "SELECT id FROM flat WHERE domain LIKE ?1 OR app LIKE ?1 ORDER BY ts DESC LIMIT 50",
        )
        .expect("prepare");
    for n in &needles {
        let pattern = format!("%{n}%");
        let (count, d) = time(|| {
            stmt.query_map([&pattern], |r| r.get::<_, i64>(0))
                .expect("like")
                .count()
        });
        base_found += count;
        base.push(d);
    }
    let (ours, base) = (Timing(ours), Timing(base));
    println!(
        "\nsubstring search, first page of 50 newest ({} needles of 3–8 chars from random names)",
        needles.len()
    );
    println!("  arm                                   p50          p95          max");
    println!(
        "  LIKE on a flat table (ts index)       {:<12} {:<12} {}   rows {base_found}",
        ms(base.pct(0.5)),
        ms(base.pct(0.95)),
        ms(base.pct(1.0))
    );
    println!(
        "  trigram dictionaries + key indexes    {:<12} {:<12} {}   rows {found}   target p95 ≤ 50 ms  {}",
        ms(ours.pct(0.5)),
        ms(ours.pct(0.95)),
        ms(ours.pct(1.0)),
        verdict(ours.pct(0.95) <= Duration::from_millis(50))
    );

    // Needles of one and two characters: too short for the trigram index, and matching
    // many names each.
    let short: Vec<String> = (0..100u64)
        .map(|k| {
            let name = domain_name(rng.next() % DOMAINS);
            let chars: Vec<char> = name.chars().collect();
            let len = 1 + (k % 2) as usize;
            let start = (rng.next() as usize) % (chars.len() - len + 1);
            chars[start..start + len].iter().collect()
        })
        .collect();
    let mut short_t = Vec::new();
    let mut short_found = 0usize;
    for n in &short {
        let f = Filter {
            search: Some(n.clone()),
            ..Filter::default()
        };
        let (page, d) = time(|| store.query(&f, None, 50).expect("search"));
        short_found += page.rows.len();
        short_t.push(d);
    }
    let mut short_base = Vec::new();
    for n in &short {
        let pattern = format!("%{n}%");
        let (_, d) = time(|| {
            stmt.query_map([&pattern], |r| r.get::<_, i64>(0))
                .expect("like")
                .count()
        });
        short_base.push(d);
    }
    let (short_t, short_base) = (Timing(short_t), Timing(short_base));
    println!(
        "  1–2 characters: LIKE on the flat table {:<12} {:<12} {}",
        ms(short_base.pct(0.5)),
        ms(short_base.pct(0.95)),
        ms(short_base.pct(1.0))
    );
    println!(
        "  1–2 characters: dictionaries + scan    {:<12} {:<12} {}   rows {short_found}   target p95 ≤ 50 ms  {}",
        ms(short_t.pct(0.5)),
        ms(short_t.pct(0.95)),
        ms(short_t.pct(1.0)),
        verdict(short_t.pct(0.95) <= Duration::from_millis(50))
    );

    // ---- one app's newest page -----------------------------------------------------------
    let mut first = Vec::new();
    let mut second = Vec::new();
    let mut unfiltered = Vec::new();
    for k in 0..400u64 {
        let f = Filter {
            app: Some(app_name((k * 7) % APPS)),
            ..Filter::default()
        };
        let (page, d) = time(|| store.query(&f, None, 50).expect("page"));
        first.push(d);
        if let Some(c) = page.next {
            let (_, d) = time(|| store.query(&f, Some(c), 50).expect("page"));
            second.push(d);
        }
        let (_, d) = time(|| store.query(&Filter::default(), None, 50).expect("page"));
        unfiltered.push(d);
    }
    let (first, second, unfiltered) = (Timing(first), Timing(second), Timing(unfiltered));
    println!("\nnewest page of 50 rows (400 queries over 200 apps)");
    println!("  arm                                   p50          p95");
    println!(
        "  all apps, first page                  {:<12} {}",
        ms(unfiltered.pct(0.5)),
        ms(unfiltered.pct(0.95))
    );
    println!(
        "  one app, first page                   {:<12} {}   target ≤ 1 ms  {}",
        ms(first.pct(0.5)),
        ms(first.pct(0.95)),
        verdict(first.pct(0.95) <= Duration::from_millis(1))
    );
    println!(
        "  one app, next page (keyset)           {:<12} {}",
        ms(second.pct(0.5)),
        ms(second.pct(0.95))
    );

    // ---- 24-hour bytes per app -------------------------------------------------------------
    let since = T_END - DAY_MS;
    let mut hour = Vec::new();
    let mut minute = Vec::new();
    let mut raw = Vec::new();
    let mut raw_stmt = flat_free_raw(&big_path);
    let mut points = (0, 0);
    for _ in 0..20 {
        let (p, d) = time(|| {
            store
                .bandwidth(since, T_END, Bucket::Hour, None)
                .expect("bw")
        });
        points.0 = p.len();
        hour.push(d);
        let (p, d) = time(|| {
            store
                .bandwidth(since, T_END, Bucket::Minute, None)
                .expect("bw")
        });
        points.1 = p.len();
        minute.push(d);
        let (_, d) = time(|| raw_stmt(since));
        raw.push(d);
    }
    let (hour, minute, raw) = (Timing(hour), Timing(minute), Timing(raw));
    println!("\nbytes per app over the last 24 hours");
    println!("  arm                                   p50          p95");
    println!(
        "  GROUP BY over the rows (baseline)     {:<12} {}",
        ms(raw.pct(0.5)),
        ms(raw.pct(0.95))
    );
    println!(
        "  per-minute rollup, hourly buckets     {:<12} {}   {} points   target ≤ 20 ms  {}",
        ms(hour.pct(0.5)),
        ms(hour.pct(0.95)),
        points.0,
        verdict(hour.pct(0.95) <= Duration::from_millis(20))
    );
    println!(
        "  per-minute rollup, minute buckets     {:<12} {}   {} points",
        ms(minute.pct(0.5)),
        ms(minute.pct(0.95)),
        points.1
    );

    // ---- top lists (scan the rows of the range) --------------------------------------------
    let day = Filter {
        since_ms: Some(since),
        ..Filter::default()
    };
    for (name, by) in [
        ("apps", TopBy::App),
        ("domains", TopBy::Domain),
        ("countries", TopBy::Country),
    ] {
        let (_, d) = time(|| store.top(by, TopOrder::Bytes, &day, 10).expect("top"));
        println!("top 10 {name} by bytes, last 24 h: {}", ms(d));
    }
}

/// The baseline aggregate: GROUP BY over the rows themselves, on its own connection.
fn flat_free_raw(path: &Path) -> impl FnMut(i64) -> usize {
    let conn = rusqlite::Connection::open(path).expect("raw");
    move |since| {
        let mut stmt = conn
            .prepare_cached(
                "SELECT app_id, ts / 3600000, sum(bytes_out), sum(bytes_in) FROM events
                 WHERE ts >= ?1 GROUP BY 1, 2",
            )
            .expect("prepare");
        stmt.query_map([since], |r| r.get::<_, i64>(0))
            .expect("raw")
            .count()
    }
}
