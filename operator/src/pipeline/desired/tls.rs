//! The per-pipeline CA and worker certificate (rcgen), kept in
//! `kubernetes.io/tls` Secrets and renewed before they expire.
//!
//! Expiry is recorded in an annotation when a certificate is issued, so
//! deciding whether to renew needs no X.509 parsing.

use std::collections::BTreeMap;

use k8s_openapi::ByteString;
use k8s_openapi::api::core::v1::Secret;
use k8s_openapi::jiff::{SignedDuration, Timestamp};
use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa,
    Issuer, KeyPair, KeyUsagePurpose,
};

use super::{Inputs, names};

/// Expiry of the certificate in a Secret we issued (RFC 3339).
pub const ANNOTATION_NOT_AFTER: &str = "taxistream.dev/not-after";

/// How long a CA lives, and how long before its end it is replaced.
pub const CA_VALIDITY: SignedDuration = SignedDuration::from_hours(5 * 365 * 24);
pub const CA_RENEW_BEFORE: SignedDuration = SignedDuration::from_hours(180 * 24);
/// How long a worker certificate lives, and how long before its end it is renewed.
pub const CERT_VALIDITY: SignedDuration = SignedDuration::from_hours(90 * 24);
pub const CERT_RENEW_BEFORE: SignedDuration = SignedDuration::from_hours(30 * 24);

/// What a Secret we issued holds, as far as renewal is concerned.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct ObservedCert {
    pub cert_pem: Option<String>,
    pub key_pem: Option<String>,
    /// The CA bundle in the worker Secret (`ca.crt`).
    pub ca_pem: Option<String>,
    pub not_after: Option<Timestamp>,
}

impl ObservedCert {
    pub fn from_secret(secret: &Secret) -> Self {
        let data = secret.data.clone().unwrap_or_default();
        let text = |k: &str| {
            data.get(k)
                .and_then(|b| String::from_utf8(b.0.clone()).ok())
                .filter(|s| !s.is_empty())
        };
        Self {
            cert_pem: text("tls.crt"),
            key_pem: text("tls.key"),
            ca_pem: text("ca.crt"),
            not_after: secret
                .metadata
                .annotations
                .as_ref()
                .and_then(|a| a.get(ANNOTATION_NOT_AFTER))
                .and_then(|s| s.parse().ok()),
        }
    }

    fn fresh(&self, now: Timestamp, renew_before: SignedDuration) -> bool {
        self.cert_pem.is_some()
            && self.key_pem.is_some()
            && self
                .not_after
                .is_some_and(|end| end.duration_since(now) > renew_before)
    }
}

/// What the reconcile has to do about TLS.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum TlsPlan {
    /// Both certificates are present and far from expiry.
    Keep,
    /// The CA is fine; issue a new worker certificate (missing, expiring,
    /// or signed by a CA that is no longer the current one).
    IssueCert,
    /// Issue a new CA and a new worker certificate.
    IssueAll,
}

/// Decides, from the two Secrets as observed, what to issue.
pub fn plan(now: Timestamp, ca: Option<&ObservedCert>, cert: Option<&ObservedCert>) -> TlsPlan {
    let Some(ca) = ca.filter(|ca| ca.fresh(now, CA_RENEW_BEFORE)) else {
        return TlsPlan::IssueAll;
    };
    match cert {
        Some(cert) if cert.fresh(now, CERT_RENEW_BEFORE) && cert.ca_pem == ca.cert_pem => {
            TlsPlan::Keep
        }
        _ => TlsPlan::IssueCert,
    }
}

/// A freshly issued certificate and its key, PEM-encoded.
#[derive(Clone, Debug)]
pub struct Issued {
    pub cert_pem: String,
    pub key_pem: String,
    pub not_after: Timestamp,
}

fn to_offset(t: Timestamp) -> Result<time::OffsetDateTime, rcgen::Error> {
    time::OffsetDateTime::from_unix_timestamp(t.as_second()).map_err(|_| rcgen::Error::Time)
}

/// The CA's parameters. Rebuilt identically to sign with a stored CA key:
/// the issuer name and key identifier come from here and the key.
fn ca_params(namespace: &str, pipeline: &str) -> CertificateParams {
    let mut params = CertificateParams::default();
    let mut dn = DistinguishedName::new();
    dn.push(DnType::OrganizationName, "taxistream");
    dn.push(
        DnType::CommonName,
        format!("taxistream {namespace}/{pipeline} CA"),
    );
    params.distinguished_name = dn;
    params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
    params.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    params
}

/// A new self-signed CA for the pipeline.
pub fn issue_ca(namespace: &str, pipeline: &str, now: Timestamp) -> Result<Issued, rcgen::Error> {
    let key = KeyPair::generate()?;
    let mut params = ca_params(namespace, pipeline);
    let not_after = now + CA_VALIDITY;
    params.not_before = to_offset(now - SignedDuration::from_mins(5))?;
    params.not_after = to_offset(not_after)?;
    let cert = params.self_signed(&key)?;
    Ok(Issued {
        cert_pem: cert.pem(),
        key_pem: key.serialize_pem(),
        not_after,
    })
}

/// DNS names the worker certificate is valid for: the pods behind the
/// pipeline's headless metrics Service.
pub fn worker_dns_names(namespace: &str, pipeline: &str) -> Vec<String> {
    let service = names::metrics_service(pipeline);
    vec![
        format!("{service}.{namespace}.svc"),
        format!("*.{service}.{namespace}.svc"),
        format!("{service}.{namespace}.svc.cluster.local"),
        format!("*.{service}.{namespace}.svc.cluster.local"),
    ]
}

