//! `portcullisctl history …`: past connections and DNS queries, top lists, export and clear.
//! Filters are checked here first (bad usage exits 2 even without a helper); export pages
//! through the whole selection and writes JSON lines or CSV.

use std::io::Write as _;
use std::net::IpAddr;

use clap::{Args, Subcommand};
use portcullis_protocol::{
    Direction, HISTORY_PAGE_MAX, HistoryBucket, HistoryCursor, HistoryFilter, HistoryKind,
    HistoryRow, HistoryTopBy, Request, Response, Verdict,
};

use crate::output::clean;
use crate::{Failure, usage};

#[derive(Debug, Subcommand)]
pub enum HistoryCmd {
    /// Past connections and DNS queries, newest first.
    Query {
        #[command(flatten)]
        filter: FilterArgs,
        /// Most rows to show (1-1000).
        #[arg(long, default_value_t = 50)]
        limit: u32,
    },
    /// The apps, domains or countries with the most connections (or bytes).
    Top {
        /// apps, domains or countries.
        by: String,
        #[command(flatten)]
        filter: FilterArgs,
        /// Order by bytes instead of connections.
        #[arg(long)]
        bytes: bool,
        /// Most lines (1-1000).
        #[arg(long, default_value_t = 10)]
        limit: u32,
    },
    /// Bytes per app over time: totals per minute or hour.
    Bandwidth {
        /// Only this app (executable path or key).
        #[arg(long, value_name = "EXE")]
        app: Option<String>,
        /// How far back, e.g. 1h, 24h, 7d (default 1h).
        #[arg(long, value_name = "DURATION", default_value = "1h")]
        since: String,
        /// minute or hour buckets (default: minutes up to 48 hours back, else hours).
        #[arg(long)]
        by: Option<String>,
    },
    /// Every matching row, oldest last, as JSON lines (default) or CSV.
    Export {
        #[command(flatten)]
        filter: FilterArgs,
        /// CSV with a header line instead of JSON lines.
        #[arg(long)]
        csv: bool,
    },
    /// Forget one app's history (`--app`), or all of it (`--all`).
    Clear {
        /// The app, by executable path or key.
        #[arg(long, value_name = "EXE", conflicts_with = "all")]
        app: Option<String>,
        /// Everything.
        #[arg(long)]
        all: bool,
    },
}

/// The filters every history command takes.
#[derive(Debug, Args)]
pub struct FilterArgs {
    /// Only this app (executable path or key).
    #[arg(long, value_name = "EXE")]
    app: Option<String>,
    /// Only this domain, exactly.
    #[arg(long)]
    domain: Option<String>,
    /// Only this remote address.
    #[arg(long)]
    ip: Option<String>,
    /// Only this country (two letters, e.g. DE).
    #[arg(long)]
    country: Option<String>,
    /// Only this autonomous system (e.g. 13335 or AS13335).
    #[arg(long)]
    asn: Option<String>,
    /// allow, block or drop.
    #[arg(long)]
    verdict: Option<String>,
    /// outbound or inbound.
    #[arg(long)]
    direction: Option<String>,
    /// connection or dns.
    #[arg(long)]
    kind: Option<String>,
    /// Only the last DURATION, e.g. 90s, 15m, 2h, 7d.
    #[arg(long, value_name = "DURATION")]
    since: Option<String>,
    /// A piece of the domain or app, any case.
    #[arg(long)]
    search: Option<String>,
}

/// Seconds in `text` such as `90s`, `15m`, `2h`, `7d` (a bare number is seconds).
fn parse_duration(text: &str) -> Result<u64, Failure> {
    let t = text.trim();
    let (num, unit) = t
        .char_indices()
        .find(|(_, c)| !c.is_ascii_digit())
        .map_or((t, ""), |(i, _)| t.split_at(i));
    let n: u64 = num.parse().map_err(|_| {
        usage(format!(
            "invalid duration `{text}`: expected a number and s, m, h or d, e.g. 15m"
        ))
    })?;
    let mult = match unit {
        "" | "s" => 1,
        "m" => 60,
        "h" => 3600,
        "d" => 86_400,
        _ => {
            return Err(usage(format!(
                "invalid duration `{text}`: the unit must be s, m, h or d"
            )));
        }
    };
    n.checked_mul(mult)
        .ok_or_else(|| usage(format!("invalid duration `{text}`: too long")))
}

