-- Capacity demand a week from now, per entity and resource, as a share of its limit, with the
-- time until the limit is reached. Demand is the peak of the last season (a day at the
-- defaults) of the windows' maxima, plus a week of growth at the trend of the whole history
-- (least squares, `regr_slope`; shrinking counts as flat). Time to exhaustion is where the
-- trend line reaches the limit (`steps_to_threshold`). Limits come from [[predict.capacity]]
-- (the `capacity` table, e.g. storage), from what the database reports (db_connections_max)
-- and from the GPU's framebuffer (DCGM used + free). The capacity rule plans when the share is
-- above 80%. Under one season of windows nothing is forecast: a line through part of a daily
-- cycle would take the morning ramp for a trend.
WITH usage AS (
    SELECT w.entity, c.resource, w.window_start, w.max AS used, c."limit" AS capacity
    FROM windows w JOIN capacity c ON w.metric = c.metric
    UNION ALL
    SELECT used.entity, 'connections', used.window_start, used.max, cap.last
    FROM windows used JOIN windows cap
        ON used.entity = cap.entity AND used.window_start = cap.window_start
    WHERE used.metric = 'db_connections_active' AND cap.metric = 'db_connections_max'
    UNION ALL
    SELECT used.entity, 'gpu_memory', used.window_start, used.max, used.last + free.last
    FROM windows used JOIN windows free
        ON used.entity = free.entity AND used.window_start = free.window_start
    WHERE used.metric = 'DCGM_FI_DEV_FB_USED' AND free.metric = 'DCGM_FI_DEV_FB_FREE'
),
aged AS (
    -- Seconds before the cycle, per window.
    SELECT u.*, (CAST(c.now AS BIGINT) - CAST(u.window_start AS BIGINT)) / 1e6 AS age_s
    FROM usage u CROSS JOIN cycle c
),
trend AS (
    SELECT
        a.entity,
        a.resource,
        count(*) AS windows,
        max(a.used) FILTER (WHERE a.age_s < c.season_steps * c.window_s) AS season_peak,
        greatest(regr_slope(a.used, -a.age_s), 0.0) AS growth_per_s,
        last_value(a.capacity ORDER BY a.window_start) AS capacity,
        steps_to_threshold(
            array_agg(a.used ORDER BY a.window_start),
            last_value(a.capacity ORDER BY a.window_start)
        ) * c.window_s AS time_to_exhaustion_s,
        c.season_steps,
        c.week_steps * c.window_s AS horizon_s
    FROM aged a CROSS JOIN cycle c
    WHERE a.capacity > 0
    GROUP BY a.entity, a.resource, c.season_steps, c.window_s, c.week_steps
)
SELECT
    entity,
    resource,
    'capacity_share' AS forecast,
    (season_peak + growth_per_s * horizon_s) / capacity AS value,
    time_to_exhaustion_s,
    horizon_s
FROM trend
WHERE windows >= season_steps
