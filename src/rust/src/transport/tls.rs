//! TLS for `tls+tcp://` and `wss://`: the host's certificate and key, the
//! daemons' trust in it, and the zero-configuration credentials made when
//! the user supplies none.
//!
//! Zero configuration makes a single-use certificate authority and a host
//! certificate signed by it, naming the URL's host. The host keeps its key
//! in memory only; the authority's key is dropped at once, so nothing else
//! can ever be signed by it. Daemons are given the authority's certificate
//! (their `tlscert`) and so trust only this host.

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer, ServerName};
use rustls::{ClientConfig, RootCertStore, ServerConfig};
use std::sync::Arc;

fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// The host's TLS settings, and the certificate its daemons must trust
/// when it was made here.
pub struct HostTls {
    pub config: Arc<ServerConfig>,
    /// Zero configuration: the single-use authority's certificate (PEM).
    pub ca_pem: Option<String>,
}

/// The names a certificate for a host listening at `host` must carry: the
/// host itself; for a wildcard address (empty, 0.0.0.0 or ::), every name
/// daemons may dial it by.
fn certificate_names(host: &str) -> Vec<String> {
    let wildcard = matches!(host, "" | "0.0.0.0" | "::");
    if !wildcard {
        return vec![host.to_string()];
    }
    let mut names = vec!["localhost".to_string(), "127.0.0.1".to_string()];
    // (the wildcard itself too: local daemons dial the URL as given)
    if !host.is_empty() {
        names.push(host.to_string());
    }
    if let Some(h) = super::interfaces::hostname() {
        names.push(h);
    }
    for (_, ip) in super::interfaces::interface_addresses() {
        names.push(ip.to_string());
    }
    names.sort();
    names.dedup();
    names
}

/// Single-use credentials for a host listening at `host`.
pub fn zero_config(host: &str) -> Result<HostTls, String> {
    let err = |e: rcgen::Error| format!("cannot make TLS credentials: {e}");
    let mut ca = rcgen::CertificateParams::new(Vec::<String>::new()).map_err(err)?;
    ca.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Constrained(0));
    ca.distinguished_name
        .push(rcgen::DnType::CommonName, "mirai single-use authority");
    ca.key_usages = vec![
        rcgen::KeyUsagePurpose::KeyCertSign,
        rcgen::KeyUsagePurpose::DigitalSignature,
    ];
    let ca_key = rcgen::KeyPair::generate().map_err(err)?;
    let ca_cert = ca.self_signed(&ca_key).map_err(err)?;

    let mut leaf = rcgen::CertificateParams::new(certificate_names(host)).map_err(err)?;
    let common_name = if host.is_empty() { "localhost" } else { host };
    leaf.distinguished_name
        .push(rcgen::DnType::CommonName, common_name.to_string());
    let key = rcgen::KeyPair::generate().map_err(err)?;
    let cert = leaf.signed_by(&key, &ca_cert, &ca_key).map_err(err)?;

    let chain = vec![cert.der().clone()];
    let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key.serialize_der()));
    Ok(HostTls {
        config: server_config(chain, key)?,
        ca_pem: Some(ca_cert.pem()),
    })
}

/// The host's settings from a user's certificate chain and private key
/// (PEM text; both may be in one text), the key decrypted with `password`
/// when it is an encrypted PKCS#8 key.
pub fn user_config(
    cert_pem: &str,
    key_pem: &str,
    password: Option<&str>,
) -> Result<HostTls, String> {
    let chain = certificates(cert_pem)?;
    let key = private_key(key_pem, password)?;
    Ok(HostTls {
        config: server_config(chain, key)?,
        ca_pem: None,
    })
}

fn server_config(
    chain: Vec<CertificateDer<'static>>,
    key: PrivateKeyDer<'static>,
) -> Result<Arc<ServerConfig>, String> {
    let config = ServerConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?
        .with_no_client_auth()
        .with_single_cert(chain, key)
        .map_err(|e| format!("invalid TLS certificate or key: {e}"))?;
    Ok(Arc::new(config))
}

fn certificates(pem: &str) -> Result<Vec<CertificateDer<'static>>, String> {
    let certs = CertificateDer::pem_slice_iter(pem.as_bytes())
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| format!("cannot read the TLS certificate: {e}"))?;
    if certs.is_empty() {
        return Err("no PEM certificate ('-----BEGIN CERTIFICATE-----') found".into());
    }
    Ok(certs)
}

