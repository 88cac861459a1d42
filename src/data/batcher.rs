//! TF1's `DataSet.next_batch`, index for index: shuffle before the first batch; at an epoch
//! boundary the batch is the rest of the old order followed by the start of a fresh shuffle
//! (a shuffle of the current order, as TF permutes its already-permuted arrays).
use crate::rng::Rng;
use serde::{Deserialize, Serialize};

#[derive(Clone, Debug, PartialEq)]
pub struct Batcher {
    order: Vec<u32>,
    index_in_epoch: usize,
    epochs_completed: usize,
    rng: Rng,
}

impl Batcher {
    pub fn new(num_examples: usize, seed: u64) -> Self {
        assert!(num_examples > 0 && num_examples <= u32::MAX as usize);
        Batcher { order: (0..num_examples as u32).collect(), index_in_epoch: 0, epochs_completed: 0, rng: Rng::new(seed) }
    }

    /// Everything but the order (which checkpoints keep as a tensor).
    pub fn position(&self) -> BatcherPosition {
        BatcherPosition { index_in_epoch: self.index_in_epoch, epochs_completed: self.epochs_completed, rng_state: self.rng.state() }
    }

    pub fn order(&self) -> &[u32] {
        &self.order
    }

    /// Rebuilds a batcher from `order()` and `position()`; None when they do not fit together.
    pub fn restore(order: Vec<u32>, at: &BatcherPosition) -> Option<Batcher> {
        let n = order.len();
        let mut seen = vec![false; n];
        let permutation = order.iter().all(|&i| (i as usize) < n && !std::mem::replace(&mut seen[i as usize], true));
        (n > 0 && permutation && at.index_in_epoch <= n).then(|| Batcher {
            order,
            index_in_epoch: at.index_in_epoch,
            epochs_completed: at.epochs_completed,
            rng: Rng::from_state(at.rng_state),
        })
    }

    pub fn epochs_completed(&self) -> usize {
        self.epochs_completed
    }

    /// Indices into the training set of the next batch; `batch_size` must not exceed the set.
    pub fn next_batch(&mut self, batch_size: usize) -> Vec<i64> {
        let n = self.order.len();
        assert!(batch_size >= 1 && batch_size <= n, "batch size {batch_size} for {n} examples");
        let start = self.index_in_epoch;
        if self.epochs_completed == 0 && start == 0 {
            self.rng.shuffle(&mut self.order);
        }
        if start + batch_size > n {
            self.epochs_completed += 1;
            let mut batch: Vec<i64> = self.order[start..].iter().map(|&i| i as i64).collect();
            self.rng.shuffle(&mut self.order);
            self.index_in_epoch = batch_size - batch.len();
            batch.extend(self.order[..self.index_in_epoch].iter().map(|&i| i as i64));
            batch
        } else {
            self.index_in_epoch += batch_size;
            self.order[start..self.index_in_epoch].iter().map(|&i| i as i64).collect()
        }
    }
}

/// Where a batcher stands, apart from its order.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct BatcherPosition {
    pub index_in_epoch: usize,
    pub epochs_completed: usize,
    pub rng_state: u64,
}
