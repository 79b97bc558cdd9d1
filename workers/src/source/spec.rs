//! What the user names as input, resolved into concrete sources.

use std::path::PathBuf;

use crate::trip::Dataset;
use crate::validate::Month;

/// The TLC's public trip-data location.
pub const TLC_BASE_URL: &str = "https://d37ci6vzurychx.cloudfront.net/trip-data";

/// One input: a local file or an `http(s)` URL.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum InputSpec {
    Path(PathBuf),
    Url(String),
}

impl InputSpec {
    pub fn parse(s: &str) -> Self {
        if s.starts_with("http://") || s.starts_with("https://") {
            InputSpec::Url(s.to_string())
        } else {
            InputSpec::Path(PathBuf::from(s))
        }
    }

    /// The source identity recorded in rows.
    pub fn name(&self) -> String {
        match self {
            InputSpec::Path(p) => p.display().to_string(),
            InputSpec::Url(u) => u.clone(),
        }
    }
}

/// An inclusive month range, written `2024-01..2024-03` (or one month).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MonthRange {
    pub from: Month,
    pub to: Month,
}

impl std::str::FromStr for MonthRange {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let (a, b) = s.split_once("..").unwrap_or((s, s));
        let from: Month = a.trim().parse()?;
        let to: Month = b.trim().parse()?;
        if to < from {
            return Err(format!("month range {s:?} ends before it starts"));
        }
        Ok(Self { from, to })
    }
}

impl MonthRange {
    /// The TLC file URLs of the range: `<base>/<dataset>_tripdata_<YYYY-MM>.parquet`.
    pub fn urls(&self, base_url: &str, dataset: Dataset) -> Vec<String> {
        let base = base_url.trim_end_matches('/');
        let mut out = Vec::new();
        let mut m = self.from;
        while m <= self.to {
            out.push(format!("{base}/{}_tripdata_{m}.parquet", dataset.as_str()));
            m = m.next();
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn expands_month_ranges_across_years() {
        let r: MonthRange = "2024-11..2025-02".parse().unwrap();
        let urls = r.urls("https://example.test/trip-data/", Dataset::Green);
        assert_eq!(urls.len(), 4);
        assert_eq!(
            urls[0],
            "https://example.test/trip-data/green_tripdata_2024-11.parquet"
        );
        assert_eq!(
            urls[3],
            "https://example.test/trip-data/green_tripdata_2025-02.parquet"
        );
        assert!("2025-02..2024-01".parse::<MonthRange>().is_err());
        assert_eq!(
            "2025-02"
                .parse::<MonthRange>()
                .unwrap()
                .urls("b", Dataset::Yellow)
                .len(),
            1
        );
    }

    #[test]
    fn parses_inputs() {
        assert_eq!(
            InputSpec::parse("https://x/y.parquet"),
            InputSpec::Url("https://x/y.parquet".into())
        );
        assert_eq!(
            InputSpec::parse("a/b.csv"),
            InputSpec::Path("a/b.csv".into())
        );
    }
}
