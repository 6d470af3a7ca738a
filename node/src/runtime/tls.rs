//! TLS for clients on `secureClientPort` (rustls): the server's key and certificate
//! chain and the CA certificates client certificates are checked against come from PEM
//! files, as ZooKeeper's `ssl.keyStore.*` / `ssl.trustStore.*` with type PEM. A client
//! certificate becomes the connection's `x509` identity (its subject as Java's
//! `X500Principal.getName()` prints it), as ZooKeeper's `X509AuthenticationProvider`
//! makes it. Real sockets only: not built under madsim.
//!
//! `sslQuorum` uses the same PEM stores for the peer transport ([`quorum`]): mutual TLS,
//! each side's certificate checked against the `ssl.quorum.trustStore`, the dialed
//! server's also against its `server.N` host (`ssl.quorum.hostnameVerification`).

use std::path::Path;
use std::sync::Arc;

use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use tokio_rustls::rustls::server::WebPkiClientVerifier;
use tokio_rustls::rustls::{self, RootCertStore, ServerConfig};
use tokio_rustls::TlsAcceptor;

use crate::config::{ClientAuth, QuorumTlsConfig, TlsConfig};
use crate::proto::peer::Sid;

/// Builds the acceptor for `config`, or says which file is wrong and why.
pub fn acceptor(config: &TlsConfig) -> anyhow::Result<TlsAcceptor> {
    // ring rather than aws-lc-rs (no cmake/C build of aws-lc); ring has no post-quantum
    // key exchange, which ZooKeeper 3.8's JVM TLS does not offer either.
    #[allow(deprecated)]
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let certs = certificates(&config.key_store)?;
    let key = PrivateKeyDer::from_pem_file(&config.key_store).map_err(|e| {
        anyhow::anyhow!(
            "ssl.keyStore.location {}: no unencrypted private key ({e})",
            config.key_store.display()
        )
    })?;
    let builder = ServerConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(|e| anyhow::anyhow!("TLS: {e}"))?;
    let builder = match (&config.trust_store, config.client_auth) {
        (Some(path), auth) if auth != ClientAuth::None => {
            let mut roots = RootCertStore::empty();
            for cert in certificates(path)? {
                roots.add(cert).map_err(|e| {
                    anyhow::anyhow!("ssl.trustStore.location {}: {e}", path.display())
                })?;
            }
            let verifier = WebPkiClientVerifier::builder_with_provider(roots.into(), provider);
            let verifier = if auth == ClientAuth::Want {
                verifier.allow_unauthenticated()
            } else {
                verifier
            };
            let verifier = verifier
                .build()
                .map_err(|e| anyhow::anyhow!("ssl.trustStore.location {}: {e}", path.display()))?;
            builder.with_client_cert_verifier(verifier)
        }
        _ => builder.with_no_client_auth(),
    };
    let config = builder.with_single_cert(certs, key).map_err(|e| {
        anyhow::anyhow!("ssl.keyStore.location {}: {e}", config.key_store.display())
    })?;
    Ok(TlsAcceptor::from(Arc::new(config)))
}

/// The peer transport's TLS: how it accepts and how it dials, and the name each peer's
/// certificate must carry.
pub struct QuorumTls {
    pub acceptor: TlsAcceptor,
    pub connector: tokio_rustls::TlsConnector,
    /// Each peer's `server.N` host, as its certificate must name it.
    pub names: std::collections::BTreeMap<Sid, rustls_pki_types::ServerName<'static>>,
}

/// Builds the quorum TLS of `config` for `peers` (sid, `server.N` host), or says which
/// file is wrong and why.
pub fn quorum(config: &QuorumTlsConfig, peers: &[(Sid, String)]) -> anyhow::Result<QuorumTls> {
    #[allow(deprecated)]
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let certs = certificates(&config.key_store)?;
    let key = || {
        PrivateKeyDer::from_pem_file(&config.key_store).map_err(|e| {
            anyhow::anyhow!(
                "ssl.quorum.keyStore.location {}: no unencrypted private key ({e})",
                config.key_store.display()
            )
        })
    };
    let mut roots = RootCertStore::empty();
    for cert in certificates(&config.trust_store)? {
        roots.add(cert).map_err(|e| {
            anyhow::anyhow!(
                "ssl.quorum.trustStore.location {}: {e}",
                config.trust_store.display()
            )
        })?;
    }
    let roots = Arc::new(roots);
    let bad_trust = |e: &dyn std::fmt::Display| {
        anyhow::anyhow!(
            "ssl.quorum.trustStore.location {}: {e}",
            config.trust_store.display()
        )
    };
    let client_verifier =
        WebPkiClientVerifier::builder_with_provider(roots.clone(), provider.clone())
            .build()
            .map_err(|e| bad_trust(&e))?;
    let server = ServerConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(|e| anyhow::anyhow!("TLS: {e}"))?
        .with_client_cert_verifier(client_verifier)
        .with_single_cert(certs.clone(), key()?)
        .map_err(|e| {
            anyhow::anyhow!(
                "ssl.quorum.keyStore.location {}: {e}",
                config.key_store.display()
            )
        })?;
    let server_verifier =
        rustls::client::WebPkiServerVerifier::builder_with_provider(roots, provider.clone())
            .build()
            .map_err(|e| bad_trust(&e))?;
    let builder = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| anyhow::anyhow!("TLS: {e}"))?;
    let builder = if config.hostname_verification {
        builder.with_webpki_verifier(server_verifier)
    } else {
        builder
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(AnyName(server_verifier)))
    };
    let client = builder.with_client_auth_cert(certs, key()?).map_err(|e| {
        anyhow::anyhow!(
            "ssl.quorum.keyStore.location {}: {e}",
            config.key_store.display()
        )
    })?;
    let mut names = std::collections::BTreeMap::new();
    for (sid, host) in peers {
        let name = rustls_pki_types::ServerName::try_from(host.clone())
            .map_err(|e| anyhow::anyhow!("server.{sid} host {host:?}: {e}"))?;
        names.insert(*sid, name);
    }
    Ok(QuorumTls {
        acceptor: TlsAcceptor::from(Arc::new(server)),
        connector: tokio_rustls::TlsConnector::from(Arc::new(client)),
        names,
    })
}

