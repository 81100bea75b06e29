-- Connection-pool saturation per database over the last 5 minutes, every minute: mean and
-- peak active connections against the configured maximum. Fires when the peak reaches 95% of
-- the maximum (new connections are about to be refused); the score is the peak's share.
SELECT
    entity,
    hop(interval '1 minute', interval '5 minutes') AS window,
    avg(value) FILTER (WHERE name = 'db_connections_active') AS mean_active,
    max(value) FILTER (WHERE name = 'db_connections_active') AS peak_active,
    max(value) FILTER (WHERE name = 'db_connections_max') AS max_connections,
    max(value) FILTER (WHERE name = 'db_connections_active')
        / max(value) FILTER (WHERE name = 'db_connections_max') AS score,
    'connection_saturation' AS alert_type
FROM db_metrics
WHERE name IN ('db_connections_active', 'db_connections_max')
GROUP BY entity, window
HAVING max(value) FILTER (WHERE name = 'db_connections_active')
    >= 0.95 * max(value) FILTER (WHERE name = 'db_connections_max')
