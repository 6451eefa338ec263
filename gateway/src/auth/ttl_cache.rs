//! A small bounded cache whose entries expire, for authentication results.
use std::collections::HashMap;
use std::hash::Hash;
use std::time::Duration;

use parking_lot::Mutex;
use tokio::time::Instant;

pub(crate) struct TtlCache<K, V> {
    entries: Mutex<HashMap<K, (V, Instant)>>,
    capacity: usize,
}

impl<K: Eq + Hash + Clone, V: Clone> TtlCache<K, V> {
    pub fn new(capacity: usize) -> Self {
        TtlCache {
            entries: Mutex::new(HashMap::new()),
            capacity,
        }
    }

    /// The value for `key` if present and not expired.
    pub fn get(&self, key: &K) -> Option<V> {
        let mut entries = self.entries.lock();
        match entries.get(key) {
            Some((value, expires)) if *expires > Instant::now() => Some(value.clone()),
            Some(_) => {
                entries.remove(key);
                None
            }
            None => None,
        }
    }

    /// Stores `value` for `ttl`. When full, expired entries go first, then arbitrary ones: the
    /// cache only saves round trips, so losing an entry is harmless.
    pub fn insert(&self, key: K, value: V, ttl: Duration) {
        if self.capacity == 0 || ttl.is_zero() {
            return;
        }
        let now = Instant::now();
        let mut entries = self.entries.lock();
        if entries.len() >= self.capacity && !entries.contains_key(&key) {
            entries.retain(|_, (_, expires)| *expires > now);
            while entries.len() >= self.capacity {
                let Some(victim) = entries.keys().next().cloned() else {
                    break;
                };
                entries.remove(&victim);
            }
        }
        entries.insert(key, (value, now + ttl));
    }

    #[cfg(test)]
    pub fn len(&self) -> usize {
        self.entries.lock().len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn expires_and_stays_bounded() {
        let cache = TtlCache::new(2);
        cache.insert(1, "a", Duration::from_secs(10));
        cache.insert(2, "b", Duration::from_secs(1));
        assert_eq!(cache.get(&1), Some("a"));
        tokio::time::advance(Duration::from_secs(2)).await;
        assert_eq!(cache.get(&2), None);
        cache.insert(3, "c", Duration::from_secs(10));
        cache.insert(4, "d", Duration::from_secs(10));
        assert_eq!(cache.len(), 2);
        assert_eq!(cache.get(&4), Some("d"));
        tokio::time::advance(Duration::from_secs(11)).await;
        assert_eq!(cache.get(&4), None);
    }
}
