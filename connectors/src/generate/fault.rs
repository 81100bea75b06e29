//! Scheduled faults: what goes wrong in the simulated fleet, on which entity, when and how badly.
//!
//! A fault is written `kind@target:+start/duration[*magnitude]` on the command line
//! (`data_drift@model-1:+10m/5m`, `latency_spike@db-3:+90s/2m*3`) and as that string or a table
//! in a config file.

use std::fmt;
use std::str::FromStr;
use std::time::Duration;

use serde::de::{self, Deserializer, MapAccess, Visitor};
use serde::{Deserialize, de::value::MapAccessDeserializer};

/// The compact fault syntax, for error messages and CLI help.
pub const FAULT_SYNTAX: &str =
    "kind@target:+start/duration[*magnitude], like latency_spike@db-3:+90s/2m*3";

/// What goes wrong. The module docs of [`generate`](super) list the series each kind moves.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FaultKind {
    /// Query latency (mean and p99) jumps within seconds.
    LatencySpike,
    /// A hot index stops being used: sequential scans jump, index scans drop, latency rises.
    IndexDegradation,
    /// Index bloat and dead tuples grow through the window; latency creeps up.
    IndexBloat,
    /// A long-running query holds locks: its age grows, lock waits and p99 latency rise.
    RunawayQuery,
    /// Materialized views stop refreshing and the cache hit ratio drops.
    StaleCache,
    /// Active connections climb to `max_connections`; connection errors follow.
    ConnectionExhaustion,
    /// Memory utilization climbs towards 100 %.
    MemoryPressure,
    /// CPU utilization pins near 100 %; latency and replication lag rise.
    CpuSaturation,
    /// Disk usage grows far faster than its trend.
    DiskGrowth,
    /// A model's input features shift; its accuracy drops a little later and its feature
    /// store's query latency rises (the `data_drift_incident` pattern).
    DataDrift,
    /// A model's feature goes missing: "feature not found" and "model schema error" logs,
    /// model and query errors (the `schema_mismatch` pattern).
    SchemaMismatch,
    /// GPU utilization drops while the host's database CPU and memory climb (the
    /// `resource_contention` pattern).
    GpuUnderutilization,
    /// GPU temperature and power climb until XID errors appear.
    GpuThermal,
    /// An unusual database user reads far more rows than the application does.
    SecurityAnomaly,
}

/// The entity kind a fault's target names.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum TargetKind {
    /// A database entity, `db-N`.
    Database,
    /// A model id, `model-N`.
    Model,
    /// A GPU host (`gpu-host-N`, every GPU on it) or one GPU by its uuid.
    Gpu,
}

impl TargetKind {
    /// How the target is written, for error messages.
    pub fn describe(self) -> &'static str {
        match self {
            TargetKind::Database => "database (db-N)",
            TargetKind::Model => "model (model-N)",
            TargetKind::Gpu => "GPU host (gpu-host-N) or GPU uuid",
        }
    }
}

impl FaultKind {
    /// Every kind, in declaration order.
    pub const ALL: [FaultKind; 14] = [
        FaultKind::LatencySpike,
        FaultKind::IndexDegradation,
        FaultKind::IndexBloat,
        FaultKind::RunawayQuery,
        FaultKind::StaleCache,
        FaultKind::ConnectionExhaustion,
        FaultKind::MemoryPressure,
        FaultKind::CpuSaturation,
        FaultKind::DiskGrowth,
        FaultKind::DataDrift,
        FaultKind::SchemaMismatch,
        FaultKind::GpuUnderutilization,
        FaultKind::GpuThermal,
        FaultKind::SecurityAnomaly,
    ];

    /// The snake_case name used in the fault syntax and in config files.
    pub fn name(self) -> &'static str {
        match self {
            FaultKind::LatencySpike => "latency_spike",
            FaultKind::IndexDegradation => "index_degradation",
            FaultKind::IndexBloat => "index_bloat",
            FaultKind::RunawayQuery => "runaway_query",
            FaultKind::StaleCache => "stale_cache",
            FaultKind::ConnectionExhaustion => "connection_exhaustion",
            FaultKind::MemoryPressure => "memory_pressure",
            FaultKind::CpuSaturation => "cpu_saturation",
            FaultKind::DiskGrowth => "disk_growth",
            FaultKind::DataDrift => "data_drift",
            FaultKind::SchemaMismatch => "schema_mismatch",
            FaultKind::GpuUnderutilization => "gpu_underutilization",
            FaultKind::GpuThermal => "gpu_thermal",
            FaultKind::SecurityAnomaly => "security_anomaly",
        }
    }

    /// The kind named `name`, if any.
    pub fn from_name(name: &str) -> Option<FaultKind> {
        FaultKind::ALL.into_iter().find(|kind| kind.name() == name)
    }

    /// What the target of a fault of this kind names.
    pub fn target_kind(self) -> TargetKind {
        match self {
            FaultKind::DataDrift | FaultKind::SchemaMismatch => TargetKind::Model,
            FaultKind::GpuUnderutilization | FaultKind::GpuThermal => TargetKind::Gpu,
            _ => TargetKind::Database,
        }
    }
}

