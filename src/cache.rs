//! The embedding cache: the encoder output of a trained model for one
//! window, so a repeated forecast (or a decision) runs only the head.
//!
//! Two tiers: in process (always; bounded by entry count, oldest evicted
//! first, and by a TTL) and Redis (when the service runs with
//! `--redis-url`; bounded by the same TTL), shared by every replica.
//!
//! Key: (model, model version, group, window end, input fingerprint). The
//! fingerprint (a hash of the encoded input) makes a late sample that
//! changes an earlier step of the window a miss instead of a stale hit.
//!
//! Redis key: `{prefix}:emb3:{model}:{version}:{group}:{end}:{fingerprint}`,
//! value: little-endian f32s (`last_cpu`, `scale`, `shift`, `unit`, then
//! the embedding), `EX` = TTL. (`emb3`: the layout with the window's
//! target scaling.)

use std::collections::{HashMap, VecDeque};
use std::time::{Duration, Instant};

use parking_lot::Mutex;
use redis::aio::ConnectionManager;

use crate::domain::ScalingGroup;
use crate::features::ModelInput;
use crate::forecast::Embedding as CachedEmbedding;

fn to_bytes(e: &CachedEmbedding) -> Vec<u8> {
    [e.last_cpu, e.scale, e.shift, e.unit]
        .into_iter()
        .chain(e.embedding.iter().copied())
        .flat_map(f32::to_le_bytes)
        .collect()
}

fn from_bytes(b: &[u8]) -> Option<CachedEmbedding> {
    if b.len() < 20 || !b.len().is_multiple_of(4) {
        return None;
    }
    let mut v = b
        .chunks_exact(4)
        .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]));
    let last_cpu = v.next()?;
    let scale = v.next()?;
    let shift = v.next()?;
    let unit = v.next()?;
    Some(CachedEmbedding {
        last_cpu,
        scale,
        shift,
        unit,
        embedding: v.collect(),
    })
}

/// What identifies one cached embedding.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct CacheKey {
    pub model: String,
    pub version: String,
    pub group: ScalingGroup,
    pub window_end: i64,
    pub fingerprint: u64,
}

impl CacheKey {
    pub fn new(
        model: &str,
        version: &str,
        group: &ScalingGroup,
        window_end: i64,
        input: &ModelInput,
    ) -> Self {
        Self {
            model: model.to_owned(),
            version: version.to_owned(),
            group: group.clone(),
            window_end,
            fingerprint: fingerprint(input),
        }
    }

    fn redis_key(&self, prefix: &str) -> String {
        format!(
            "{prefix}:emb3:{}:{}:{}:{}:{:016x}",
            self.model, self.version, self.group, self.window_end, self.fingerprint
        )
    }
}

/// FNV-1a over the input's bits (values, mask and the target's window
/// scaling).
pub fn fingerprint(input: &ModelInput) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    let scaling = [input.shift, input.unit];
    for v in input.values.iter().chain(&input.mask).chain(&scaling) {
        for b in v.to_bits().to_le_bytes() {
            h ^= u64::from(b);
            h = h.wrapping_mul(0x0100_0000_01b3);
        }
    }
    h
}

/// Where a lookup was answered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Tier {
    Memory,
    Redis,
}

impl Tier {
    pub fn label(self) -> &'static str {
        match self {
            Self::Memory => "memory",
            Self::Redis => "redis",
        }
    }
}

#[derive(Debug)]
struct Local {
    map: HashMap<CacheKey, (Instant, CachedEmbedding)>,
    /// Insertion order, for eviction of the oldest.
    order: VecDeque<CacheKey>,
}

/// The cache. Cheap to share behind the app state.
pub struct EmbeddingCache {
    local: Mutex<Local>,
    capacity: usize,
    ttl: Duration,
    redis: Option<(ConnectionManager, String)>,
    /// After a Redis failure, Redis is skipped until then: while it is
    /// down, lookups cost nothing more than the in-process tier.
    redis_down_until: Mutex<Option<Instant>>,
}

