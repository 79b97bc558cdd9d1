//! NYC Open Data (Socrata) JSON: the paged `resource/<id>.json` API and
//! saved responses.
//!
//! Socrata returns an array of objects with lowercase field names
//! (`vendorid`, `pulocationid`…), every value a string, and omits null
//! fields. Paging uses `$limit`/`$offset` ordered by `:id`, so pages are
//! stable and the row number of a record is its offset in that order.

use std::borrow::Cow;
use std::path::Path;
use std::sync::Arc;

use backon::Retryable;
use serde_json::{Map, Value};
use tracing::warn;

use super::fields::{FIELD_COUNT, Field, LayoutProblem, is_legacy_coordinate, parse_row, push_row};
use super::http::{AttemptError, RetryPolicy};
use super::{ReadBatch, SourceError, TripReader, dataset_of};
use crate::dead_letter::DeadLetter;
use crate::trip::{Dataset, SourceRef, TripBatch};

/// Converts Socrata records to a batch; `first_row` is the offset of `records[0]`.
pub fn records_to_batch(
    name: &Arc<str>,
    default_dataset: Dataset,
    records: &[Value],
    first_row: u64,
) -> Result<ReadBatch, SourceError> {
    let dataset = records
        .first()
        .and_then(Value::as_object)
        .map(|o| {
            let has = |p: &str| o.keys().any(|k| k.to_ascii_lowercase().starts_with(p));
            let layout = if has("tpep_") {
                Some(Dataset::Yellow)
            } else if has("lpep_") {
                Some(Dataset::Green)
            } else {
                None
            };
            dataset_of(layout, name, default_dataset)
        })
        .unwrap_or(default_dataset);
    if let Some(o) = records.first().and_then(Value::as_object) {
        let legacy: Vec<String> = o
            .keys()
            .filter(|k| is_legacy_coordinate(k))
            .cloned()
            .collect();
        let zones = o
            .keys()
            .any(|k| Field::from_column(k) == Some(Field::PuLocationId));
        if !legacy.is_empty() && !zones {
            return Err(SourceError::Layout {
                name: name.to_string(),
                problem: LayoutProblem::LegacyCoordinates(legacy),
            });
        }
    }
    let mut out = ReadBatch {
        trips: TripBatch::with_capacity(name.clone(), dataset, records.len()),
        rejects: Vec::new(),
    };
    for (i, rec) in records.iter().enumerate() {
        let row = first_row + i as u64;
        let source = || SourceRef {
            source: name.to_string(),
            row,
        };
        let Some(obj) = rec.as_object() else {
            out.rejects.push(DeadLetter::unparsable(
                source(),
                "record",
                "not a JSON object".into(),
                Some(rec.to_string()),
            ));
            continue;
        };
        let texts = texts_of(obj);
        match parse_row(|f| texts[f.index()].as_deref()) {
            Ok(r) => push_row(&mut out.trips, row, &r),
            Err(e) => out.rejects.push(DeadLetter::unparsable(
                source(),
                e.field.name(),
                e.detail(),
                Some(rec.to_string()),
            )),
        }
    }
    Ok(out)
}

fn texts_of(obj: &Map<String, Value>) -> [Option<Cow<'_, str>>; FIELD_COUNT] {
    let mut texts: [Option<Cow<'_, str>>; FIELD_COUNT] = Default::default();
    for (k, v) in obj {
        let Some(f) = Field::from_column(k) else {
            continue;
        };
        texts[f.index()] = match v {
            Value::String(s) => Some(Cow::Borrowed(s.as_str())),
            Value::Number(n) => Some(Cow::Owned(n.to_string())),
            Value::Bool(b) => Some(Cow::Borrowed(if *b { "Y" } else { "N" })),
            Value::Null => None,
            other => Some(Cow::Owned(other.to_string())),
        };
    }
    texts
}

/// A saved Open Data response (a JSON array of records) on disk.
pub struct JsonFileReader {
    batch: Option<ReadBatch>,
    name: Arc<str>,
    rows: u64,
}

impl JsonFileReader {
    pub fn open(path: &Path, name: &str, default_dataset: Dataset) -> Result<Self, SourceError> {
        let bytes = std::fs::read(path).map_err(|error| SourceError::Io {
            name: name.to_string(),
            error,
        })?;
        Self::from_bytes(&bytes, name, default_dataset)
    }

    /// Reads a response already in memory (a decompressed file).
    pub fn from_bytes(
        bytes: &[u8],
        name: &str,
        default_dataset: Dataset,
    ) -> Result<Self, SourceError> {
        let value: Value = serde_json::from_slice(bytes).map_err(|e| SourceError::Json {
            name: name.to_string(),
            message: e.to_string(),
        })?;
        let records = match value {
            Value::Array(a) => a,
            _ => {
                return Err(SourceError::Json {
                    name: name.to_string(),
                    message: "expected an array of records".into(),
                });
            }
        };
        let name: Arc<str> = name.into();
        let batch = records_to_batch(&name, default_dataset, &records, 0)?;
        Ok(Self {
            rows: records.len() as u64,
            batch: Some(batch),
            name,
        })
    }
}

impl TripReader for JsonFileReader {
    fn name(&self) -> &str {
        &self.name
    }

    fn total_rows(&self) -> Option<u64> {
        Some(self.rows)
    }

    fn next_batch(&mut self) -> Result<Option<ReadBatch>, SourceError> {
        Ok(self.batch.take())
    }
}

/// Where to page from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OpenDataQuery {
    /// `https://<domain>/resource/<dataset-id>.json`.
    pub url: String,
    pub page_size: u32,
    /// SoQL `$where` filter.
    pub where_clause: Option<String>,
    pub app_token: Option<String>,
    /// Stop after this many records.
    pub limit: Option<u64>,
}

