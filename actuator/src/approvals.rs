//! Signed decisions on gated actions (`ops.approvals`): the signature is the hex
//! HMAC-SHA256, under the key approvers and actuators share, of
//! `action_id \n decision \n approver \n time_us`. An approval whose signature does not check
//! out is refused, so anyone who can write to the topic but lacks the key cannot approve.

use hmac::{Hmac, KeyInit, Mac};
use opsloop_schemas::ops::{Approval, Decision};
use sha2::Sha256;

use crate::audit::hex;

fn message(approval: &Approval) -> String {
    let decision = match approval.decision {
        Decision::Approve => "APPROVE",
        Decision::Reject => "REJECT",
    };
    format!(
        "{}\n{decision}\n{}\n{}",
        approval.action_id, approval.approver, approval.time_us
    )
}

fn mac(key: &[u8], approval: &Approval) -> Hmac<Sha256> {
    // HMAC takes keys of any length.
    let mut mac = <Hmac<Sha256> as KeyInit>::new_from_slice(key)
        .unwrap_or_else(|_| unreachable!("HMAC accepts every key length"));
    mac.update(message(approval).as_bytes());
    mac
}

/// `approval` with its signature set.
pub fn sign(key: &[u8], mut approval: Approval) -> Approval {
    approval.signature = hex(&mac(key, &approval).finalize().into_bytes());
    approval
}

/// Whether `approval`'s signature is the one `key` gives (compared in constant time).
pub fn verify(key: &[u8], approval: &Approval) -> bool {
    let Some(signature) = unhex(&approval.signature) else {
        return false;
    };
    !key.is_empty() && mac(key, approval).verify_slice(&signature).is_ok()
}

fn unhex(text: &str) -> Option<Vec<u8>> {
    if !text.len().is_multiple_of(2) {
        return None;
    }
    (0..text.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(text.get(i..i + 2)?, 16).ok())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn approval(decision: Decision) -> Approval {
        Approval {
            action_id: "a1".to_owned(),
            decision,
            approver: "alice".to_owned(),
            reason: String::new(),
            time_us: 42,
            signature: String::new(),
        }
    }

    #[test]
    fn only_the_key_holder_can_approve() {
        let signed = sign(b"secret", approval(Decision::Approve));
        assert_eq!(signed.signature.len(), 64);
        assert!(verify(b"secret", &signed));
        assert!(!verify(b"other key", &signed), "another key");
        assert!(!verify(b"", &signed), "no key configured accepts nothing");
        let mut tampered = signed.clone();
        tampered.action_id = "a2".to_owned();
        assert!(!verify(b"secret", &tampered), "signature of another action");
        let mut flipped = signed.clone();
        flipped.decision = Decision::Reject;
        assert!(!verify(b"secret", &flipped));
        let mut forged = approval(Decision::Approve);
        forged.signature = "00".repeat(32);
        assert!(!verify(b"secret", &forged));
        forged.signature = "not hex".to_owned();
        assert!(!verify(b"secret", &forged));
    }
}