/// How long Redis is skipped after it failed.
const REDIS_BACKOFF: Duration = Duration::from_secs(1);

impl std::fmt::Debug for EmbeddingCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EmbeddingCache")
            .field("capacity", &self.capacity)
            .field("ttl", &self.ttl)
            .field("redis", &self.redis.as_ref().map(|(_, p)| p))
            .finish_non_exhaustive()
    }
}

impl EmbeddingCache {
    /// In-process only.
    pub fn new(capacity: usize, ttl: Duration) -> Self {
        Self {
            local: Mutex::new(Local {
                map: HashMap::new(),
                order: VecDeque::new(),
            }),
            capacity,
            ttl,
            redis: None,
            redis_down_until: Mutex::new(None),
        }
    }

    /// With a Redis tier behind the in-process one.
    pub async fn with_redis(
        capacity: usize,
        ttl: Duration,
        url: &str,
        prefix: &str,
    ) -> redis::RedisResult<Self> {
        let client = redis::Client::open(url)?;
        let cfg = redis::aio::ConnectionManagerConfig::new()
            .set_connection_timeout(Some(Duration::from_secs(2)))
            .set_response_timeout(Some(Duration::from_millis(500)));
        let conn = ConnectionManager::new_with_config(client, cfg).await?;
        let mut c = Self::new(capacity, ttl);
        c.redis = Some((conn, prefix.to_owned()));
        Ok(c)
    }

