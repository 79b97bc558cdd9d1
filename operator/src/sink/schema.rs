//! The results schema: keyspace and table DDL, pure so it is tested
//! without Cassandra.
//!
//! Keyspace and table names go into every statement quoted, so no name can
//! change a statement's meaning even if it got past the CRD schema (which
//! allows only lower-case names and no reserved words; quoting lower case
//! names the same objects as the unquoted form). Datacenter names are free
//! text and go in as quoted string literals.

use std::collections::BTreeMap;

use taxistream_crds::CassandraSinkSpec;
use taxistream_crds::results_table;
use taxistream_crds::sink::{ReplicationStrategy, quote_cql_identifier};

fn literal(s: &str) -> String {
    format!("'{}'", s.replace('\'', "''"))
}

/// The replication map the spec asks for, as Cassandra reports it in
/// `system_schema.keyspaces` (strategy class without its package).
pub fn replication(spec: &CassandraSinkSpec) -> BTreeMap<String, String> {
    let ks = &spec.keyspace;
    let mut map = BTreeMap::new();
    match ks.strategy {
        ReplicationStrategy::SimpleStrategy => {
            map.insert("class".to_owned(), "SimpleStrategy".to_owned());
            map.insert(
                "replication_factor".to_owned(),
                ks.replication_factor.to_string(),
            );
        }
        ReplicationStrategy::NetworkTopologyStrategy => {
            map.insert("class".to_owned(), "NetworkTopologyStrategy".to_owned());
            match &ks.datacenters {
                Some(dcs) => {
                    for (dc, rf) in dcs {
                        map.insert(dc.clone(), rf.to_string());
                    }
                }
                None => {
                    map.insert(
                        spec.local_datacenter.clone(),
                        ks.replication_factor.to_string(),
                    );
                }
            }
        }
    }
    map
}

fn replication_cql(spec: &CassandraSinkSpec) -> String {
    let entries: Vec<String> = replication(spec)
        .iter()
        .map(|(k, v)| {
            if k == "class" {
                format!("'class': {}", literal(v))
            } else {
                format!("{}: {v}", literal(k))
            }
        })
        .collect();
    format!("{{{}}}", entries.join(", "))
}

/// Whether the replication Cassandra reports equals the spec's. Cassandra
/// reports the class fully qualified (`org.apache.cassandra.locator.…`).
pub fn replication_matches(
    want: &BTreeMap<String, String>,
    have: &BTreeMap<String, String>,
) -> bool {
    want.len() == have.len()
        && want.iter().all(|(k, v)| match have.get(k) {
            Some(h) if k == "class" => h == v || h.rsplit('.').next() == Some(v.as_str()),
            Some(h) => h == v,
            None => false,
        })
}

fn keyspace(spec: &CassandraSinkSpec) -> String {
    quote_cql_identifier(&spec.keyspace.name)
}

/// `"keyspace"."table"`.
fn table(spec: &CassandraSinkSpec) -> String {
    results_table::qualified(&spec.keyspace.name, &spec.table)
}

pub fn create_keyspace(spec: &CassandraSinkSpec) -> String {
    format!(
        "CREATE KEYSPACE IF NOT EXISTS {} WITH replication = {} AND durable_writes = true",
        keyspace(spec),
        replication_cql(spec)
    )
}

pub fn alter_keyspace(spec: &CassandraSinkSpec) -> String {
    format!(
        "ALTER KEYSPACE {} WITH replication = {}",
        keyspace(spec),
        replication_cql(spec)
    )
}

/// The results table ([`results_table`], shared with the sink workers).
pub fn create_table(spec: &CassandraSinkSpec) -> String {
    results_table::create_table(
        &spec.keyspace.name,
        &spec.table,
        spec.clustering_order,
        spec.ttl_seconds,
    )
}

pub fn alter_ttl(spec: &CassandraSinkSpec) -> String {
    format!(
        "ALTER TABLE {} WITH default_time_to_live = {}",
        table(spec),
        spec.ttl_seconds
    )
}

pub fn drop_table(spec: &CassandraSinkSpec) -> String {
    format!("DROP TABLE IF EXISTS {}", table(spec))
}

pub fn drop_keyspace(spec: &CassandraSinkSpec) -> String {
    format!("DROP KEYSPACE IF EXISTS {}", keyspace(spec))
}

/// What Cassandra reports about an existing table, for drift checks.
#[derive(Clone, Debug, PartialEq)]
pub struct ObservedTable {
    pub default_time_to_live: i32,
    /// `asc` or `desc`, from `system_schema.columns`.
    pub window_start_order: String,
}

/// Changes to make to an existing table, and problems no change can fix.
pub fn table_drift(spec: &CassandraSinkSpec, table: &ObservedTable) -> (bool, Option<String>) {
    let ttl_differs = table.default_time_to_live != spec.ttl_seconds;
    let want = results_table::order_cql(spec.clustering_order);
    let problem = (!table.window_start_order.eq_ignore_ascii_case(want)).then(|| {
        format!(
            "table {}.{} orders window_start {} but the spec asks for {want}; Cassandra cannot change a clustering order, so recreate the table or change spec.clusteringOrder back",
            spec.keyspace.name,
            spec.table,
            table.window_start_order.to_uppercase()
        )
    });
    (ttl_differs, problem)
}