impl FilterArgs {
    /// The filter, checked.
    pub fn to_filter(&self, now_ms: u64) -> Result<HistoryFilter, Failure> {
        let ip = self
            .ip
            .as_deref()
            .map(|s| {
                s.parse::<IpAddr>()
                    .map_err(|_| usage(format!("invalid address `{s}`: expected an IP address")))
            })
            .transpose()?;
        let asn = self
            .asn
            .as_deref()
            .map(|s| {
                let digits = s
                    .strip_prefix("AS")
                    .or_else(|| s.strip_prefix("as"))
                    .unwrap_or(s);
                digits
                    .parse::<u32>()
                    .map_err(|_| usage(format!("invalid ASN `{s}`: expected e.g. AS13335")))
            })
            .transpose()?;
        let verdict = match self.verdict.as_deref() {
            None => None,
            Some("allow") => Some(Verdict::Allow),
            Some("block") => Some(Verdict::Block),
            Some("drop") => Some(Verdict::Drop),
            Some(o) => {
                return Err(usage(format!(
                    "invalid verdict `{o}`: expected allow, block or drop"
                )));
            }
        };
        let direction = match self.direction.as_deref() {
            None => None,
            Some("outbound") => Some(Direction::Outbound),
            Some("inbound") => Some(Direction::Inbound),
            Some(o) => {
                return Err(usage(format!(
                    "invalid direction `{o}`: expected outbound or inbound"
                )));
            }
        };
        let kind = match self.kind.as_deref() {
            None => None,
            Some("connection") => Some(HistoryKind::Connection),
            Some("dns") => Some(HistoryKind::Dns),
            Some(o) => {
                return Err(usage(format!(
                    "invalid kind `{o}`: expected connection or dns"
                )));
            }
        };
        let since_ms = self
            .since
            .as_deref()
            .map(parse_duration)
            .transpose()?
            .map(|secs| now_ms.saturating_sub(secs.saturating_mul(1000)));
        Ok(HistoryFilter {
            app: self.app.clone(),
            domain: self.domain.clone(),
            ip,
            country: self.country.clone(),
            asn,
            verdict,
            direction,
            kind,
            since_ms,
            until_ms: None,
            search: self.search.clone(),
        })
    }
}

/// What a history command asks first (export asks again for each further page).
pub fn plan(cmd: &HistoryCmd, now_ms: u64) -> Result<Request, Failure> {
    let limit_ok = |n: u32| {
        if (1..=HISTORY_PAGE_MAX).contains(&n) {
            Ok(n)
        } else {
            Err(usage(format!(
                "--limit must be from 1 to {HISTORY_PAGE_MAX}, not {n}"
            )))
        }
    };
    Ok(match cmd {
        HistoryCmd::Query { filter, limit } => Request::HistoryQuery {
            filter: filter.to_filter(now_ms)?,
            after: None,
            limit: limit_ok(*limit)?,
        },
        HistoryCmd::Top {
            by,
            filter,
            bytes,
            limit,
        } => Request::HistoryTop {
            by: match by.as_str() {
                "apps" | "app" => HistoryTopBy::App,
                "domains" | "domain" => HistoryTopBy::Domain,
                "countries" | "country" => HistoryTopBy::Country,
                o => {
                    return Err(usage(format!(
                        "invalid top list `{o}`: expected apps, domains or countries"
                    )));
                }
            },
            filter: filter.to_filter(now_ms)?,
            by_bytes: *bytes,
            limit: limit_ok(*limit)?,
        },
        HistoryCmd::Bandwidth { app, since, by } => {
            let secs = parse_duration(since)?;
            if secs == 0 {
                return Err(usage("--since must be more than 0".into()));
            }
            let bucket = match by.as_deref() {
                None if secs <= 48 * 3600 => HistoryBucket::Minute,
                None | Some("hour") => HistoryBucket::Hour,
                Some("minute") => HistoryBucket::Minute,
                Some(o) => {
                    return Err(usage(format!(
                        "invalid bucket `{o}`: expected minute or hour"
                    )));
                }
            };
            Request::HistoryBandwidth {
                app: app.clone(),
                since_ms: now_ms.saturating_sub(secs.saturating_mul(1000)),
                until_ms: now_ms.saturating_add(1),
                bucket,
            }
        }
        HistoryCmd::Export { filter, .. } => Request::HistoryQuery {
            filter: filter.to_filter(now_ms)?,
            after: None,
            limit: HISTORY_PAGE_MAX,
        },
        HistoryCmd::Clear { app, all } => match (app, all) {
            (Some(a), false) => Request::HistoryClear {
                app: Some(a.clone()),
            },
            (None, true) => Request::HistoryClear { app: None },
            _ => {
                return Err(usage(
                    "say what to clear: --app EXE for one app, or --all for everything".into(),
                ));
            }
        },
    })
}

