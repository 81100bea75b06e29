-- Runaway PostgreSQL queries, per database, every 30 seconds, from `opsloop collect
-- postgres`: the longest-running active query and how many backends wait on another's lock.
-- Fires when a query has run for more than 30 seconds, or when backends were blocked at every
-- collection of the window (at least two: a lock wait that outlives one collection interval is
-- not a row lock taken and released in passing). The score is the longest query's age as a
-- multiple of 30 seconds (at least 1 when only lock waits fired it).
SELECT
    entity,
    tumble(interval '30 seconds') AS window,
    max(value) FILTER (WHERE name = 'pg_longest_query_seconds') AS longest_query_s,
    max(value) FILTER (WHERE name = 'pg_blocked_backends') AS blocked_backends,
    greatest(max(value) FILTER (WHERE name = 'pg_longest_query_seconds') / 30.0, 1.0) AS score,
    0.8 AS severity,
    'runaway_query' AS alert_type
FROM db_metrics
WHERE name IN ('pg_longest_query_seconds', 'pg_blocked_backends')
GROUP BY entity, window
HAVING max(value) FILTER (WHERE name = 'pg_longest_query_seconds') > 30
    OR (min(value) FILTER (WHERE name = 'pg_blocked_backends') > 0
        AND count(*) FILTER (WHERE name = 'pg_blocked_backends') >= 2)
