//! A soak on a real workload, not part of the per-commit suite: pgbench and a hot indexed
//! lookup on a real PostgreSQL 15 for an hour (`OPSLOOP_SOAK_MINUTES`), the loop at its
//! defaults over the real broker (`collect postgres` every 5 s, `run`, `actuate`), the closed
//! loop's faults injected one every 10 minutes (`OPSLOOP_SOAK_FAULTS=0` for a fault-free run),
//! and `run` and `actuate` killed with SIGKILL and restarted at random times every 3 to 7
//! minutes (`OPSLOOP_SOAK_KILLS=0` to leave them, `OPSLOOP_SOAK_SEED` for another schedule).
//!
//! Afterwards an uninterrupted `opsloop run` replays the same telemetry from the start into
//! topics of its own, and the soak reports and checks: no alert of the killed run missing
//! against the uninterrupted one, no action executed twice, `audit verify` on the audit log;
//! it reports the incidents no fault explains (false incidents), the faults verified, and the
//! resident memory of `run` over time.
//!
//! ```sh
//! cargo nextest run -p opsloop-pipeline --test soak --run-ignored only --no-capture
//! OPSLOOP_SOAK_MINUTES=60 OPSLOOP_SOAK_FAULTS=0 cargo nextest run ... # the fault-free hour
//! ```

#[path = "support/actuate.rs"]
mod actuate_support;
#[path = "support/closed_loop.rs"]
mod loop_support;

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::time::{Duration, Instant};

use loop_support::{
    LoopSetup, LoopTopics, TopicReader, dump_logs, now_us, run_toml, spawn, spawn_collector,
    write_configs,
};
use opsloop_schemas::ops::{ActionOutcome, ActionStep, Alert, Incident};
use opsloop_tests::{LockContention, TestPostgres, orders_lookups, unique_name};
use tokio::process::Child;
use tokio_postgres::Client;

const MINUTE: Duration = Duration::from_secs(60);
/// How long after its injection an incident counts as the fault's.
const FAULT_REACH: Duration = Duration::from_secs(600);

fn setting(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|value| value.parse().ok())
        .unwrap_or(default)
}

/// A small deterministic generator for the kill schedule.
struct Schedule(u64);

impl Schedule {
    fn next_delay(&mut self) -> Duration {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        Duration::from_secs(180 + self.0 % 240)
    }
}

/// One of the closed loop's faults, injected on the soak's database.
#[derive(Debug, Clone, Copy)]
enum Fault {
    RunawayQuery,
    IdleBlockers,
    DroppedIndex,
    BloatedIndex,
    StaleView,
}

const FAULTS: [Fault; 5] = [
    Fault::RunawayQuery,
    Fault::IdleBlockers,
    Fault::DroppedIndex,
    Fault::BloatedIndex,
    Fault::StaleView,
];

/// Sessions a fault holds open until the loop ends them.
#[derive(Default)]
struct Held {
    tasks: Vec<tokio::task::JoinHandle<()>>,
    clients: Vec<Client>,
}

