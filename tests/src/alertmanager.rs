//! A throwaway Prometheus Alertmanager (Debian's `prometheus-alertmanager`): no clustering,
//! storage in a temp dir, one route grouping by the labels the test names and a receiver that
//! sends nowhere, so the alerts are read back from its v2 API.

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::HarnessError;
use crate::http::http_get;
use crate::process::{find_program, free_port, log_tail};

const READY_WITHIN: Duration = Duration::from_secs(30);

/// A running Alertmanager; killed when dropped.
#[derive(Debug)]
pub struct TestAlertmanager {
    child: Child,
    address: String,
    _dir: tempfile::TempDir,
}

impl TestAlertmanager {
    /// Starts an Alertmanager whose route groups alerts by `group_by`.
    pub fn start(group_by: &[&str]) -> Result<Self, HarnessError> {
        let program = find_program(
            "prometheus-alertmanager",
            &[PathBuf::from("/usr/bin"), PathBuf::from("/usr/local/bin")],
        )
        .or_else(|| find_program("alertmanager", &[]))
        .ok_or(HarnessError::NotInstalled {
            program: "Prometheus Alertmanager (prometheus-alertmanager)",
            hint: "PATH to include the alertmanager binary",
        })?;
        let dir = tempfile::Builder::new().prefix("opsloop-am").tempdir()?;
        let config = dir.path().join("alertmanager.yml");
        let labels = group_by
            .iter()
            .map(|label| format!("'{label}'"))
            .collect::<Vec<_>>()
            .join(", ");
        std::fs::write(
            &config,
            format!(
                "route:\n  receiver: nowhere\n  group_by: [{labels}]\n  group_wait: 1s\n  \
                 group_interval: 1s\n  repeat_interval: 1h\nreceivers:\n  - name: nowhere\n"
            ),
        )?;
        let port = free_port()?;
        let address = format!("127.0.0.1:{port}");
        let log = dir.path().join("alertmanager.log");
        let child = Command::new(&program)
            .arg(format!("--config.file={}", config.display()))
            .arg(format!(
                "--storage.path={}",
                dir.path().join("data").display()
            ))
            .arg(format!("--web.listen-address={address}"))
            .arg("--cluster.listen-address=")
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log)?)
            .spawn()
            .map_err(|source| HarnessError::Spawn {
                command: program.display().to_string(),
                source,
            })?;
        let alertmanager = TestAlertmanager {
            child,
            address,
            _dir: dir,
        };
        let started = Instant::now();
        while !matches!(http_get(&alertmanager.address, "/-/ready"), Ok((200, _))) {
            if started.elapsed() > READY_WITHIN {
                return Err(HarnessError::NotReady {
                    service: "Alertmanager",
                    seconds: READY_WITHIN.as_secs(),
                    log: log_tail(&log),
                });
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        Ok(alertmanager)
    }

    /// `http://127.0.0.1:PORT`
    pub fn url(&self) -> String {
        format!("http://{}", self.address)
    }

    /// The body of `GET /api/v2/<path>` (`alerts`, `alerts/groups`, ...).
    pub fn api(&self, path: &str) -> Result<String, HarnessError> {
        let (status, body) = http_get(&self.address, &format!("/api/v2/{path}"))?;
        if status == 200 {
            Ok(body)
        } else {
            Err(HarnessError::CommandFailed {
                command: format!("GET /api/v2/{path}"),
                output: format!("HTTP {status}: {body}"),
            })
        }
    }
}

impl Drop for TestAlertmanager {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
