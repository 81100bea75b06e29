-- p99 query latency over the next hour, per entity: Holt-Winters with a daily season over the
-- windows' p99 of the latency metric ([predict] latency_metric, db_query_latency_ms by
-- default), at the worst step of the hour. The latency_sla rule compares it with the SLA.
-- Needs two seasons of windows (two days) before it forecasts.
SELECT
    entity,
    'latency_p99_ms' AS forecast,
    peak['mean'] AS value,
    peak['lower'] AS lower,
    peak['upper'] AS upper,
    horizon_s
FROM (
    SELECT
        w.entity,
        forecast_holt_winters_peak(
            array_agg(w.p99 ORDER BY w.window_start), c.season_steps, c.hour_steps
        ) AS peak,
        c.hour_steps * c.window_s AS horizon_s
    FROM windows w CROSS JOIN cycle c
    WHERE w.metric = c.latency_metric
    GROUP BY w.entity, c.season_steps, c.hour_steps, c.window_s
)
