//! The limits every admitted action passes before it runs: a token-bucket rate limit and the
//! concurrency limit.

use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::{Mutex, OwnedSemaphorePermit, Semaphore};

use crate::{ActuatorConfig, ActuatorError};

/// The limits.
#[derive(Debug)]
pub struct Governor {
    concurrency: Arc<Semaphore>,
    bucket: Mutex<TokenBucket>,
}

impl Governor {
    pub fn new(config: &ActuatorConfig) -> Result<Self, ActuatorError> {
        if config.max_concurrent == 0 {
            return Err(ActuatorError::Config(
                "max_concurrent must be at least 1".to_owned(),
            ));
        }
        Ok(Governor {
            concurrency: Arc::new(Semaphore::new(config.max_concurrent)),
            bucket: Mutex::new(TokenBucket::new(
                config.rate_per_s,
                config.burst,
                Instant::now(),
            )),
        })
    }

    /// Waits for a token (rate limit), then for a slot (concurrency limit); the slot is held
    /// until the permit drops.
    pub async fn slot(&self) -> OwnedSemaphorePermit {
        loop {
            let wait = self.bucket.lock().await.take(Instant::now());
            match wait {
                None => break,
                Some(wait) => tokio::time::sleep(wait).await,
            }
        }
        // The semaphore is never closed.
        Arc::clone(&self.concurrency)
            .acquire_owned()
            .await
            .unwrap_or_else(|_| unreachable!("the concurrency semaphore is never closed"))
    }

    /// Operations running now.
    pub fn running(&self, max_concurrent: usize) -> usize {
        max_concurrent - self.concurrency.available_permits()
    }
}

/// A token bucket: `burst` tokens, refilled at `rate` per second.
#[derive(Debug, Clone)]
pub struct TokenBucket {
    rate: f64,
    burst: f64,
    tokens: f64,
    at: Instant,
}

impl TokenBucket {
    pub fn new(rate: f64, burst: u32, now: Instant) -> Self {
        let burst = f64::from(burst.max(1));
        TokenBucket {
            rate: rate.max(1e-6),
            burst,
            tokens: burst,
            at: now,
        }
    }

    /// Takes a token at `now`; `None` when one was there, else how long until one is.
    pub fn take(&mut self, now: Instant) -> Option<Duration> {
        let elapsed = now.saturating_duration_since(self.at).as_secs_f64();
        self.tokens = (self.tokens + elapsed * self.rate).min(self.burst);
        self.at = now;
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            None
        } else {
            Some(Duration::from_secs_f64((1.0 - self.tokens) / self.rate))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_storm_gets_the_burst_then_the_rate() {
        let start = Instant::now();
        let mut bucket = TokenBucket::new(2.0, 3, start);
        let granted = (0..10).filter(|_| bucket.take(start).is_none()).count();
        assert_eq!(granted, 3, "the burst");
        let wait = bucket.take(start).expect("empty");
        assert!((wait.as_secs_f64() - 0.5).abs() < 1e-9, "{wait:?}");
        assert!(bucket.take(start + Duration::from_millis(500)).is_none());
        assert!(bucket.take(start + Duration::from_millis(600)).is_some());
        // Idle for long: back to the burst, not more.
        let later = start + Duration::from_secs(60);
        assert_eq!((0..10).filter(|_| bucket.take(later).is_none()).count(), 3);
    }
}