impl Fault {
    /// The alert types the fault's incident is made of (a runaway query holding a lock also
    /// blocks the sessions that need the table).
    fn symptoms(self) -> &'static [&'static str] {
        match self {
            Fault::RunawayQuery => &["runaway_query", "lock_blocker"],
            Fault::IdleBlockers => &["lock_blocker", "runaway_query"],
            Fault::DroppedIndex => &["seq_scan_increase"],
            Fault::BloatedIndex => &["index_bloat_high"],
            Fault::StaleView => &["materialized_view_stale"],
        }
    }

    async fn inject(self, postgres: &TestPostgres, db: &Client, round: usize, held: &mut Held) {
        match self {
            Fault::RunawayQuery => {
                let runaway = postgres.connect().await.expect("connect");
                held.tasks.push(tokio::spawn(async move {
                    let _ = runaway
                        .batch_execute(
                            "BEGIN; LOCK TABLE jobs IN ACCESS EXCLUSIVE MODE; SELECT pg_sleep(900)",
                        )
                        .await;
                }));
            }
            Fault::IdleBlockers => {
                let LockContention { blockers, victims } =
                    postgres.lock_contention().await.expect("lock contention");
                held.clients.extend(blockers);
                held.tasks.extend(victims.into_iter().map(|victim| {
                    tokio::spawn(async move {
                        let _ = victim.await;
                    })
                }));
            }
            Fault::DroppedIndex => {
                // The original index, or the one the loop created after the last drop.
                let indexes = db
                    .query(
                        "SELECT indexrelid::regclass::text FROM pg_index \
                         WHERE indrelid = 'orders'::regclass AND NOT indisprimary",
                        &[],
                    )
                    .await
                    .expect("indexes");
                for index in indexes {
                    let name: String = index.get(0);
                    db.batch_execute(&format!("DROP INDEX {name}"))
                        .await
                        .expect("drop");
                }
            }
            Fault::BloatedIndex => {
                for statement in [
                    "INSERT INTO items SELECT g, md5(g::text) FROM generate_series(1, 200000) g \
                     ON CONFLICT DO NOTHING",
                    "DELETE FROM items WHERE id % 10 <> 0",
                    "VACUUM ANALYZE items",
                ] {
                    db.batch_execute(statement).await.expect("bloat");
                }
            }
            Fault::StaleView => {
                let first = 1_000_000 + round as i64 * 10_000;
                db.batch_execute(&format!(
                    "INSERT INTO events SELECT g, g % 10 FROM generate_series({first}, {}) g",
                    first + 4_000
                ))
                .await
                .expect("stale");
            }
        }
    }
}

/// `run` or `actuate`, restarted after a kill with the same configuration and log but in a
/// consumer group of its own: tansu 0.6 keeps a killed member's partitions in its group (a
/// Kafka broker hands them over once the session times out). `run` resumes from its
/// checkpoint's offsets either way; `actuate` re-reads `ops.remediation` from its start, which
/// its claims must keep from running anything twice.
struct Service {
    args: Vec<String>,
    log: std::path::PathBuf,
    child: Child,
    kills: usize,
}

impl Service {
    fn start(args: &[&str], log: &Path) -> Self {
        Service {
            args: args.iter().map(|a| (*a).to_owned()).collect(),
            log: log.to_owned(),
            child: spawn(args, log),
            kills: 0,
        }
    }

    async fn kill_and_restart(&mut self) {
        self.child.start_kill().expect("SIGKILL");
        let _ = self.child.wait().await;
        self.kills += 1;
        let config = Path::new(&self.args[2]);
        let text = std::fs::read_to_string(config).expect("config");
        let group = format!("group_id = \"{}\"", unique_name("restarted"));
        let text: Vec<String> = text
            .lines()
            .map(|line| {
                if line.starts_with("group_id = ") {
                    group.clone()
                } else {
                    line.to_owned()
                }
            })
            .collect();
        std::fs::write(config, text.join("\n")).expect("config");
        tokio::time::sleep(Duration::from_secs(2)).await;
        let args: Vec<&str> = self.args.iter().map(String::as_str).collect();
        self.child = spawn(&args, &self.log);
    }

    /// Resident memory in KiB, from /proc.
    fn rss_kib(&self) -> Option<u64> {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.child.id()?)).ok()?;
        status
            .lines()
            .find_map(|line| line.strip_prefix("VmRSS:"))
            .and_then(|rest| rest.trim().trim_end_matches("kB").trim().parse().ok())
    }
}

