//! TLS for the gRPC server and its clients: the server's identity and the
//! client CA read from PEM files into tonic's rustls configuration
//! ([`server_config`], [`client_config`]), and the fingerprint of the
//! certificate a client presented ([`peer_certificate_fingerprint`]).
//!
//! With a client CA, client certificates are optional but verified: a client
//! may connect without one (and authenticate with a token), but one that
//! presents a certificate that does not chain to the CA, is outside its
//! validity or is not for client authentication is refused by rustls during
//! the handshake (with TLS 1.3 the client may only see it on its first call).
//!
//! Every file is checked when the configuration is made, so a wrong path,
//! a file that is not PEM or a key that does not belong to its certificate
//! stops the server at startup with the file's name, not at the first
//! handshake.
//!
//! Never decides who a client is: it gives the certificate's fingerprint,
//! and authentication maps it to a principal.

use std::io::Read;
use std::path::{Path, PathBuf};
use std::time::Duration;

use rustls_pki_types::PrivateKeyDer;
use rustls_pki_types::pem::PemObject;
use sha2::{Digest, Sha256};
use tonic::transport::{Certificate, CertificateDer, ClientTlsConfig, Identity, ServerTlsConfig};

/// Longest a TLS handshake may take. A connection still handshaking holds
/// one of its peer's connection slots (`ServerLimits::connections_per_peer_max`),
/// so a client that opens connections and never finishes the handshake
/// gives them back after this.
pub const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// Largest PEM file read, in bytes. A certificate chain or a key is a few
/// KiB; a larger file is the wrong file.
pub const PEM_FILE_BYTES_MAX: u64 = 1 << 20;

/// Why a TLS file cannot be used. Each names the file and what is wrong.
#[derive(Debug, thiserror::Error)]
pub enum TlsFileError {
    #[error("reading {}: {source}", path.display())]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{} is larger than {PEM_FILE_BYTES_MAX} bytes: not a PEM certificate or key", path.display())]
    TooLarge { path: PathBuf },
    #[error("{} is not valid PEM: {reason}", path.display())]
    NotPem { path: PathBuf, reason: String },
    #[error("{} holds no certificate (expected a -----BEGIN CERTIFICATE----- block)", path.display())]
    NoCertificate { path: PathBuf },
    #[error(
        "{} holds no private key (expected a -----BEGIN PRIVATE KEY-----, \
         RSA PRIVATE KEY or EC PRIVATE KEY block)",
        path.display()
    )]
    NoPrivateKey { path: PathBuf },
    #[error(
        "the certificate {} and the key {} are not a usable identity \
         (is the key the certificate's?): {reason}",
        certificate.display(),
        key.display()
    )]
    Identity {
        certificate: PathBuf,
        key: PathBuf,
        reason: String,
    },
    #[error("{} is not a usable client CA: {reason}", path.display())]
    ClientCa { path: PathBuf, reason: String },
}

/// The server's TLS configuration: its certificate chain (PEM, leaf first)
/// and private key (PEM: PKCS#8, PKCS#1 or SEC1), and, if given, the CA that
/// client certificates must chain to (optional but verified, see the module
/// documentation). The handshake times out after [`HANDSHAKE_TIMEOUT`].
pub fn server_config(
    certificate_path: &Path,
    key_path: &Path,
    client_ca_path: Option<&Path>,
) -> Result<ServerTlsConfig, TlsFileError> {
    let certificate = read_certificates(certificate_path)?;
    let key = read_private_key(key_path)?;
    let config = ServerTlsConfig::new()
        .identity(Identity::from_pem(certificate, key))
        .timeout(HANDSHAKE_TIMEOUT);
    // tonic builds rustls's configuration here: a key that is not the
    // certificate's, or a key rustls cannot use, is refused now.
    tonic::transport::Server::builder()
        .tls_config(config.clone())
        .map_err(|error| TlsFileError::Identity {
            certificate: certificate_path.to_owned(),
            key: key_path.to_owned(),
            reason: error_chain(&error),
        })?;
    let Some(client_ca_path) = client_ca_path else {
        return Ok(config);
    };
    let client_ca = read_certificates(client_ca_path)?;
    let config = config
        .client_ca_root(Certificate::from_pem(client_ca))
        .client_auth_optional(true);
    tonic::transport::Server::builder()
        .tls_config(config.clone())
        .map_err(|error| TlsFileError::ClientCa {
            path: client_ca_path.to_owned(),
            reason: error_chain(&error),
        })?;
    Ok(config)
}

