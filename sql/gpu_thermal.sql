-- GPU overheating per GPU, per minute, from the DCGM fields dcgm-exporter reports: peak
-- temperature, mean power draw and the largest XID error code seen. Fires when the minute's
-- peak temperature is above 85 °C (where data-centre GPUs start to throttle); the score is the
-- peak as a multiple of that limit.
SELECT
    gpu_uuid AS entity,
    tumble(interval '1 minute') AS window,
    max(fields['DCGM_FI_DEV_GPU_TEMP']) AS peak_temp_c,
    avg(fields['DCGM_FI_DEV_POWER_USAGE']) AS mean_power_w,
    max(fields['DCGM_FI_DEV_XID_ERRORS']) AS xid,
    max(fields['DCGM_FI_DEV_GPU_TEMP']) / 85.0 AS score,
    'gpu_thermal' AS alert_type
FROM gpu
GROUP BY gpu_uuid, window
HAVING max(fields['DCGM_FI_DEV_GPU_TEMP']) > 85