#[cfg(test)]
mod tests {
    use super::*;
    use taxistream_crds::DeletionPolicy;
    use taxistream_crds::sink::{ClusteringOrder, Consistency, KeyspaceSpec};

    fn spec() -> CassandraSinkSpec {
        CassandraSinkSpec {
            contact_points: vec!["cassandra:9042".into()],
            local_datacenter: "dc1".into(),
            tls: None,
            credentials: None,
            keyspace: KeyspaceSpec {
                name: "taxi".into(),
                strategy: ReplicationStrategy::NetworkTopologyStrategy,
                replication_factor: 3,
                datacenters: None,
            },
            table: "zone_window_stats".into(),
            ttl_seconds: 86400,
            consistency: Consistency::LocalQuorum,
            clustering_order: ClusteringOrder::Desc,
            deletion_policy: DeletionPolicy::Retain,
        }
    }

    #[test]
    fn table_has_an_idempotent_key_with_order_and_ttl() {
        let ddl = create_table(&spec());
        assert!(
            ddl.starts_with(r#"CREATE TABLE IF NOT EXISTS "taxi"."zone_window_stats" ("#),
            "{ddl}"
        );
        assert!(
            ddl.contains("PRIMARY KEY ((group_key, day), window_start)"),
            "{ddl}"
        );
        assert!(
            ddl.contains("CLUSTERING ORDER BY (window_start DESC)"),
            "{ddl}"
        );
        assert!(ddl.contains("default_time_to_live = 86400"), "{ddl}");
        assert!(ddl.contains("avg_tip_ratio double"), "{ddl}");
    }

    #[test]
    fn keyspace_replication_follows_the_strategy() {
        let mut s = spec();
        assert_eq!(
            create_keyspace(&s),
            r#"CREATE KEYSPACE IF NOT EXISTS "taxi" WITH replication = {'class': 'NetworkTopologyStrategy', 'dc1': 3} AND durable_writes = true"#
        );
        s.keyspace.datacenters = Some(BTreeMap::from([("east".into(), 3), ("we'st".into(), 2)]));
        assert!(
            alter_keyspace(&s)
                .ends_with("{'class': 'NetworkTopologyStrategy', 'east': 3, 'we''st': 2}")
        );
        s.keyspace.strategy = ReplicationStrategy::SimpleStrategy;
        s.keyspace.datacenters = None;
        assert!(
            create_keyspace(&s).contains("{'class': 'SimpleStrategy', 'replication_factor': 3}")
        );
    }

    /// Every statement names the keyspace and table quoted, so a reserved word
    /// stays a name and a hostile name stays inside its quotes.
    #[test]
    fn every_statement_quotes_keyspace_and_table() {
        let mut s = spec();
        s.keyspace.name = "select".into();
        s.table = r#"t" WITH x"#.into();
        let table = r#""select"."t"" WITH x""#;
        assert_eq!(
            create_keyspace(&s),
            r#"CREATE KEYSPACE IF NOT EXISTS "select" WITH replication = {'class': 'NetworkTopologyStrategy', 'dc1': 3} AND durable_writes = true"#
        );
        assert!(
            alter_keyspace(&s).starts_with(r#"ALTER KEYSPACE "select" WITH replication = "#),
            "{}",
            alter_keyspace(&s)
        );
        assert!(
            create_table(&s).starts_with(&format!("CREATE TABLE IF NOT EXISTS {table} (\n")),
            "{}",
            create_table(&s)
        );
        assert_eq!(
            alter_ttl(&s),
            format!("ALTER TABLE {table} WITH default_time_to_live = 86400")
        );
        assert_eq!(drop_table(&s), format!("DROP TABLE IF EXISTS {table}"));
        assert_eq!(drop_keyspace(&s), r#"DROP KEYSPACE IF EXISTS "select""#);
    }

    #[test]
    fn replication_compares_with_qualified_class_names() {
        let want = replication(&spec());
        let have = BTreeMap::from([
            (
                "class".to_owned(),
                "org.apache.cassandra.locator.NetworkTopologyStrategy".to_owned(),
            ),
            ("dc1".to_owned(), "3".to_owned()),
        ]);
        assert!(replication_matches(&want, &have));
        let fewer = BTreeMap::from([
            (
                "class".to_owned(),
                "org.apache.cassandra.locator.NetworkTopologyStrategy".to_owned(),
            ),
            ("dc1".to_owned(), "1".to_owned()),
        ]);
        assert!(!replication_matches(&want, &fewer));
    }

    #[test]
    fn ttl_drift_is_fixed_and_order_drift_reported() {
        let s = spec();
        let same = ObservedTable {
            default_time_to_live: 86400,
            window_start_order: "desc".into(),
        };
        assert_eq!(table_drift(&s, &same), (false, None));
        let other = ObservedTable {
            default_time_to_live: 0,
            window_start_order: "asc".into(),
        };
        let (ttl, problem) = table_drift(&s, &other);
        assert!(ttl);
        assert!(
            problem
                .unwrap()
                .contains("cannot change a clustering order")
        );
    }
}
