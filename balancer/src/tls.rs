//! The listener's TLS: a rustls server config (ring provider) from a PEM
//! certificate chain and key. Errors name the file and the problem.

use std::path::Path;
use std::sync::Arc;

use rustls::ServerConfig;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use tokio_rustls::TlsAcceptor;

use crate::config::Error;
use crate::types::TlsFiles;

pub(crate) fn acceptor(files: &TlsFiles) -> Result<TlsAcceptor, Error> {
    let certs = CertificateDer::pem_file_iter(&files.cert)
        .and_then(|certs| certs.collect::<Result<Vec<_>, _>>())
        .map_err(|e| pem_error(&files.cert, "certificate", e))?;
    if certs.is_empty() {
        return Err(Error::Tls(format!(
            "{}: no certificate found",
            files.cert.display()
        )));
    }
    let key = PrivateKeyDer::from_pem_file(&files.key)
        .map_err(|e| pem_error(&files.key, "private key", e))?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| Error::Tls(e.to_string()))?
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .map_err(|e| {
            Error::Tls(format!(
                "{} with {}: {e}",
                files.cert.display(),
                files.key.display()
            ))
        })?;
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(TlsAcceptor::from(Arc::new(config)))
}

fn pem_error(path: &Path, what: &str, e: rustls_pki_types::pem::Error) -> Error {
    let problem = match e {
        rustls_pki_types::pem::Error::NoItemsFound => format!("no {what} found"),
        rustls_pki_types::pem::Error::Io(io) => io.to_string(),
        other => format!("not a PEM {what}: {other}"),
    };
    Error::Tls(format!("{}: {problem}", path.display()))
}