fn time(unix_ms: u64) -> String {
    // UTC, to the second: sortable and unambiguous in scripts and bug reports.
    let secs = unix_ms / 1000;
    let (days, rem) = (secs / 86_400, secs % 86_400);
    let (y, m, d) = civil(days);
    format!(
        "{y:04}-{m:02}-{d:02} {:02}:{:02}:{:02}",
        rem / 3600,
        rem / 60 % 60,
        rem % 60
    )
}

/// Year, month, day of a day count since 1970-01-01 (proleptic Gregorian).
fn civil(days: u64) -> (u64, u64, u64) {
    let z = days + 719_468;
    let era = z / 146_097;
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + u64::from(m <= 2);
    (y, m, d)
}

fn endpoint(ip: IpAddr, port: Option<u16>) -> String {
    match (ip, port) {
        (IpAddr::V6(v6), Some(p)) => format!("[{v6}]:{p}"),
        (ip, Some(p)) => format!("{ip}:{p}"),
        (ip, None) => ip.to_string(),
    }
}

/// `1.2 kB`, `34 MB` (powers of 1000).
fn human(n: u64) -> String {
    if n < 1000 {
        return format!("{n} B");
    }
    let mut v = n as f64;
    let mut unit = "B";
    for u in ["kB", "MB", "GB", "TB"] {
        if v < 1000.0 {
            break;
        }
        v /= 1000.0;
        unit = u;
    }
    format!("{v:.1} {unit}")
}

fn kind_word(k: HistoryKind) -> &'static str {
    match k {
        HistoryKind::Connection => "connection",
        HistoryKind::Dns => "dns",
    }
}

/// A row as one line for people.
fn line(r: &HistoryRow) -> String {
    let what = match (r.kind, &r.domain) {
        (HistoryKind::Dns, Some(d)) => format!("dns {}", clean(d)),
        (_, Some(d)) => format!(
            "{} {} ({})",
            r.protocol,
            endpoint(r.remote, r.remote_port),
            clean(d)
        ),
        (_, None) => format!("{} {}", r.protocol, endpoint(r.remote, r.remote_port)),
    };
    let arrow = match r.direction {
        Direction::Outbound => "->",
        Direction::Inbound => "<-",
    };
    format!(
        "{} {:<5} {} {arrow} {what}: {}",
        time(r.unix_ms),
        r.verdict.to_string(),
        clean(&r.app),
        clean(&r.explanation)
    )
}

/// Prints a `query` or `top` answer.
pub fn print(resp: &Response, json: bool) {
    if json {
        let data = match serde_json::to_value(resp) {
            Ok(serde_json::Value::Object(mut m)) => m.remove("data").unwrap_or_default(),
            _ => serde_json::Value::Null,
        };
        println!(
            "{}",
            serde_json::to_string_pretty(&data).unwrap_or_else(|_| "null".into())
        );
        return;
    }
    match resp {
        Response::History(page) => {
            if page.rows.is_empty() {
                println!("No history matches.");
            }
            for r in &page.rows {
                println!("{}", line(r));
            }
            if page.next.is_some() {
                println!("(more: raise --limit, narrow the filter, or use `history export`)");
            }
        }
        Response::HistoryTop(list) => {
            if list.is_empty() {
                println!("No history matches.");
            }
            let width = list
                .iter()
                .map(|t| t.key.chars().count())
                .max()
                .unwrap_or(0);
            for t in list {
                println!(
                    "{:<width$}  {:>8} connections  {:>8} blocked  {:>12} B out  {:>12} B in",
                    clean(&t.key),
                    t.rows,
                    t.blocked,
                    t.bytes_out,
                    t.bytes_in
                );
            }
        }
        Response::HistoryCleared { rows } => println!("Removed {rows} rows of history."),
        Response::Rates(rates) => {
            if rates.is_empty() {
                println!("No app moved data over TCP in the last second.");
            }
            for r in rates {
                println!(
                    "{:>12}/s out  {:>12}/s in  {}",
                    human(r.bytes_out_per_sec),
                    human(r.bytes_in_per_sec),
                    clean(&r.app)
                );
            }
        }
        Response::Bandwidth(points) => {
            if points.is_empty() {
                println!("No traffic recorded in that time.");
            }
            for p in points {
                println!(
                    "{}  {:>12} B out  {:>12} B in  {:>6} connections  {}",
                    time(p.start_ms),
                    p.bytes_out,
                    p.bytes_in,
                    p.connections,
                    clean(&p.app)
                );
            }
        }
        other => eprintln!("portcullisctl: unexpected answer from the helper: {other:?}"),
    }
}

