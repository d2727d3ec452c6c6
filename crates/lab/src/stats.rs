//! Latency statistics: an HDR histogram of lateness samples, its percentiles and a log-scale
//! binning for charts.
//!
//! **Mechanism.** Every sample goes into an [`hdrhistogram::Histogram`] with three significant
//! digits (a recorded value is exact to 0.1%) and into an exact min/max; a sample during whose
//! period the host did not preempt the subject's thread also goes into a second, *undisturbed*
//! pair. Percentiles come from the histograms; min and max are the exact samples. [`LatencyHist::bins`] regroups the
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

/// One distribution: the histogram and the exact extremes.
#[derive(Clone, Debug)]
struct Dist {
    hist: Histogram<u64>,
    min: u64,
    max: u64,
}

impl Dist {
    fn new() -> Dist {
        let hist = Histogram::new_with_bounds(1, HIGHEST_NS, 3).expect("valid histogram bounds");
        Dist { hist, min: u64::MAX, max: 0 }
    }

    fn record(&mut self, ns: u64) {
        self.hist.saturating_record(ns.min(HIGHEST_NS));
        self.min = self.min.min(ns);
        self.max = self.max.max(ns);
    }

    fn merge(&mut self, other: &Dist) {
        self.hist.add(&other.hist).expect("histograms of one shape");
        self.min = self.min.min(other.min);
        self.max = self.max.max(other.max);
    }

    fn summary(&self) -> Latency {
        if self.hist.is_empty() {
            return Latency::default();
        }
        let q = |q: f64| self.hist.value_at_quantile(q).clamp(self.min, self.max);
        Latency { min: self.min, p50: q(0.5), p99: q(0.99), p999: q(0.999), max: self.max, count: self.hist.len() }
    }
}

/// Lateness samples of one probe (or several pooled): every sample, and apart from them the
/// *undisturbed* ones, during whose period the host did not take the CPU away from the
/// thread the subject runs on (see [`LatencyHist::record_sample`]).
#[derive(Clone, Debug)]
pub struct LatencyHist {
    all: Dist,
    undisturbed: Dist,
}

impl Default for LatencyHist {
    fn default() -> Self {
        Self::new()
    }
}

impl LatencyHist {
    /// An empty histogram (it allocates its counts here, never when recording).
    pub fn new() -> LatencyHist {
        LatencyHist { all: Dist::new(), undisturbed: Dist::new() }
    }

    /// Records one undisturbed sample.
    pub fn record(&mut self, ns: u64) {
        self.record_sample(ns, false);
    }

    /// Records one sample; `host_disturbed` says the host preempted the subject's thread
    /// during the sample's period (its involuntary context switches went up), so the sample
    /// counts in [`summary`](Self::summary) but not in [`undisturbed`](Self::undisturbed).
    pub fn record_sample(&mut self, ns: u64, host_disturbed: bool) {
        self.all.record(ns);
        if !host_disturbed {
            self.undisturbed.record(ns);
        }
    }

    /// Adds every sample of `other`.
    pub fn merge(&mut self, other: &LatencyHist) {
        self.all.merge(&other.all);
        self.undisturbed.merge(&other.undisturbed);
    }

    /// Samples recorded.
    pub fn count(&self) -> u64 {
        self.all.hist.len()
    }

    /// Samples whose period the host disturbed.
    pub fn disturbed(&self) -> u64 {
        self.count() - self.undisturbed.hist.len()
    }

    /// min, p50, p99, p99.9, max of every sample.
    pub fn summary(&self) -> Latency {
        self.all.summary()
    }

    /// The lateness at each quantile of `qs` (0..=1; 0 is the exact min, 1 the exact max), of
    /// every sample; empty without samples.
    pub fn quantiles(&self, qs: &[f64]) -> Vec<u64> {
        let d = &self.all;
        if d.hist.is_empty() {
            return Vec::new();
        }
        qs.iter()
            .map(|&q| match q {
                q if q <= 0.0 => d.min,
                q if q >= 1.0 => d.max,
                q => d.hist.value_at_quantile(q).clamp(d.min, d.max),
            })
            .collect()
    }

    /// The same over the undisturbed samples only.
    pub fn undisturbed(&self) -> Latency {
        self.undisturbed.summary()
    }

    /// Half-octave bins from below 1 µs up to the bin holding the largest sample: the first
    /// bin is `[0, 1 µs)`, then `[2^(k/2) µs, 2^((k+1)/2) µs)`. Their counts add up to
    /// [`count`](Self::count).
    pub fn bins(&self) -> Vec<Bin> {
        let mut edges = vec![0u64, 1000];
        let top = self.all.hist.max().max(1000);
        while *edges.last().unwrap() <= top {
            let k = edges.len() - 1; // edges[k] = 2^((k-1)/2) µs
            edges.push((1000.0 * 2f64.powf(k as f64 / 2.0)).round() as u64);
        }
        let mut bins: Vec<Bin> = edges.windows(2).map(|w| Bin { lo_ns: w[0], hi_ns: w[1], count: 0 }).collect();
        for v in self.all.hist.iter_recorded() {
            let value = self.all.hist.lowest_equivalent(v.value_iterated_to());
            let i = bins.partition_point(|b| b.hi_ns <= value).min(bins.len() - 1);
            bins[i].count += v.count_at_value();
        }
        bins
    }
}

/// The distribution of `samples` (in ns), through the same histogram as every probe's.
pub(crate) fn percentiles(samples: &[u64]) -> Latency {
    let mut h = LatencyHist::new();
    samples.iter().for_each(|&s| h.record(s));
    h.summary()
}

/// The median of `v` (mean of the middle two for an even count; 0 for none).
pub fn median(v: &[f64]) -> f64 {
    if v.is_empty() {
        return 0.0;
    }
    let mut s = v.to_vec();
    s.sort_by(f64::total_cmp);
    let n = s.len();
    if n % 2 == 1 {
        s[n / 2]
    } else {
        (s[n / 2 - 1] + s[n / 2]) / 2.0
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
        assert_eq!(percentiles(&[30, 10, 20]), Latency { min: 10, p50: 20, p99: 30, p999: 30, max: 30, count: 3 });
        assert_eq!(percentiles(&[]), Latency::default());
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
    fn quantiles_span_min_to_max() {
        let mut h = LatencyHist::new();
        (1..=1000u64).for_each(|i| h.record(i));
        assert_eq!(h.quantiles(&[0.0, 0.5, 0.99, 1.0]), [1, 500, 990, 1000]);
        assert!(LatencyHist::new().quantiles(&[0.5]).is_empty());
    }

    #[test]
    fn merge_pools_samples() {
        let (mut a, mut b) = (LatencyHist::new(), LatencyHist::new());
        a.record(10);
        b.record(30);
        b.record(20);
        b.record_sample(5000, true);
        a.merge(&b);
        let l = a.summary();
        assert_eq!((l.min, l.max, l.count), (10, 5000, 4));
        let u = a.undisturbed();
        assert_eq!((u.min, u.max, u.count, a.disturbed()), (10, 30, 3, 1));
    }
}
