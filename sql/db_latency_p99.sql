-- Query latency per database, per minute: p99, mean and sample count of
-- db_query_latency_ms. Fires when the minute's p99 is above 250 ms; the score is
-- the p99 as a multiple of that threshold.
SELECT
    entity,
    tumble(interval '1 minute') AS window,
    approx_percentile_cont(value, 0.99) AS p99_ms,
    avg(value) AS mean_ms,
    count(*) AS samples,
    approx_percentile_cont(value, 0.99) / 250.0 AS score,
    'query_latency_increase' AS alert_type
FROM db_metrics
WHERE name = 'db_query_latency_ms'
GROUP BY entity, window
HAVING approx_percentile_cont(value, 0.99) > 250