impl fmt::Display for FaultKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

fn kind_names() -> String {
    FaultKind::ALL.map(FaultKind::name).join(", ")
}

/// One scheduled fault: `kind` hits `target` from `start` after the run's first sample for
/// `duration` of event time, with its effects scaled by `magnitude`.
#[derive(Debug, Clone, PartialEq)]
pub struct FaultSpec {
    /// What goes wrong.
    pub kind: FaultKind,
    /// A database entity (`db-3`), a model id (`model-1`), a GPU host (`gpu-host-0`) or a GPU
    /// uuid, as [`FaultKind::target_kind`] says.
    pub target: String,
    /// Offset from the start of the run, in event time.
    pub start: Duration,
    /// How long the fault lasts, in event time; its effects end with it.
    pub duration: Duration,
    /// Effect size; 1.0 is a clear but realistic incident, 2.0 twice as large.
    pub magnitude: f64,
}

impl FaultSpec {
    /// A fault of magnitude 1.0.
    pub fn new(
        kind: FaultKind,
        target: impl Into<String>,
        start: Duration,
        duration: Duration,
    ) -> FaultSpec {
        FaultSpec {
            kind,
            target: target.into(),
            start,
            duration,
            magnitude: 1.0,
        }
    }

    /// The same fault with its effects scaled by `magnitude`.
    pub fn with_magnitude(self, magnitude: f64) -> FaultSpec {
        FaultSpec { magnitude, ..self }
    }

    /// Checks what the syntax cannot: a target, a positive duration and a positive, finite
    /// magnitude.
    pub fn validate(&self) -> Result<(), FaultSpecError> {
        self.check(|| self.to_string())
    }

    /// [`FaultSpec::validate`], naming the fault as `spec()` says.
    fn check(&self, spec: impl FnOnce() -> String) -> Result<(), FaultSpecError> {
        if self.target.is_empty() {
            return Err(FaultSpecError::EmptyTarget { spec: spec() });
        }
        if self.duration.is_zero() {
            return Err(FaultSpecError::ZeroDuration { spec: spec() });
        }
        if !(self.magnitude.is_finite() && self.magnitude > 0.0) {
            return Err(FaultSpecError::BadMagnitude {
                spec: spec(),
                text: self.magnitude.to_string(),
            });
        }
        Ok(())
    }
}

/// A fault that does not parse or does not make sense.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum FaultSpecError {
    #[error("fault {spec:?} lacks {missing}: expected {FAULT_SYNTAX}")]
    Syntax { spec: String, missing: &'static str },
    #[error(
        "fault {spec:?} names unknown kind {kind:?}: expected one of {}",
        kind_names()
    )]
    UnknownKind { spec: String, kind: String },
    #[error("fault {spec:?} has an empty target: expected {FAULT_SYNTAX}")]
    EmptyTarget { spec: String },
    #[error(
        "fault {spec:?} has a bad {part} {text:?}: expected whole numbers with units h, m, s, \
         ms, us or ns, like 90s or 1m30s"
    )]
    BadDuration {
        spec: String,
        part: &'static str,
        text: String,
    },
    #[error("fault {spec:?} lasts no time: a fault's duration must be positive")]
    ZeroDuration { spec: String },
    #[error(
        "fault {spec:?} has a bad magnitude {text:?}: expected a positive number after '*', \
         like *2.5"
    )]
    BadMagnitude { spec: String, text: String },
}

impl FromStr for FaultSpec {
    type Err = FaultSpecError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let syntax = |missing| FaultSpecError::Syntax {
            spec: s.to_owned(),
            missing,
        };
        let (kind, rest) = s
            .split_once('@')
            .ok_or_else(|| syntax("'@' between the kind and the target"))?;
        let (target, timing) = rest
            .rsplit_once(':')
            .ok_or_else(|| syntax("':' between the target and the start offset"))?;
        let timing = timing
            .strip_prefix('+')
            .ok_or_else(|| syntax("'+' before the start offset"))?;
        let (start, rest) = timing
            .split_once('/')
            .ok_or_else(|| syntax("'/' between the start offset and the duration"))?;
        let (duration, magnitude) = match rest.split_once('*') {
            Some((duration, magnitude)) => (duration, Some(magnitude)),
            None => (rest, None),
        };
        let kind = FaultKind::from_name(kind).ok_or_else(|| FaultSpecError::UnknownKind {
            spec: s.to_owned(),
            kind: kind.to_owned(),
        })?;
        let duration_of = |part, text: &str| {
            parse_duration(text).ok_or_else(|| FaultSpecError::BadDuration {
                spec: s.to_owned(),
                part,
                text: text.to_owned(),
            })
        };
        let start = duration_of("start offset", start)?;
        let duration = duration_of("duration", duration)?;
        let magnitude = match magnitude {
            None => 1.0,
            Some(text) => text.parse().map_err(|_| FaultSpecError::BadMagnitude {
                spec: s.to_owned(),
                text: text.to_owned(),
            })?,
        };
        let fault = FaultSpec {
            kind,
            target: target.to_owned(),
            start,
            duration,
            magnitude,
        };
        fault.check(|| s.to_owned())?;
        Ok(fault)
    }
}

