//! What binds a decision to the action it is about, and an action to the planner that made it.
//!
//! - [`digest`]: hex SHA-256 of an action's content — action id, incident, template, target,
//!   parameters and attempt — in a canonical, length-prefixed encoding (floats by their bits),
//!   so two events share a digest exactly when they would do the same thing.
//! - [`sign_event`] / [`verify_event`]: the planner's hex HMAC-SHA256, under the key planners
//!   and actuators share, over the digest and every other field of a remediation event (kind,
//!   band, approval need, rollback, risk, agent, rationale, times). An actuator refuses an
//!   event whose signature does not check out, so write access to `ops.remediation` alone
//!   cannot run anything.
//! - [`sign_approval`] / [`verify_approval`]: an approver's hex HMAC-SHA256, under the key
//!   approvers and actuators share, over the action id, the digest of the content approved,
//!   the decision, the approver, the reason and the time. An actuator recomputes the digest
//!   from the event it is about to run: an approval given for other content does not run it.
//!
//! Signatures are compared in constant time; an empty key signs and accepts nothing.

use hmac::{Hmac, KeyInit, Mac};
use opsloop_schemas::ids::{hex, unhex};
use opsloop_schemas::ops::{Approval, Decision, ParamValue, RemediationEvent};
use sha2::{Digest, Sha256};

/// A canonical encoding: every field as its length (8 bytes, little endian) and its bytes.
#[derive(Default)]
struct Canonical(Vec<u8>);

impl Canonical {
    fn field(&mut self, bytes: &[u8]) -> &mut Self {
        self.0
            .extend_from_slice(&(bytes.len() as u64).to_le_bytes());
        self.0.extend_from_slice(bytes);
        self
    }

    fn text(&mut self, text: &str) -> &mut Self {
        self.field(text.as_bytes())
    }

    fn number(&mut self, number: i64) -> &mut Self {
        self.field(&number.to_le_bytes())
    }

    fn float(&mut self, number: f64) -> &mut Self {
        self.field(&number.to_bits().to_le_bytes())
    }

    fn optional(&mut self, value: Option<&str>) -> &mut Self {
        match value {
            Some(text) => self.text("some").text(text),
            None => self.text("none"),
        }
    }
}

/// Hex SHA-256 of the action content of `event`; see the module docs.
pub fn digest(event: &RemediationEvent) -> String {
    let mut encoded = Canonical::default();
    encoded
        .text("opsloop.action.v1")
        .text(&event.action_id)
        .text(&event.incident_id)
        .text(&event.template)
        .text(&event.target)
        .number(event.attempt)
        .number(event.params.len() as i64);
    for (name, value) in &event.params {
        encoded.text(name);
        match value {
            ParamValue::String(text) => encoded.text("string").text(text),
            ParamValue::Long(number) => encoded.text("long").number(*number),
            ParamValue::Double(number) => encoded.text("double").float(*number),
            ParamValue::Boolean(flag) => encoded.text("boolean").text(&flag.to_string()),
        };
    }
    hex(&Sha256::digest(&encoded.0))
}

fn event_message(event: &RemediationEvent) -> Vec<u8> {
    let mut encoded = Canonical::default();
    encoded
        .text("opsloop.event.v1")
        .text(&digest(event))
        .text(&format!("{:?}", event.kind))
        .text(&format!("{:?}", event.band))
        .text(&event.approval_required.to_string())
        .optional(event.rollback_template.as_deref())
        .float(event.risk)
        .text(&event.agent)
        .text(&event.rationale)
        .number(event.created_us)
        .optional(event.deadline_us.map(|d| d.to_string()).as_deref());
    encoded.0
}

fn approval_message(approval: &Approval) -> Vec<u8> {
    let decision = match approval.decision {
        Decision::Approve => "APPROVE",
        Decision::Reject => "REJECT",
    };
    let mut encoded = Canonical::default();
    encoded
        .text("opsloop.approval.v1")
        .text(&approval.action_id)
        .text(&approval.action_digest)
        .text(decision)
        .text(&approval.approver)
        .text(&approval.reason)
        .number(approval.time_us);
    encoded.0
}

fn mac(key: &[u8], message: &[u8]) -> Hmac<Sha256> {
    let mut mac = <Hmac<Sha256> as KeyInit>::new_from_slice(key)
        .unwrap_or_else(|_| unreachable!("HMAC accepts every key length"));
    mac.update(message);
    mac
}

