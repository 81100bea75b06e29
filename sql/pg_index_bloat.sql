-- Bloated PostgreSQL indexes, per index, every 30 seconds, from `opsloop collect postgres`:
-- the index's size against the size its live entries need (`pg_index_bloat_ratio`, the
-- collector's estimate for B-tree indexes; 1.0 is a freshly built index). Fires when an index
-- of at least 1 MiB is more than twice the size it needs (after mass deletes or updates: scans
-- read mostly empty pages and the cache holds them); smaller indexes are left alone, their
-- page rounding makes the estimate noisy and rebuilding them gains nothing. The score is the
-- ratio over that threshold; the index and its table are the `index_name` and `table_name`
-- labels.
SELECT
    entity,
    labels['index'] AS index_name,
    labels['table'] AS table_name,
    tumble(interval '30 seconds') AS window,
    max(value) FILTER (WHERE name = 'pg_index_bloat_ratio') AS bloat_ratio,
    max(value) FILTER (WHERE name = 'pg_index_size_bytes') AS size_bytes,
    max(value) FILTER (WHERE name = 'pg_index_bloat_ratio') / 2.0 AS score,
    0.5 AS severity,
    'index_bloat_high' AS alert_type
FROM db_metrics
WHERE name IN ('pg_index_bloat_ratio', 'pg_index_size_bytes')
GROUP BY entity, labels['index'], labels['table'], window
HAVING max(value) FILTER (WHERE name = 'pg_index_bloat_ratio') > 2.0
    AND max(value) FILTER (WHERE name = 'pg_index_size_bytes') >= 1048576
