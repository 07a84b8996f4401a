//! Reads ip-location-db's ASN CSV files (`asn-ipv4.csv`, `asn-ipv6.csv`): one range per line,
//! `first,last,number,organisation`, addresses in text form, the organisation quoted when it
//! holds a comma or a quote (quotes doubled inside). Bad lines are errors naming the file and
//! line; nothing here panics on any input.

use std::borrow::Cow;
use std::io::BufRead;
use std::net::IpAddr;

use super::{GeoDbBuilder, GeoError};

impl GeoDbBuilder {
    /// Adds every range of an ASN CSV file; `file` names it in errors. Returns the number of
    /// ranges read. Empty lines are skipped; anything else malformed stops the load.
    pub fn asn_csv(&mut self, mut reader: impl BufRead, file: &str) -> Result<usize, GeoError> {
        let mut raw = Vec::new();
        let mut line_no = 0u64;
        let mut rows = 0usize;
        let bad = |line: u64, detail: String| GeoError::Csv {
            file: file.to_owned(),
            line,
            detail,
        };
        loop {
            raw.clear();
            let n = reader
                .read_until(b'\n', &mut raw)
                .map_err(|source| GeoError::ReadStream {
                    file: file.to_owned(),
                    source,
                })?;
            if n == 0 {
                break;
            }
            line_no += 1;
            let line = std::str::from_utf8(&raw)
                .map_err(|_| bad(line_no, "not UTF-8".to_owned()))?
                .trim_end_matches(['\n', '\r']);
            if line.is_empty() {
                continue;
            }
            let [first, last, number, org] = split_row(line).map_err(|d| bad(line_no, d))?;
            let first: IpAddr = first.parse().map_err(|_| {
                bad(
                    line_no,
                    format!("first address {first:?} is not an IP address"),
                )
            })?;
            let last: IpAddr = last.parse().map_err(|_| {
                bad(
                    line_no,
                    format!("last address {last:?} is not an IP address"),
                )
            })?;
            let number: u32 = number
                .parse()
                .map_err(|_| bad(line_no, format!("AS number {number:?} is not a number")))?;
            self.asn_range(first, last, number, &org)
                .map_err(|e| bad(line_no, e.to_string()))?;
            rows += 1;
        }
        Ok(rows)
    }
}

/// Splits one CSV line into exactly four fields, undoing quoting.
fn split_row(line: &str) -> Result<[Cow<'_, str>; 4], String> {
    let mut fields: [Cow<'_, str>; 4] = Default::default();
    let mut rest = line;
    for (i, slot) in fields.iter_mut().enumerate() {
        let (field, after) = if let Some(quoted) = rest.strip_prefix('"') {
            take_quoted(quoted).ok_or_else(|| format!("field {}: unterminated quote", i + 1))?
        } else {
            match rest.find(',') {
                Some(comma) => (
                    Cow::Borrowed(rest.get(..comma).unwrap_or_default()),
                    rest.get(comma..).unwrap_or_default(),
                ),
                None => (Cow::Borrowed(rest), ""),
            }
        };
        *slot = field;
        rest = if i < 3 {
            after
                .strip_prefix(',')
                .ok_or_else(|| format!("{} field(s), expected 4", i + 1))?
        } else if after.is_empty() {
            ""
        } else {
            return Err("more than 4 fields".to_owned());
        };
    }
    Ok(fields)
}

/// After an opening quote: the field's text and what follows its closing quote.
fn take_quoted(s: &str) -> Option<(Cow<'_, str>, &str)> {
    let mut owned: Option<String> = None;
    let mut from = 0;
    loop {
        let at = from + s.get(from..)?.find('"')?;
        let after = s.get(at + 1..)?;
        if after.starts_with('"') {
            // A doubled quote: one literal quote, keep going.
            owned
                .get_or_insert_with(String::new)
                .push_str(s.get(from..=at)?);
            from = at + 2;
        } else {
            let tail = s.get(from..at)?;
            let text = match owned {
                Some(mut text) => {
                    text.push_str(tail);
                    Cow::Owned(text)
                }
                None => Cow::Borrowed(tail),
            };
            return Some((text, after));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splits_plain_and_quoted_fields() {
        let row = split_row(r#"1.0.0.0,1.0.0.255,13335,"Cloudflare, Inc.""#).expect("row");
        assert_eq!(row, ["1.0.0.0", "1.0.0.255", "13335", "Cloudflare, Inc."]);
        let row = split_row(r#"2.26.200.0,2.26.215.255,201907,"LLC ""SPUTNIK""""#).expect("row");
        assert_eq!(row[3], r#"LLC "SPUTNIK""#);
        let row = split_row("::,::1,1,").expect("row");
        assert_eq!(row[3], "");
    }

    #[test]
    fn refuses_malformed_rows() {
        for line in [
            "1.0.0.0,1.0.0.255,13335",
            "1.0.0.0",
            r#"1.0.0.0,1.0.0.255,13335,"Cloudflare"#,
            "1.0.0.0,1.0.0.255,13335,a,b",
            r#"1.0.0.0,1.0.0.255,13335,"a"b"#,
        ] {
            assert!(split_row(line).is_err(), "{line:?}");
        }
    }
}
