//! A Kafka-protocol broker for tests.

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use opsloop_connectors::kafka::{KafkaConfig, TopicRequest, create_topics};
use rdkafka::consumer::{BaseConsumer, Consumer};

use crate::process::{find_program, free_port, log_tail};
use crate::{HarnessError, unique_name};

const READY_TIMEOUT: Duration = Duration::from_secs(60);

/// Which kind of broker a [`TestBroker`] talks to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BrokerBackend {
    /// A broker named by `OPSLOOP_TEST_BROKERS`, run by someone else.
    External,
    /// An Apache Kafka container started through testcontainers.
    Container,
    /// A tansu broker process started by this fixture.
    Tansu,
}

/// A running broker; it stops when dropped (unless it is external).
#[derive(Debug)]
pub struct TestBroker {
    bootstrap: String,
    backend: BrokerBackend,
    _running: Running,
}

#[derive(Debug)]
enum Running {
    External,
    Tansu(TansuProcess),
    /// Held for its `Drop`, which stops the container.
    #[cfg(feature = "docker")]
    Container {
        _container: Box<
            testcontainers_modules::testcontainers::ContainerAsync<
                testcontainers_modules::kafka::apache::Kafka,
            >,
        >,
    },
}

impl TestBroker {
    /// Connects to `OPSLOOP_TEST_BROKERS`, or starts a broker.
    pub async fn start() -> Result<Self, HarnessError> {
        if let Ok(bootstrap) = std::env::var("OPSLOOP_TEST_BROKERS")
            && !bootstrap.trim().is_empty()
        {
            return Ok(TestBroker {
                bootstrap,
                backend: BrokerBackend::External,
                _running: Running::External,
            });
        }
        #[cfg(feature = "docker")]
        if docker_answers() {
            match start_container().await {
                Ok(broker) => return Ok(broker),
                Err(error) => {
                    tracing::warn!(%error, "Docker answered but Kafka did not start; using tansu")
                }
            }
        }
        let process = TansuProcess::start()?;
        let broker = TestBroker {
            bootstrap: process.bootstrap.clone(),
            backend: BrokerBackend::Tansu,
            _running: Running::Tansu(process),
        };
        broker.wait_ready().await?;
        Ok(broker)
    }

    /// The bootstrap address, `host:port`.
    pub fn bootstrap(&self) -> &str {
        &self.bootstrap
    }

    pub fn backend(&self) -> BrokerBackend {
        self.backend
    }

    /// Client settings for this broker.
    pub fn kafka_config(&self) -> KafkaConfig {
        KafkaConfig::new(&self.bootstrap)
    }

    /// Creates a topic named `base` plus a unique suffix and returns its name.
    pub async fn create_topic(&self, base: &str, partitions: i32) -> Result<String, HarnessError> {
        let name = unique_name(base);
        let request = TopicRequest {
            name: name.clone(),
            partitions,
            replication_factor: 1,
        };
        create_topics(&self.kafka_config(), &[request], Duration::from_secs(30)).await?;
        Ok(name)
    }

    /// How many partitions `topic` has, from the broker's metadata.
    pub async fn partition_count(&self, topic: &str) -> Result<usize, HarnessError> {
        let consumer: BaseConsumer = self
            .kafka_config()
            .client_config()
            .create()
            .map_err(opsloop_connectors::ConnectorError::Config)?;
        let topic = topic.to_owned();
        tokio::task::spawn_blocking(move || {
            let metadata = consumer
                .fetch_metadata(Some(&topic), Duration::from_secs(10))
                .map_err(opsloop_connectors::ConnectorError::Kafka)?;
            Ok(metadata.topics().iter().map(|t| t.partitions().len()).sum())
        })
        .await
        .map_err(|join| HarnessError::Io(std::io::Error::other(join)))?
    }

