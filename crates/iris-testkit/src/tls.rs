//! A certificate authority for tests: made by rcgen in a temporary directory, it issues server
//! certificates for `localhost`, `127.0.0.1` and `::1` (so clients can verify the host name
//! whether they dial a name or an address) and writes everything as PEM files, which is what
//! Iris, PostgreSQL and Redis read.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair, KeyUsagePurpose};

/// Names every issued certificate is valid for.
pub const SERVER_NAMES: [&str; 3] = ["localhost", "127.0.0.1", "::1"];

/// A test CA and the directory holding its files (deleted when dropped).
pub struct TestCa {
    issuer: Issuer<'static, KeyPair>,
    ca_pem: String,
    dir: tempfile::TempDir,
    issued: AtomicU64,
}

/// A server certificate issued by a [`TestCa`], as PEM text and files.
#[derive(Debug, Clone)]
pub struct IssuedCert {
    /// The certificate (PEM).
    pub cert_pem: String,
    /// Its private key (PEM, PKCS#8).
    pub key_pem: String,
    /// Where the certificate is written.
    pub cert_path: PathBuf,
    /// Where the key is written (mode 0600).
    pub key_path: PathBuf,
}

impl TestCa {
    /// A fresh CA named `name` (its subject's common name).
    ///
    /// # Panics
    /// When rcgen or the file system fails (a broken test machine).
    pub fn new(name: &str) -> TestCa {
        let key = KeyPair::generate().expect("generate a CA key");
        let mut params = CertificateParams::new(Vec::<String>::new()).expect("CA params");
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.distinguished_name.push(DnType::CommonName, name);
        params.key_usages =
            vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign, KeyUsagePurpose::DigitalSignature];
        let cert = params.self_signed(&key).expect("self-sign the CA");
        let dir = tempfile::Builder::new().prefix("iris-ca-").tempdir().expect("a temporary directory");
        std::fs::write(dir.path().join("ca.pem"), cert.pem()).expect("write the CA certificate");
        TestCa { ca_pem: cert.pem(), issuer: Issuer::new(params, key), dir, issued: AtomicU64::new(0) }
    }

    /// The CA certificate (PEM): what clients trust.
    pub fn ca_pem(&self) -> &str {
        &self.ca_pem
    }

    /// Where the CA certificate is written.
    pub fn ca_path(&self) -> PathBuf {
        self.dir.path().join("ca.pem")
    }

    /// A new server certificate for [`SERVER_NAMES`], written under a name of its own.
    ///
    /// # Panics
    /// As [`TestCa::new`].
    pub fn issue(&self) -> IssuedCert {
        let n = self.issued.fetch_add(1, Ordering::Relaxed);
        let key = KeyPair::generate().expect("generate a server key");
        let mut params =
            CertificateParams::new(SERVER_NAMES.iter().map(|s| s.to_string()).collect::<Vec<_>>()).expect("params");
        params.distinguished_name.push(DnType::CommonName, "localhost");
        let cert = params.signed_by(&key, &self.issuer).expect("sign the server certificate");
        let (cert_path, key_path) =
            (self.dir.path().join(format!("server-{n}.pem")), self.dir.path().join(format!("server-{n}.key")));
        std::fs::write(&cert_path, cert.pem()).expect("write the certificate");
        write_private(&key_path, &key.serialize_pem());
        IssuedCert { cert_pem: cert.pem(), key_pem: key.serialize_pem(), cert_path, key_path }
    }

    /// The directory holding the CA's files.
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }
}

/// Writes a key file readable by its owner only (PostgreSQL refuses anything looser).
pub fn write_private(path: &Path, text: &str) {
    std::fs::write(path, text).expect("write the key");
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600)).expect("chmod 600 the key");
    }
}