impl OpenDataQuery {
    /// Accepts a full resource URL or the short `<domain>/<dataset-id>`.
    pub fn new(resource: &str, page_size: u32) -> Self {
        let url = if resource.starts_with("http://") || resource.starts_with("https://") {
            resource.to_string()
        } else {
            let (domain, id) = resource
                .rsplit_once('/')
                .unwrap_or(("data.cityofnewyork.us", resource));
            format!(
                "https://{domain}/resource/{}.json",
                id.trim_end_matches(".json")
            )
        };
        Self {
            url,
            page_size: page_size.max(1),
            where_clause: None,
            app_token: None,
            limit: None,
        }
    }

    /// The source name recorded in rows: `opendata:<url without query>`.
    pub fn source_name(&self) -> String {
        format!("opendata:{}", self.url)
    }
}

/// Pages through the Socrata API.
pub struct OpenDataPager {
    client: reqwest::Client,
    query: OpenDataQuery,
    retry: RetryPolicy,
    name: Arc<str>,
    default_dataset: Dataset,
    offset: u64,
    done: bool,
}

impl OpenDataPager {
    pub fn new(
        client: reqwest::Client,
        query: OpenDataQuery,
        retry: RetryPolicy,
        default_dataset: Dataset,
    ) -> Self {
        Self {
            name: query.source_name().into(),
            client,
            query,
            retry,
            default_dataset,
            offset: 0,
            done: false,
        }
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    /// The next page as a batch; `Ok(None)` after the last page.
    pub async fn next_batch(&mut self) -> Result<Option<ReadBatch>, SourceError> {
        if self.done {
            return Ok(None);
        }
        let mut limit = u64::from(self.query.page_size);
        if let Some(max) = self.query.limit {
            limit = limit.min(max.saturating_sub(self.offset));
            if limit == 0 {
                self.done = true;
                return Ok(None);
            }
        }
        let records = self.fetch(limit).await?;
        if (records.len() as u64) < limit {
            self.done = true;
        }
        if records.is_empty() {
            return Ok(None);
        }
        let batch = records_to_batch(&self.name, self.default_dataset, &records, self.offset)?;
        self.offset += records.len() as u64;
        Ok(Some(batch))
    }

    async fn fetch(&self, limit: u64) -> Result<Vec<Value>, SourceError> {
        let mut params = vec![
            ("$limit", limit.to_string()),
            ("$offset", self.offset.to_string()),
            ("$order", ":id".to_string()),
        ];
        if let Some(w) = &self.query.where_clause {
            params.push(("$where", w.clone()));
        }
        let attempt = || async {
            let url = reqwest::Url::parse_with_params(&self.query.url, &params).map_err(|e| {
                AttemptError::permanent(format!("invalid URL {}: {e}", self.query.url))
            })?;
            let mut req = self.client.get(url);
            if let Some(token) = &self.query.app_token {
                req = req.header("X-App-Token", token);
            }
            let resp = req.send().await.map_err(AttemptError::from_reqwest)?;
            if !resp.status().is_success() {
                return Err(AttemptError::from_status(resp.status(), &self.query.url));
            }
            let body = resp.bytes().await.map_err(AttemptError::from_reqwest)?;
            match serde_json::from_slice::<Value>(&body) {
                Ok(Value::Array(records)) => Ok(records),
                Ok(_) => Err(AttemptError::permanent("expected a JSON array of records")),
                Err(e) => Err(AttemptError::permanent(format!("invalid JSON: {e}"))),
            }
        };
        attempt
            .retry(self.retry.backoff())
            .when(|e: &AttemptError| e.transient)
            .notify(|e, delay| warn!(url = %self.query.url, offset = self.offset, error = %e.message, ?delay, "Open Data page failed; retrying"))
            .await
            .map_err(|e| SourceError::Http {
                name: self.name.to_string(),
                message: format!("page at offset {}: {}", self.offset, e.message),
            })
    }
}
