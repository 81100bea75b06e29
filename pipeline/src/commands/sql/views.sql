-- The views `opsloop sql` defines over its tables: `alerts`, `incidents`, `remediation` and
-- `actions`, one row per record of ops.alerts, ops.incidents, ops.remediation and ops.actions.
--
-- Conventions:
-- - Event times (`*_us` columns) are Timestamp(µs, UTC); CAST(t AS BIGINT) is µs since the
--   Unix epoch. Durations below are in seconds (DOUBLE).
-- - Enums are their Avro symbols: tier 'T1'..'T4'; state 'OPEN', 'UPDATED', 'ACKNOWLEDGED',
--   'RESOLVED'; step 'PLANNED', 'APPROVED', 'REJECTED', 'EXECUTED', 'VERIFIED', 'ROLLED_BACK',
--   'FAILED', 'SKIPPED'.
-- - Kafka delivery is at least once, so a record may be read twice: incidents are taken one
--   row per incident (its latest version) and actions are counted by distinct action_id.
-- - A rate is a DOUBLE in [0, 1], NULL when nothing is in its denominator.

-- incidents_latest: the latest version (highest `version`) of every incident, one row per
-- incident_id; every column of `incidents`.
CREATE VIEW incidents_latest AS
SELECT * EXCLUDE (version_rank)
FROM (
    SELECT *, row_number() OVER (PARTITION BY incident_id ORDER BY version DESC) AS version_rank
    FROM incidents
)
WHERE version_rank = 1;

-- kpi_mttr: mean time to recovery, over the incidents whose latest version is RESOLVED.
--   resolved_incidents  their count
--   mttr_s              avg(resolved_us - opened_us), in seconds
CREATE VIEW kpi_mttr AS
SELECT
    count(*) AS resolved_incidents,
    avg(CAST(resolved_us AS BIGINT) - CAST(opened_us AS BIGINT)) / 1e6 AS mttr_s
FROM incidents_latest
WHERE state = 'RESOLVED' AND resolved_us IS NOT NULL;

-- kpi_manual_intervention_rate: how often people had to step in, over the incidents that have
-- at least one action outcome.
--   incidents_with_actions       incidents with any row in `actions`
--   incidents_with_manual_steps  those with a step that was not automated (automated = false)
--   manual_intervention_rate     incidents_with_manual_steps / incidents_with_actions
CREATE VIEW kpi_manual_intervention_rate AS
SELECT
    count(*) AS incidents_with_actions,
    count(*) FILTER (WHERE manual) AS incidents_with_manual_steps,
    CAST(count(*) FILTER (WHERE manual) AS DOUBLE) / NULLIF(count(*), 0)
        AS manual_intervention_rate
FROM (
    SELECT incident_id, bool_or(NOT automated) AS manual
    FROM actions
    GROUP BY incident_id
);

-- kpi_operation_success_rate: how often an executed action held, over the distinct actions
-- (action_id) with an EXECUTED step.
--   executed_actions        their count
--   succeeded_actions       those with a VERIFIED step and no ROLLED_BACK or FAILED step
--   operation_success_rate  succeeded_actions / executed_actions
CREATE VIEW kpi_operation_success_rate AS
SELECT
    count(*) AS executed_actions,
    count(*) FILTER (WHERE verified AND NOT undone) AS succeeded_actions,
    CAST(count(*) FILTER (WHERE verified AND NOT undone) AS DOUBLE) / NULLIF(count(*), 0)
        AS operation_success_rate
FROM (
    SELECT
        action_id,
        bool_or(step = 'EXECUTED') AS executed,
        bool_or(step = 'VERIFIED') AS verified,
        bool_or(step IN ('ROLLED_BACK', 'FAILED')) AS undone
    FROM actions
    GROUP BY action_id
)
WHERE executed;

-- kpi_automated_response_time: how fast automation acts, over the incidents with an automated
-- EXECUTED step (automated = true) and a row in `incidents`.
--   responded_incidents     their count
--   automated_response_s    avg(first automated EXECUTED time_us - opened_us of the incident's
--                           latest version), in seconds
CREATE VIEW kpi_automated_response_time AS
SELECT
    count(*) AS responded_incidents,
    avg(CAST(executed.first_executed_us AS BIGINT) - CAST(incident.opened_us AS BIGINT)) / 1e6
        AS automated_response_s
FROM (
    SELECT incident_id, min(time_us) AS first_executed_us
    FROM actions
    WHERE step = 'EXECUTED' AND automated
    GROUP BY incident_id
) AS executed
JOIN incidents_latest AS incident ON incident.incident_id = executed.incident_id;

-- kpi_compliance_violation_rate: how often a gated action ran unapproved, over the distinct
-- actions (action_id) with an EXECUTED step.
--   executed_actions           their count
--   violations                 those whose remediation event has approval_required = true and
--                              that have no APPROVED step; an action without a remediation
--                              event is not counted as a violation
--   compliance_violation_rate  violations / executed_actions
CREATE VIEW kpi_compliance_violation_rate AS
SELECT
    count(*) AS executed_actions,
    count(*) FILTER (WHERE gated.approval_required AND NOT executed.approved) AS violations,
    CAST(count(*) FILTER (WHERE gated.approval_required AND NOT executed.approved) AS DOUBLE)
        / NULLIF(count(*), 0) AS compliance_violation_rate
FROM (
    SELECT action_id, bool_or(step = 'APPROVED') AS approved
    FROM actions
    GROUP BY action_id
    HAVING bool_or(step = 'EXECUTED')
) AS executed
LEFT JOIN (
    SELECT action_id, bool_or(approval_required) AS approval_required
    FROM remediation
    GROUP BY action_id
) AS gated ON gated.action_id = executed.action_id;

-- kpi_incidents_per_tier_per_day: one row per UTC day (of opened_us) and tier (of the
-- incident's latest version). A view keeps no row order: add ORDER BY day, tier to the query.
--   day        DATE
--   tier       'T1'..'T4'
--   incidents  distinct incidents opened that day in that tier
CREATE VIEW kpi_incidents_per_tier_per_day AS
SELECT
    CAST(opened_us AS DATE) AS day,
    tier,
    count(DISTINCT incident_id) AS incidents
FROM incidents_latest
GROUP BY CAST(opened_us AS DATE), tier;
