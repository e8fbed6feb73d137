//! What a run measured: request outcomes, waits, cost and its lower bound.
//! Memory is fixed or proportional to servers alive: waits go into a histogram, not a list
//! (waits beyond 20 minutes, possible only with a queue timeout above that, into a map).

use serde::Serialize;

/// Wait histogram: a counter per millisecond up to `EXACT_MS` (nearly every wait), then
/// a sorted map of the rarer longer waits. Nearest-rank percentiles are exact throughout.
pub struct WaitHistogram {
    exact: Vec<u32>,
    long: std::collections::BTreeMap<u64, u64>,
    count: u64,
    sum_ms: u128,
    max_ms: u64,
}

const EXACT_MS: u64 = 20 * 60 * 1000;

impl Default for WaitHistogram {
    fn default() -> Self {
        WaitHistogram {
            exact: vec![0; EXACT_MS as usize],
            long: std::collections::BTreeMap::new(),
            count: 0,
            sum_ms: 0,
            max_ms: 0,
        }
    }
}

impl WaitHistogram {
    pub fn add(&mut self, ms: u64) {
        if ms < EXACT_MS {
            self.exact[ms as usize] += 1;
        } else {
            *self.long.entry(ms).or_default() += 1;
        }
        self.count += 1;
        self.sum_ms += u128::from(ms);
        self.max_ms = self.max_ms.max(ms);
    }

    pub fn count(&self) -> u64 {
        self.count
    }

    /// Nearest rank: the smallest value with at least `p` % of the samples at or below it.
    pub fn percentile_ms(&self, p: f64) -> u64 {
        if self.count == 0 {
            return 0;
        }
        let rank = ((p / 100.0) * self.count as f64).ceil().max(1.0) as u64;
        let mut seen = 0u64;
        for (ms, &n) in self.exact.iter().enumerate() {
            seen += u64::from(n);
            if seen >= rank {
                return ms as u64;
            }
        }
        for (&ms, &n) in &self.long {
            seen += n;
            if seen >= rank {
                return ms;
            }
        }
        self.max_ms
    }

    pub fn mean_ms(&self) -> f64 {
        if self.count == 0 {
            0.0
        } else {
            self.sum_ms as f64 / self.count as f64
        }
    }

    pub fn max_ms(&self) -> u64 {
        self.max_ms
    }
}

#[derive(Clone, Debug, Default, Serialize, PartialEq)]
pub struct WaitStats {
    pub p50: f64,
    pub p95: f64,
    pub p99: f64,
    pub max: f64,
    pub mean: f64,
}

#[derive(Clone, Debug, Default, Serialize, PartialEq)]
pub struct CostStats {
    pub total: f64,
    pub dedicated: f64,
    pub cloud: f64,
}

/// `summary.json`. Field order is the file's order; floats are rounded so that the
/// file reads well and stays byte-identical.
#[derive(Clone, Debug, Default, Serialize, PartialEq)]
pub struct Summary {
    pub scenario: String,
    pub policy: String,
    pub seed: u64,
    pub duration_s: f64,
    pub requests: u64,
    pub started: u64,
    pub timed_out: u64,
    pub cancelled: u64,
    pub queued_at_end: u64,
    /// Starts no node type could ever hold (failed at once) or refused by the queue's
    /// limits; not part of `requests`.
    pub rejected: u64,
    pub duplicate_starts: u64,
    pub ignored_rows: u64,
    pub wait_s: WaitStats,
    pub joins_over_30s: f64,
    pub cost_eur: CostStats,
    pub lower_bound_eur: f64,
    pub cost_ratio: Option<f64>,
    pub scale_ups: u64,
    pub scale_downs: u64,
    pub peak_cloud_nodes: u32,
    /// Node buys plus sales per simulated hour.
    pub churn_per_hour: f64,
    /// Scale-ups the engine refused for `scaling.budget_eur_per_hour`.
    pub budget_refusals: u64,
    /// Scale-ups the engine refused within `scaling.rebuy_cooldown_s` after a sale.
    pub rebuy_refusals: u64,
    /// VMs bought back within `scaling.rebuy_cooldown_s` of a sale (one per node sold).
    pub flaps: u64,
    /// Scale-downs and consolidations vetoed by another policy's `keep`.
    pub scale_down_vetoes: u64,
    pub idle_stops: u64,
    pub crashes: u64,
    pub invariant_violations: u64,
    pub events: u64,
}

pub fn round(v: f64, digits: i32) -> f64 {
    let m = 10f64.powi(digits);
    let r = (v * m).round() / m;
    if r == 0.0 {
        0.0
    } else {
        r
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nearest_rank_percentiles() {
        let mut h = WaitHistogram::default();
        for ms in [100, 200, 300, 400, 500, 600, 700, 800, 900, 1000] {
            h.add(ms);
        }
        assert_eq!(h.percentile_ms(50.0), 500);
        assert_eq!(h.percentile_ms(95.0), 1000);
        assert_eq!(h.percentile_ms(10.0), 100);
        assert_eq!(h.mean_ms(), 550.0);
        h.add(2 * 3_600_000 + 1);
        h.add(100 * 3_600_000);
        assert_eq!(h.max_ms(), 100 * 3_600_000);
        assert_eq!(h.percentile_ms(100.0), 100 * 3_600_000);
        assert_eq!(h.percentile_ms(99.0), 100 * 3_600_000);
        assert_eq!(h.percentile_ms(90.0), 2 * 3_600_000 + 1, "exact beyond 20 min too");
        // Two waits, one long: p99 is the long one to the millisecond (nearest rank).
        let mut h = WaitHistogram::default();
        h.add(0);
        h.add(1_304_999);
        assert_eq!(h.percentile_ms(99.0), 1_304_999);
        assert_eq!(h.percentile_ms(50.0), 0);
    }

    #[test]
    fn empty_histogram_is_zero() {
        let h = WaitHistogram::default();
        assert_eq!(h.percentile_ms(99.0), 0);
        assert_eq!(h.mean_ms(), 0.0);
    }
}
