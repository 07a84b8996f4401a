//! Export of a filtered query as JSON lines or CSV, and import back. Both formats carry
//! every field of a [`Record`] (not the database-local row id), so an export imported into
//! any history database and exported again gives the same file.
//!
//! Imported files come from users and may be hostile: decoding never panics, and every
//! error names the line (and for CSV the column).
//!
//! CSV follows RFC 4180 (comma, `"` quoting, CRLF or LF). An absent value is an empty
//! unquoted field; an empty string is `""`, so the two survive a round trip.

use std::io::{BufRead, Write};
use std::net::IpAddr;
use std::str::FromStr;

use crate::store::now_ms;
use crate::{ExportError, Filter, Record, Store};

/// An export file format.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// One JSON object per line.
    JsonLines,
    /// A header line, then one record per line.
    Csv,
}

/// CSV columns, in order.
pub const CSV_COLUMNS: [&str; 23] = [
    "kind",
    "unix_ms",
    "app",
    "pid",
    "exe",
    "direction",
    "protocol",
    "local",
    "local_port",
    "remote",
    "remote_port",
    "domain",
    "country",
    "asn",
    "scope",
    "verdict",
    "explanation",
    "bytes_out",
    "bytes_in",
    "packets_out",
    "packets_in",
    "start_ms",
    "end_ms",
];

/// Rows fetched per query while exporting.
const EXPORT_PAGE: usize = 1_000;
/// Rows written per transaction while importing.
const IMPORT_CHUNK: usize = 10_000;

fn io(what: &'static str) -> impl Fn(std::io::Error) -> ExportError {
    move |source| ExportError::Io { what, source }
}

/// Writes every row matching `filter` (newest first) to `out`; returns how many.
pub fn export(
    store: &Store,
    filter: &Filter,
    format: Format,
    out: &mut dyn Write,
) -> Result<u64, ExportError> {
    let mut n = 0u64;
    if format == Format::Csv {
        write_csv_header(out)?;
    }
    store.for_each(filter, EXPORT_PAGE, |row| -> Result<(), ExportError> {
        write_record(format, &row.record, out)?;
        n += 1;
        Ok(())
    })?;
    out.flush().map_err(io("write the export"))?;
    Ok(n)
}

/// Writes `records` in `format` (with the CSV header).
pub fn encode(format: Format, records: &[Record], out: &mut dyn Write) -> Result<(), ExportError> {
    if format == Format::Csv {
        write_csv_header(out)?;
    }
    for r in records {
        write_record(format, r, out)?;
    }
    Ok(())
}

fn write_csv_header(out: &mut dyn Write) -> Result<(), ExportError> {
    writeln!(out, "{}", CSV_COLUMNS.join(",")).map_err(io("write the export"))
}

fn write_record(format: Format, r: &Record, out: &mut dyn Write) -> Result<(), ExportError> {
    match format {
        Format::JsonLines => {
            serde_json::to_writer(&mut *out, r).map_err(|e| ExportError::Io {
                what: "write the export",
                source: e.into(),
            })?;
            out.write_all(b"\n").map_err(io("write the export"))
        }
        Format::Csv => {
            let line = csv_line(r);
            out.write_all(line.as_bytes())
                .map_err(io("write the export"))
        }
    }
}

fn csv_field(line: &mut String, value: Option<&str>) {
    match value {
        None => {}
        Some(v) if v.is_empty() || v.contains([',', '"', '\r', '\n']) => {
            line.push('"');
            line.push_str(&v.replace('"', "\"\""));
            line.push('"');
        }
        Some(v) => line.push_str(v),
    }
}

