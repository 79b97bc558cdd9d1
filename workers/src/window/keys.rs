//! Group keys: maps each record to a small dense key index, and each index
//! back to its label and zone enrichment.
//!
//! Every supported key has a small domain (265 zones, a handful of boroughs
//! or payment types), so accumulators live in a dense array per window
//! instead of a hash map.

use std::sync::Arc;

use serde::{Deserialize, Serialize};

use super::GroupBy;
use crate::trip::{NULL_I32, TripBatch};
use crate::zones::{MAX_ZONE, ZoneLookup};

/// TLC payment type codes 0..=6 and their dictionary names.
const PAYMENT_TYPES: [&str; 7] = [
    "Flex Fare trip",
    "Credit card",
    "Cash",
    "No charge",
    "Dispute",
    "Unknown",
    "Voided trip",
];

/// What a key index stands for, and the enrichment emitted with it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct KeyInfo {
    /// Zone id, payment type code (-1 for null or out-of-dictionary), or borough index.
    pub key: i32,
    /// Human-readable key: zone name, borough or payment type name.
    pub name: Arc<str>,
    /// Zone name, when keyed by zone.
    pub zone: Option<Arc<str>>,
    /// Borough, when keyed by zone or borough.
    pub borough: Option<Arc<str>>,
}

/// Maps rows to key indices under one grouping.
#[derive(Debug, Clone)]
pub struct KeyMapper {
    group_by: GroupBy,
    /// Zone id → borough key index.
    borough_of_zone: Vec<u16>,
    infos: Vec<KeyInfo>,
}

impl KeyMapper {
    pub fn new(group_by: GroupBy, zones: &ZoneLookup) -> Self {
        let unknown: Arc<str> = "Unknown".into();
        let infos = match group_by {
            GroupBy::PickupZone | GroupBy::DropoffZone => (0..=MAX_ZONE)
                .map(|id| match zones.zone(id) {
                    Some(z) => KeyInfo {
                        key: id,
                        name: z.name.clone(),
                        zone: Some(z.name.clone()),
                        borough: Some(z.borough.clone()),
                    },
                    None => KeyInfo {
                        key: id,
                        name: unknown.clone(),
                        zone: None,
                        borough: None,
                    },
                })
                .collect(),
            GroupBy::Borough => zones
                .boroughs()
                .iter()
                .chain(std::iter::once(&unknown))
                .enumerate()
                .map(|(i, b)| KeyInfo {
                    key: i as i32,
                    name: b.clone(),
                    zone: None,
                    borough: Some(b.clone()),
                })
                .collect(),
            GroupBy::PaymentType => PAYMENT_TYPES
                .iter()
                .enumerate()
                .map(|(i, n)| (i as i32, *n))
                .chain(std::iter::once((-1, "Null or other")))
                .map(|(key, n)| KeyInfo {
                    key,
                    name: n.into(),
                    zone: None,
                    borough: None,
                })
                .collect(),
        };
        let unknown_borough = zones.boroughs().len() as u16;
        let borough_of_zone = zones
            .borough_index_table()
            .into_iter()
            .map(|b| if b == u16::MAX { unknown_borough } else { b })
            .collect();
        Self {
            group_by,
            borough_of_zone,
            infos,
        }
    }

    /// Number of distinct key indices.
    pub fn key_count(&self) -> usize {
        self.infos.len()
    }

    pub fn info(&self, key: u16) -> &KeyInfo {
        &self.infos[usize::from(key)]
    }

    /// Writes the key index of every row of `batch` into `out`.
    pub fn fill(&self, batch: &TripBatch, out: &mut Vec<u16>) {
        out.clear();
        // Out-of-range zones are rejected by validation; if one gets here anyway
        // it is keyed to 0 ("Unknown") rather than indexing out of bounds.
        let zone_key = |z: i32| {
            if (1..=MAX_ZONE).contains(&z) {
                z as u16
            } else {
                0
            }
        };
        match self.group_by {
            GroupBy::PickupZone => out.extend(batch.pu_location_id.iter().map(|&z| zone_key(z))),
            GroupBy::DropoffZone => out.extend(batch.do_location_id.iter().map(|&z| zone_key(z))),
            GroupBy::Borough => out.extend(
                batch
                    .pu_location_id
                    .iter()
                    .map(|&z| self.borough_of_zone[usize::from(zone_key(z))]),
            ),
            GroupBy::PaymentType => {
                let other = (self.infos.len() - 1) as u16;
                out.extend(batch.payment_type.iter().map(|&p| {
                    if p != NULL_I32 && (0..PAYMENT_TYPES.len() as i32).contains(&p) {
                        p as u16
                    } else {
                        other
                    }
                }))
            }
        }
    }
}