/// The CSV columns of `export --csv`.
const CSV_HEADER: &str = "id,time_ms,kind,app,pid,exe,direction,protocol,local,local_port,remote,remote_port,domain,country,asn,scope,verdict,explanation,bytes_out,bytes_in,packets_out,packets_in,end_ms";

/// One CSV field, quoted when it needs to be (RFC 4180); a leading `=`, `+`, `-` or `@`
/// is prefixed with `'` so that spreadsheets do not run it as a formula.
fn csv_field(s: &str) -> String {
    let s = if s.starts_with(['=', '+', '-', '@', '\t', '\r']) {
        format!("'{s}")
    } else {
        s.to_owned()
    };
    if s.contains([',', '"', '\n', '\r']) {
        format!("\"{}\"", s.replace('"', "\"\""))
    } else {
        s
    }
}

fn csv_line(r: &HistoryRow) -> String {
    let opt = |v: Option<String>| v.unwrap_or_default();
    [
        r.id.to_string(),
        r.unix_ms.to_string(),
        kind_word(r.kind).to_string(),
        csv_field(&r.app),
        opt(r.pid.map(|p| p.to_string())),
        csv_field(r.exe.as_deref().unwrap_or("")),
        match r.direction {
            Direction::Outbound => "outbound".into(),
            Direction::Inbound => "inbound".into(),
        },
        r.protocol.to_string(),
        r.local.to_string(),
        opt(r.local_port.map(|p| p.to_string())),
        r.remote.to_string(),
        opt(r.remote_port.map(|p| p.to_string())),
        csv_field(r.domain.as_deref().unwrap_or("")),
        csv_field(r.country.as_deref().unwrap_or("")),
        opt(r.asn.map(|a| a.to_string())),
        r.scope.keyword().to_string(),
        r.verdict.to_string(),
        csv_field(&r.explanation),
        r.bytes_out.to_string(),
        r.bytes_in.to_string(),
        r.packets_out.to_string(),
        r.packets_in.to_string(),
        opt(r.end_ms.map(|p| p.to_string())),
    ]
    .join(",")
}

/// `export`: asks page after page and writes every row.
pub async fn export(
    client: &mut portcullis_ipc::Client,
    first: Request,
    csv: bool,
) -> Result<(), Failure> {
    let Request::HistoryQuery { filter, limit, .. } = first else {
        return Err(usage("export needs a history query".into()));
    };
    let stdout = std::io::stdout();
    let mut out = std::io::BufWriter::new(stdout.lock());
    let io = |e: std::io::Error| Failure {
        code: "io",
        message: format!("cannot write the export: {e}"),
        exit: 1,
    };
    if csv {
        writeln!(out, "{CSV_HEADER}").map_err(io)?;
    }
    let mut after: Option<HistoryCursor> = None;
    loop {
        let request = Request::HistoryQuery {
            filter: filter.clone(),
            after,
            limit,
        };
        let page = match client.call(request).await? {
            Response::History(page) => page,
            other => {
                return Err(Failure {
                    code: "internal",
                    message: format!("unexpected answer from the helper: {other:?}"),
                    exit: 1,
                });
            }
        };
        for r in &page.rows {
            let text = if csv {
                csv_line(r)
            } else {
                serde_json::to_string(r).unwrap_or_else(|_| "null".into())
            };
            writeln!(out, "{text}").map_err(io)?;
        }
        match page.next {
            Some(c) => after = Some(c),
            None => break,
        }
    }
    out.flush().map_err(io)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_and_dates_read_and_print_as_people_write_them() {
        assert_eq!(parse_duration("90s").ok(), Some(90));
        assert_eq!(parse_duration("15m").ok(), Some(900));
        assert_eq!(parse_duration("7d").ok(), Some(604_800));
        assert_eq!(parse_duration("12").ok(), Some(12));
        for bad in ["", "m", "5w", "-3m", "99999999999999999999d"] {
            assert!(parse_duration(bad).is_err(), "{bad}");
        }
        assert_eq!(time(0), "1970-01-01 00:00:00");
        assert_eq!(time(1_795_000_000_000), "2026-11-18 11:06:40");
        assert_eq!(time(951_782_400_000), "2000-02-29 00:00:00");
    }

    #[test]
    fn csv_quotes_and_defuses_formulas() {
        assert_eq!(csv_field("plain"), "plain");
        assert_eq!(csv_field("a,b"), "\"a,b\"");
        assert_eq!(csv_field("say \"hi\""), "\"say \"\"hi\"\"\"");
        assert_eq!(csv_field("=cmd()"), "'=cmd()");
        assert_eq!(CSV_HEADER.split(',').count(), 23);
    }
}
