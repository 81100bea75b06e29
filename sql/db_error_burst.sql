-- Query-error bursts per database: samples of at least one error per second, less than
-- 2 minutes apart, form one session (a healthy database's trickle of errors stays below).
-- Fires for a burst of at least 3 such samples; the score is the peak error rate in errors
-- per second.
SELECT
    entity,
    session(interval '2 minutes') AS window,
    count(*) AS error_samples,
    max(value) AS score,
    avg(value) AS mean_errors_per_s,
    'query_error_burst' AS alert_type
FROM db_metrics
WHERE name = 'db_query_errors_per_s' AND value >= 1
GROUP BY entity, window
HAVING count(*) >= 3
