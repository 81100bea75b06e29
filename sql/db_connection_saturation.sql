-- Connection-pool saturation per database over the last 5 minutes, every minute: mean and
-- peak active connections against the most ordinary roles may open (`db_connections_max`:
-- PostgreSQL's max_connections less its superuser slots). Fires when the peak reaches 95% of
-- that limit; the score is the peak's share. The severity follows how close the database is
-- to refusing connections: 0.6 (T2) at 95%, 0.8 (T1) from 97.5%, 1.0 at the limit.
SELECT
    entity,
    hop(interval '1 minute', interval '5 minutes') AS window,
    avg(value) FILTER (WHERE name = 'db_connections_active') AS mean_active,
    max(value) FILTER (WHERE name = 'db_connections_active') AS peak_active,
    max(value) FILTER (WHERE name = 'db_connections_max') AS max_connections,
    max(value) FILTER (WHERE name = 'db_connections_active')
        / max(value) FILTER (WHERE name = 'db_connections_max') AS score,
    0.6 + 8.0 * (max(value) FILTER (WHERE name = 'db_connections_active')
        / max(value) FILTER (WHERE name = 'db_connections_max') - 0.95) AS severity,
    'connection_saturation' AS alert_type
FROM db_metrics
WHERE name IN ('db_connections_active', 'db_connections_max')
GROUP BY entity, window
HAVING max(value) FILTER (WHERE name = 'db_connections_active')
    >= 0.95 * max(value) FILTER (WHERE name = 'db_connections_max')