/// The hex signature of `message` under `key`; none (empty) under an empty key.
fn signature(key: &[u8], message: &[u8]) -> String {
    if key.is_empty() {
        return String::new();
    }
    hex(&mac(key, message).finalize().into_bytes())
}

fn check(key: &[u8], message: &[u8], signature: &str) -> bool {
    let Some(signature) = unhex(signature) else {
        return false;
    };
    !key.is_empty() && mac(key, message).verify_slice(&signature).is_ok()
}

/// `event` with the planner's signature under `key` (unsigned under an empty key).
pub fn sign_event(key: &[u8], mut event: RemediationEvent) -> RemediationEvent {
    event.signature = signature(key, &event_message(&event));
    event
}

/// Whether `event` carries the signature `key` gives it.
pub fn verify_event(key: &[u8], event: &RemediationEvent) -> bool {
    check(key, &event_message(event), &event.signature)
}

/// `approval` with its signature under `key`; its `action_digest` must be set first.
pub fn sign_approval(key: &[u8], mut approval: Approval) -> Approval {
    approval.signature = signature(key, &approval_message(&approval));
    approval
}

/// Whether `approval` carries the signature `key` gives it.
pub fn verify_approval(key: &[u8], approval: &Approval) -> bool {
    check(key, &approval_message(approval), &approval.signature)
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use opsloop_schemas::ops::SeverityBand;

    use super::*;

    fn event() -> RemediationEvent {
        RemediationEvent::new(
            "a1",
            "i1",
            "pg.terminate_role_sessions",
            "db-1",
            BTreeMap::from([("role".to_owned(), ParamValue::String("alice".into()))]),
        )
    }

    #[test]
    fn an_event_signature_covers_every_field_that_matters() {
        let signed = sign_event(b"planner", event());
        assert_eq!(signed.signature.len(), 64);
        assert!(verify_event(b"planner", &signed));
        assert!(!verify_event(b"other", &signed));
        assert!(!verify_event(b"", &signed), "no key accepts nothing");
        assert!(
            sign_event(b"", event()).signature.is_empty(),
            "no key signs nothing"
        );
        assert!(!verify_event(b"planner", &event()), "unsigned");
        let altered: [fn(&mut RemediationEvent); 7] = [
            |e| e.approval_required = true,
            |e| e.band = SeverityBand::Emergency,
            |e| e.target = "db-2".into(),
            |e| e.attempt = 2,
            |e| {
                e.params
                    .insert("role".into(), ParamValue::String("bob".into()));
            },
            |e| e.rationale.push('!'),
            |e| e.deadline_us = Some(1),
        ];
        for alter in altered {
            let mut changed = signed.clone();
            alter(&mut changed);
            assert!(!verify_event(b"planner", &changed), "{changed:?}");
        }
    }

    #[test]
    fn the_digest_is_the_content_and_only_the_content() {
        let a = event();
        let mut b = event();
        b.rationale = "other words".into();
        b.approval_required = true;
        assert_eq!(digest(&a), digest(&b), "same action, other wrapping");
        let mut c = event();
        c.params
            .insert("role".into(), ParamValue::String("bob".into()));
        assert_ne!(digest(&a), digest(&c));
        let mut d = event();
        d.params.insert("role".into(), ParamValue::Long(1));
        assert_ne!(digest(&a), digest(&d), "types count");
    }

    #[test]
    fn an_approval_binds_to_the_digest() {
        let approval = Approval {
            action_id: "a1".into(),
            action_digest: digest(&event()),
            decision: Decision::Approve,
            approver: "alice".into(),
            reason: String::new(),
            time_us: 42,
            signature: String::new(),
        };
        let signed = sign_approval(b"approvers", approval);
        assert!(verify_approval(b"approvers", &signed));
        for alter in [
            |a: &mut Approval| a.action_digest = "0".repeat(64),
            |a: &mut Approval| a.decision = Decision::Reject,
            |a: &mut Approval| a.action_id = "a2".into(),
            |a: &mut Approval| a.approver = "mallory".into(),
        ] {
            let mut changed = signed.clone();
            alter(&mut changed);
            assert!(!verify_approval(b"approvers", &changed));
        }
        let mut forged = signed.clone();
        forged.signature = "00".repeat(32);
        assert!(!verify_approval(b"approvers", &forged));
        forged.signature = "not hex".into();
        assert!(!verify_approval(b"approvers", &forged));
    }
}