/// A worker certificate signed by the CA in `ca_key_pem`.
pub fn issue_worker_cert(
    namespace: &str,
    pipeline: &str,
    ca_key_pem: &str,
    now: Timestamp,
) -> Result<Issued, rcgen::Error> {
    let ca_key = KeyPair::from_pem(ca_key_pem)?;
    let issuer = Issuer::new(ca_params(namespace, pipeline), ca_key);
    let key = KeyPair::generate()?;
    let mut params = CertificateParams::new(worker_dns_names(namespace, pipeline))?;
    let mut dn = DistinguishedName::new();
    dn.push(DnType::OrganizationName, "taxistream");
    dn.push(
        DnType::CommonName,
        format!("taxistream-worker {namespace}/{pipeline}"),
    );
    params.distinguished_name = dn;
    params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    params.extended_key_usages = vec![
        ExtendedKeyUsagePurpose::ServerAuth,
        ExtendedKeyUsagePurpose::ClientAuth,
    ];
    params.use_authority_key_identifier_extension = true;
    let not_after = now + CERT_VALIDITY;
    params.not_before = to_offset(now - SignedDuration::from_mins(5))?;
    params.not_after = to_offset(not_after)?;
    let cert = params.signed_by(&key, &issuer)?;
    Ok(Issued {
        cert_pem: cert.pem(),
        key_pem: key.serialize_pem(),
        not_after,
    })
}

fn tls_secret(inputs: &Inputs<'_>, name: String, issued: &Issued, ca_pem: Option<&str>) -> Secret {
    let mut meta = inputs.meta(name, inputs.labels());
    meta.annotations = Some(BTreeMap::from([(
        ANNOTATION_NOT_AFTER.to_owned(),
        issued.not_after.to_string(),
    )]));
    let mut data = BTreeMap::from([
        (
            "tls.crt".to_owned(),
            ByteString(issued.cert_pem.clone().into_bytes()),
        ),
        (
            "tls.key".to_owned(),
            ByteString(issued.key_pem.clone().into_bytes()),
        ),
    ]);
    if let Some(ca) = ca_pem {
        data.insert("ca.crt".to_owned(), ByteString(ca.as_bytes().to_vec()));
    }
    Secret {
        metadata: meta,
        type_: Some("kubernetes.io/tls".to_owned()),
        data: Some(data),
        ..Secret::default()
    }
}

/// The CA Secret (`tls.crt`, `tls.key`).
pub fn ca_secret(inputs: &Inputs<'_>, ca: &Issued) -> Secret {
    tls_secret(inputs, names::ca_secret(&inputs.name), ca, None)
}

/// The worker certificate Secret (`tls.crt`, `tls.key`, `ca.crt`).
pub fn cert_secret(inputs: &Inputs<'_>, cert: &Issued, ca_pem: &str) -> Secret {
    tls_secret(inputs, names::cert_secret(&inputs.name), cert, Some(ca_pem))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn now() -> Timestamp {
        Timestamp::from_second(1_800_000_000).unwrap()
    }

    fn observed(issued: &Issued, ca: Option<&str>) -> ObservedCert {
        ObservedCert {
            cert_pem: Some(issued.cert_pem.clone()),
            key_pem: Some(issued.key_pem.clone()),
            ca_pem: ca.map(str::to_owned),
            not_after: Some(issued.not_after),
        }
    }

    #[test]
    fn issues_everything_when_nothing_exists() {
        assert_eq!(plan(now(), None, None), TlsPlan::IssueAll);
    }

    #[test]
    fn renews_the_worker_cert_before_expiry_and_keeps_it_otherwise() {
        let ca = issue_ca("ns", "p", now()).unwrap();
        let cert = issue_worker_cert("ns", "p", &ca.key_pem, now()).unwrap();
        let ca_obs = observed(&ca, None);
        let cert_obs = observed(&cert, Some(&ca.cert_pem));
        assert_eq!(plan(now(), Some(&ca_obs), Some(&cert_obs)), TlsPlan::Keep);
        // 61 days later the 90-day certificate is within its 30-day renewal window.
        let later = now() + SignedDuration::from_hours(61 * 24);
        assert_eq!(
            plan(later, Some(&ca_obs), Some(&cert_obs)),
            TlsPlan::IssueCert
        );
        // A certificate from another CA is replaced.
        let stale = observed(&cert, Some("other CA"));
        assert_eq!(plan(now(), Some(&ca_obs), Some(&stale)), TlsPlan::IssueCert);
        // An expiring CA replaces both.
        let ca_late = now() + SignedDuration::from_hours((5 * 365 - 100) * 24);
        assert_eq!(
            plan(ca_late, Some(&ca_obs), Some(&cert_obs)),
            TlsPlan::IssueAll
        );
    }

    #[test]
    fn worker_cert_is_signed_by_the_stored_ca() {
        let ca = issue_ca("ns", "p", now()).unwrap();
        let cert = issue_worker_cert("ns", "p", &ca.key_pem, now()).unwrap();
        assert!(ca.cert_pem.starts_with("-----BEGIN CERTIFICATE-----"));
        assert!(cert.cert_pem.starts_with("-----BEGIN CERTIFICATE-----"));
        assert!(cert.key_pem.contains("PRIVATE KEY"));
        assert_eq!(cert.not_after, now() + CERT_VALIDITY);
        // A wrong key is an error, not a certificate signed by something else.
        assert!(issue_worker_cert("ns", "p", "not a key", now()).is_err());
    }
}
