-- Capacity demand a week from now, per entity and resource, as a share of its limit, with the
-- time until the limit is reached: the least-squares line through the windows' last values
-- (`forecast_linear`, `steps_to_threshold`). Limits come from [[predict.capacity]] (the
-- `capacity` table, e.g. storage), from what the database reports (db_connections_max) and
-- from the GPU's framebuffer (DCGM used + free). The capacity rule plans when the share is
-- above 80%. A share below the latest one is not forecast: demand that shrinks still has to
-- fit today.
WITH usage AS (
    SELECT w.entity, c.resource, w.window_start, w.last AS used, c."limit" AS capacity
    FROM windows w JOIN capacity c ON w.metric = c.metric
    UNION ALL
    SELECT used.entity, 'connections', used.window_start, used.last, cap.last
    FROM windows used JOIN windows cap
        ON used.entity = cap.entity AND used.window_start = cap.window_start
    WHERE used.metric = 'db_connections_active' AND cap.metric = 'db_connections_max'
    UNION ALL
    SELECT used.entity, 'gpu_memory', used.window_start, used.last, used.last + free.last
    FROM windows used JOIN windows free
        ON used.entity = free.entity AND used.window_start = free.window_start
    WHERE used.metric = 'DCGM_FI_DEV_FB_USED' AND free.metric = 'DCGM_FI_DEV_FB_FREE'
),
trend AS (
    SELECT
        u.entity,
        u.resource,
        forecast_linear(array_agg(u.used ORDER BY u.window_start), c.week_steps) AS next_week,
        last_value(u.used ORDER BY u.window_start) AS latest,
        last_value(u.capacity ORDER BY u.window_start) AS capacity,
        steps_to_threshold(
            array_agg(u.used ORDER BY u.window_start),
            last_value(u.capacity ORDER BY u.window_start)
        ) * c.window_s AS time_to_exhaustion_s,
        c.week_steps * c.window_s AS horizon_s
    FROM usage u CROSS JOIN cycle c
    WHERE u.capacity > 0
    GROUP BY u.entity, u.resource, c.week_steps, c.window_s
)
SELECT
    entity,
    resource,
    'capacity_share' AS forecast,
    -- No line (under three windows), no forecast: greatest() alone would pass today off as one.
    CASE WHEN next_week['mean'] IS NOT NULL
        THEN greatest(next_week['mean'], latest) / capacity
    END AS value,
    next_week['lower'] / capacity AS lower,
    next_week['upper'] / capacity AS upper,
    time_to_exhaustion_s,
    horizon_s
FROM trend
