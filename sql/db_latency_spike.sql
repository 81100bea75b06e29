-- Query-latency spikes per database, relative to the database's own normal: over the last
-- 10 minutes, every minute, the level the mean query latency held for at least a tenth of the
-- window (its 90th percentile, a minute) against the window's median. Fires when that level is
-- at least 3x the median (a spike shorter than half the window, on a database of any speed)
-- and at least 2 ms above it: one slow collection (a checkpoint's fsync) does not fire, nor
-- does a sub-millisecond workload whose microseconds triple. The score is the ratio.
-- hdr_quantile's sketch merges exactly, so the result does not depend on how rows were batched.
SELECT
    entity,
    hop(interval '1 minute', interval '10 minutes') AS window,
    max(value) AS peak_ms,
    hdr_quantile(value, 0.9) AS sustained_ms,
    hdr_quantile(value, 0.5) AS median_ms,
    hdr_quantile(value, 0.9) / hdr_quantile(value, 0.5) AS score,
    'query_latency_spike' AS alert_type
FROM db_metrics
WHERE name = 'db_query_latency_ms'
GROUP BY entity, window
HAVING hdr_quantile(value, 0.9) >= 3 * hdr_quantile(value, 0.5)
    AND hdr_quantile(value, 0.9) >= hdr_quantile(value, 0.5) + 2
