//! A throwaway PostgreSQL cluster: initdb and pg_ctl in a temp dir, trust auth on loopback.

use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::Command;

use crate::HarnessError;
use crate::process::{find_program, free_port, log_tail, run_checked};

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
    _dir: tempfile::TempDir,
}

impl TestPostgres {
    /// Creates and starts a new cluster.
    pub async fn start() -> Result<Self, HarnessError> {
        tokio::task::spawn_blocking(Self::start_blocking)
            .await
            .map_err(|join| HarnessError::Io(std::io::Error::other(join)))?
    }

    fn start_blocking() -> Result<Self, HarnessError> {
        let bin_dir = postgres_bin_dir().ok_or(HarnessError::NotInstalled {
            program: "PostgreSQL (initdb, pg_ctl)",
            hint: "OPSLOOP_PG_BINDIR to the directory holding initdb and pg_ctl",
        })?;
        let dir = tempfile::Builder::new().prefix("opsloop-pg").tempdir()?;
        // initdb refuses to run as root: run the server as the `postgres` system user then.
        let run_as = running_as_root().then(|| "postgres".to_owned());
        if let Some(user) = &run_as {
            let ids = run_checked(Command::new("id").args(["-u", user]))?;
            let uid: u32 = ids.trim().parse().map_err(std::io::Error::other)?;
            std::os::unix::fs::chown(dir.path(), Some(uid), None)?;
        }
        let data_dir = dir.path().join("data");
        let port = free_port()?;
        let preloaded = installed_preload_libraries(&bin_dir);
        let postgres = TestPostgres {
            bin_dir,
            data_dir,
            port,
            run_as,
            preloaded,
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
        let options = format!(
            "-p {port} -k {socket} -c listen_addresses=127.0.0.1 -c fsync=off \
             -c synchronous_commit=off -c shared_preload_libraries={preload}",
            socket = postgres.data_dir.display(),
            preload = postgres.preloaded.join(","),
        );
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

    /// Libraries in `shared_preload_libraries`, e.g. `pg_stat_statements`.
    pub fn preloaded_libraries(&self) -> &[String] {
        &self.preloaded
    }

    /// Opens a connection; the connection task runs on the current runtime.
    pub async fn connect(&self) -> Result<tokio_postgres::Client, HarnessError> {
        let (client, connection) =
            tokio_postgres::connect(&self.connection_string(), tokio_postgres::NoTls).await?;
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
