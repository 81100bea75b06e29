//! The gates every remediation event passes before anything runs: the allow-list, the
//! template's parameter validation, the rate limit and the concurrency limit.

use std::sync::Arc;
use std::time::{Duration, Instant};

use opsloop_planner::templates::{CATALOG, Executor, Template, template};
use opsloop_schemas::ops::RemediationEvent;
use tokio::sync::{Mutex, OwnedSemaphorePermit, Semaphore};

use crate::{ActuatorConfig, ActuatorError};

/// The allow-list and the limits.
#[derive(Debug)]
pub struct Governor {
    allowed: Vec<&'static Template>,
    concurrency: Arc<Semaphore>,
    bucket: Mutex<TokenBucket>,
}

impl Governor {
    pub fn new(config: &ActuatorConfig) -> Result<Self, ActuatorError> {
        let allowed = if config.allow.is_empty() {
            CATALOG
                .iter()
                .filter(|t| t.executor == Executor::Postgres)
                .collect()
        } else {
            config
                .allow
                .iter()
                .map(|id| template(id).map_err(|error| ActuatorError::Config(error.to_string())))
                .collect::<Result<Vec<_>, _>>()?
        };
        if config.max_concurrent == 0 {
            return Err(ActuatorError::Config(
                "max_concurrent must be at least 1".to_owned(),
            ));
        }
        Ok(Governor {
            allowed,
            concurrency: Arc::new(Semaphore::new(config.max_concurrent)),
            bucket: Mutex::new(TokenBucket::new(
                config.rate_per_s,
                config.burst,
                Instant::now(),
            )),
        })
    }

    /// The template of `event` if it is allowed and its parameters (and its rollback's
    /// template) pass validation.
    pub fn admit(&self, event: &RemediationEvent) -> Result<&'static Template, ActuatorError> {
        let template = self
            .allowed
            .iter()
            .copied()
            .find(|t| t.id == event.template)
            .ok_or_else(|| {
                ActuatorError::Refused(format!(
                    "template {:?} is not on the allow-list",
                    event.template
                ))
            })?;
        template
            .validate(&event.params)
            .map_err(|error| ActuatorError::Refused(error.to_string()))?;
        if event.rollback_template.as_deref() != template.rollback {
            return Err(ActuatorError::Refused(format!(
                "rollback {:?} is not {}'s own",
                event.rollback_template, template.id
            )));
        }
        Ok(template)
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
    use std::collections::BTreeMap;

    use opsloop_schemas::ops::ParamValue;

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

    fn event(template: &str, params: &[(&str, ParamValue)]) -> RemediationEvent {
        let params = params.iter().map(|(k, v)| ((*k).to_owned(), v.clone()));
        RemediationEvent::new(
            "a",
            "i",
            template,
            "db-1",
            params.collect::<BTreeMap<_, _>>(),
        )
    }

    #[test]
    fn only_allow_listed_templates_with_valid_parameters_pass() {
        let governor = Governor::new(&ActuatorConfig {
            allow: vec!["pg.analyze".to_owned()],
            ..ActuatorConfig::default()
        })
        .expect("governor");
        let table = |name: &str| [("table", ParamValue::String(name.to_owned()))];
        assert!(
            governor
                .admit(&event("pg.analyze", &table("orders")))
                .is_ok()
        );
        let refused = governor
            .admit(&event("pg.vacuum", &table("orders")))
            .expect_err("not allowed");
        assert!(refused.to_string().contains("allow-list"), "{refused}");
        let injected = governor
            .admit(&event("pg.analyze", &table("orders; DROP TABLE users")))
            .expect_err("injection");
        assert!(!injected.retryable());
        assert!(governor.admit(&event("DROP TABLE users", &[])).is_err());
        let mut wrong_rollback = event("pg.analyze", &table("orders"));
        wrong_rollback.rollback_template = Some("pg.drop_index".to_owned());
        assert!(governor.admit(&wrong_rollback).is_err());

        let defaults = Governor::new(&ActuatorConfig::default()).expect("governor");
        assert!(
            defaults
                .admit(&event("pg.analyze", &table("orders")))
                .is_ok()
        );
        let webhook = event(
            "webhook.failover",
            &[("cluster", ParamValue::String("c1".into()))],
        );
        assert!(defaults.admit(&webhook).is_err(), "webhooks must be listed");
        assert!(
            Governor::new(&ActuatorConfig {
                allow: vec!["pg.drop_database".to_owned()],
                ..ActuatorConfig::default()
            })
            .is_err()
        );
    }
}