/// A client's TLS configuration: trust the server certificates that chain
/// to the CA in `ca_pem_path`, and present the client certificate and key in
/// `client_cert_and_key` (PEM files) if given. The server's address must be
/// an `https://` URI, whose host the server's certificate must name (or set
/// `domain_name` on the result).
pub fn client_config(
    ca_pem_path: &Path,
    client_cert_and_key: Option<(&Path, &Path)>,
) -> anyhow::Result<ClientTlsConfig> {
    let ca = read_certificates(ca_pem_path)?;
    let mut config = ClientTlsConfig::new().ca_certificate(Certificate::from_pem(ca));
    if let Some((certificate_path, key_path)) = client_cert_and_key {
        let certificate = read_certificates(certificate_path)?;
        let key = read_private_key(key_path)?;
        config = config.identity(Identity::from_pem(certificate, key));
        // tonic builds rustls's configuration here (no connection is made):
        // a key that is not the certificate's is refused now.
        tonic::transport::Endpoint::from_static("https://localhost")
            .tls_config(config.clone())
            .map_err(|error| TlsFileError::Identity {
                certificate: certificate_path.to_owned(),
                key: key_path.to_owned(),
                reason: error_chain(&error),
            })?;
    }
    Ok(config)
}

/// The lowercase hex SHA-256 of the DER of the certificate the client
/// presented (its leaf), or `None` when the connection is not TLS or the
/// client presented none.
pub fn peer_certificate_fingerprint<T>(request: &tonic::Request<T>) -> Option<String> {
    let certificates = request.peer_certs()?;
    let leaf = certificates.first()?;
    Some(certificate_fingerprint(leaf))
}

/// The lowercase hex SHA-256 of a certificate's DER encoding.
pub fn certificate_fingerprint(certificate: &CertificateDer<'_>) -> String {
    hex::encode(Sha256::digest(certificate.as_ref()))
}

/// The PEM file at `path`, checked to hold at least one certificate, every
/// PEM block in it well formed.
fn read_certificates(path: &Path) -> Result<Vec<u8>, TlsFileError> {
    let pem = read_pem_file(path)?;
    let mut certificates = 0usize;
    for certificate in CertificateDer::pem_slice_iter(&pem) {
        certificate.map_err(|error| TlsFileError::NotPem {
            path: path.to_owned(),
            reason: error.to_string(),
        })?;
        certificates += 1;
    }
    if certificates == 0 {
        return Err(TlsFileError::NoCertificate {
            path: path.to_owned(),
        });
    }
    Ok(pem)
}

/// The PEM file at `path`, checked to hold a private key.
fn read_private_key(path: &Path) -> Result<Vec<u8>, TlsFileError> {
    let pem = read_pem_file(path)?;
    match PrivateKeyDer::from_pem_slice(&pem) {
        Ok(_) => Ok(pem),
        Err(rustls_pki_types::pem::Error::NoItemsFound) => Err(TlsFileError::NoPrivateKey {
            path: path.to_owned(),
        }),
        Err(error) => Err(TlsFileError::NotPem {
            path: path.to_owned(),
            reason: error.to_string(),
        }),
    }
}

/// The bytes of the file at `path`, at most [`PEM_FILE_BYTES_MAX`].
fn read_pem_file(path: &Path) -> Result<Vec<u8>, TlsFileError> {
    let read_error = |source| TlsFileError::Read {
        path: path.to_owned(),
        source,
    };
    let file = std::fs::File::open(path).map_err(read_error)?;
    let mut bytes = Vec::new();
    file.take(PEM_FILE_BYTES_MAX + 1)
        .read_to_end(&mut bytes)
        .map_err(read_error)?;
    if bytes.len() as u64 > PEM_FILE_BYTES_MAX {
        return Err(TlsFileError::TooLarge {
            path: path.to_owned(),
        });
    }
    Ok(bytes)
}

