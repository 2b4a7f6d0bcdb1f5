//! Redis backend.
//!
//! Key schema (`{p}` is the configured prefix, default `forescale`; group
//! names cannot contain ':', so keys are unambiguous):
//!
//! | key | type | content |
//! | --- | --- | --- |
//! | `{p}:groups` | SET | names of the groups that have samples |
//! | `{p}:samples:{group}` | ZSET | score = Unix seconds, member = the sample as compact JSON (`{"t":..,"v":[..],"c":..}`), one member per timestamp |
//!
//! A batch is applied by one Lua script, so it is atomic: for each sample
//! the member at its timestamp is replaced, then everything older than the
//! retention cutoff is removed.
//!
//! Durability is Redis's: run it with AOF (`appendonly yes`) when samples
//! must survive a restart of Redis itself; a restart of the service loses
//! nothing either way.

use std::time::Duration;

use redis::aio::{ConnectionManager, ConnectionManagerConfig};

use super::{GroupSummary, StoreConfig, StoreError, check_retention};
use crate::domain::{MetricSample, ScalingGroup, rfc3339};

const APPEND_SCRIPT: &str = r"
redis.call('SADD', KEYS[1], ARGV[1])
for i = 3, #ARGV, 2 do
  redis.call('ZREMRANGEBYSCORE', KEYS[2], ARGV[i], ARGV[i])
  redis.call('ZADD', KEYS[2], ARGV[i], ARGV[i + 1])
end
redis.call('ZREMRANGEBYSCORE', KEYS[2], '-inf', '(' .. ARGV[2])
return redis.call('ZCARD', KEYS[2])
";

#[derive(Clone)]
pub struct RedisStore {
    conn: ConnectionManager,
    prefix: String,
    cfg: StoreConfig,
    script: std::sync::Arc<redis::Script>,
    /// The last window served per (group, length): what reads fall back to
    /// while Redis is unreachable.
    pub(super) last: std::sync::Arc<super::LastWindows>,
}

impl std::fmt::Debug for RedisStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisStore")
            .field("prefix", &self.prefix)
            .field("cfg", &self.cfg)
            .finish_non_exhaustive()
    }
}

fn retryable(e: &redis::RedisError) -> bool {
    e.is_io_error() || e.is_connection_dropped() || e.is_timeout()
}

fn corrupt(e: impl std::fmt::Display) -> StoreError {
    StoreError::Corrupt(e.to_string())
}

impl RedisStore {
    pub async fn open(url: &str, prefix: &str, cfg: StoreConfig) -> Result<Self, StoreError> {
        let client = redis::Client::open(url)?;
        let mcfg = ConnectionManagerConfig::new()
            .set_connection_timeout(Some(Duration::from_secs(2)))
            .set_response_timeout(Some(Duration::from_secs(5)))
            .set_number_of_retries(2);
        let conn = ConnectionManager::new_with_config(client, mcfg).await?;
        Ok(Self {
            conn,
            prefix: prefix.to_owned(),
            cfg,
            script: std::sync::Arc::new(redis::Script::new(APPEND_SCRIPT)),
            last: std::sync::Arc::new(super::LastWindows::new(super::LAST_WINDOWS)),
        })
    }

    pub fn config(&self) -> &StoreConfig {
        &self.cfg
    }

    fn groups_key(&self) -> String {
        format!("{}:groups", self.prefix)
    }

    fn samples_key(&self, group: &ScalingGroup) -> String {
        format!("{}:samples:{}", self.prefix, group)
    }

    /// Run a command, retrying once: a `ConnectionManager` fails the
    /// first command after a dropped connection, then reconnects.
    async fn query<T: redis::FromRedisValue>(&self, cmd: &redis::Cmd) -> redis::RedisResult<T> {
        let mut conn = self.conn.clone();
        match cmd.query_async(&mut conn).await {
            Err(e) if retryable(&e) => cmd.query_async(&mut conn).await,
            r => r,
        }
    }

    async fn query_pipe(&self, pipe: &redis::Pipeline) -> redis::RedisResult<Vec<redis::Value>> {
        let mut conn = self.conn.clone();
        match pipe.query_async(&mut conn).await {
            Err(e) if retryable(&e) => pipe.query_async(&mut conn).await,
            r => r,
        }
    }