impl fmt::Display for FaultSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}@{}:+{}/{}",
            self.kind,
            self.target,
            DurationText(self.start),
            DurationText(self.duration)
        )?;
        if self.magnitude != 1.0 {
            write!(f, "*{}", self.magnitude)?;
        }
        Ok(())
    }
}

/// Units of the duration syntax, largest first.
const UNITS: [(&str, u128); 6] = [
    ("h", 3_600_000_000_000),
    ("m", 60_000_000_000),
    ("s", 1_000_000_000),
    ("ms", 1_000_000),
    ("us", 1_000),
    ("ns", 1),
];

/// Parses `90s`, `5m`, `1h30m`, `250ms`: whole numbers each followed by a unit.
pub(super) fn parse_duration(text: &str) -> Option<Duration> {
    let mut rest = text;
    let mut nanos: u128 = 0;
    if rest.is_empty() {
        return None;
    }
    while !rest.is_empty() {
        let digits = rest.find(|c: char| !c.is_ascii_digit())?;
        let (number, tail) = rest.split_at(digits);
        let number: u128 = number.parse().ok()?;
        let unit_len = tail
            .find(|c: char| c.is_ascii_digit())
            .unwrap_or(tail.len());
        let (unit, tail) = tail.split_at(unit_len);
        let (_, size) = UNITS.iter().find(|(name, _)| *name == unit)?;
        nanos = nanos.checked_add(number.checked_mul(*size)?)?;
        rest = tail;
    }
    let secs = u64::try_from(nanos / 1_000_000_000).ok()?;
    Some(Duration::new(secs, (nanos % 1_000_000_000) as u32))
}

/// Writes a duration in the largest unit that holds it exactly, so it parses back unchanged.
pub(super) struct DurationText(pub(super) Duration);

impl fmt::Display for DurationText {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let nanos = self.0.as_nanos();
        if nanos == 0 {
            return f.write_str("0s");
        }
        let (unit, size) = UNITS
            .iter()
            .find(|(_, size)| nanos.is_multiple_of(*size))
            .copied()
            .unwrap_or(("ns", 1));
        write!(f, "{}{unit}", nanos / size)
    }
}

/// Deserializes a duration written as text (`"10s"`, `"1m30s"`; a leading `+` is allowed).
pub(super) fn deserialize_duration<'de, D: Deserializer<'de>>(
    deserializer: D,
) -> Result<Duration, D::Error> {
    let text = String::deserialize(deserializer)?;
    parse_duration(text.strip_prefix('+').unwrap_or(&text)).ok_or_else(|| {
        de::Error::custom(format!(
            "bad duration {text:?}: expected whole numbers with units h, m, s, ms, us or ns, \
             like \"10s\" or \"1m30s\""
        ))
    })
}

/// The table form of a fault in a config file.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct FaultTable {
    kind: FaultKind,
    target: String,
    #[serde(deserialize_with = "deserialize_duration")]
    start: Duration,
    #[serde(deserialize_with = "deserialize_duration")]
    duration: Duration,
    #[serde(default = "default_magnitude")]
    magnitude: f64,
}

fn default_magnitude() -> f64 {
    1.0
}

/// A fault in a config file: the compact string or a table of the same fields
/// (`{ kind = "data_drift", target = "model-1", start = "10m", duration = "5m" }`).
impl<'de> Deserialize<'de> for FaultSpec {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct FaultVisitor;

        impl<'de> Visitor<'de> for FaultVisitor {
            type Value = FaultSpec;

            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(
                    f,
                    "a fault: the string {FAULT_SYNTAX}, or a table with kind, target, start, \
                     duration and optionally magnitude"
                )
            }

            fn visit_str<E: de::Error>(self, text: &str) -> Result<FaultSpec, E> {
                text.parse().map_err(E::custom)
            }

            fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<FaultSpec, A::Error> {
                let table = FaultTable::deserialize(MapAccessDeserializer::new(map))?;
                let fault = FaultSpec {
                    kind: table.kind,
                    target: table.target,
                    start: table.start,
                    duration: table.duration,
                    magnitude: table.magnitude,
                };
                fault.validate().map_err(de::Error::custom)?;
                Ok(fault)
            }
        }

        deserializer.deserialize_any(FaultVisitor)
    }
}