/// An error and its causes on one line (tonic's transport error says only
/// "transport error"; the cause says what rustls refused).
fn error_chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut cause = error.source();
    while let Some(inner) = cause {
        text.push_str(": ");
        text.push_str(&inner.to_string());
        cause = inner.source();
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    use rcgen::{CertificateParams, KeyPair};

    /// A self-signed certificate for `localhost` and its key, as PEM files.
    fn self_signed(dir: &Path, name: &str) -> (PathBuf, PathBuf) {
        let key = KeyPair::generate().unwrap();
        let certificate = CertificateParams::new(vec!["localhost".to_owned()])
            .unwrap()
            .self_signed(&key)
            .unwrap();
        let certificate_path = dir.join(format!("{name}.pem"));
        let key_path = dir.join(format!("{name}.key"));
        std::fs::write(&certificate_path, certificate.pem()).unwrap();
        std::fs::write(&key_path, key.serialize_pem()).unwrap();
        (certificate_path, key_path)
    }

    #[test]
    fn a_certificate_and_its_key_make_a_server_identity() {
        let dir = tempfile::tempdir().unwrap();
        let (certificate, key) = self_signed(dir.path(), "server");
        let (ca, _) = self_signed(dir.path(), "ca");
        server_config(&certificate, &key, None).unwrap();
        server_config(&certificate, &key, Some(&ca)).unwrap();
        client_config(&ca, Some((&certificate, &key))).unwrap();
    }

    #[test]
    fn a_key_that_is_not_the_certificates_is_refused_naming_both_files() {
        let dir = tempfile::tempdir().unwrap();
        let (certificate, _) = self_signed(dir.path(), "server");
        let (_, other_key) = self_signed(dir.path(), "other");
        for error in [
            server_config(&certificate, &other_key, None).unwrap_err(),
            client_config(&certificate, Some((&certificate, &other_key)))
                .unwrap_err()
                .downcast()
                .unwrap(),
        ] {
            assert!(matches!(error, TlsFileError::Identity { .. }), "{error}");
            let message = error.to_string();
            assert!(message.contains("server.pem"), "{message}");
            assert!(message.contains("other.key"), "{message}");
        }
    }

    #[test]
    fn a_missing_or_wrong_file_is_refused_naming_it() {
        let dir = tempfile::tempdir().unwrap();
        let (certificate, key) = self_signed(dir.path(), "server");
        let missing = dir.path().join("missing.pem");
        let text = dir.path().join("notes.txt");
        std::fs::write(&text, "not a certificate\n").unwrap();
        let broken = dir.path().join("broken.pem");
        std::fs::write(&broken, "-----BEGIN CERTIFICATE-----\nAAAA\n").unwrap();
        let huge = dir.path().join("huge.pem");
        std::fs::write(&huge, vec![b'A'; PEM_FILE_BYTES_MAX as usize + 1]).unwrap();
        let check = |error: TlsFileError, file: &Path, expected: fn(&TlsFileError) -> bool| {
            let message = error.to_string();
            assert!(expected(&error), "{message}");
            assert!(message.contains(&file.display().to_string()), "{message}");
        };
        check(
            server_config(&missing, &key, None).unwrap_err(),
            &missing,
            |e| matches!(e, TlsFileError::Read { .. }),
        );
        check(server_config(&text, &key, None).unwrap_err(), &text, |e| {
            matches!(e, TlsFileError::NoCertificate { .. })
        });
        check(
            server_config(&broken, &key, None).unwrap_err(),
            &broken,
            |e| matches!(e, TlsFileError::NotPem { .. }),
        );
        check(server_config(&huge, &key, None).unwrap_err(), &huge, |e| {
            matches!(e, TlsFileError::TooLarge { .. })
        });
        check(
            server_config(&certificate, &certificate, None).unwrap_err(),
            &certificate,
            |e| matches!(e, TlsFileError::NoPrivateKey { .. }),
        );
        check(
            server_config(&certificate, &key, Some(&text)).unwrap_err(),
            &text,
            |e| matches!(e, TlsFileError::NoCertificate { .. }),
        );
    }

    #[test]
    fn the_fingerprint_is_the_lowercase_hex_sha256_of_the_der() {
        let der = CertificateDer::from(b"abc".to_vec());
        assert_eq!(
            certificate_fingerprint(&der),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
        let plaintext = tonic::Request::new(());
        assert_eq!(peer_certificate_fingerprint(&plaintext), None);
    }
}
