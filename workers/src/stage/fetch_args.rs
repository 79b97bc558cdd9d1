//! The download options `run` and `ingest` share: retries, timeouts and
//! where downloads are kept.

use std::path::PathBuf;
use std::time::Duration;

use crate::source::http::{FetchOptions, RetryPolicy, Timeouts};

/// Parses `90`, `90s`, `5m`, `1h`, `1d` into seconds.
pub fn parse_duration(s: &str) -> Result<u64, String> {
    let s = s.trim();
    let (num, unit) = s.split_at(s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len()));
    let n: u64 = num
        .parse()
        .map_err(|_| format!("{s:?} is not a duration like 300s, 5m or 1h"))?;
    let mult = match unit {
        "" | "s" => 1,
        "m" | "min" => 60,
        "h" => 3_600,
        "d" => 86_400,
        _ => return Err(format!("{s:?}: unknown unit {unit:?} (use s, m, h or d)")),
    };
    n.checked_mul(mult)
        .ok_or_else(|| format!("{s:?} is too long"))
}

#[derive(Debug, Clone, clap::Args)]
pub struct FetchArgs {
    /// Where downloaded inputs are kept (a partial download is resumed).
    #[arg(long, default_value_os_t = std::env::temp_dir().join("taxistream-downloads"))]
    pub download_dir: PathBuf,
    /// Download retries per file or Open Data page.
    #[arg(long, default_value_t = 5)]
    pub retries: usize,
    /// How long a download may take to connect, e.g. `10s`.
    #[arg(long, default_value = "10s", value_parser = parse_duration)]
    pub connect_timeout: u64,
    /// How long a download may wait for the server between two reads.
    #[arg(long, default_value = "30s", value_parser = parse_duration)]
    pub read_timeout: u64,
}

impl FetchArgs {
    pub fn options(&self) -> FetchOptions {
        FetchOptions {
            retry: RetryPolicy {
                max_retries: self.retries,
                ..RetryPolicy::default()
            },
            timeouts: Timeouts {
                connect: Duration::from_secs(self.connect_timeout),
                read: Duration::from_secs(self.read_timeout),
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::parse_duration;

    #[test]
    fn durations_parse() {
        assert_eq!(parse_duration("300"), Ok(300));
        assert_eq!(parse_duration("5m"), Ok(300));
        assert_eq!(parse_duration("1h"), Ok(3_600));
        assert_eq!(parse_duration("2d"), Ok(172_800));
        assert!(parse_duration("5 weeks").is_err());
        assert!(parse_duration("m").is_err());
    }
}
