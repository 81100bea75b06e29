-- Query-latency spikes per database, relative to the database's own normal: over the last
-- 10 minutes, every minute, the peak of the mean query latency against the window's median.
-- Fires when the peak is at least 3x the median (a spike shorter than half the window, on a
-- database of any speed); the score is that ratio. The median is hdr_quantile's: its sketch
-- merges exactly, so the result does not depend on how rows were batched.
SELECT
    entity,
    hop(interval '1 minute', interval '10 minutes') AS window,
    max(value) AS peak_ms,
    hdr_quantile(value, 0.5) AS median_ms,
    max(value) / hdr_quantile(value, 0.5) AS score,
    'query_latency_spike' AS alert_type
FROM db_metrics
WHERE name = 'db_query_latency_ms'
GROUP BY entity, window
HAVING max(value) > 3 * hdr_quantile(value, 0.5)