/// `ssl.quorum.hostnameVerification=false`: a peer's certificate chain is verified as
/// usual, but it need not name the host that was dialed.
#[derive(Debug)]
struct AnyName(Arc<rustls::client::WebPkiServerVerifier>);

impl rustls::client::danger::ServerCertVerifier for AnyName {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &rustls_pki_types::ServerName<'_>,
        ocsp_response: &[u8],
        now: rustls_pki_types::UnixTime,
    ) -> Result<rustls::client::danger::ServerCertVerified, rustls::Error> {
        match self
            .0
            .verify_server_cert(end_entity, intermediates, server_name, ocsp_response, now)
        {
            Err(rustls::Error::InvalidCertificate(
                rustls::CertificateError::NotValidForName
                | rustls::CertificateError::NotValidForNameContext { .. },
            )) => Ok(rustls::client::danger::ServerCertVerified::assertion()),
            other => other,
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        self.0.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        self.0.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        self.0.supported_verify_schemes()
    }
}

/// Every certificate in a PEM file (at least one).
fn certificates(path: &Path) -> anyhow::Result<Vec<CertificateDer<'static>>> {
    let certs = CertificateDer::pem_file_iter(path)
        .and_then(|it| it.collect::<Result<Vec<_>, _>>())
        .map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?;
    if certs.is_empty() {
        anyhow::bail!("{}: no CERTIFICATE in the file", path.display());
    }
    Ok(certs)
}

/// The `x509` identity of a client certificate: its subject in RFC 2253 form, as Java's
/// `X500Principal.getName()` writes it (most specific RDN first, `,` between RDNs).
pub fn x509_identity(cert: &CertificateDer<'_>) -> Option<String> {
    let (_, cert) = x509_parser::parse_x509_certificate(cert.as_ref()).ok()?;
    let mut rdns = Vec::new();
    for rdn in cert.subject().iter() {
        let mut parts = Vec::new();
        for attr in rdn.iter() {
            let oid = attr.attr_type().to_id_string();
            let name = match oid.as_str() {
                "2.5.4.3" => "CN",
                "2.5.4.6" => "C",
                "2.5.4.7" => "L",
                "2.5.4.8" => "ST",
                "2.5.4.9" => "STREET",
                "2.5.4.10" => "O",
                "2.5.4.11" => "OU",
                "0.9.2342.19200300.100.1.25" => "DC",
                "0.9.2342.19200300.100.1.1" => "UID",
                _ => "",
            };
            let value = match (name, attr.as_str()) {
                ("", _) | (_, Err(_)) => {
                    // Java writes other attributes as OID=#<hex of the DER value>.
                    let der = attr.attr_value();
                    let hex: String = [der.header.raw_tag().unwrap_or(&[0x0c])[0]]
                        .iter()
                        .chain(encode_len(der.data.len()).iter())
                        .chain(der.data.iter())
                        .map(|b| format!("{b:02x}"))
                        .collect();
                    parts.push(format!("{oid}=#{hex}"));
                    continue;
                }
                (_, Ok(v)) => escape(v),
            };
            parts.push(format!("{name}={value}"));
        }
        rdns.push(parts.join("+"));
    }
    rdns.reverse();
    Some(rdns.join(","))
}

fn encode_len(n: usize) -> Vec<u8> {
    if n < 0x80 {
        return vec![n as u8];
    }
    let bytes: Vec<u8> = n
        .to_be_bytes()
        .into_iter()
        .skip_while(|b| *b == 0)
        .collect();
    let mut out = vec![0x80 | bytes.len() as u8];
    out.extend(bytes);
    out
}

/// RFC 2253 escaping of an attribute value.
fn escape(v: &str) -> String {
    let mut out = String::new();
    let last = v.chars().count().saturating_sub(1);
    for (i, c) in v.chars().enumerate() {
        let special = matches!(c, ',' | '+' | '"' | '\\' | '<' | '>' | ';')
            || (i == 0 && (c == '#' || c == ' '))
            || (i == last && c == ' ');
        if special {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc2253_escaping() {
        assert_eq!(escape("plain"), "plain");
        assert_eq!(escape("a,b+c"), "a\\,b\\+c");
        assert_eq!(escape("#lead"), "\\#lead");
        assert_eq!(escape(" both "), "\\ both\\ ");
    }

    #[test]
    fn der_lengths() {
        assert_eq!(encode_len(5), vec![5]);
        assert_eq!(encode_len(200), vec![0x81, 200]);
        assert_eq!(encode_len(300), vec![0x82, 1, 44]);
    }
}
