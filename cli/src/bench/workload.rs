//! What `islab bench` sends: the operation kinds it records apart and the workload's shape
//! (keys, values, distribution), from which each worker draws its next operation.

use anyhow::Result;
use bytes::Bytes;
use islab_client::ReadConsistency;
use rand::Rng;
use rand::rngs::SmallRng;
use rand_distr::{Distribution, Zipf};

use super::target::Target;
use crate::cli::BenchWorkload;

/// The operation kinds a run records separately.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Kind {
    Put,
    Get,
    Scan,
}

pub(super) const KINDS: [Kind; 3] = [Kind::Put, Kind::Get, Kind::Scan];

impl Kind {
    pub(super) fn index(self) -> usize {
        self as usize
    }

    pub(super) fn name(self) -> &'static str {
        match self {
            Kind::Put => "put",
            Kind::Get => "get",
            Kind::Scan => "scan",
        }
    }
}

/// The workload's shape, shared by every worker.
pub(super) struct Workload {
    pub(super) kind: BenchWorkload,
    pub(super) key_size: usize,
    pub(super) value: Bytes,
    pub(super) keyspace: u64,
    pub(super) zipf: Option<Zipf<f64>>,
    pub(super) consistency: ReadConsistency,
    pub(super) batch: usize,
    pub(super) read_ratio: f64,
    pub(super) scan_limit: u32,
}

impl Workload {
    pub(super) fn key(&self, index: u64) -> Bytes {
        let digits = self.key_size - 1;
        Bytes::from(format!("b{index:0>digits$}"))
    }

    pub(super) fn pick(&self, rng: &mut SmallRng) -> u64 {
        match &self.zipf {
            // Rank 1 is the hottest; spread the ranks over the keyspace so hot keys are not
            // neighbours.
            Some(z) => {
                let rank = z.sample(rng) as u64 - 1;
                rank.wrapping_mul(0x9e37_79b9_7f4a_7c15) % self.keyspace
            }
            None => rng.random_range(0..self.keyspace),
        }
    }

    /// `batch` different keys (a batch naming a key twice is refused by etcd, and would
    /// measure less than it says).
    pub(super) fn distinct_keys(&self, rng: &mut SmallRng) -> Vec<Bytes> {
        let mut picked = std::collections::HashSet::with_capacity(self.batch);
        while picked.len() < self.batch {
            picked.insert(self.pick(rng));
        }
        picked.into_iter().map(|i| self.key(i)).collect()
    }

    /// Runs one operation; returns its kind and how many keys it touched.
    pub(super) async fn one(
        &self,
        target: &Target,
        rng: &mut SmallRng,
    ) -> (Kind, Result<u64, String>) {
        let kind = match self.kind {
            BenchWorkload::Put => Kind::Put,
            BenchWorkload::Get => Kind::Get,
            BenchWorkload::Scan => Kind::Scan,
            BenchWorkload::Mixed => {
                if rng.random_bool(self.read_ratio) {
                    Kind::Get
                } else {
                    Kind::Put
                }
            }
        };
        let result = match kind {
            Kind::Put if self.batch > 1 => {
                let items = self
                    .distinct_keys(rng)
                    .into_iter()
                    .map(|k| (k, self.value.clone()))
                    .collect();
                target.put_all(items).await
            }
            Kind::Put => {
                target
                    .put(self.key(self.pick(rng)), self.value.clone())
                    .await
            }
            Kind::Get if self.batch > 1 => {
                target
                    .get_all(self.distinct_keys(rng), self.consistency)
                    .await
            }
            Kind::Get => target.get(self.key(self.pick(rng)), self.consistency).await,
            Kind::Scan => {
                target
                    .scan(self.key(self.pick(rng)), self.scan_limit, self.consistency)
                    .await
            }
        };
        (kind, result)
    }
}

#[cfg(test)]
mod tests {
    use rand::SeedableRng;

    use super::*;

    fn workload(distribution: Option<Zipf<f64>>) -> Workload {
        Workload {
            kind: BenchWorkload::Mixed,
            key_size: 16,
            value: Bytes::from_static(b"v"),
            keyspace: 1000,
            zipf: distribution,
            consistency: ReadConsistency::Linearizable,
            batch: 1,
            read_ratio: 0.5,
            scan_limit: 10,
        }
    }

    #[test]
    fn a_batch_names_each_key_once() {
        let mut w = workload(Some(Zipf::new(1000.0, 0.99).unwrap()));
        w.batch = 200;
        let mut rng = SmallRng::seed_from_u64(7);
        for _ in 0..20 {
            let keys = w.distinct_keys(&mut rng);
            assert_eq!(keys.len(), 200);
            let set: std::collections::HashSet<_> = keys.iter().collect();
            assert_eq!(set.len(), 200, "no key twice in one batch");
        }
    }

    #[test]
    fn keys_have_the_asked_size_and_stay_in_the_keyspace() {
        let w = workload(Some(Zipf::new(1000.0, 0.99).unwrap()));
        assert_eq!(w.key(7).len(), 16);
        assert_eq!(w.key(999).len(), 16);
        let mut rng = SmallRng::seed_from_u64(1);
        let picks: Vec<u64> = (0..10_000).map(|_| w.pick(&mut rng)).collect();
        assert!(picks.iter().all(|p| *p < 1000));
        // Zipf: the hottest key is picked far more often than a uniform 1/1000.
        let mut counts = std::collections::HashMap::new();
        for p in &picks {
            *counts.entry(*p).or_insert(0) += 1;
        }
        assert!(*counts.values().max().unwrap() > 500, "{counts:?}");
        let u = workload(None);
        assert!((0..1000).all(|_| u.pick(&mut rng) < 1000));
    }
}
