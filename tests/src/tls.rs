//! Throwaway certificates for a PostgreSQL that speaks TLS: a self-signed CA, a server
//! certificate for `localhost` and a client certificate it signed, and an unrelated CA, made
//! with the `openssl` command line.

use std::path::{Path, PathBuf};
use std::process::Command;

use crate::HarnessError;
use crate::process::{find_program, run_checked};

/// Extensions of each kind of certificate; `req` needs a distinguished-name section.
const OPENSSL_CONFIG: &str = "\
[req]
distinguished_name = dn
prompt = no
[dn]
CN = opsloop
[ca]
basicConstraints = critical, CA:TRUE
keyUsage = critical, keyCertSign, cRLSign
subjectKeyIdentifier = hash
[server]
basicConstraints = critical, CA:FALSE
keyUsage = critical, digitalSignature
extendedKeyUsage = serverAuth
subjectAltName = DNS:localhost
subjectKeyIdentifier = hash
authorityKeyIdentifier = keyid
[client]
basicConstraints = critical, CA:FALSE
keyUsage = critical, digitalSignature
extendedKeyUsage = clientAuth
authorityKeyIdentifier = keyid
";

/// The certificate files of a TLS test server (PEM, keys unencrypted).
#[derive(Debug, Clone)]
pub struct TestTls {
    dir: PathBuf,
}

impl TestTls {
    /// The role that authenticates with the client certificate ([`TestTls::client_cert`]), its
    /// common name; `pg_hba.conf` admits it over TLS by certificate only.
    pub const CERT_ROLE: &'static str = "opsloop_cert";
    /// The role that authenticates with SCRAM over TLS ([`TestTls::SCRAM_PASSWORD`]); the test
    /// creates it.
    pub const SCRAM_ROLE: &'static str = "opsloop_scram";
    pub const SCRAM_PASSWORD: &'static str = "s3cret-over-tls";

    /// Makes the CA, the server and client certificates and an unrelated CA in `dir`.
    pub(crate) fn generate(dir: &Path) -> Result<Self, HarnessError> {
        let openssl = find_program("openssl", &[]).ok_or(HarnessError::NotInstalled {
            program: "openssl (the command line, Debian package openssl)",
            hint: "PATH to include it",
        })?;
        std::fs::create_dir_all(dir)?;
        let config = dir.join("openssl.cnf");
        std::fs::write(&config, OPENSSL_CONFIG)?;
        let run = |args: &[&str]| -> Result<String, HarnessError> {
            run_checked(Command::new(&openssl).current_dir(dir).args(args))
        };
        let config = config
            .to_str()
            .ok_or_else(|| HarnessError::Io(std::io::Error::other("temp dir path is not UTF-8")))?;
        let key = [
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:prime256v1",
            "-nodes",
        ];
        for (name, subject) in [
            ("ca", "/CN=opsloop test CA"),
            ("other-ca", "/CN=unrelated CA"),
        ] {
            let (key_file, cert_file) = (format!("{name}.key"), format!("{name}.crt"));
            let mut args = vec!["req", "-x509", "-config", config, "-extensions", "ca"];
            args.extend(key);
            args.extend([
                "-keyout", &key_file, "-out", &cert_file, "-days", "2", "-subj", subject,
            ]);
            run(&args)?;
        }
        let signed = [
            ("server", "/CN=localhost", "2"),
            ("client", "/CN=opsloop_cert", "3"),
        ];
        for (name, subject, serial) in signed {
            let (key_file, csr, cert_file) = (
                format!("{name}.key"),
                format!("{name}.csr"),
                format!("{name}.crt"),
            );
            let mut args = vec!["req", "-new", "-config", config];
            args.extend(key);
            args.extend(["-keyout", &key_file, "-out", &csr, "-subj", subject]);
            run(&args)?;
            run(&[
                "x509",
                "-req",
                "-in",
                &csr,
                "-CA",
                "ca.crt",
                "-CAkey",
                "ca.key",
                "-set_serial",
                serial,
                "-days",
                "2",
                "-extfile",
                config,
                "-extensions",
                name,
                "-out",
                &cert_file,
            ])?;
        }
        Ok(TestTls {
            dir: dir.to_owned(),
        })
    }

    /// The CA that signed the server's and the client's certificates.
    pub fn ca_cert(&self) -> PathBuf {
        self.dir.join("ca.crt")
    }

    /// A CA that signed neither.
    pub fn other_ca_cert(&self) -> PathBuf {
        self.dir.join("other-ca.crt")
    }

    /// The server's certificate (for `localhost` only) and key.
    pub fn server_cert(&self) -> PathBuf {
        self.dir.join("server.crt")
    }

    pub fn server_key(&self) -> PathBuf {
        self.dir.join("server.key")
    }

    /// A client certificate for [`TestTls::CERT_ROLE`] and its key.
    pub fn client_cert(&self) -> PathBuf {
        self.dir.join("client.crt")
    }

    pub fn client_key(&self) -> PathBuf {
        self.dir.join("client.key")
    }

    pub(crate) fn dir(&self) -> &Path {
        &self.dir
    }
}
