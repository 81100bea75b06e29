-- Cost per query a day from now, per database: each window's spend rate
-- (db_cost_usd_per_hour, what a billing or cost exporter reports) over its query rate
-- (db_qps), forecast by Holt-Winters with a daily season, since both follow the load.
WITH per_query AS (
    SELECT cost.entity, cost.window_start, cost.mean / (qps.mean * 3600.0) AS usd_per_query
    FROM windows cost JOIN windows qps
        ON cost.entity = qps.entity AND cost.window_start = qps.window_start
    WHERE cost.metric = 'db_cost_usd_per_hour' AND qps.metric = 'db_qps' AND qps.mean > 0
)
SELECT
    entity,
    'cost_per_query_usd' AS forecast,
    next_day['mean'] AS value,
    next_day['lower'] AS lower,
    next_day['upper'] AS upper,
    horizon_s
FROM (
    SELECT
        p.entity,
        forecast_holt_winters(
            array_agg(p.usd_per_query ORDER BY p.window_start), c.season_steps, c.day_steps
        ) AS next_day,
        c.day_steps * c.window_s AS horizon_s
    FROM per_query p CROSS JOIN cycle c
    GROUP BY p.entity, c.season_steps, c.day_steps, c.window_s
)