const ENCRYPTED_BEGIN: &str = "-----BEGIN ENCRYPTED PRIVATE KEY-----";
const ENCRYPTED_END: &str = "-----END ENCRYPTED PRIVATE KEY-----";

fn private_key(pem: &str, password: Option<&str>) -> Result<PrivateKeyDer<'static>, String> {
    if let Some(start) = pem.find(ENCRYPTED_BEGIN) {
        let end = pem[start..]
            .find(ENCRYPTED_END)
            .ok_or("unterminated encrypted private key")?
            + start
            + ENCRYPTED_END.len();
        let password = password.ok_or("the private key is encrypted: supply `pass`")?;
        let (_, doc) = pkcs8::der::Document::from_pem(&pem[start..end])
            .map_err(|e| format!("cannot read the encrypted private key: {e}"))?;
        let info = pkcs8::EncryptedPrivateKeyInfo::try_from(doc.as_bytes())
            .map_err(|e| format!("cannot read the encrypted private key: {e}"))?;
        let plain = info
            .decrypt(password)
            .map_err(|_| "cannot decrypt the private key: wrong password?".to_string())?;
        return Ok(PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(
            plain.as_bytes().to_vec(),
        )));
    }
    if pem.contains("Proc-Type: 4,ENCRYPTED") {
        return Err(
            "keys encrypted in the legacy OpenSSL format are not supported: \
             convert with `openssl pkcs8 -topk8` to an encrypted PKCS#8 key"
                .into(),
        );
    }
    PrivateKeyDer::from_pem_slice(pem.as_bytes())
        .map_err(|_| "no PEM private key ('-----BEGIN PRIVATE KEY-----') found".to_string())
}

/// A daemon's settings: trust the certificates in `ca_pem` (the authority
/// chain given as `tlscert`), or, without it, the system's authorities.
pub fn client_config(ca_pem: Option<&str>) -> Result<Arc<ClientConfig>, String> {
    let mut roots = RootCertStore::empty();
    let certs = match ca_pem {
        Some(pem) => certificates(pem)?,
        None => system_authorities()?,
    };
    for c in certs {
        roots
            .add(c)
            .map_err(|e| format!("invalid certificate in `tlscert`: {e}"))?;
    }
    let config = ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?
        .with_root_certificates(roots)
        .with_no_client_auth();
    Ok(Arc::new(config))
}

/// The system's certificate authorities (Debian, Fedora, Alpine, macOS
/// Homebrew locations), for hosts with publicly signed certificates.
fn system_authorities() -> Result<Vec<CertificateDer<'static>>, String> {
    const BUNDLES: [&str; 4] = [
        "/etc/ssl/certs/ca-certificates.crt",
        "/etc/pki/tls/certs/ca-bundle.crt",
        "/etc/ssl/cert.pem",
        "/usr/local/etc/openssl/cert.pem",
    ];
    for path in BUNDLES {
        if let Ok(text) = std::fs::read_to_string(path) {
            return certificates(&text);
        }
    }
    Err("no `tlscert` given and no system certificate authorities found".into())
}

/// The name a daemon checks the host's certificate against.
pub fn server_name(host: &str) -> Result<ServerName<'static>, String> {
    ServerName::try_from(host.to_string()).map_err(|_| format!("'{host}' is not a valid TLS name"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn zero_config_names_the_host() {
        let t = zero_config("127.0.0.1").unwrap();
        assert!(t.ca_pem.unwrap().starts_with("-----BEGIN CERTIFICATE-----"));
        assert_eq!(certificate_names("example.org"), vec!["example.org"]);
        let names = certificate_names("0.0.0.0");
        assert!(names.contains(&"127.0.0.1".to_string()));
        assert!(names.contains(&"localhost".to_string()));
    }

    #[test]
    fn bad_pem_errors_clearly() {
        assert!(certificates("junk")
            .unwrap_err()
            .contains("no PEM certificate"));
        assert!(private_key("junk", None)
            .unwrap_err()
            .contains("no PEM private key"));
        let enc = format!("{ENCRYPTED_BEGIN}\nAAAA\n{ENCRYPTED_END}\n");
        assert!(private_key(&enc, None)
            .unwrap_err()
            .contains("supply `pass`"));
    }
}
