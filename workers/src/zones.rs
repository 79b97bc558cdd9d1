//! TLC taxi zones: id → zone name, borough and service zone.
//!
//! The lookup ships inside the binary (`workers/data/taxi_zone_lookup.csv`,
//! the TLC's current file), so enrichment needs no file at run time; a
//! different copy can be loaded with [`ZoneLookup::from_path`].

use std::path::Path;
use std::sync::{Arc, LazyLock};

/// Highest valid TLC zone id (264 = Unknown, 265 = Outside of NYC).
pub const MAX_ZONE: i32 = 265;

const EMBEDDED: &str = include_str!("../data/taxi_zone_lookup.csv");

static EMBEDDED_LOOKUP: LazyLock<ZoneLookup> =
    // The embedded file is covered by a unit test, so it always parses.
    LazyLock::new(|| {
        ZoneLookup::parse(EMBEDDED.as_bytes(), "embedded taxi_zone_lookup.csv").unwrap_or_default()
    });

#[derive(Debug, thiserror::Error)]
pub enum ZoneError {
    #[error("{source_name}: cannot read zone lookup: {error}")]
    Read {
        source_name: String,
        #[source]
        error: csv::Error,
    },
    #[error("{source_name} line {line}: {message}")]
    Invalid {
        source_name: String,
        line: u64,
        message: String,
    },
}

/// One zone.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Zone {
    pub id: i32,
    pub name: Arc<str>,
    pub borough: Arc<str>,
    /// Index of `borough` in [`ZoneLookup::boroughs`].
    pub borough_index: u16,
    pub service_zone: Arc<str>,
}

/// Zone table indexed by zone id.
#[derive(Debug, Clone, Default)]
pub struct ZoneLookup {
    /// Index = zone id; ids absent from the file are `None`.
    zones: Vec<Option<Zone>>,
    /// Distinct boroughs in order of first appearance.
    boroughs: Vec<Arc<str>>,
}

impl ZoneLookup {
    /// The lookup compiled into the binary.
    pub fn embedded() -> &'static ZoneLookup {
        &EMBEDDED_LOOKUP
    }

    /// Loads a `LocationID,Borough,Zone,service_zone` CSV file.
    pub fn from_path(path: &Path) -> Result<ZoneLookup, ZoneError> {
        let name = path.display().to_string();
        let file = std::fs::File::open(path).map_err(|e| ZoneError::Read {
            source_name: name.clone(),
            error: e.into(),
        })?;
        Self::parse(file, &name)
    }

    /// Parses the lookup CSV (quoted or not, with a header line).
    pub fn parse<R: std::io::Read>(reader: R, source_name: &str) -> Result<ZoneLookup, ZoneError> {
        let mut rdr = csv::ReaderBuilder::new()
            .has_headers(true)
            .flexible(true)
            .from_reader(reader);
        let mut lookup = ZoneLookup::default();
        for (i, rec) in rdr.records().enumerate() {
            let line = i as u64 + 2;
            let rec = rec.map_err(|error| ZoneError::Read {
                source_name: source_name.to_string(),
                error,
            })?;
            let invalid = |message: String| ZoneError::Invalid {
                source_name: source_name.to_string(),
                line,
                message,
            };
            if rec.len() < 3 {
                return Err(invalid(format!(
                    "expected at least 3 fields, got {}",
                    rec.len()
                )));
            }
            let id: i32 = rec[0]
                .trim()
                .parse()
                .map_err(|_| invalid(format!("LocationID {:?} is not an integer", &rec[0])))?;
            if !(1..=MAX_ZONE).contains(&id) {
                return Err(invalid(format!("LocationID {id} outside 1..={MAX_ZONE}")));
            }
            let borough = rec[1].trim();
            let borough_index = match lookup.boroughs.iter().position(|b| &**b == borough) {
                Some(p) => p,
                None => {
                    lookup.boroughs.push(borough.into());
                    lookup.boroughs.len() - 1
                }
            };
            let idx = id as usize;
            if lookup.zones.len() <= idx {
                lookup.zones.resize(idx + 1, None);
            }
            lookup.zones[idx] = Some(Zone {
                id,
                name: rec[2].trim().into(),
                borough: lookup.boroughs[borough_index].clone(),
                borough_index: borough_index as u16,
                service_zone: rec.get(3).unwrap_or("").trim().into(),
            });
        }
        Ok(lookup)
    }

    /// The zone with this id, if the lookup has it.
    pub fn zone(&self, id: i32) -> Option<&Zone> {
        usize::try_from(id)
            .ok()
            .and_then(|i| self.zones.get(i))
            .and_then(Option::as_ref)
    }

    /// Distinct boroughs, in file order.
    pub fn boroughs(&self) -> &[Arc<str>] {
        &self.boroughs
    }

    /// Borough index of every zone id `0..=MAX_ZONE` (`u16::MAX` where unknown),
    /// for branch-free key mapping in the window engine.
    pub fn borough_index_table(&self) -> Vec<u16> {
        (0..=MAX_ZONE)
            .map(|id| self.zone(id).map_or(u16::MAX, |z| z.borough_index))
            .collect()
    }

    /// Number of zones loaded.
    pub fn len(&self) -> usize {
        self.zones.iter().flatten().count()
    }

    /// True when no zone is loaded.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn embedded_lookup_has_every_zone() {
        let z = ZoneLookup::parse(EMBEDDED.as_bytes(), "embedded").unwrap();
        assert_eq!(z.len(), 265);
        assert_eq!(ZoneLookup::embedded().len(), 265);
        let jfk = z.zone(132).unwrap();
        assert_eq!(&*jfk.name, "JFK Airport");
        assert_eq!(&*jfk.borough, "Queens");
        assert_eq!(&*z.zone(265).unwrap().name, "Outside of NYC");
        assert_eq!(z.boroughs().len(), 8);
        let manhattan = z
            .zones
            .iter()
            .flatten()
            .filter(|z| &*z.borough == "Manhattan")
            .count();
        assert_eq!(manhattan, 69);
        assert!(z.zone(0).is_none());
        assert!(z.zone(266).is_none());
    }

    #[test]
    fn quoted_older_copy_parses() {
        let text = "\"LocationID\",\"Borough\",\"Zone\",\"service_zone\"\n\"1\",\"EWR\",\"Newark Airport\",\"EWR\"\n\"264\",\"Unknown\",\"NV\",\"N/A\"\n";
        let z = ZoneLookup::parse(text.as_bytes(), "old").unwrap();
        assert_eq!(&*z.zone(264).unwrap().name, "NV");
    }

    #[test]
    fn bad_id_names_line() {
        let text = "LocationID,Borough,Zone,service_zone\n1,EWR,Newark Airport,EWR\nx,Queens,Foo,Boro Zone\n";
        let err = ZoneLookup::parse(text.as_bytes(), "bad.csv")
            .unwrap_err()
            .to_string();
        assert!(err.contains("bad.csv line 3"), "{err}");
    }
}
