//! Latency statistics: an HDR histogram of lateness samples, its percentiles and a log-scale
//! binning for charts.
//!
//! **Mechanism.** Every sample goes into an [`hdrhistogram::Histogram`] with three significant
//! digits (a recorded value is exact to 0.1%) and into an exact min/max. Percentiles come from
//! the histogram; min and max are the exact samples. [`LatencyHist::bins`] regroups the
//! histogram into half-octave bins (bounds `2^(k/2)` µs) for log-scale charts.
//!
//! **Invariant.** Nothing is dropped: the histogram's total count, the sum of its bins and the
//! number of samples recorded are the same number (a sample beyond the histogram's range is
//! clamped to its top, never lost).

use hdrhistogram::Histogram;
use serde::Serialize;

/// Largest lateness the histogram resolves (10 s); larger samples are recorded as 10 s.
const HIGHEST_NS: u64 = 10_000_000_000;

/// A latency distribution in nanoseconds.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
pub struct Latency {
    pub min: u64,
    pub p50: u64,
    pub p99: u64,
    pub p999: u64,
    pub max: u64,
    /// Samples the figures come from (all zero when there are none).
    pub count: u64,
}

/// One bin of a log-scale histogram: samples with `lo_ns <= lateness < hi_ns`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub struct Bin {
    pub lo_ns: u64,
    pub hi_ns: u64,
    pub count: u64,
}

/// Lateness samples of one probe (or several pooled).
#[derive(Clone, Debug)]
pub struct LatencyHist {
    hist: Histogram<u64>,
    min: u64,
    max: u64,
}

impl Default for LatencyHist {
    fn default() -> Self {
        Self::new()
    }
}

impl LatencyHist {
    /// An empty histogram (it allocates its counts here, never when recording).
    pub fn new() -> LatencyHist {
        let hist = Histogram::new_with_bounds(1, HIGHEST_NS, 3).expect("valid histogram bounds");
        LatencyHist { hist, min: u64::MAX, max: 0 }
    }

    /// Records one sample.
    pub fn record(&mut self, ns: u64) {
        self.hist.saturating_record(ns.min(HIGHEST_NS));
        self.min = self.min.min(ns);
        self.max = self.max.max(ns);
    }

    /// Adds every sample of `other`.
    pub fn merge(&mut self, other: &LatencyHist) {
        self.hist.add(&other.hist).expect("histograms of one shape");
        self.min = self.min.min(other.min);
        self.max = self.max.max(other.max);
    }

    /// Samples recorded.
    pub fn count(&self) -> u64 {
        self.hist.len()
    }

    /// min, p50, p99, p99.9, max.
    pub fn summary(&self) -> Latency {
        if self.count() == 0 {
            return Latency::default();
        }
        let q = |q: f64| self.hist.value_at_quantile(q).clamp(self.min, self.max);
        Latency { min: self.min, p50: q(0.5), p99: q(0.99), p999: q(0.999), max: self.max, count: self.count() }
    }

    /// Half-octave bins from below 1 µs up to the bin holding the largest sample: the first
    /// bin is `[0, 1 µs)`, then `[2^(k/2) µs, 2^((k+1)/2) µs)`. Their counts add up to
    /// [`count`](Self::count).
    pub fn bins(&self) -> Vec<Bin> {
        let mut edges = vec![0u64, 1000];
        let top = self.hist.max().max(1000);
        while *edges.last().unwrap() <= top {
            let k = edges.len() - 1; // edges[k] = 2^((k-1)/2) µs
            edges.push((1000.0 * 2f64.powf(k as f64 / 2.0)).round() as u64);
        }
        let mut bins: Vec<Bin> = edges.windows(2).map(|w| Bin { lo_ns: w[0], hi_ns: w[1], count: 0 }).collect();
        for v in self.hist.iter_recorded() {
            let value = self.hist.lowest_equivalent(v.value_iterated_to());
            let i = bins.partition_point(|b| b.hi_ns <= value).min(bins.len() - 1);
            bins[i].count += v.count_at_value();
        }
        bins
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_on_known_data() {
        let mut h = LatencyHist::new();
        for i in 0..1000u64 {
            h.record((i * 7919) % 1000 + 1); // 1..=1000 scrambled
        }
        let l = h.summary();
        assert_eq!((l.min, l.p50, l.p99, l.p999, l.max, l.count), (1, 500, 990, 999, 1000, 1000));
        assert_eq!(LatencyHist::new().summary(), Latency::default());
    }

    #[test]
    fn bins_add_up_to_the_samples() {
        let mut h = LatencyHist::new();
        let samples = [0u64, 5, 999, 1000, 1414, 1415, 50_000, 3_000_000, 20_000_000_000];
        for &s in &samples {
            h.record(s);
        }
        let bins = h.bins();
        assert_eq!(bins.iter().map(|b| b.count).sum::<u64>(), samples.len() as u64);
        assert_eq!(bins[0], Bin { lo_ns: 0, hi_ns: 1000, count: 3 });
        assert_eq!(bins[1].lo_ns, 1000);
        assert!(bins.windows(2).all(|w| w[0].hi_ns == w[1].lo_ns));
        assert_eq!(h.summary().max, 20_000_000_000, "max is exact even beyond the histogram's range");
    }

    #[test]
    fn merge_pools_samples() {
        let (mut a, mut b) = (LatencyHist::new(), LatencyHist::new());
        a.record(10);
        b.record(30);
        b.record(20);
        a.merge(&b);
        let l = a.summary();
        assert_eq!((l.min, l.max, l.count), (10, 30, 3));
    }
}
