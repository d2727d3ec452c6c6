//! The answer of a comparison, judged against its own noise: per workload, which model gives
//! the lowest p99 and which the lowest cost, read against the host's floor.
//!
//! **Mechanism.** Each figure comes with its spread over rounds ([`Range`]: the pooled or
//! median figure, and the lowest and highest round). A model is called lowest only when its
//! whole range lies below every other model's range ([`lowest`]); otherwise the models whose
//! ranges reach down to the best one's are a tie within noise, named as such. A figure from one
//! round has no spread, so nothing is crowned on it. The floor (`floor` rows) and the peers are
//! references, never candidates.
//!
//! **Invariant.** A verdict never names a winner whose lead is inside the spread of the rounds,
//! and every line it prints fits in [`WIDTH`] columns.

use crate::row::Row;

/// The widest line a verdict prints.
pub const WIDTH: usize = 100;

/// A figure and its spread over rounds.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Range {
    /// The figure itself (pooled samples' quantile, or the median round).
    pub value: f64,
    pub lo: f64,
    pub hi: f64,
    /// Rounds the spread comes from.
    pub rounds: usize,
}

impl Range {
    /// `value` with the spread of `rounds` (each round's own figure).
    pub fn of(value: f64, rounds: &[f64]) -> Range {
        let lo = rounds.iter().copied().fold(value, f64::min);
        let hi = rounds.iter().copied().fold(value, f64::max);
        Range { value, lo, hi, rounds: rounds.len() }
    }
}

/// Which candidate has the lowest figure, judged against the spreads.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Lowest {
    /// Its range lies below every other range: a lead larger than the noise.
    One(usize),
    /// These (indices, lowest figure first) have ranges that reach the best one's: a tie.
    Tie(Vec<usize>),
    /// Fewer than two rounds (no spread to judge by), or no candidate.
    Unknown,
}

/// The candidate of `figs` with the lowest figure, if its lead exceeds the spread.
pub fn lowest(figs: &[Range]) -> Lowest {
    if figs.is_empty() || figs.iter().any(|r| r.rounds < 2) {
        return Lowest::Unknown;
    }
    let best = (0..figs.len()).min_by(|&a, &b| figs[a].value.total_cmp(&figs[b].value)).unwrap_or(0);
    let reach = figs[best].hi;
    let mut tied: Vec<usize> = (0..figs.len()).filter(|&i| i == best || figs[i].lo <= reach).collect();
    if tied.len() == 1 {
        return Lowest::One(best);
    }
    tied.sort_by(|&a, &b| figs[a].value.total_cmp(&figs[b].value));
    Lowest::Tie(tied)
}

/// A row's p99 in µs with its spread over rounds.
pub fn p99_us(r: &Row) -> Range {
    let rounds: Vec<f64> = r.rounds_latency_ns.iter().map(|l| l.p99 as f64 / 1e3).collect();
    Range::of(r.latency_ns.p99 as f64 / 1e3, &rounds)
}

/// A row's p50 in µs with its spread over rounds.
pub fn p50_us(r: &Row) -> Range {
    let rounds: Vec<f64> = r.rounds_latency_ns.iter().map(|l| l.p50 as f64 / 1e3).collect();
    Range::of(r.latency_ns.p50 as f64 / 1e3, &rounds)
}

/// A row's cost against `none` (its overhead in percent) with the spread of the rounds, each
/// round against `none`'s same round; `None` without an overhead.
pub fn cost_pct(r: &Row, none: &Row) -> Option<Range> {
    let value = r.overhead_pct?;
    let rounds: Vec<f64> = r
        .rounds_throughput_ops_s
        .iter()
        .zip(&none.rounds_throughput_ops_s)
        .filter(|(t, _)| **t > 0.0)
        .map(|(t, n)| (n / t - 1.0) * 100.0)
        .collect();
    Some(Range::of(value, &rounds))
}

/// One workload's answer.
#[derive(Clone, Debug)]
pub struct Verdict {
    pub workload: String,
    /// The models' p99 (labels and ranges, in row order) and who is lowest.
    pub p99: (Vec<(String, Range)>, Lowest),
    /// The models' cost against `none` (`none` itself left out) and who is lowest.
    pub cost: (Vec<(String, Range)>, Lowest),
    /// The floor's p99, when the comparison had the floor.
    pub floor_p99_us: Option<Range>,
}

/// The answer per workload of `rows`, in workload order; `label` names a row's subject.
pub fn judge(rows: &[Row], label: impl Fn(&Row) -> String) -> Vec<Verdict> {
    let mut workloads: Vec<&str> = rows.iter().map(|r| r.workload.as_str()).collect();
    workloads.dedup();
    workloads
        .into_iter()
        .map(|w| {
            let of = |r: &&Row| r.workload == w;
            let models: Vec<&Row> = rows.iter().filter(of).filter(|r| r.bh.is_some()).collect();
            let p99: Vec<(String, Range)> = models.iter().map(|r| (label(r), p99_us(r))).collect();
            let none = |r: &Row| models.iter().find(|n| n.model == "none" && n.bh == r.bh).copied();
            let cost: Vec<(String, Range)> = models
                .iter()
                .filter(|r| r.model != "none")
                .filter_map(|r| Some((label(r), cost_pct(r, none(r)?)?)))
                .collect();
            let floor_p99_us = rows.iter().filter(of).find(|r| r.model == "floor").map(p99_us);
            let judged = |figs: Vec<(String, Range)>| {
                let ranges: Vec<Range> = figs.iter().map(|f| f.1).collect();
                let l = lowest(&ranges);
                (figs, l)
            };
            Verdict { workload: w.to_string(), p99: judged(p99), cost: judged(cost), floor_p99_us }
        })
        .collect()
}

