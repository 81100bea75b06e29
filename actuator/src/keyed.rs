//! [`KeyedLocks`]: one async lock per key (an action id, a table), forgotten when nobody holds
//! or waits for it, so the map stays as small as the work in flight.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use tokio::sync::OwnedMutexGuard;

/// A std mutex's guard, poisoned or not: every critical section of this crate leaves its
/// data consistent at each step, so a panic elsewhere does not make it unusable.
pub(crate) fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// Async locks by key.
#[derive(Debug, Default)]
pub(crate) struct KeyedLocks {
    locks: Mutex<HashMap<String, Arc<tokio::sync::Mutex<()>>>>,
}

/// The lock of one key, held until dropped.
#[derive(Debug)]
pub(crate) struct KeyedGuard<'a> {
    owner: &'a KeyedLocks,
    key: String,
    guard: Option<OwnedMutexGuard<()>>,
}

impl KeyedLocks {
    /// Waits for `key`'s lock.
    pub(crate) async fn lock(&self, key: &str) -> KeyedGuard<'_> {
        let key_lock = Arc::clone(lock(&self.locks).entry(key.to_owned()).or_default());
        KeyedGuard {
            owner: self,
            key: key.to_owned(),
            guard: Some(key_lock.lock_owned().await),
        }
    }

    #[cfg(test)]
    fn len(&self) -> usize {
        lock(&self.locks).len()
    }
}

impl Drop for KeyedGuard<'_> {
    fn drop(&mut self) {
        drop(self.guard.take());
        let mut locks = lock(&self.owner.locks);
        // Only the map holds it: nobody waits.
        if locks
            .get(&self.key)
            .is_some_and(|l| Arc::strong_count(l) == 1)
        {
            locks.remove(&self.key);
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[tokio::test]
    async fn one_holder_per_key_and_nothing_left_behind() {
        let locks = Arc::new(KeyedLocks::default());
        let first = locks.lock("a").await;
        let other = locks.lock("b").await;
        let waiter = tokio::spawn({
            let locks = Arc::clone(&locks);
            async move {
                let _second = locks.lock("a").await;
            }
        });
        tokio::time::sleep(Duration::from_millis(20)).await;
        assert!(!waiter.is_finished(), "the second waits for the first");
        drop(first);
        waiter.await.expect("task");
        drop(other);
        assert_eq!(locks.len(), 0);
    }
}
