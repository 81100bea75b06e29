//! Exactly once per action attempt, across duplicate deliveries, restarts and several
//! actuators: a claim in the target database itself, taken in the session that runs the
//! action.
//!
//! The session first takes the action's advisory lock (a hash of the action id), so a second
//! actuator handling the same action waits until the first's session ends. Under the lock it
//! reads `opsloop.action_claims`: no claim means nobody ran the action, and it inserts one
//! (with the digest of the content and the metrics measured before) before running anything;
//! a claim means the action ran, or was being run by a process that died, and the actuator
//! verifies instead of running it again. The verdict is written to the claim, so a later
//! duplicate finds the action finished.
//!
//! The schema and table are created on first use (`CREATE ... IF NOT EXISTS` under a
//! transaction-level advisory lock, so two actuators starting at once do not race).

use std::collections::BTreeMap;
use std::time::Duration;

use opsloop_schemas::ops::ActionStep;
use tokio_postgres::Client;

use crate::ActuatorError;

/// The claim table's DDL.
const SCHEMA: &str = "BEGIN; \
     SELECT pg_advisory_xact_lock(hashtextextended('opsloop.action_claims', 0)); \
     CREATE SCHEMA IF NOT EXISTS opsloop; \
     CREATE TABLE IF NOT EXISTS opsloop.action_claims ( \
       action_id text PRIMARY KEY, \
       digest text NOT NULL, \
       claimed_by text NOT NULL, \
       claimed_at timestamptz NOT NULL DEFAULT now(), \
       before text NOT NULL DEFAULT '{}', \
       outcome text, \
       finished_at timestamptz); \
     COMMIT";

/// A claim found in the target database.
#[derive(Debug, Clone, PartialEq)]
pub struct Claim {
    pub digest: String,
    pub claimed_by: String,
    /// The metrics measured before the action ran.
    pub before: BTreeMap<String, f64>,
    /// The final step, once the action's verdict is in.
    pub outcome: Option<String>,
}

/// Makes sure the claim table exists.
pub async fn prepare(client: &Client) -> Result<(), ActuatorError> {
    client.batch_execute(SCHEMA).await?;
    Ok(())
}

/// How often a session waiting for an action's advisory lock tries again.
const LOCK_RETRY: Duration = Duration::from_millis(250);

/// Takes the action's advisory lock for this session, waiting while another session holds it.
///
/// It tries again and again rather than wait inside one statement: the holder keeps the lock
/// until its verdict is in (minutes), longer than the session's `statement_timeout`, and a
/// statement that waits holds a snapshot that a `CREATE INDEX CONCURRENTLY` by the holder
/// would wait for in turn.
pub async fn lock(client: &Client, action_id: &str) -> Result<(), ActuatorError> {
    loop {
        let locked: bool = client
            .query_one(
                "SELECT pg_try_advisory_lock(hashtextextended($1, 0))",
                &[&action_id],
            )
            .await?
            .get(0);
        if locked {
            return Ok(());
        }
        tokio::time::sleep(LOCK_RETRY).await;
    }
}

/// The claim on `action_id`, if there is one.
pub async fn read(client: &Client, action_id: &str) -> Result<Option<Claim>, ActuatorError> {
    let row = client
        .query_opt(
            "SELECT digest, claimed_by, before, outcome FROM opsloop.action_claims \
             WHERE action_id = $1",
            &[&action_id],
        )
        .await?;
    Ok(row.map(|row| Claim {
        digest: row.get(0),
        claimed_by: row.get(1),
        before: serde_json::from_str(row.get::<_, &str>(2)).unwrap_or_default(),
        outcome: row.get(3),
    }))
}

/// Claims `action_id` for `instance`; false if a claim was already there.
pub async fn take(
    client: &Client,
    action_id: &str,
    digest: &str,
    instance: &str,
    before: &BTreeMap<String, f64>,
) -> Result<bool, ActuatorError> {
    let before = serde_json::to_string(before).unwrap_or_else(|_| "{}".to_owned());
    let inserted = client
        .execute(
            "INSERT INTO opsloop.action_claims (action_id, digest, claimed_by, before) \
             VALUES ($1, $2, $3, $4) ON CONFLICT (action_id) DO NOTHING",
            &[&action_id, &digest, &instance, &before],
        )
        .await?;
    Ok(inserted == 1)
}

/// Ends `instance`'s unfinished claim on `action_id` as failed: the action erred after it was
/// claimed, and a later duplicate must not judge it again.
pub async fn abandon(
    client: &Client,
    action_id: &str,
    instance: &str,
) -> Result<(), ActuatorError> {
    let outcome = format!("{:?}", ActionStep::Failed);
    client
        .execute(
            "UPDATE opsloop.action_claims SET outcome = $3, finished_at = now() \
             WHERE action_id = $1 AND claimed_by = $2 AND outcome IS NULL",
            &[&action_id, &instance, &outcome],
        )
        .await?;
    Ok(())
}

/// Writes the action's verdict to its claim.
pub async fn finish(
    client: &Client,
    action_id: &str,
    step: ActionStep,
) -> Result<(), ActuatorError> {
    let outcome = format!("{step:?}");
    client
        .execute(
            "UPDATE opsloop.action_claims SET outcome = $2, finished_at = now() \
             WHERE action_id = $1",
            &[&action_id, &outcome],
        )
        .await?;
    Ok(())
}
