-- Sequential scans on a big PostgreSQL table, per table, every 30 seconds, from `opsloop
-- collect postgres`: the peak rate of sequential scans and of the rows they read (per second,
-- between two collections). Fires when a table of at least 10,000 live rows is scanned whole
-- at least once a second in two or more collections of the window and those scans read at
-- least 10,000 rows a second: the signature of a dropped or missing index (or of statistics
-- that steer the planner away from one). A small table scanned often (the planner rightly
-- prefers a scan), a big one scanned by the odd report, and the single scan of an index build,
-- a REINDEX or a materialized view's refresh stay below; the collector leaves out intervals in
-- which such maintenance or DDL ran. The score is the rows read per second as a multiple of
-- that threshold; the table (`public.orders`) is the alert's `table_name` label.
SELECT
    entity,
    labels['table'] AS table_name,
    tumble(interval '30 seconds') AS window,
    max(value) FILTER (WHERE name = 'pg_table_seq_scan_rate') AS seq_scans_per_s,
    max(value) FILTER (WHERE name = 'pg_table_seq_tup_read_rate') AS rows_read_per_s,
    max(value) FILTER (WHERE name = 'pg_table_live_tuples') AS live_rows,
    max(value) FILTER (WHERE name = 'pg_table_seq_tup_read_rate') / 10000.0 AS score,
    0.7 AS severity,
    'seq_scan_increase' AS alert_type
FROM db_metrics
WHERE name IN ('pg_table_seq_scan_rate', 'pg_table_seq_tup_read_rate', 'pg_table_live_tuples')
GROUP BY entity, labels['table'], window
HAVING count(value) FILTER (WHERE name = 'pg_table_seq_scan_rate' AND value >= 1) >= 2
    AND max(value) FILTER (WHERE name = 'pg_table_seq_tup_read_rate') >= 10000
    AND max(value) FILTER (WHERE name = 'pg_table_live_tuples') >= 10000
