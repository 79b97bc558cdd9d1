//! A CQL session to the sink's cluster, with credentials and TLS material
//! read from the referenced Secrets.

use std::collections::BTreeMap;
use std::time::Duration;

use openssl::pkey::PKey;
use openssl::ssl::{SslConnector, SslMethod, SslVerifyMode};
use openssl::x509::X509;
use scylla::client::session::{OpenSsl010Config, Session, TlsContext};
use scylla::client::session_builder::SessionBuilder;
use taxistream_crds::CassandraSinkSpec;

use super::schema::ObservedTable;
use crate::error::{Error, Result};
use crate::secrets::{read_key, read_optional};

/// Wraps a driver error with the keyspace it concerns.
pub fn cql_error(spec: &CassandraSinkSpec, e: impl std::fmt::Display) -> Error {
    Error::Cassandra {
        keyspace: spec.keyspace.name.clone(),
        message: e.to_string(),
    }
}

fn tls_context(
    spec: &CassandraSinkSpec,
    ca: Option<String>,
    cert: Option<String>,
    key: Option<String>,
) -> Result<TlsContext> {
    let err = |e: openssl::error::ErrorStack| cql_error(spec, format!("TLS settings: {e}"));
    let mut builder = SslConnector::builder(SslMethod::tls_client()).map_err(err)?;
    match ca {
        Some(ca) => {
            for cert in X509::stack_from_pem(ca.as_bytes()).map_err(err)? {
                builder.cert_store_mut().add_cert(cert).map_err(err)?;
            }
        }
        None => builder.set_default_verify_paths().map_err(err)?,
    }
    if let (Some(cert), Some(key)) = (cert, key) {
        let mut chain = X509::stack_from_pem(cert.as_bytes())
            .map_err(err)?
            .into_iter();
        let leaf = chain.next().ok_or_else(|| {
            cql_error(
                spec,
                "TLS settings: the client certificate Secret holds no certificate",
            )
        })?;
        builder.set_certificate(&leaf).map_err(err)?;
        for intermediate in chain {
            builder.add_extra_chain_cert(intermediate).map_err(err)?;
        }
        let key = PKey::private_key_from_pem(key.as_bytes()).map_err(err)?;
        builder.set_private_key(&key).map_err(err)?;
    }
    builder.set_verify(SslVerifyMode::PEER);
    Ok(TlsContext::from(OpenSsl010Config::new(builder)))
}

pub async fn connect(
    client: &kube::Client,
    namespace: &str,
    spec: &CassandraSinkSpec,
) -> Result<Session> {
    let mut builder = SessionBuilder::new()
        .known_nodes(&spec.contact_points)
        .connection_timeout(Duration::from_secs(10));
    if let Some(creds) = &spec.credentials {
        builder = builder.user(
            read_key(client, namespace, &creds.username_secret_ref).await?,
            read_key(client, namespace, &creds.password_secret_ref).await?,
        );
    }
    if let Some(tls) = &spec.tls {
        let ca = read_optional(client, namespace, tls.ca_secret_ref.as_ref()).await?;
        let cert = read_optional(client, namespace, tls.cert_secret_ref.as_ref()).await?;
        let key = read_optional(client, namespace, tls.key_secret_ref.as_ref()).await?;
        builder = builder.tls_context(Some(tls_context(spec, ca, cert, key)?));
    }
    builder.build().await.map_err(|e| cql_error(spec, e))
}

/// The keyspace's replication map, or `None` when it does not exist.
pub async fn keyspace_replication(
    session: &Session,
    spec: &CassandraSinkSpec,
) -> Result<Option<BTreeMap<String, String>>> {
    let result = session
        .query_unpaged(
            "SELECT replication FROM system_schema.keyspaces WHERE keyspace_name = ?",
            (spec.keyspace.name.as_str(),),
        )
        .await
        .map_err(|e| cql_error(spec, e))?
        .into_rows_result()
        .map_err(|e| cql_error(spec, e))?;
    let row = result
        .maybe_first_row::<(BTreeMap<String, String>,)>()
        .map_err(|e| cql_error(spec, e))?;
    Ok(row.map(|(r,)| r))
}

/// TTL and clustering order of the results table, or `None` when it does not exist.
pub async fn table(session: &Session, spec: &CassandraSinkSpec) -> Result<Option<ObservedTable>> {
    let ks = spec.keyspace.name.as_str();
    let table = spec.table.as_str();
    let ttl = session
        .query_unpaged(
            "SELECT default_time_to_live FROM system_schema.tables WHERE keyspace_name = ? AND table_name = ?",
            (ks, table),
        )
        .await
        .map_err(|e| cql_error(spec, e))?
        .into_rows_result()
        .map_err(|e| cql_error(spec, e))?
        .maybe_first_row::<(i32,)>()
        .map_err(|e| cql_error(spec, e))?;
    let Some((ttl,)) = ttl else {
        return Ok(None);
    };
    let order = session
        .query_unpaged(
            "SELECT clustering_order FROM system_schema.columns WHERE keyspace_name = ? AND table_name = ? AND column_name = 'window_start'",
            (ks, table),
        )
        .await
        .map_err(|e| cql_error(spec, e))?
        .into_rows_result()
        .map_err(|e| cql_error(spec, e))?
        .maybe_first_row::<(String,)>()
        .map_err(|e| cql_error(spec, e))?;
    Ok(Some(ObservedTable {
        default_time_to_live: ttl,
        window_start_order: order.map(|(o,)| o).unwrap_or_else(|| "none".to_owned()),
    }))
}

/// Names of the tables left in the keyspace.
pub async fn tables_in_keyspace(
    session: &Session,
    spec: &CassandraSinkSpec,
) -> Result<Vec<String>> {
    let result = session
        .query_unpaged(
            "SELECT table_name FROM system_schema.tables WHERE keyspace_name = ?",
            (spec.keyspace.name.as_str(),),
        )
        .await
        .map_err(|e| cql_error(spec, e))?
        .into_rows_result()
        .map_err(|e| cql_error(spec, e))?;
    let rows = result.rows::<(String,)>().map_err(|e| cql_error(spec, e))?;
    rows.map(|r| r.map(|(t,)| t).map_err(|e| cql_error(spec, e)))
        .collect()
}

/// Runs one DDL statement and waits until every node agrees on the schema.
pub async fn ddl(session: &Session, spec: &CassandraSinkSpec, statement: String) -> Result<()> {
    session
        .query_unpaged(statement, ())
        .await
        .map_err(|e| cql_error(spec, e))?;
    session
        .await_schema_agreement()
        .await
        .map_err(|e| cql_error(spec, e))?;
    Ok(())
}
