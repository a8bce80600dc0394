-- The audit store (seed 000, E1.S3): one shard, three replicas, 90-day TTL, hourly rollup.
CREATE TABLE IF NOT EXISTS audit.audit_events ON CLUSTER '{cluster}'
(
    event_id      UUID,
    tenant_id     UUID,
    event_date    Date,
    received_at   DateTime64(3, 'UTC'),
    occurred_at   DateTime64(3, 'UTC'),
    actor_id      String,
    actor_type    LowCardinality(String),
    action_name   LowCardinality(String),
    resource_type LowCardinality(String),
    resource_id   String,
    outcome       LowCardinality(String),
    source_ip     Nullable(IPv6),
    payload       String CODEC(ZSTD(3))
)
ENGINE = ReplicatedMergeTree('/clickhouse/tables/{shard}/audit_events', '{replica}')
PARTITION BY toYYYYMM(event_date)
ORDER BY (tenant_id, event_date, action_name, event_id)
TTL event_date + INTERVAL 90 DAY DELETE;

CREATE TABLE IF NOT EXISTS audit.audit_events_hourly ON CLUSTER '{cluster}'
(
    tenant_id   UUID,
    hour        DateTime('UTC'),
    action_name LowCardinality(String),
    events      UInt64
)
ENGINE = ReplicatedSummingMergeTree('/clickhouse/tables/{shard}/audit_events_hourly', '{replica}')
ORDER BY (tenant_id, hour, action_name)
TTL hour + INTERVAL 90 DAY DELETE;

CREATE MATERIALIZED VIEW IF NOT EXISTS audit.audit_events_hourly_mv ON CLUSTER '{cluster}'
TO audit.audit_events_hourly AS
SELECT tenant_id, toStartOfHour(received_at) AS hour, action_name, count() AS events
FROM audit.audit_events
GROUP BY tenant_id, hour, action_name;