    /// Waits until the broker answers a metadata request.
    async fn wait_ready(&self) -> Result<(), HarnessError> {
        let config = self.kafka_config();
        let log_path = match &self._running {
            Running::Tansu(process) => Some(process.log_path()),
            _ => None,
        };
        tokio::task::spawn_blocking(move || {
            let started = Instant::now();
            let consumer: BaseConsumer = config
                .client_config()
                .create()
                .map_err(opsloop_connectors::ConnectorError::Config)?;
            while started.elapsed() < READY_TIMEOUT {
                if consumer
                    .fetch_metadata(None, Duration::from_secs(2))
                    .is_ok_and(|metadata| !metadata.brokers().is_empty())
                {
                    return Ok(());
                }
                std::thread::sleep(Duration::from_millis(100));
            }
            Err(HarnessError::NotReady {
                service: "the Kafka broker",
                seconds: READY_TIMEOUT.as_secs(),
                log: log_path.as_deref().map(log_tail).unwrap_or_default(),
            })
        })
        .await
        .map_err(|join| HarnessError::Io(std::io::Error::other(join)))?
    }
}

/// A tansu broker child process with in-memory storage.
#[derive(Debug)]
struct TansuProcess {
    child: Child,
    bootstrap: String,
    dir: tempfile::TempDir,
}

impl TansuProcess {
    fn start() -> Result<Self, HarnessError> {
        let program = tansu_program().ok_or(HarnessError::NotInstalled {
            program: "tansu",
            hint: "OPSLOOP_TANSU to its path, or OPSLOOP_TEST_BROKERS to a running broker",
        })?;
        let dir = tempfile::Builder::new().prefix("opsloop-tansu").tempdir()?;
        let port = free_port()?;
        let url = format!("tcp://127.0.0.1:{port}");
        let log = std::fs::File::create(dir.path().join("tansu.log"))?;
        let mut command = Command::new(&program);
        command
            .args([
                "broker",
                "--listener-url",
                &url,
                "--advertised-listener-url",
                &url,
            ])
            .args(["--storage-engine", "memory://tansu/"])
            .env("RUST_LOG", "warn")
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log);
        let child = command.spawn().map_err(|source| HarnessError::Spawn {
            command: format!("{command:?}"),
            source,
        })?;
        Ok(TansuProcess {
            child,
            bootstrap: format!("127.0.0.1:{port}"),
            dir,
        })
    }

    fn log_path(&self) -> PathBuf {
        self.dir.path().join("tansu.log")
    }
}

impl Drop for TansuProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn tansu_program() -> Option<PathBuf> {
    if let Some(path) = std::env::var_os("OPSLOOP_TANSU") {
        return Some(PathBuf::from(path));
    }
    let cargo_bin = std::env::var_os("CARGO_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|home| PathBuf::from(home).join(".cargo")))
        .map(|dir| dir.join("bin"));
    find_program("tansu", cargo_bin.as_slice())
}

#[cfg(feature = "docker")]
fn docker_answers() -> bool {
    let socket = std::env::var("DOCKER_HOST")
        .ok()
        .and_then(|host| host.strip_prefix("unix://").map(str::to_owned))
        .unwrap_or_else(|| "/var/run/docker.sock".to_owned());
    std::os::unix::net::UnixStream::connect(socket).is_ok()
}

#[cfg(feature = "docker")]
async fn start_container() -> Result<TestBroker, HarnessError> {
    use testcontainers_modules::kafka::apache::Kafka;
    use testcontainers_modules::testcontainers::runners::AsyncRunner;

    let container = Kafka::default().start().await?;
    let host = container.get_host().await?;
    let port = container
        .get_host_port_ipv4(testcontainers_modules::kafka::apache::KAFKA_PORT)
        .await?;
    let broker = TestBroker {
        bootstrap: format!("{host}:{port}"),
        backend: BrokerBackend::Container,
        _running: Running::Container {
            _container: Box::new(container),
        },
    };
    broker.wait_ready().await?;
    Ok(broker)
}
