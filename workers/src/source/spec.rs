//! What the user names as input, resolved into concrete sources.

use std::path::PathBuf;

use super::SourceError;

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

/// Endings of the files a directory input is searched for.
pub const TRIP_FILE_ENDINGS: [&str; 5] = [".parquet", ".csv", ".csv.gz", ".json", ".json.gz"];

/// Whether a file name ends like a trip file.
pub fn is_trip_file(name: &str) -> bool {
    let name = name.to_ascii_lowercase();
    TRIP_FILE_ENDINGS.iter().any(|e| name.ends_with(e))
}

/// One input as the user wrote it: a URL, a file, or a directory whose trip
/// files ([`TRIP_FILE_ENDINGS`]) are read in name order, which for TLC names
/// is month order. `run` and `ingest` both expand their inputs with this; a
/// directory without trip files is an error naming it.
pub fn expand_input(s: &str) -> Result<Vec<InputSpec>, SourceError> {
    let spec = InputSpec::parse(s);
    let InputSpec::Path(dir) = &spec else {
        return Ok(vec![spec]);
    };
    if !dir.is_dir() {
        return Ok(vec![spec]);
    }
    let err = |error| SourceError::Io {
        name: dir.display().to_string(),
        error,
    };
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .map_err(err)?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| {
            p.is_file()
                && p.file_name()
                    .and_then(|n| n.to_str())
                    .is_some_and(is_trip_file)
        })
        .collect();
    if files.is_empty() {
        return Err(SourceError::NoTripFiles {
            dir: dir.display().to_string(),
        });
    }
    files.sort();
    Ok(files.into_iter().map(InputSpec::Path).collect())
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
    fn directories_expand_to_their_trip_files_in_name_order() {
        let dir = tempfile::tempdir().unwrap();
        for name in [
            "yellow_tripdata_2024-02.parquet",
            "notes.txt",
            "yellow_tripdata_2024-01.csv",
            "yellow_tripdata_2024-03.csv.gz",
            "archive.gz",
        ] {
            std::fs::write(dir.path().join(name), "").unwrap();
        }
        let specs = expand_input(dir.path().to_str().unwrap()).unwrap();
        let names: Vec<String> = specs.iter().map(|s| s.name()).collect();
        assert_eq!(names.len(), 3, "{names:?}");
        assert!(names[0].ends_with("2024-01.csv") && names[1].ends_with("2024-02.parquet"));
        assert!(names[2].ends_with("2024-03.csv.gz"));
        assert_eq!(
            expand_input("https://x/y.parquet").unwrap(),
            vec![InputSpec::Url("https://x/y.parquet".into())]
        );
        let empty = tempfile::tempdir().unwrap();
        std::fs::write(empty.path().join("notes.txt"), "").unwrap();
        let e = expand_input(empty.path().to_str().unwrap())
            .unwrap_err()
            .to_string();
        assert!(e.contains(&empty.path().display().to_string()), "{e}");
        assert!(e.contains("no trip files"), "{e}");
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
