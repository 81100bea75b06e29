//! `opsloop demo`: the embedded default, with no broker or any other service to start — the
//! loop in process (`opsloop_runtime::demo`) over the simulated fleet, closing on a digital
//! twin. This module prints: every alert as its window closes, every incident version, every
//! plan, approval notice and action step, a status line every five minutes of event time, and
//! at the end what became of each scheduled fault (detection, incident, action, outcome,
//! recovery time), the incidents, the cycle reports and the last cycle's forecasts.
//! `--report FILE.json` writes the machine-readable summary (its format is documented in
//! `opsloop_runtime::demo`).

use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context;
use clap::Args;
use opsloop_connectors::generate::DEMO_RUN;
use opsloop_runtime::demo::{Demo, DemoConfig, DemoEvent, DemoRun};
use opsloop_schemas::calendar::time_of_day as clock;
use opsloop_schemas::ops::{ActionOutcome, Alert, Incident, IncidentState, RemediationEvent};

use super::fleet::FleetArgs;

/// Event time between two status lines of the live view.
const STATUS_EVERY_US: i64 = 5 * 60 * 1_000_000;

#[derive(Debug, Args)]
pub(crate) struct DemoArgs {
    /// Event time to simulate; the default fault schedule spans the first 30 minutes.
    #[arg(long, default_value = "30m", value_parser = humantime::parse_duration)]
    duration: Duration,
    /// Wall time between ticks (one sample interval of event time each); 0s runs flat out.
    #[arg(long, default_value = "20ms", value_parser = humantime::parse_duration)]
    tick_delay: Duration,
    /// A directory of detector .sql files to run instead of the built-in ones.
    #[arg(long)]
    detectors: Option<PathBuf>,
    #[command(flatten)]
    fleet: FleetArgs,
    /// Write the machine-readable summary here (JSON).
    #[arg(long)]
    report: Option<PathBuf>,
}

pub(crate) async fn run(args: DemoArgs) -> anyhow::Result<()> {
    let fleet = args.fleet.fleet_config(None);
    println!(
        "opsloop demo: a simulated fleet ({} databases, {} GPUs, {} faults scheduled) through \
         the loop of `opsloop run`, acting on a digital twin of the fleet",
        fleet.databases,
        fleet.gpu_hosts * fleet.gpus_per_host,
        fleet.faults.len()
    );
    println!(
        "transport: in process, Confluent-framed Avro as on Kafka; actions under the \
         actuator's governance, approvals granted automatically\n"
    );
    let config = DemoConfig {
        fleet,
        duration: args.duration,
        tick_delay: args.tick_delay,
        detectors: args.detectors.clone(),
    };
    let mut next_status = i64::MIN;
    let run = Demo::run(config, move |event| live(event, &mut next_status)).await?;
    summary(&run, args.duration >= DEMO_RUN);
    if let Some(path) = &args.report {
        let json = serde_json::to_string_pretty(&run.report)?;
        std::fs::write(path, json + "\n")
            .with_context(|| format!("writing the report to {}", path.display()))?;
        println!("\nreport written to {}", path.display());
    }
    Ok(())
}

/// The live view: one line per event.
fn live(event: DemoEvent<'_>, next_status: &mut i64) {
    match event {
        DemoEvent::Alert(alert) => println!("{}", alert_line(alert)),
        DemoEvent::Incident(incident) => println!("{}", incident_line(incident)),
        DemoEvent::Planned(event) => println!("{}", plan_line(event)),
        DemoEvent::Notice(notice) => println!("NOTICE   {notice}"),
        DemoEvent::Outcome(outcome) => println!("{}", outcome_line(outcome)),
        DemoEvent::Cycle(report) => println!(
            "CYCLE    {} {}: {} failures, {} operations, success {}, {} proactive plans",
            clock(report.time_us),
            report.cycle_id,
            report.failures_detected,
            report.operations_executed,
            report
                .success_rate
                .map_or_else(|| "-".to_owned(), |rate| format!("{:.0}%", rate * 100.0)),
            report.proactive_plans
        ),
        DemoEvent::Status {
            time_us,
            samples,
            status,
        } => {
            if *next_status == i64::MIN {
                *next_status = time_us + STATUS_EVERY_US;
            }
            if time_us >= *next_status {
                let engine = &status.engine;
                println!(
                    "-- event time {} | watermark {} | {samples} samples | {} windows open, {} \
                     series, {} KiB state | {} incidents open | {} fixes in flight",
                    clock(time_us),
                    engine.watermark_us.map_or_else(|| "-".to_owned(), clock),
                    engine.open_windows,
                    engine.active_groups,
                    engine.state_bytes / 1024,
                    status.correlator.open_incidents,
                    status.open_fixes
                );
                *next_status += STATUS_EVERY_US;
            }
        }
    }
}

fn alert_line(alert: &Alert) -> String {
    let evidence = alert
        .evidence
        .iter()
        .map(|(name, value)| format!("{name}={value:.1}"))
        .collect::<Vec<_>>()
        .join(" ");
    format!(
        "ALERT    {:<24} {:<6} window {}-{}  score {:>6.2}  {evidence}",
        alert.alert_type,
        alert.entity,
        clock(alert.window_start_us),
        clock(alert.window_end_us),
        alert.score
    )
}

