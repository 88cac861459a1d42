//! TF1's next_batch order on a small synthetic set.
use nndl::data::Batcher;
use std::collections::HashSet;

#[test]
fn epoch_boundary_is_rest_of_old_order_then_fresh_shuffle() {
    let mut b = Batcher::new(10, 3);
    let first: Vec<Vec<i64>> = (0..2).map(|_| b.next_batch(4)).collect();
    assert_eq!(b.epochs_completed(), 0);
    let crossing = b.next_batch(4);
    assert_eq!(b.epochs_completed(), 1);
    // The first 8 are distinct and the crossing batch starts with the 2 the epoch had left.
    let seen: HashSet<i64> = first.iter().flatten().copied().collect();
    assert_eq!(seen.len(), 8);
    let rest: HashSet<i64> = (0..10).filter(|i| !seen.contains(i)).collect();
    assert_eq!(crossing[..2].iter().copied().collect::<HashSet<_>>(), rest);
    // Then the new epoch: its first 2 plus the next 8 cover all 10 exactly once.
    let mut epoch2: Vec<i64> = crossing[2..].to_vec();
    epoch2.extend(b.next_batch(4));
    epoch2.extend(b.next_batch(4));
    let mut sorted = epoch2.clone();
    sorted.sort();
    assert_eq!(sorted, (0..10).collect::<Vec<_>>());
    assert_eq!(b.epochs_completed(), 1);
}

#[test]
fn shuffled_before_the_first_batch_and_seeded() {
    let order = |seed| {
        let mut b = Batcher::new(100, seed);
        (0..7).flat_map(|_| b.next_batch(30)).collect::<Vec<i64>>()
    };
    assert_eq!(order(1), order(1));
    assert_ne!(order(1), order(2));
    assert_ne!(order(1)[..30], (0..30).collect::<Vec<i64>>()[..]);
}

#[test]
fn exact_multiple_ends_epoch_without_mixing() {
    // 10 examples, batch 5: the second batch ends the epoch exactly; the third is all new epoch.
    let mut b = Batcher::new(10, 9);
    let mut e1: Vec<i64> = b.next_batch(5);
    e1.extend(b.next_batch(5));
    e1.sort();
    assert_eq!(e1, (0..10).collect::<Vec<_>>());
    assert_eq!(b.epochs_completed(), 0);
    let mut e2 = b.next_batch(5);
    assert_eq!(b.epochs_completed(), 1);
    e2.extend(b.next_batch(5));
    e2.sort();
    assert_eq!(e2, (0..10).collect::<Vec<_>>());
}

#[test]
fn whole_set_batches() {
    let mut b = Batcher::new(6, 0);
    for _ in 0..3 {
        let mut batch = b.next_batch(6);
        batch.sort();
        assert_eq!(batch, (0..6).collect::<Vec<_>>());
    }
}
