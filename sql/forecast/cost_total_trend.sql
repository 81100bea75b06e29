-- The total cost trend, per database and for the whole fleet (entity `fleet`): the spend rate
-- (db_cost_usd_per_hour) a day from now by Holt-Winters with a daily season
-- (`cost_usd_per_hour`), and how fast it grows, USD per hour per day, from the least-squares
-- line through the windows (`cost_trend_usd_per_hour_per_day`; negative when it falls). The
-- trend needs a season of windows: over part of a day the load's ramp would pass for one.
WITH spend AS (
    SELECT entity, window_start, mean AS usd_per_hour
    FROM windows
    WHERE metric = 'db_cost_usd_per_hour'
    UNION ALL
    SELECT 'fleet', window_start, sum(mean)
    FROM windows
    WHERE metric = 'db_cost_usd_per_hour'
    GROUP BY window_start
),
fits AS (
    SELECT
        s.entity,
        forecast_holt_winters(
            array_agg(s.usd_per_hour ORDER BY s.window_start), c.season_steps, c.day_steps
        ) AS next_day,
        -- The line's rise over one day: its value two days out minus one day out.
        forecast_linear(array_agg(s.usd_per_hour ORDER BY s.window_start), 2 * c.day_steps)['mean']
            - forecast_linear(array_agg(s.usd_per_hour ORDER BY s.window_start), c.day_steps)['mean']
            AS daily_change,
        c.day_steps * c.window_s AS horizon_s,
        count(*) >= c.season_steps AS full_season
    FROM spend s CROSS JOIN cycle c
    GROUP BY s.entity, c.season_steps, c.day_steps, c.window_s
)
SELECT
    entity,
    'cost_usd_per_hour' AS forecast,
    next_day['mean'] AS value,
    next_day['lower'] AS lower,
    next_day['upper'] AS upper,
    horizon_s
FROM fits
WHERE full_season
UNION ALL
SELECT
    entity,
    'cost_trend_usd_per_hour_per_day',
    daily_change,
    CAST(NULL AS DOUBLE),
    CAST(NULL AS DOUBLE),
    horizon_s
FROM fits
WHERE full_season