fn incident_line(incident: &Incident) -> String {
    let verdict = match (incident.recovered_us, incident.recurred_us) {
        (_, Some(at)) => format!("  alerts back at {}", clock(at)),
        (Some(from), None) => format!("  clear from {}", clock(from)),
        (None, None) => String::new(),
    };
    format!(
        "INCIDENT {:<12} v{} {:<12} {:?} {:<20} {:<6} severity {:.2}  {}{verdict}",
        &incident.incident_id[..12.min(incident.incident_id.len())],
        incident.version,
        format!("{:?}", incident.state).to_lowercase(),
        incident.tier,
        incident.pattern,
        incident.entity,
        incident.severity,
        incident.alert_types.join("+")
    )
}

fn plan_line(event: &RemediationEvent) -> String {
    format!(
        "PLAN     {:<30} {:<6} attempt {} {:?}  {}",
        event.template, event.target, event.attempt, event.kind, event.rationale
    )
}

fn outcome_line(outcome: &ActionOutcome) -> String {
    format!(
        "ACTION   {} {:<11} {:<30} {:<6} {}",
        clock(outcome.time_us),
        outcome.step.as_str(),
        outcome.template,
        outcome.target,
        outcome.detail
    )
}

/// What became of every fault, the incidents and the forecasts.
fn summary(run: &DemoRun, whole_schedule: bool) {
    let report = &run.report;
    println!(
        "\n{} samples, {} series ({:.0} bytes of window state each), {:.1} s of wall time",
        report.samples, report.series, report.state_bytes_per_series, report.wall_s
    );
    if !report.faults.is_empty() {
        println!(
            "\nfault                  target       start  detected by (after)              incident                        action                        outcome      recovered"
        );
        for fault in &report.faults {
            let detected = match (&fault.first_alert_type, fault.detection_s) {
                (Some(alert_type), Some(after)) => format!("{alert_type} (+{after:.0} s)"),
                _ => "-".to_owned(),
            };
            let incident = match (&fault.pattern, &fault.tier) {
                (Some(pattern), Some(tier)) => format!(
                    "{tier} {pattern} ({})",
                    fault.failure_type.as_deref().unwrap_or("-")
                ),
                _ => "-".to_owned(),
            };
            println!(
                "{:<22} {:<12} +{:>4.0} s  {:<32} {:<31} {:<29} {:<12} {}",
                fault.kind,
                fault.target,
                fault.start_s,
                detected,
                incident,
                fault.action_template.as_deref().unwrap_or("-"),
                fault.outcome.as_deref().unwrap_or("-"),
                fault
                    .recovered_s
                    .map_or_else(|| "-".to_owned(), |s| format!("{s:.0} s")),
            );
        }
        let detected = report.faults.iter().filter(|f| f.detected).count();
        let recovered = report
            .faults
            .iter()
            .filter(|f| f.recovered_s.is_some())
            .count();
        println!(
            "\n{detected} of {} faults detected, {recovered} recovered by a verified action; \
             {} alerts and {} incidents outside any fault",
            report.faults.len(),
            report.alerts_outside_faults,
            report.incidents_outside_faults
        );
        if !whole_schedule {
            println!("(the default schedule spans 30 minutes of event time)");
        }
    }
    print_incidents(&run.incidents);
    if let Some(last) = run.cycles.last() {
        println!(
            "\n{} predictive cycles; the last at {}: {} failures, {} operations, {} proactive plans",
            run.cycles.len(),
            clock(last.time_us),
            last.failures_detected,
            last.operations_executed,
            last.proactive_plans
        );
        if run.forecasts.is_empty() {
            println!(
                "no forecasts yet: capacity needs a day of one-minute windows, latency and cost \
                 two (--duration 49h --tick-delay 0s)"
            );
        }
        for forecast in &run.forecasts {
            let what = forecast.resource.as_deref().unwrap_or(&forecast.forecast);
            let full = forecast
                .time_to_exhaustion_s
                .map(|s| format!(" (full in {:.1} d)", s / 86_400.0))
                .unwrap_or_default();
            println!(
                "   {:<12} {what} {:.3}{full}",
                forecast.entity, forecast.value
            );
        }
    }
}

/// Each incident's latest version: tier, pattern, lifecycle and its leading hypothesis.
fn print_incidents(incidents: &[Incident]) {
    if incidents.is_empty() {
        return;
    }
    println!("\nincidents (latest version)");
    for incident in incidents {
        let lifetime = match (incident.state, incident.resolved_us) {
            (IncidentState::Resolved, Some(resolved)) => {
                format!(
                    "resolved after {} s",
                    (resolved - incident.opened_us) / 1_000_000
                )
            }
            _ => "open".to_owned(),
        };
        println!(
            "{:?} {:<20} {:<6} opened {}  {lifetime}; {} alert(s)",
            incident.tier,
            incident.pattern,
            incident.entity,
            clock(incident.opened_us),
            incident.alert_ids.len()
        );
        if let Some(hypothesis) = incident.hypotheses.first() {
            println!(
                "   likely cause ({:.0}%): {}",
                hypothesis.confidence * 100.0,
                hypothesis.cause
            );
        }
    }
}
