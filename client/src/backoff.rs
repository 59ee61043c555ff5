//! Exponential backoff with jitter between the attempts of one call.
//!
//! While a cluster elects a leader every client gets UNAVAILABLE at the same moment; without
//! jitter they would all come back at the same moment too. Each pause is drawn uniformly from
//! the upper half of the current step (so it never collapses to zero), and the step doubles
//! up to the configured maximum.

use std::time::Duration;

use rand::Rng;

/// The pauses of one call; each call starts its own.
#[derive(Debug)]
pub(crate) struct Backoff {
    step: Duration,
    max: Duration,
}

impl Backoff {
    pub(crate) fn new(initial: Duration, max: Duration) -> Self {
        Backoff {
            step: initial.min(max),
            max,
        }
    }

    /// The next pause: in `[step / 2, step]`, then the step doubles (capped at `max`).
    pub(crate) fn next_pause(&mut self) -> Duration {
        let step = self.step;
        self.step = step.saturating_mul(2).min(self.max);
        let hi = u64::try_from(step.as_nanos()).unwrap_or(u64::MAX);
        Duration::from_nanos(rand::rng().random_range(hi / 2..=hi))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pauses_grow_to_the_cap_with_jitter() {
        let ms = Duration::from_millis;
        let mut b = Backoff::new(ms(10), ms(500));
        let mut steps = Vec::new();
        for _ in 0..10 {
            steps.push(b.next_pause());
        }
        let caps = [10, 20, 40, 80, 160, 320, 500, 500, 500, 500];
        for (pause, cap) in steps.iter().zip(caps) {
            assert!(
                *pause <= ms(cap) && *pause >= ms(cap) / 2,
                "{pause:?} vs {cap} ms"
            );
        }
    }
}