    pub async fn append(
        &self,
        group: &ScalingGroup,
        samples: Vec<MetricSample>,
    ) -> Result<usize, StoreError> {
        let newest = self.span(group).await?.map(|(_, n)| n);
        let cutoff = check_retention(newest, &samples, self.cfg.retention_seconds)?;
        let mut inv = self.script.prepare_invoke();
        inv.key(self.groups_key())
            .key(self.samples_key(group))
            .arg(group.as_str())
            .arg(cutoff);
        for s in &samples {
            inv.arg(s.timestamp)
                .arg(serde_json::to_vec(s).map_err(corrupt)?);
        }
        let mut conn = self.conn.clone();
        let _: u64 = match inv.invoke_async(&mut conn).await {
            Err(e) if retryable(&e) => inv.invoke_async(&mut conn).await?,
            r => r?,
        };
        Ok(samples.len())
    }

    pub async fn groups(&self) -> Result<Vec<GroupSummary>, StoreError> {
        let names: Vec<String> = self
            .query(redis::cmd("SMEMBERS").arg(self.groups_key()))
            .await?;
        let groups: Vec<ScalingGroup> = names
            .iter()
            .map(|n| ScalingGroup::parse(n).map_err(corrupt))
            .collect::<Result<_, _>>()?;
        if groups.is_empty() {
            return Ok(Vec::new());
        }
        let mut pipe = redis::pipe();
        for g in &groups {
            let k = self.samples_key(g);
            pipe.cmd("ZCARD").arg(&k);
            pipe.cmd("ZRANGE").arg(&k).arg(0).arg(0).arg("WITHSCORES");
            pipe.cmd("ZRANGE").arg(&k).arg(-1).arg(-1).arg("WITHSCORES");
        }
        let flat = self.query_pipe(&pipe).await?;
        let mut out = Vec::with_capacity(groups.len());
        for (group, ch) in groups.into_iter().zip(flat.chunks(3)) {
            let [n, first, last] = ch else {
                return Err(corrupt("short pipeline reply"));
            };
            let n: u64 = redis::from_redis_value_ref(n).map_err(corrupt)?;
            let first: Vec<(String, f64)> = redis::from_redis_value_ref(first).map_err(corrupt)?;
            let last: Vec<(String, f64)> = redis::from_redis_value_ref(last).map_err(corrupt)?;
            if let (Some(f), Some(l)) = (first.first(), last.first()) {
                out.push(GroupSummary {
                    group,
                    samples: n,
                    first_timestamp: rfc3339(f.1 as i64),
                    last_timestamp: rfc3339(l.1 as i64),
                });
            }
        }
        Ok(out)
    }

    pub async fn samples_since(
        &self,
        group: &ScalingGroup,
        since: i64,
    ) -> Result<Vec<MetricSample>, StoreError> {
        let members: Vec<Vec<u8>> = self
            .query(
                redis::cmd("ZRANGE")
                    .arg(self.samples_key(group))
                    .arg(since)
                    .arg("+inf")
                    .arg("BYSCORE"),
            )
            .await?;
        members
            .iter()
            .map(|m| serde_json::from_slice(m).map_err(corrupt))
            .collect()
    }

    pub async fn span(&self, group: &ScalingGroup) -> Result<Option<(i64, i64)>, StoreError> {
        let key = self.samples_key(group);
        let mut pipe = redis::pipe();
        pipe.cmd("ZRANGE").arg(&key).arg(0).arg(0).arg("WITHSCORES");
        pipe.cmd("ZRANGE")
            .arg(&key)
            .arg(-1)
            .arg(-1)
            .arg("WITHSCORES");
        let reply = self.query_pipe(&pipe).await?;
        let [first, last] = reply.as_slice() else {
            return Err(corrupt("short pipeline reply"));
        };
        let first: Vec<(String, f64)> = redis::from_redis_value_ref(first).map_err(corrupt)?;
        let last: Vec<(String, f64)> = redis::from_redis_value_ref(last).map_err(corrupt)?;
        Ok(first
            .first()
            .zip(last.first())
            .map(|(f, l)| (f.1 as i64, l.1 as i64)))
    }

    pub async fn ping(&self) -> Result<(), StoreError> {
        let _: String = self.query(&redis::cmd("PING")).await?;
        Ok(())
    }
}
