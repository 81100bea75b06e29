//! A throwaway PostgreSQL cluster: initdb and pg_ctl in a temp dir, trust auth on loopback;
//! with [`TestPostgres::start_tls`], TLS only, with certificates of a throwaway CA.

use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::Command;

use crate::HarnessError;
use crate::process::{find_program, free_port, log_tail, run_checked};
use crate::tls::TestTls;

/// Extensions preloaded when their library is installed (`pg_stat_statements` comes with
/// postgresql-contrib; the rest with their own Debian packages).
const PRELOAD_CANDIDATES: &[&str] = &["pg_stat_statements", "pg_qualstats"];

/// A running PostgreSQL cluster; stopped and deleted when dropped.
#[derive(Debug)]
pub struct TestPostgres {
    bin_dir: PathBuf,
    data_dir: PathBuf,
    port: u16,
    run_as: Option<String>,
    preloaded: Vec<String>,
    tls: Option<TestTls>,
    _dir: tempfile::TempDir,
}

/// Client authentication of the TLS cluster: TLS only on TCP; the certificate role by its
/// certificate, the SCRAM role by password, everyone else trusted.
const TLS_HBA: &str = "\
local     all all                         trust
hostssl   all opsloop_cert  127.0.0.1/32 cert
hostssl   all opsloop_scram 127.0.0.1/32 scram-sha-256
hostssl   all all           127.0.0.1/32 trust
hostnossl all all           127.0.0.1/32 reject
";

impl TestPostgres {
    /// Creates and starts a new cluster.
    pub async fn start() -> Result<Self, HarnessError> {
        tokio::task::spawn_blocking(|| Self::start_blocking(false))
            .await
            .map_err(|join| HarnessError::Io(std::io::Error::other(join)))?
    }

    /// Creates and starts a cluster that takes TCP connections over TLS only (`ssl = on`,
    /// `hostnossl ... reject`), with a server certificate for `localhost` signed by a
    /// throwaway CA ([`TestPostgres::tls`]); it listens on 127.0.0.1 only.
    pub async fn start_tls() -> Result<Self, HarnessError> {
        tokio::task::spawn_blocking(|| Self::start_blocking(true))
            .await
            .map_err(|join| HarnessError::Io(std::io::Error::other(join)))?
    }

    fn start_blocking(tls: bool) -> Result<Self, HarnessError> {
        let bin_dir = postgres_bin_dir().ok_or(HarnessError::NotInstalled {
            program: "PostgreSQL (initdb, pg_ctl)",
            hint: "OPSLOOP_PG_BINDIR to the directory holding initdb and pg_ctl",
        })?;
        let dir = tempfile::Builder::new().prefix("opsloop-pg").tempdir()?;
        // initdb refuses to run as root: run the server as the `postgres` system user then.
        let run_as = running_as_root().then(|| "postgres".to_owned());
        let mut uid = None;
        if let Some(user) = &run_as {
            let ids = run_checked(Command::new("id").args(["-u", user]))?;
            uid = Some(ids.trim().parse().map_err(std::io::Error::other)?);
            std::os::unix::fs::chown(dir.path(), uid, None)?;
        }
        let tls = match tls {
            true => Some(server_certificates(&dir.path().join("tls"), uid)?),
            false => None,
        };
        let data_dir = dir.path().join("data");
        let port = free_port()?;
        let preloaded = installed_preload_libraries(&bin_dir);
        let postgres = TestPostgres {
            bin_dir,
            data_dir,
            port,
            run_as,
            preloaded,
            tls,
            _dir: dir,
        };
        postgres.run("initdb", |c| {
            c.arg("-D").arg(&postgres.data_dir).args([
                "-U",
                "postgres",
                "--auth=trust",
                "-E",
                "UTF8",
                "--no-sync",
            ]);
        })?;
        let mut options = format!(
            "-p {port} -k {socket} -c listen_addresses=127.0.0.1 -c fsync=off \
             -c synchronous_commit=off -c shared_preload_libraries={preload}",
            socket = postgres.data_dir.display(),
            preload = postgres.preloaded.join(","),
        );
        if let Some(tls) = &postgres.tls {
            let hba = tls.dir().join("pg_hba.conf");
            std::fs::write(&hba, TLS_HBA)?;
            if let Some(uid) = uid {
                std::os::unix::fs::chown(&hba, Some(uid), None)?;
            }
            options.push_str(&format!(
                " -c ssl=on -c ssl_cert_file={} -c ssl_key_file={} -c ssl_ca_file={} \
                 -c hba_file={}",
                tls.server_cert().display(),
                tls.server_key().display(),
                tls.ca_cert().display(),
                hba.display(),
            ));
        }
        let log_path = postgres.log_path();
        let started = postgres.run("pg_ctl", |c| {
            c.arg("-D")
                .arg(&postgres.data_dir)
                .arg("-l")
                .arg(&log_path)
                .args(["-o", &options, "-w", "-t", "60", "start"]);
        });
        if let Err(error) = started {
            return Err(HarnessError::NotReady {
                service: "PostgreSQL",
                seconds: 60,
                log: format!("{error}\n{}", log_tail(&log_path)),
            });
        }
        Ok(postgres)
    }