impl Verdict {
    /// The verdict in one line of at most [`WIDTH`] columns: `hog: p99 lowest patch-call 40.3
    /// us (floor 16.2); cost tie within noise: full, lazy`.
    pub fn line(&self) -> String {
        let floor = self.floor_p99_us.map_or_else(String::new, |f| format!(" (floor {:.1})", f.value));
        let at = |names: usize| {
            let p99 = say(&self.p99, names, |r| format!("{:.1} us", r.value));
            let cost = say(&self.cost, names, |r| format!("{:+.1}%", r.value));
            format!("{}: p99 {p99}{floor}; cost {cost}", self.workload)
        };
        // As many tied names as fit, then only their count.
        let line = (0..=3).rev().map(at).find(|l| l.chars().count() <= WIDTH).unwrap_or_else(|| at(0));
        if line.chars().count() > WIDTH {
            return line.chars().take(WIDTH - 1).collect::<String>() + "…";
        }
        line
    }
}

/// `lowest NAME FIGURE`, `tie within noise: A, B, C +N` (at most `names` names), or why there
/// is no answer.
fn say(judged: &(Vec<(String, Range)>, Lowest), names: usize, figure: impl Fn(&Range) -> String) -> String {
    let (figs, l) = judged;
    match l {
        Lowest::One(i) => format!("lowest {} {}", figs[*i].0, figure(&figs[*i].1)),
        Lowest::Tie(ids) if names == 0 => format!("tie within noise ({} models)", ids.len()),
        Lowest::Tie(ids) => {
            let shown: Vec<&str> = ids.iter().take(names).map(|&i| figs[i].0.as_str()).collect();
            let more = if ids.len() > names { format!(" +{}", ids.len() - names) } else { String::new() };
            format!("tie within noise: {}{more}", shown.join(", "))
        }
        Lowest::Unknown if figs.is_empty() => "-".into(),
        Lowest::Unknown => "no verdict (one round)".into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::stats::Latency;

    fn r(value: f64, lo: f64, hi: f64) -> Range {
        Range { value, lo, hi, rounds: 5 }
    }

    #[test]
    fn a_lead_inside_the_spread_is_a_tie_and_one_outside_it_a_winner() {
        assert_eq!(lowest(&[r(10.0, 9.0, 11.0), r(20.0, 18.0, 22.0)]), Lowest::One(0));
        // 10 against 10.5: the second's lowest round (9.5) is below the first's highest (11).
        assert_eq!(lowest(&[r(10.5, 9.5, 12.0), r(10.0, 9.0, 11.0), r(30.0, 29.0, 31.0)]), Lowest::Tie(vec![1, 0]));
        let one_round = Range { rounds: 1, ..r(10.0, 10.0, 10.0) };
        assert_eq!(lowest(&[one_round, r(20.0, 20.0, 20.0)]), Lowest::Unknown);
        assert_eq!(lowest(&[]), Lowest::Unknown);
    }

    fn row(model: &str, p99_rounds_us: &[u64], tp_rounds: &[f64]) -> Row {
        let lat = |p99_us: u64| Latency { p99: p99_us * 1000, p50: p99_us * 500, count: 100, ..Latency::default() };
        let mut sorted = p99_rounds_us.to_vec();
        sorted.sort();
        let tp = crate::stats::median(tp_rounds);
        Row {
            model: model.into(),
            bh: (model != "floor" && !model.starts_with("peer:")).then(|| "classic".into()),
            workload: "hog".into(),
            latency_ns: lat(sorted[sorted.len() / 2]),
            rounds_latency_ns: p99_rounds_us.iter().map(|&p| lat(p)).collect(),
            throughput_ops_s: Some(tp),
            rounds_throughput_ops_s: tp_rounds.to_vec(),
            ..Row::default()
        }
    }

    /// Rows whose spreads overlap get no winner; a line names the tie and fits the width.
    #[test]
    fn the_verdict_never_names_a_winner_inside_the_spread() {
        let mut rows = vec![
            row("floor", &[15, 16, 17], &[]),
            row("none", &[5000, 5600, 4000], &[100.0, 101.0, 99.0]),
            row("full", &[40, 52, 61], &[97.0, 99.0, 100.0]),
            row("lazy", &[45, 50, 70], &[98.0, 102.0, 100.0]),
            row("peer:host-fifo", &[12, 13, 14], &[100.0, 100.0, 100.0]),
        ];
        rows[0].throughput_ops_s = None;
        let none_tp = rows[1].throughput_ops_s.unwrap();
        for r in &mut rows[2..4] {
            r.overhead_pct = Some((none_tp / r.throughput_ops_s.unwrap() - 1.0) * 100.0);
        }
        let v = &judge(&rows, |r| r.model.clone())[0];
        assert_eq!(v.p99.1, Lowest::Tie(vec![2, 1]), "lazy and full overlap: {:?}", v.p99);
        assert!(matches!(v.cost.1, Lowest::Tie(_)), "{:?}", v.cost);
        let line = v.line();
        assert!(line.starts_with("hog: p99 tie within noise: lazy, full (floor 16.0); cost tie"), "{line}");
        assert!(!line.contains("lowest"), "{line}");
        assert!(line.chars().count() <= WIDTH, "{line}");
        // Pull lazy's rounds clear of full's: now full leads by more than the noise.
        rows[3] = row("lazy", &[300, 320, 340], &[98.0, 102.0, 100.0]);
        let v = &judge(&rows, |r| r.model.clone())[0];
        assert_eq!(v.p99.1, Lowest::One(1));
        assert!(v.line().starts_with("hog: p99 lowest full 52.0 us (floor 16.0)"), "{}", v.line());
    }
}
