-- Stale PostgreSQL materialized views, per view, every 30 seconds, from `opsloop collect
-- postgres`: rows inserted, updated or deleted in the tables a view reads since the collector
-- last saw it refreshed (`pg_matview_staleness_rows`; see the collector's docs for how a
-- refresh is told apart). Fires when more than 1,000 base rows changed since the last refresh,
-- or when the view was never populated (`WITH NO DATA`: reading it fails). The score is the
-- changed rows as a multiple of that threshold (at least 1); the view is the `matview` label.
SELECT
    entity,
    labels['matview'] AS matview,
    tumble(interval '30 seconds') AS window,
    max(value) FILTER (WHERE name = 'pg_matview_staleness_rows') AS staleness_rows,
    min(value) FILTER (WHERE name = 'pg_matview_populated') AS populated,
    greatest(max(value) FILTER (WHERE name = 'pg_matview_staleness_rows') / 1000.0, 1.0) AS score,
    0.5 AS severity,
    'materialized_view_stale' AS alert_type
FROM db_metrics
WHERE name IN ('pg_matview_staleness_rows', 'pg_matview_populated')
GROUP BY entity, labels['matview'], window
HAVING max(value) FILTER (WHERE name = 'pg_matview_staleness_rows') > 1000
    OR min(value) FILTER (WHERE name = 'pg_matview_populated') = 0
