-- Runaway PostgreSQL queries, per database, every 30 seconds, from `opsloop collect
-- postgres`: the longest-running active query that is not itself waiting for a lock (a query
-- stuck behind another session's lock is a victim: `pg_lock_blocker.sql` finds its blocker).
-- Fires when such a query has run for more than 30 seconds. The score is its age as a multiple
-- of 30 seconds.
SELECT
    entity,
    tumble(interval '30 seconds') AS window,
    max(value) AS longest_query_s,
    max(value) / 30.0 AS score,
    0.8 AS severity,
    'runaway_query' AS alert_type
FROM db_metrics
WHERE name = 'pg_longest_query_seconds'
GROUP BY entity, window
HAVING max(value) > 30
