//! The Cassandra results table, defined once: the operator creates it from a
//! CassandraSink, the sink workers write every closed window into it.
//!
//! Names go into every statement quoted ([`quote_cql_identifier`]): the CRD
//! allows only lower-case names, for which quoted and unquoted name the same
//! table, and quoting keeps any name from changing a statement's meaning.

use crate::sink::{ClusteringOrder, quote_cql_identifier};

/// Version of the layout below, recorded in a CassandraSink's `status.schemaVersion`.
pub const SCHEMA_VERSION: i32 = 1;

/// The primary key columns. `((group_key, day), window_start)` makes every
/// write of a window an idempotent upsert and bounds partitions to one key-day.
pub const KEY_COLUMNS: [(&str, &str); 3] = [
    ("group_key", "text"),
    ("day", "date"),
    ("window_start", "timestamp"),
];

/// The columns after the key: one row per closed window.
pub const VALUE_COLUMNS: [(&str, &str); 16] = [
    ("window_end", "timestamp"),
    ("group_by", "text"),
    ("key_name", "text"),
    ("zone", "text"),
    ("borough", "text"),
    ("trips", "bigint"),
    ("passengers", "bigint"),
    ("max_passengers", "int"),
    ("sum_fare", "double"),
    ("sum_tip", "double"),
    ("sum_tolls", "double"),
    ("sum_total", "double"),
    ("avg_distance", "double"),
    ("avg_duration_s", "double"),
    ("avg_speed_mph", "double"),
    ("avg_tip_ratio", "double"),
];

fn all_columns() -> impl Iterator<Item = &'static (&'static str, &'static str)> {
    KEY_COLUMNS.iter().chain(VALUE_COLUMNS.iter())
}

/// `"keyspace"."table"`.
pub fn qualified(keyspace: &str, table: &str) -> String {
    format!(
        "{}.{}",
        quote_cql_identifier(keyspace),
        quote_cql_identifier(table)
    )
}

/// `ASC` or `DESC`, as CQL writes a clustering order.
pub fn order_cql(order: ClusteringOrder) -> &'static str {
    match order {
        ClusteringOrder::Asc => "ASC",
        ClusteringOrder::Desc => "DESC",
    }
}

/// `CREATE TABLE IF NOT EXISTS` for the results table.
pub fn create_table(
    keyspace: &str,
    table: &str,
    order: ClusteringOrder,
    ttl_seconds: i32,
) -> String {
    let columns: String = all_columns()
        .map(|(c, t)| format!("    {c} {t},\n"))
        .collect();
    let order = order_cql(order);
    format!(
        "CREATE TABLE IF NOT EXISTS {} (\n{columns}    PRIMARY KEY ((group_key, day), window_start)\n) WITH CLUSTERING ORDER BY (window_start {order}) AND default_time_to_live = {ttl_seconds}",
        qualified(keyspace, table)
    )
}

/// The upsert of one window, binding [`KEY_COLUMNS`] then [`VALUE_COLUMNS`] in order.
pub fn upsert(keyspace: &str, table: &str) -> String {
    let names: Vec<&str> = all_columns().map(|(c, _)| *c).collect();
    format!(
        "INSERT INTO {} ({}) VALUES ({})",
        qualified(keyspace, table),
        names.join(", "),
        vec!["?"; names.len()].join(", ")
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table_and_upsert_name_the_same_columns() {
        let ddl = create_table("taxi", "zone_window_stats", ClusteringOrder::Desc, 86_400);
        assert!(ddl.starts_with(r#"CREATE TABLE IF NOT EXISTS "taxi"."zone_window_stats" ("#));
        assert!(ddl.contains("PRIMARY KEY ((group_key, day), window_start)"));
        assert!(ddl.contains("CLUSTERING ORDER BY (window_start DESC)"));
        assert!(ddl.contains("default_time_to_live = 86400"));
        let upsert = upsert("taxi", "zone_window_stats");
        assert!(upsert.starts_with(
            r#"INSERT INTO "taxi"."zone_window_stats" (group_key, day, window_start, window_end, "#
        ));
        assert_eq!(upsert.matches('?').count(), 19);
        for (column, kind) in all_columns() {
            assert!(ddl.contains(&format!("    {column} {kind},\n")), "{column}");
            assert!(upsert.contains(column), "{column}");
        }
    }
}