fn csv_line(r: &Record) -> String {
    let opt = |v: Option<String>| v;
    let fields: [Option<String>; 23] = [
        Some(r.kind.as_str().into()),
        Some(r.unix_ms.to_string()),
        Some(r.app.clone()),
        opt(r.pid.map(|v| v.to_string())),
        r.exe.clone(),
        Some(r.direction.as_str().into()),
        Some(r.protocol.as_str().into()),
        Some(r.local.to_string()),
        r.local_port.map(|v| v.to_string()),
        Some(r.remote.to_string()),
        r.remote_port.map(|v| v.to_string()),
        r.domain.clone(),
        r.country.clone(),
        r.asn.map(|v| v.to_string()),
        Some(r.scope.as_str().into()),
        Some(r.verdict.as_str().into()),
        Some(r.explanation.clone()),
        Some(r.bytes_out.to_string()),
        Some(r.bytes_in.to_string()),
        Some(r.packets_out.to_string()),
        Some(r.packets_in.to_string()),
        r.start_ms.map(|v| v.to_string()),
        r.end_ms.map(|v| v.to_string()),
    ];
    let mut line = String::new();
    for (i, f) in fields.iter().enumerate() {
        if i > 0 {
            line.push(',');
        }
        csv_field(&mut line, f.as_deref());
    }
    line.push('\n');
    line
}

/// Reads a whole export from `input` and writes its records into `store`, keeping their
/// order; returns how many.
pub fn import(
    store: &mut Store,
    format: Format,
    input: &mut dyn BufRead,
) -> Result<u64, ExportError> {
    let mut text = String::new();
    input
        .read_to_string(&mut text)
        .map_err(io("read the import"))?;
    let records = decode(format, &text)?;
    // Exports are newest first; writing oldest first keeps the order of rows with equal
    // times, so exporting again gives the same file.
    for chunk in records.rchunks(IMPORT_CHUNK) {
        let oldest_first: Vec<Record> = chunk.iter().rev().cloned().collect();
        store.insert(&oldest_first)?;
    }
    tracing::info!(
        rows = records.len(),
        at = now_ms(),
        "history import written"
    );
    Ok(records.len() as u64)
}

/// Decodes a whole export.
pub fn decode(format: Format, text: &str) -> Result<Vec<Record>, ExportError> {
    match format {
        Format::JsonLines => decode_json_lines(text),
        Format::Csv => decode_csv(text),
    }
}

fn decode_json_lines(text: &str) -> Result<Vec<Record>, ExportError> {
    let mut out = Vec::new();
    for (i, line) in text.lines().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        let record = serde_json::from_str(line).map_err(|source| ExportError::Json {
            line: i as u64 + 1,
            source,
        })?;
        out.push(record);
    }
    Ok(out)
}

/// One CSV field: its text and whether it was quoted.
#[derive(Debug)]
struct Field {
    text: String,
    quoted: bool,
}

/// Splits CSV text into records of fields, with the line each record starts on.
fn split_csv(text: &str) -> Result<Vec<(u64, Vec<Field>)>, ExportError> {
    #[derive(PartialEq)]
    enum State {
        Start,
        Plain,
        Quoted,
        QuoteInQuoted,
    }
    let mut records = Vec::new();
    let mut fields = Vec::new();
    let mut field = Field {
        text: String::new(),
        quoted: false,
    };
    let mut state = State::Start;
    let mut line = 1u64;
    let mut record_line = 1u64;
    let mut chars = text.chars().peekable();
    let fail = |line, message: &str| ExportError::Csv {
        line,
        column: None,
        message: message.into(),
    };
    while let Some(c) = chars.next() {
        let newline = c == '\n' || (c == '\r' && chars.peek() == Some(&'\n'));
        match state {
            State::Quoted => {
                if c == '"' {
                    state = State::QuoteInQuoted;
                } else {
                    if c == '\n' {
                        line += 1;
                    }
                    field.text.push(c);
                }
                continue;
            }
            State::QuoteInQuoted if c == '"' => {
                field.text.push('"');
                state = State::Quoted;
                continue;
            }
            State::Start if c == '"' => {
                field.quoted = true;
                state = State::Quoted;
                continue;
            }
            _ => {}
        }
        if c == ',' {
            fields.push(std::mem::replace(
                &mut field,
                Field {
                    text: String::new(),
                    quoted: false,
                },
            ));
            state = State::Start;
        } else if newline {
            if c == '\r' {
                chars.next();
            }
            fields.push(std::mem::replace(
                &mut field,
                Field {
                    text: String::new(),
                    quoted: false,
                },
            ));
            records.push((record_line, std::mem::take(&mut fields)));
            state = State::Start;
            line += 1;
            record_line = line;
        } else if state == State::QuoteInQuoted {
            return Err(fail(line, "text after a closing quote"));
        } else if c == '"' {
            return Err(fail(line, "a quote inside an unquoted field"));
        } else {
            field.text.push(c);
            state = State::Plain;
        }
    }
    match state {
        State::Quoted => return Err(fail(record_line, "a quoted field is not closed")),
        State::Start if fields.is_empty() => {}
        _ => {
            fields.push(field);
            records.push((record_line, fields));
        }
    }
    Ok(records)
}