fn pgbench(postgres: &TestPostgres, args: &[&str]) -> tokio::process::Command {
    let mut command = tokio::process::Command::new(postgres.bin_dir().join("pgbench"));
    command
        .args(["-h", "127.0.0.1", "-p", &postgres.port().to_string()])
        .args(["-U", "postgres"])
        .args(args)
        .arg("postgres")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .kill_on_drop(true);
    command
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "a soak of an hour; run with --run-ignored only"]
async fn an_hour_of_pgbench_with_faults_and_kills_loses_no_alert_and_runs_nothing_twice() {
    let minutes = setting("OPSLOOP_SOAK_MINUTES", 60);
    let with_faults = setting("OPSLOOP_SOAK_FAULTS", 1) == 1;
    let with_kills = setting("OPSLOOP_SOAK_KILLS", 1) == 1;
    let mut schedule = Schedule(setting("OPSLOOP_SOAK_SEED", 1).max(1));

    let LoopSetup {
        postgres,
        broker,
        topics,
        dir,
        db,
    } = LoopSetup::start().await;
    let status = pgbench(&postgres, &["-i", "-s", "10", "-q"])
        .status()
        .await
        .expect("pgbench -i");
    assert!(status.success(), "pgbench -i");
    let dsn = postgres.connection_string();
    let (run_config, actuate_config) =
        write_configs(&broker, &topics, dir.path(), &unique_name("soak"), &dsn);
    let logs = dir.path();
    let mut collector =
        spawn_collector(&broker, &topics, &dsn, "pg-soak", &logs.join("collect.log"));
    let mut run = Service::start(
        &["run", "--config", run_config.to_str().expect("path")],
        &logs.join("run.log"),
    );
    let mut actuate = Service::start(
        &[
            "actuate",
            "--config",
            actuate_config.to_str().expect("path"),
        ],
        &logs.join("actuate.log"),
    );
    let duration = MINUTE * u32::try_from(minutes).expect("minutes");
    let mut bench = pgbench(
        &postgres,
        &[
            "-c",
            "8",
            "-j",
            "2",
            "-R",
            "200",
            "-T",
            &duration.as_secs().to_string(),
        ],
    )
    .spawn()
    .expect("pgbench");
    let lookups = orders_lookups(postgres.connect().await.expect("connect"), false);

    let started = Instant::now();
    let mut injected: Vec<(Fault, i64)> = Vec::new();
    let mut held = Held::default();
    let mut next_fault = started + 5 * MINUTE;
    let mut next_kill = started + schedule.next_delay();
    let mut next_sample = started;
    let mut rss: Vec<(u64, u64)> = Vec::new();
    let mut kill_run_next = true;
    while started.elapsed() < duration {
        let now = Instant::now();
        if with_faults && now >= next_fault && started.elapsed() + 10 * MINUTE <= duration {
            let fault = FAULTS[injected.len() % FAULTS.len()];
            eprintln!("{:>5} s: inject {fault:?}", started.elapsed().as_secs());
            injected.push((fault, now_us()));
            fault
                .inject(&postgres, &db, injected.len(), &mut held)
                .await;
            next_fault += 10 * MINUTE;
        }
        if with_kills && now >= next_kill {
            let service = if kill_run_next {
                &mut run
            } else {
                &mut actuate
            };
            eprintln!(
                "{:>5} s: SIGKILL {}",
                started.elapsed().as_secs(),
                service.args[0]
            );
            service.kill_and_restart().await;
            kill_run_next = !kill_run_next;
            next_kill = Instant::now() + schedule.next_delay();
        }
        if now >= next_sample {
            if let Some(kib) = run.rss_kib() {
                rss.push((started.elapsed().as_secs() / 60, kib));
            }
            next_sample += MINUTE;
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
    let _ = bench.wait().await;
    lookups.abort();
    let mut outcomes = TopicReader::<ActionOutcome>::new(&broker, topics.get("actions"));
    // The last fault's verification, then no more telemetry: the windows close.
    if let Some((fault, at)) = injected.last().copied() {
        let verified = outcomes
            .wait_for(3 * MINUTE, |o| {
                o.step == ActionStep::Verified && o.time_us > at
            })
            .await;
        eprintln!(
            "the last fault ({fault:?}) verified: {}",
            verified.is_some()
        );
    }
    collector.start_kill().expect("stop the collector");
    let telemetry_end_us = now_us();
    tokio::time::sleep(MINUTE).await;

    // The same telemetry through a run nobody kills, into topics of its own.
    let mut reference_topics = LoopTopics::create(&broker).await;
    reference_topics
        .by_role
        .insert("metrics", topics.get("metrics").to_owned());
    let reference_dir = tempfile::tempdir().expect("dir");
    let reference_config = reference_dir.path().join("run.toml");
    std::fs::write(
        &reference_config,
        run_toml(
            &broker,
            &unique_name("reference"),
            &reference_topics,
            reference_dir.path(),
        ),
    )
    .expect("reference config");
    let _reference = spawn(
        &["run", "--config", reference_config.to_str().expect("path")],
        &logs.join("reference.log"),
    );
    let mut reference_alerts = TopicReader::<Alert>::new(&broker, reference_topics.get("alerts"));
    reference_alerts.read_until_quiet(2 * MINUTE).await;
    let mut alerts = TopicReader::<Alert>::new(&broker, topics.get("alerts"));
    alerts.read_until_quiet(Duration::from_secs(20)).await;
    let mut incidents = TopicReader::<Incident>::new(&broker, topics.get("incidents"));
    incidents.read_until_quiet(Duration::from_secs(20)).await;
    outcomes.read_until_quiet(Duration::from_secs(20)).await;

    // Windows that closed well before the telemetry ended, in both runs.
    let settled = |alert: &&Alert| alert.window_end_us < telemetry_end_us - 60_000_000;
    let ids = |reader: &TopicReader<Alert>| -> BTreeSet<String> {
        reader
            .seen
            .iter()
            .filter(settled)
            .map(|a| a.alert_id.clone())
            .collect()
    };
    let (soaked, reference) = (ids(&alerts), ids(&reference_alerts));
    let lost: Vec<&String> = reference.difference(&soaked).collect();
    let extra: Vec<&String> = soaked.difference(&reference).collect();

    let mut executions: BTreeMap<&str, usize> = BTreeMap::new();
    for outcome in outcomes
        .seen
        .iter()
        .filter(|o| o.step == ActionStep::Executed)
    {
        *executions.entry(outcome.action_id.as_str()).or_default() += 1;
    }
    let twice: Vec<(&&str, &usize)> = executions.iter().filter(|(_, n)| **n > 1).collect();
    let audit = std::process::Command::new(env!("CARGO_BIN_EXE_opsloop"))
        .args(["audit", "verify", "--log"])
        .arg(dir.path().join("audit.jsonl"))
        .output()
        .expect("audit verify");

    let mut opened: BTreeMap<&str, &Incident> = BTreeMap::new();
    for incident in &incidents.seen {
        opened
            .entry(incident.incident_id.as_str())
            .or_insert(incident);
    }
    let reach_us = i64::try_from(FAULT_REACH.as_micros()).expect("reach");
    // An incident is the fault's when it opened within its reach and holds one of its
    // symptoms; any other incident is false.
    let explained = |incident: &Incident| {
        injected.iter().any(|(fault, at)| {
            (*at..*at + reach_us).contains(&incident.opened_us)
                && incident
                    .alert_types
                    .iter()
                    .any(|t| fault.symptoms().contains(&t.as_str()))
        })
    };
    let false_incidents: Vec<String> = opened
        .values()
        .filter(|i| !explained(i))
        .map(|i| format!("{} {} {:?}", i.pattern, i.alert_types.join("+"), i.tier))
        .collect();
    let verified: BTreeSet<&str> = outcomes
        .seen
        .iter()
        .filter(|o| o.step == ActionStep::Verified)
        .map(|o| o.template.as_str())
        .collect();

    eprintln!("soak: {minutes} min of pgbench (8 clients, 200 tx/s) and indexed lookups");
    eprintln!(
        "faults injected {}: {:?}; kills: run {}, actuate {}",
        injected.len(),
        injected.iter().map(|(f, _)| *f).collect::<Vec<_>>(),
        run.kills,
        actuate.kills
    );
    eprintln!(
        "alerts (settled windows): killed run {}, uninterrupted run {}, lost {}, extra {}",
        soaked.len(),
        reference.len(),
        lost.len(),
        extra.len()
    );
    eprintln!(
        "actions executed {}, executed twice {}, verified templates {verified:?}",
        executions.len(),
        twice.len()
    );
    eprintln!(
        "incidents {}: explained by a fault {}, false {}: {false_incidents:?}",
        opened.len(),
        opened.len() - false_incidents.len(),
        false_incidents.len()
    );
    eprintln!("run's resident memory (minute, KiB): {rss:?}");
    if !lost.is_empty() || !twice.is_empty() {
        dump_logs(logs, &["run.log", "actuate.log", "reference.log"]);
    }
    assert!(lost.is_empty(), "alerts lost to the kills: {lost:?}");
    assert!(twice.is_empty(), "actions executed twice: {twice:?}");
    assert!(
        audit.status.success(),
        "{}",
        String::from_utf8_lossy(&audit.stderr)
    );
    drop(held);
}
