-- Sessions that hold locks others wait for while idle in their transaction (the classic
-- `BEGIN; UPDATE ...;` and then nothing), per database, every 30 seconds, from `opsloop
-- collect postgres`. Fires when backends were blocked at every collection of the window (at
-- least two: a row lock taken and released in passing is not this) and a blocker has sat idle
-- in its transaction for more than 30 seconds. The planner ends the blockers
-- (`pg.terminate_blockers`), never the sessions waiting on them. The score is the blocker's
-- idle time as a multiple of 30 seconds; the waiting sessions stall the workload, so the
-- severity is that of an emergency.
SELECT
    entity,
    tumble(interval '30 seconds') AS window,
    max(value) FILTER (WHERE name = 'pg_idle_blocker_seconds') AS idle_blocker_s,
    max(value) FILTER (WHERE name = 'pg_blocked_backends') AS blocked_backends,
    max(value) FILTER (WHERE name = 'pg_lock_blockers') AS blockers,
    max(value) FILTER (WHERE name = 'pg_idle_blocker_seconds') / 30.0 AS score,
    0.85 AS severity,
    'lock_blocker' AS alert_type
FROM db_metrics
WHERE name IN ('pg_idle_blocker_seconds', 'pg_blocked_backends', 'pg_lock_blockers')
GROUP BY entity, window
HAVING min(value) FILTER (WHERE name = 'pg_blocked_backends') > 0
    AND count(*) FILTER (WHERE name = 'pg_blocked_backends') >= 2
    AND max(value) FILTER (WHERE name = 'pg_idle_blocker_seconds') > 30