    /// A libpq connection string for the `postgres` superuser and database.
    pub fn connection_string(&self) -> String {
        format!(
            "host=127.0.0.1 port={} user=postgres dbname=postgres",
            self.port
        )
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// Where the server's programs are (`pgbench`, `psql`, ...).
    pub fn bin_dir(&self) -> &Path {
        &self.bin_dir
    }

    /// The certificates of a cluster started with [`TestPostgres::start_tls`].
    pub fn tls(&self) -> Option<&TestTls> {
        self.tls.as_ref()
    }

    /// A connection string for the `postgres` superuser over TLS as a careful client connects:
    /// `host=localhost`, `sslmode=verify-full` with the cluster's CA. Only for a cluster
    /// started with [`TestPostgres::start_tls`].
    pub fn tls_connection_string(&self) -> Option<String> {
        let tls = self.tls.as_ref()?;
        Some(format!(
            "host=localhost port={} user=postgres dbname=postgres sslmode=verify-full \
             sslrootcert={}",
            self.port,
            tls.ca_cert().display()
        ))
    }

    /// Libraries in `shared_preload_libraries`, e.g. `pg_stat_statements`.
    pub fn preloaded_libraries(&self) -> &[String] {
        &self.preloaded
    }

    /// Opens a connection (over TLS, verify-full, to a TLS cluster); the connection task runs
    /// on the current runtime.
    pub async fn connect(&self) -> Result<tokio_postgres::Client, HarnessError> {
        let dsn = self
            .tls_connection_string()
            .unwrap_or_else(|| self.connection_string());
        let (client, connection) = opsloop_connectors::postgres::connect(&dsn).await?;
        tokio::spawn(async move {
            if let Err(error) = connection.await {
                tracing::debug!(%error, "test PostgreSQL connection closed");
            }
        });
        Ok(client)
    }

    fn log_path(&self) -> PathBuf {
        self.data_dir.with_file_name("postgres.log")
    }

    /// Runs a PostgreSQL program, as the `postgres` user when we are root.
    fn run(&self, program: &str, args: impl FnOnce(&mut Command)) -> Result<String, HarnessError> {
        let path = self.bin_dir.join(program);
        let mut command = match &self.run_as {
            Some(user) => {
                let mut command = Command::new("runuser");
                command.args(["-u", user, "--"]).arg(path);
                command
            }
            None => Command::new(path),
        };
        args(&mut command);
        run_checked(&mut command)
    }
}

impl Drop for TestPostgres {
    fn drop(&mut self) {
        let _ = self.run("pg_ctl", |c| {
            c.arg("-D")
                .arg(&self.data_dir)
                .args(["-m", "immediate", "-w", "stop"]);
        });
    }
}

/// The certificates in `dir`, owned by the server's user (`uid`, when we are root) as the
/// server demands of its key.
fn server_certificates(dir: &Path, uid: Option<u32>) -> Result<TestTls, HarnessError> {
    let tls = TestTls::generate(dir)?;
    let key = tls.server_key();
    std::fs::set_permissions(&key, std::os::unix::fs::PermissionsExt::from_mode(0o600))?;
    if let Some(uid) = uid {
        for entry in std::fs::read_dir(dir)? {
            std::os::unix::fs::chown(entry?.path(), Some(uid), None)?;
        }
        std::os::unix::fs::chown(dir, Some(uid), None)?;
    }
    Ok(tls)
}

fn running_as_root() -> bool {
    std::fs::metadata("/proc/self").is_ok_and(|meta| meta.uid() == 0)
}

/// `OPSLOOP_PG_BINDIR`, else the newest `/usr/lib/postgresql/N/bin`, else `PATH`.
fn postgres_bin_dir() -> Option<PathBuf> {
    if let Some(dir) = std::env::var_os("OPSLOOP_PG_BINDIR") {
        return Some(PathBuf::from(dir));
    }
    let mut versions: Vec<(u32, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|entry| {
            let version = entry.file_name().to_str()?.parse().ok()?;
            let bin = entry.path().join("bin");
            bin.join("pg_ctl").is_file().then_some((version, bin))
        })
        .collect();
    versions.sort();
    versions
        .pop()
        .map(|(_, bin)| bin)
        .or_else(|| find_program("pg_ctl", &[]).and_then(|p| p.parent().map(Path::to_path_buf)))
}

fn installed_preload_libraries(bin_dir: &Path) -> Vec<String> {
    let lib_dir = run_checked(Command::new(bin_dir.join("pg_config")).arg("--pkglibdir"))
        .map(|out| PathBuf::from(out.trim()))
        .unwrap_or_else(|_| bin_dir.with_file_name("lib"));
    PRELOAD_CANDIDATES
        .iter()
        .filter(|name| lib_dir.join(format!("{name}.so")).is_file())
        .map(|name| (*name).to_owned())
        .collect()
}
