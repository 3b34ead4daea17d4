//! The dead-letter half of the queue contract, run by [`crate::conformance_tests!`] with the
//! rest of the checks.

use std::time::Duration;

use flowgate_core::ports::DeadLetter;

use crate::conformance::{Subject, envelope, receive_all};
use crate::fixtures::tenant;

const HOLD: Duration = Duration::from_secs(30);

/// Dead-letters `n` fresh messages with reasons `reason 0..n`; answers their bodies.
async fn dead_letters(s: &Subject, n: u32) -> (String, Vec<String>) {
    let t = tenant();
    let mut bodies = Vec::new();
    for i in 0..n {
        let e = envelope(&t, i);
        s.queue.send(&e).await.unwrap();
        let got = receive_all(s.queue.as_ref(), 1, Duration::from_secs(5)).await;
        assert_eq!(got.len(), 1);
        s.queue
            .dead_letter(&got[0], &format!("reason {i}"))
            .await
            .unwrap();
        bodies.push(e.body);
    }
    (t, bodies)
}

fn sorted_bodies(letters: &[DeadLetter]) -> Vec<String> {
    let mut bodies: Vec<String> = letters.iter().map(|l| l.body.clone()).collect();
    bodies.sort();
    bodies
}

/// A peek shows every letter with its reason, attributes and receive count, and changes
/// nothing. A claim hides a letter from other claims until it is released; a deleted letter
/// is gone.
pub async fn dead_letters_peek_claim_release_delete(s: Subject) {
    let (t, mut bodies) = dead_letters(&s, 3).await;
    bodies.sort();
    let peeked = s.queue.dlq_peek(100).await.unwrap();
    assert_eq!(sorted_bodies(&peeked), bodies);
    for l in &peeked {
        assert_eq!(l.tenant.as_deref(), Some(t.as_str()));
        assert!(l.request_id.is_some());
        assert_eq!(l.receive_count, 1);
        let reason = l.reason.as_deref().unwrap_or_default();
        assert!(reason.starts_with("reason "), "{reason}");
        assert!((chrono::Utc::now() - l.dead_lettered_at).num_seconds() < 60);
    }
    let again = s.queue.dlq_peek(100).await.unwrap();
    assert_eq!(sorted_bodies(&again), bodies, "a peek changes nothing");
    assert_eq!(s.queue.dlq_peek(2).await.unwrap().len(), 2, "max is kept");

    let mut claimed = Vec::new();
    for _ in 0..5 {
        claimed.extend(s.queue.dlq_claim(10, HOLD).await.unwrap());
        if claimed.len() == 3 {
            break;
        }
    }
    assert_eq!(sorted_bodies(&claimed), bodies);
    assert!(claimed.iter().all(|l| !l.receipt.is_empty()));
    assert!(
        s.queue.dlq_claim(10, HOLD).await.unwrap().is_empty(),
        "claimed letters are hidden from other claims"
    );

    s.queue.dlq_release(&claimed[0]).await.unwrap();
    let reclaimed = s.queue.dlq_claim(10, HOLD).await.unwrap();
    assert_eq!(sorted_bodies(&reclaimed), vec![claimed[0].body.clone()]);
    s.queue.dlq_delete(&reclaimed[0]).await.unwrap();
    for l in &claimed[1..] {
        s.queue.dlq_delete(l).await.unwrap();
    }
    assert!(s.queue.dlq_peek(100).await.unwrap().is_empty());
    assert!(s.queue.dlq_claim(10, HOLD).await.unwrap().is_empty());
}

/// A restored letter comes back with its body, attributes, reason, receive count and time.
pub async fn dead_letters_restore_as_they_were(s: Subject) {
    let _ = dead_letters(&s, 1).await;
    let claimed = s.queue.dlq_claim(10, HOLD).await.unwrap();
    assert_eq!(claimed.len(), 1);
    let original = claimed[0].clone();
    s.queue.dlq_delete(&original).await.unwrap();
    assert!(s.queue.dlq_peek(10).await.unwrap().is_empty());

    s.queue.dlq_restore(&original).await.unwrap();
    let back = s.queue.dlq_peek(10).await.unwrap();
    assert_eq!(back.len(), 1);
    let b = &back[0];
    assert_eq!(
        (
            &b.body,
            &b.tenant,
            &b.request_id,
            &b.reason,
            b.receive_count
        ),
        (
            &original.body,
            &original.tenant,
            &original.request_id,
            &original.reason,
            original.receive_count
        )
    );
    let drift = (b.dead_lettered_at - original.dead_lettered_at).num_milliseconds();
    assert!(drift.abs() <= 1, "dead-lettered time kept: {drift} ms");
    let claimed = s.queue.dlq_claim(10, HOLD).await.unwrap();
    assert_eq!(claimed.len(), 1, "a restored letter can be claimed");
}
