//! HTTPS for callbacks: rustls with its ring provider (no cmake, no aws-lc), Mozilla's roots
//! from `webpki-roots` plus the CA certificates an operator adds. The certificate is checked
//! against the URL's host, name or IP, as any client would; the address checks come first,
//! on the TCP connection TLS runs over.

use std::io;
use std::sync::Arc;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName};
use rustls::{ClientConfig, RootCertStore};
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;
use tokio_rustls::client::TlsStream;

/// Extra CA certificates that cannot be used, or TLS that cannot be set up.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    /// The PEM text does not parse.
    #[error("reading PEM certificates")]
    Pem(#[source] rustls::pki_types::pem::Error),
    /// The PEM text has no `CERTIFICATE` section.
    #[error("no certificate in the PEM text")]
    NoCertificate,
    /// A certificate is not usable as a trust anchor.
    #[error("CA certificate #{index} (from 0) is not usable")]
    Certificate {
        /// Its position in the list.
        index: usize,
        /// Why.
        #[source]
        source: rustls::Error,
    },
    /// The TLS configuration.
    #[error("setting up TLS")]
    Config(#[source] rustls::Error),
}

/// The certificates of a PEM file's text (its `CERTIFICATE` sections) as DER, each checked
/// to be usable as a trust anchor: what [`Policy::extra_roots`](super::Policy::extra_roots)
/// takes, e.g. from a `callbacks.ca_file` setting.
pub fn parse_pem_certificates(pem: &[u8]) -> Result<Vec<Vec<u8>>, TlsError> {
    let ders: Vec<Vec<u8>> = CertificateDer::pem_slice_iter(pem)
        .map(|c| c.map(|c| c.to_vec()))
        .collect::<Result<_, _>>()
        .map_err(TlsError::Pem)?;
    if ders.is_empty() {
        return Err(TlsError::NoCertificate);
    }
    connector(&ders)?;
    Ok(ders)
}

/// A TLS client trusting Mozilla's roots and `extra_roots` (DER), speaking HTTP/1.1.
pub(super) fn connector(extra_roots: &[Vec<u8>]) -> Result<TlsConnector, TlsError> {
    let mut roots: RootCertStore = webpki_roots::TLS_SERVER_ROOTS.iter().cloned().collect();
    for (index, der) in extra_roots.iter().enumerate() {
        roots.add(CertificateDer::from(der.as_slice())).map_err(|source| TlsError::Certificate { index, source })?;
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(TlsError::Config)?
        .with_root_certificates(roots)
        .with_no_client_auth();
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(TlsConnector::from(Arc::new(config)))
}

/// The TLS handshake over a connected stream, verifying the certificate for `host`.
pub(super) async fn handshake(tls: &TlsConnector, host: &str, stream: TcpStream) -> io::Result<TlsStream<TcpStream>> {
    let name = ServerName::try_from(host.to_owned()).map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e))?;
    tls.connect(name, stream).await
}