    /// Entries held in process.
    pub fn len(&self) -> usize {
        self.local.lock().map.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Look a key up: in process first, then Redis (a Redis hit is copied
    /// into the process). A Redis failure is a miss, never an error: the
    /// cache only saves work.
    pub async fn get(&self, key: &CacheKey) -> Option<(Tier, CachedEmbedding)> {
        {
            let mut local = self.local.lock();
            match local.map.get(key) {
                Some((at, e)) if at.elapsed() <= self.ttl => {
                    return Some((Tier::Memory, e.clone()));
                }
                Some(_) => {
                    local.map.remove(key);
                }
                None => {}
            }
        }
        let (conn, prefix) = self.redis_up()?;
        let mut conn = conn.clone();
        let r: redis::RedisResult<Option<Vec<u8>>> = redis::cmd("GET")
            .arg(key.redis_key(prefix))
            .query_async(&mut conn)
            .await;
        let bytes = match r {
            Ok(b) => b,
            Err(e) => {
                self.redis_failed(&e);
                None
            }
        };
        let e = from_bytes(&bytes?)?;
        self.put_local(key.clone(), e.clone());
        Some((Tier::Redis, e))
    }

    /// Store an embedding in every tier.
    pub async fn put(&self, key: CacheKey, value: CachedEmbedding) {
        if let Some((conn, prefix)) = self.redis_up() {
            let mut conn = conn.clone();
            let ttl = self.ttl.as_secs().max(1);
            let r: redis::RedisResult<()> = redis::cmd("SET")
                .arg(key.redis_key(prefix))
                .arg(to_bytes(&value))
                .arg("EX")
                .arg(ttl)
                .query_async(&mut conn)
                .await;
            if let Err(e) = r {
                self.redis_failed(&e);
            }
        }
        self.put_local(key, value);
    }

    /// The Redis tier, unless it failed within the last second.
    fn redis_up(&self) -> Option<&(ConnectionManager, String)> {
        let r = self.redis.as_ref()?;
        let mut down = self.redis_down_until.lock();
        match *down {
            Some(t) if Instant::now() < t => None,
            Some(_) => {
                *down = None;
                Some(r)
            }
            None => Some(r),
        }
    }

    fn redis_failed(&self, e: &redis::RedisError) {
        let mut down = self.redis_down_until.lock();
        if down.is_none() {
            tracing::warn!(error = %e, "embedding cache: redis failed; in-process tier only for {} s", REDIS_BACKOFF.as_secs());
        }
        *down = Some(Instant::now() + REDIS_BACKOFF);
    }

    /// The Redis tier's health: `None` without one, else a PING.
    pub async fn redis_ping(&self) -> Option<Result<(), String>> {
        let (conn, _) = self.redis.as_ref()?;
        let mut conn = conn.clone();
        let r: redis::RedisResult<String> = redis::cmd("PING").query_async(&mut conn).await;
        Some(match r {
            Ok(_) => Ok(()),
            Err(e) => {
                self.redis_failed(&e);
                Err(e.to_string())
            }
        })
    }

    fn put_local(&self, key: CacheKey, value: CachedEmbedding) {
        if self.capacity == 0 {
            return;
        }
        let mut local = self.local.lock();
        if local
            .map
            .insert(key.clone(), (Instant::now(), value))
            .is_none()
        {
            local.order.push_back(key);
        }
        while local.map.len() > self.capacity {
            let Some(old) = local.order.pop_front() else {
                break;
            };
            local.map.remove(&old);
        }
        // Keys replaced or expired leave stale entries in `order`; keep it bounded.
        if local.order.len() > 2 * self.capacity {
            let Local { map, order } = &mut *local;
            order.retain(|k| map.contains_key(k));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(end: i64) -> CacheKey {
        let input = ModelInput {
            steps: 1,
            values: vec![end as f32],
            mask: vec![1.0],
            future: Vec::new(),
            shift: 0.0,
            unit: 1.0,
        };
        CacheKey::new(
            "bilstm",
            "v1",
            &ScalingGroup::parse("g").unwrap(),
            end,
            &input,
        )
    }

    fn emb(x: f32) -> CachedEmbedding {
        CachedEmbedding {
            last_cpu: x,
            scale: 1.0 + x,
            shift: 2.0 * x,
            unit: 3.0 + x,
            embedding: vec![x, x + 1.0],
        }
    }

    #[actix_web::test]
    async fn hits_misses_eviction_and_ttl() {
        let c = EmbeddingCache::new(2, Duration::from_secs(60));
        assert!(c.get(&key(1)).await.is_none());
        c.put(key(1), emb(1.0)).await;
        assert_eq!(c.get(&key(1)).await, Some((Tier::Memory, emb(1.0))));
        c.put(key(2), emb(2.0)).await;
        c.put(key(3), emb(3.0)).await;
        assert_eq!(c.len(), 2);
        assert!(c.get(&key(1)).await.is_none(), "oldest evicted");
        let short = EmbeddingCache::new(10, Duration::ZERO);
        short.put(key(1), emb(1.0)).await;
        std::thread::sleep(Duration::from_millis(2));
        assert!(short.get(&key(1)).await.is_none(), "expired");
    }

    #[test]
    fn a_changed_input_is_a_different_key() {
        let g = ScalingGroup::parse("g").unwrap();
        let a = ModelInput {
            steps: 1,
            values: vec![1.0],
            mask: vec![1.0],
            future: Vec::new(),
            shift: 0.0,
            unit: 1.0,
        };
        let b = ModelInput {
            values: vec![1.5],
            ..a.clone()
        };
        assert_ne!(
            CacheKey::new("m", "v", &g, 0, &a),
            CacheKey::new("m", "v", &g, 0, &b)
        );
        // The same shape at another level is another window.
        let c = ModelInput {
            shift: 5.0,
            ..a.clone()
        };
        assert_ne!(
            CacheKey::new("m", "v", &g, 0, &a),
            CacheKey::new("m", "v", &g, 0, &c)
        );
    }

    #[test]
    fn bytes_round_trip() {
        let e = emb(0.25);
        assert_eq!(from_bytes(&to_bytes(&e)), Some(e));
        assert_eq!(from_bytes(&[1, 2, 3]), None);
    }
}