fn decode_csv(text: &str) -> Result<Vec<Record>, ExportError> {
    let mut records = split_csv(text)?.into_iter();
    let Some((_, header)) = records.next() else {
        return Ok(Vec::new());
    };
    let names: Vec<&str> = header.iter().map(|f| f.text.as_str()).collect();
    if names != CSV_COLUMNS {
        return Err(ExportError::Csv {
            line: 1,
            column: None,
            message: format!("the header must be {}", CSV_COLUMNS.join(",")),
        });
    }
    let mut out = Vec::new();
    for (line, fields) in records {
        out.push(csv_record(line, &fields)?);
    }
    Ok(out)
}

fn csv_record(line: u64, fields: &[Field]) -> Result<Record, ExportError> {
    if fields.len() != CSV_COLUMNS.len() {
        return Err(ExportError::Csv {
            line,
            column: None,
            message: format!("{} fields, expected {}", fields.len(), CSV_COLUMNS.len()),
        });
    }
    let bad = |column: &'static str, message: String| ExportError::Csv {
        line,
        column: Some(column),
        message,
    };
    let get = |i: usize| -> (&'static str, Option<&str>) {
        let column = CSV_COLUMNS.get(i).copied().unwrap_or("?");
        match fields.get(i) {
            Some(f) if f.quoted || !f.text.is_empty() => (column, Some(f.text.as_str())),
            _ => (column, None),
        }
    };
    let opt_text = |i: usize| get(i).1.map(str::to_owned);
    let text = |i: usize| -> Result<String, ExportError> {
        let (column, v) = get(i);
        v.map(str::to_owned)
            .ok_or_else(|| bad(column, "a value is required".into()))
    };
    fn parse<T: FromStr>(
        column: &'static str,
        v: &str,
        bad: &dyn Fn(&'static str, String) -> ExportError,
    ) -> Result<T, ExportError>
    where
        T::Err: std::fmt::Display,
    {
        v.parse::<T>()
            .map_err(|e| bad(column, format!("{v:?}: {e}")))
    }
    let opt = |i: usize| -> Result<Option<(&'static str, &str)>, ExportError> {
        let (column, v) = get(i);
        Ok(v.map(|v| (column, v)))
    };
    macro_rules! req {
        ($i:expr, $t:ty) => {{
            let (column, v) = get($i);
            let v = v.ok_or_else(|| bad(column, "a value is required".into()))?;
            parse::<$t>(column, v, &bad)?
        }};
    }
    macro_rules! optp {
        ($i:expr, $t:ty) => {
            match opt($i)? {
                Some((column, v)) => Some(parse::<$t>(column, v, &bad)?),
                None => None,
            }
        };
    }
    Ok(Record {
        kind: req!(0, crate::Kind),
        unix_ms: req!(1, i64),
        app: text(2)?,
        pid: optp!(3, u32),
        exe: opt_text(4),
        direction: req!(5, crate::Direction),
        protocol: req!(6, crate::Protocol),
        local: req!(7, IpAddr),
        local_port: optp!(8, u16),
        remote: req!(9, IpAddr),
        remote_port: optp!(10, u16),
        domain: opt_text(11),
        country: opt_text(12),
        asn: optp!(13, u32),
        scope: req!(14, crate::Scope),
        verdict: req!(15, crate::Verdict),
        explanation: text(16)?,
        bytes_out: req!(17, u64),
        bytes_in: req!(18, u64),
        packets_out: req!(19, u64),
        packets_in: req!(20, u64),
        start_ms: optp!(21, i64),
        end_ms: optp!(22, i64),
    })
}
