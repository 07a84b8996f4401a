//! Small statistics and number formatting for the report: percentiles of pooled samples,
//! medians of per-round figures, and human units (µs, k/s, Gbit/s). Pure functions only.

/// The `q`-quantile (0.0–1.0) of `samples` by the nearest-rank method; `None` when empty.
pub fn percentile(samples: &[f64], q: f64) -> Option<f64> {
    if samples.is_empty() {
        return None;
    }
    let mut v = samples.to_vec();
    v.sort_by(f64::total_cmp);
    let n = v.len();
    // Nearest rank: the smallest value with at least q·n samples at or below it.
    let rank = (q * n as f64).ceil().clamp(1.0, n as f64) as usize;
    v.get(rank - 1).copied()
}

/// The median of per-round figures; `None` when empty.
pub fn median(values: &[f64]) -> Option<f64> {
    if values.is_empty() {
        return None;
    }
    let mut v = values.to_vec();
    v.sort_by(f64::total_cmp);
    let n = v.len();
    let mid = n / 2;
    if n % 2 == 1 {
        v.get(mid).copied()
    } else {
        Some((v.get(mid - 1)? + v.get(mid)?) / 2.0)
    }
}

/// Microseconds with a precision that suits the size: `6.1 µs`, `271 µs`, `1.25 ms`.
pub fn us(v: f64) -> String {
    if v.abs() >= 10_000.0 {
        format!("{:.2} ms", v / 1000.0)
    } else if v.abs() >= 100.0 {
        format!("{v:.0} µs")
    } else {
        format!("{v:.1} µs")
    }
}

/// A signed microsecond difference: `+8.8 µs`, `-0.4 µs`.
pub fn delta_us(v: f64) -> String {
    if v >= 0.0 {
        format!("+{}", us(v))
    } else {
        format!("-{}", us(-v))
    }
}

/// An integer with thousands separators: `29,800`.
pub fn thousands(v: f64) -> String {
    let n = v.round().max(0.0) as u64;
    let s = n.to_string();
    let mut out = String::with_capacity(s.len() + s.len() / 3);
    for (i, c) in s.chars().enumerate() {
        if i > 0 && (s.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

/// A ratio as a percentage: `93.4%`.
pub fn pct(ratio: f64) -> String {
    format!("{:.1}%", ratio * 100.0)
}

/// Bytes as MiB: `12.3 MiB`.
pub fn mib(bytes: u64) -> String {
    format!("{:.1} MiB", bytes as f64 / (1024.0 * 1024.0))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_use_nearest_rank() {
        let v: Vec<f64> = (1..=100).map(f64::from).collect();
        assert_eq!(percentile(&v, 0.5), Some(50.0));
        assert_eq!(percentile(&v, 0.99), Some(99.0));
        assert_eq!(percentile(&v, 1.0), Some(100.0));
        assert_eq!(percentile(&[], 0.5), None);
        assert_eq!(percentile(&[7.0], 0.99), Some(7.0));
    }

    #[test]
    fn medians_of_odd_and_even_counts() {
        assert_eq!(median(&[3.0, 1.0, 2.0]), Some(2.0));
        assert_eq!(median(&[4.0, 1.0, 2.0, 3.0]), Some(2.5));
        assert_eq!(median(&[]), None);
    }

    #[test]
    fn formatting() {
        assert_eq!(thousands(29_800.4), "29,800");
        assert_eq!(thousands(999.0), "999");
        assert_eq!(thousands(1_234_567.0), "1,234,567");
        assert_eq!(us(6.14), "6.1 µs");
        assert_eq!(us(271.4), "271 µs");
        assert_eq!(us(12_500.0), "12.50 ms");
        assert_eq!(delta_us(-0.44), "-0.4 µs");
        assert_eq!(pct(0.934), "93.4%");
    }
}
