//! Hand-written SVG charts for the report: a latency CDF of several subjects, a trade-off
//! scatter (cost against p99), a log-scale latency histogram, horizontal bars and the seed
//! scenario's timeline.
//!
//! **Mechanism.** Each chart is a string of SVG elements built from the data with fixed
//! geometry: no scripts, fonts or external references, so the page that embeds them is
//! self-contained.
//!
//! **Invariant.** Every text that comes from data is escaped ([`esc`]), and every coordinate is
//! finite (empty or zero data draws an empty frame, never NaN).

use lab::stats::Bin;
use services::scenario::ScenarioResult;
use std::fmt::Write;

/// Escapes `&`, `<`, `>` and `"` for XML text and attributes.
pub(crate) fn esc(s: &str) -> String {
    s.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;").replace('"', "&quot;")
}

fn open(w: u32, h: u32, class: &str, title: &str) -> String {
    format!(
        "<svg xmlns=\"http://www.w3.org/2000/svg\" class=\"{class}\" width=\"{w}\" height=\"{h}\" viewBox=\"0 0 {w} {h}\" role=\"img\"><title>{}</title>",
        esc(title)
    )
}

fn text(s: &mut String, x: f64, y: f64, anchor: &str, size: u32, t: &str) {
    let _ =
        write!(s, "<text x=\"{x:.1}\" y=\"{y:.1}\" text-anchor=\"{anchor}\" font-size=\"{size}\">{}</text>", esc(t));
}

fn fmt_ns(ns: u64) -> String {
    match ns {
        n if n >= 1_000_000 => format!("{} ms", n / 1_000_000),
        n if n >= 1000 => format!("{} µs", n / 1000),
        n => format!("{n} ns"),
    }
}

/// A latency histogram: half-octave bins on the x axis (so the axis is logarithmic in
/// latency), counts on a logarithmic y axis. `nbins` fixes the x range so that charts of one
/// row compare (bins beyond the data are empty).
pub(crate) fn histogram(title: &str, bins: &[Bin], nbins: usize) -> String {
    let (w, h, left, bottom, top) = (300u32, 170u32, 34.0, 30.0, 20.0);
    let nbins = nbins.max(bins.len()).max(1);
    let plot_w = w as f64 - left - 8.0;
    let plot_h = h as f64 - bottom - top;
    let max_log = bins.iter().map(|b| ((b.count + 1) as f64).log10()).fold(1.0, f64::max);
    let mut s = open(w, h, "chart histogram", title);
    text(&mut s, w as f64 / 2.0, 14.0, "middle", 12, title);
    let bw = plot_w / nbins as f64;
    for (i, b) in bins.iter().enumerate().filter(|(_, b)| b.count > 0) {
        let bh = ((b.count + 1) as f64).log10() / max_log * plot_h;
        let _ = write!(
            s,
            "<rect x=\"{:.1}\" y=\"{:.1}\" width=\"{:.1}\" height=\"{bh:.1}\" fill=\"#3b6ea8\"><title>{}..{}: {}</title></rect>",
            left + i as f64 * bw,
            top + plot_h - bh,
            (bw - 1.0).max(0.5),
            fmt_ns(b.lo_ns),
            fmt_ns(b.hi_ns),
            b.count
        );
    }
    let base = top + plot_h;
    let _ = write!(s, "<line x1=\"{left}\" y1=\"{base}\" x2=\"{}\" y2=\"{base}\" stroke=\"#444\"/>", left + plot_w);
    for tick in [1_000u64, 10_000, 100_000, 1_000_000, 10_000_000, 100_000_000] {
        // bin 0 is [0, 1 µs); bin k >= 1 starts at 2^((k-1)/2) µs
        let k = 1.0 + 2.0 * (tick as f64 / 1000.0).log2();
        if k < nbins as f64 {
            let x = left + k * bw;
            let _ =
                write!(s, "<line x1=\"{x:.1}\" y1=\"{base}\" x2=\"{x:.1}\" y2=\"{}\" stroke=\"#444\"/>", base + 4.0);
            text(&mut s, x, base + 15.0, "middle", 10, &fmt_ns(tick));
        }
    }
    text(&mut s, 4.0, top + 8.0, "start", 9, "log n");
    text(&mut s, left + plot_w, h as f64 - 2.0, "end", 9, "lateness (log)");
    s + "</svg>"
}

/// Horizontal bars, one per `(label, value)`, with a zero line (values may be negative).
pub(crate) fn bars(title: &str, items: &[(String, f64)], unit: &str) -> String {
    let (w, row, left, top) = (520u32, 20.0, 130.0, 24.0);
    let h = (top + row * items.len() as f64 + 24.0) as u32;
    let lo = items.iter().map(|i| i.1).filter(|v| v.is_finite()).fold(0.0, f64::min);
    let hi = items.iter().map(|i| i.1).filter(|v| v.is_finite()).fold(0.0, f64::max);
    let span = if hi - lo > 0.0 { hi - lo } else { 1.0 };
    let plot_w = w as f64 - left - 70.0;
    let x = |v: f64| left + (v - lo) / span * plot_w;
    let mut s = open(w, h, "chart bars", title);
    text(&mut s, w as f64 / 2.0, 14.0, "middle", 12, title);
    for (i, (label, v)) in items.iter().enumerate() {
        let v = if v.is_finite() { *v } else { 0.0 };
        let y = top + i as f64 * row;
        let (a, b) = (x(0.0).min(x(v)), x(0.0).max(x(v)));
        let color = if v < 0.0 { "#5a9e6f" } else { "#c0504d" };
        text(&mut s, left - 6.0, y + 13.0, "end", 11, label);
        let _ = write!(
            s,
            "<rect x=\"{a:.1}\" y=\"{:.1}\" width=\"{:.1}\" height=\"{:.1}\" fill=\"{color}\"/>",
            y + 3.0,
            (b - a).max(0.5),
            row - 6.0
        );
        text(&mut s, b + 4.0, y + 13.0, "start", 10, &format!("{v:.2}{unit}"));
    }
    let z = x(0.0);
    let _ = write!(s, "<line x1=\"{z:.1}\" y1=\"{top}\" x2=\"{z:.1}\" y2=\"{:.1}\" stroke=\"#444\"/>", h as f64 - 20.0);
    s + "</svg>"
}

/// Horizontal bars of positive values on a log scale with a tick per decade, so that
/// subjects whose latencies differ by orders of magnitude (a model's 20 µs, Go's 10 ms) are all
/// readable in one chart. Values at or below zero sit at the left edge.
pub(crate) fn log_bars(title: &str, items: &[(String, f64)], unit: &str) -> String {
    let (w, row, left, top) = (520u32, 20.0, 130.0, 24.0);
    let h = (top + row * items.len() as f64 + 36.0) as u32;
    let pos = || items.iter().map(|i| i.1).filter(|v| v.is_finite() && *v > 0.0);
    let lo = pos().fold(f64::INFINITY, f64::min).log10().floor();
    let hi = pos().fold(f64::NEG_INFINITY, f64::max).log10().ceil();
    let (lo, hi) = if lo.is_finite() && hi.is_finite() { (lo, hi.max(lo + 1.0)) } else { (0.0, 1.0) };
    let plot_w = w as f64 - left - 70.0;
    let x = |v: f64| left + ((v.max(10f64.powf(lo)).log10() - lo) / (hi - lo)).min(1.0) * plot_w;
    let mut s = open(w, h, "chart bars", title);
    text(&mut s, w as f64 / 2.0, 14.0, "middle", 12, title);
    for (i, (label, v)) in items.iter().enumerate() {
        let v = if v.is_finite() { *v } else { 0.0 };
        let y = top + i as f64 * row;
        text(&mut s, left - 6.0, y + 13.0, "end", 11, label);
        let _ = write!(
            s,
            "<rect x=\"{left:.1}\" y=\"{:.1}\" width=\"{:.1}\" height=\"{:.1}\" fill=\"#c0504d\"/>",
            y + 3.0,
            (x(v) - left).max(0.5),
            row - 6.0
        );
        text(&mut s, x(v) + 4.0, y + 13.0, "start", 10, &format!("{v:.1}{unit}"));
    }
    let base = top + row * items.len() as f64;
    for d in lo as i32..=hi as i32 {
        let (tx, v) = (x(10f64.powi(d)), 10f64.powi(d));
        let _ = write!(s, "<line x1=\"{tx:.1}\" y1=\"{top}\" x2=\"{tx:.1}\" y2=\"{base:.1}\" stroke=\"#ccc\"/>");
        text(&mut s, tx, base + 14.0, "middle", 9, &format!("{v}{unit}"));
    }
    s + "</svg>"
}

/// Colours of the series of one chart, in subject order (then again, dashed).
const PALETTE: [&str; 10] =
    ["#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f", "#bcbd22", "#17becf"];

/// Series `i`'s stroke: its colour, and a dash for the second round of the palette.
fn stroke(i: usize) -> (String, &'static str) {
    let dash = if (i / PALETTE.len()) % 2 == 1 { " stroke-dasharray=\"5 3\"" } else { "" };
    (PALETTE[i % PALETTE.len()].to_string(), dash)
}

/// A log-scale latency axis: decades from below the smallest to above the largest of `ns`.
fn decades(ns: impl Iterator<Item = f64>) -> (f64, f64) {
    let (lo, hi) =
        ns.filter(|v| v.is_finite() && *v > 0.0).fold((f64::INFINITY, 0.0f64), |(l, h), v| (l.min(v), h.max(v)));
    if !lo.is_finite() || hi <= 0.0 {
        return (3.0, 4.0);
    }
    let (lo, hi) = (lo.log10().floor(), hi.log10().ceil());
    (lo, hi.max(lo + 1.0))
}

/// "Nines" of a quantile: `-log10(1 - q)` (0 at the median's left, 1 at p90, 2 at p99, ...).
fn nines(q: f64, cap: f64) -> f64 {
    if q >= 1.0 {
        cap
    } else {
        (-(1.0 - q).log10()).min(cap)
    }
}

/// One subject's curve on a CDF chart.
pub(crate) struct Series {
    pub(crate) label: String,
    /// Samples behind the curve (how many nines they resolve).
    pub(crate) samples: u64,
    /// `(quantile, lateness ns)`, ascending.
    pub(crate) points: Vec<(f64, u64)>,
}

/// A latency CDF of several subjects on one chart: lateness on a log x axis (a tick per
/// decade), the quantile on a "nines" y axis (0, 90%, 99%, 99.9%, ...), so both the body and
/// the tail are readable. A series' max (q = 1) is drawn at the nines its sample count resolves.
pub(crate) fn cdf(title: &str, series: &[Series]) -> String {
    let (w, h, left, right, top, bottom) = (620u32, 300u32, 52.0, 150.0, 24.0, 34.0);
    let (plot_w, plot_h) = (w as f64 - left - right, h as f64 - top - bottom);
    let (lo, hi) = decades(series.iter().flat_map(|s| s.points.iter().map(|p| p.1 as f64)));
    let cap = series.iter().map(|s| (s.samples.max(1) as f64).log10()).fold(1.0, f64::max).ceil();
    let x = |ns: f64| left + ((ns.max(10f64.powf(lo)).log10() - lo) / (hi - lo)).clamp(0.0, 1.0) * plot_w;
    let y = |n: f64| top + plot_h - n / cap * plot_h;
    let mut s = open(w, h, "chart cdf", title);
    text(&mut s, left + plot_w / 2.0, 14.0, "middle", 12, title);
    for d in lo as i32..=hi as i32 {
        let tx = x(10f64.powi(d));
        let _ =
            write!(s, "<line x1=\"{tx:.1}\" y1=\"{top}\" x2=\"{tx:.1}\" y2=\"{:.1}\" stroke=\"#ddd\"/>", top + plot_h);
        text(&mut s, tx, top + plot_h + 14.0, "middle", 9, &fmt_ns(10u64.pow(d.max(0) as u32)));
    }
    for k in 0..=cap as i32 {
        let (ty, label) =
            (y(k as f64), if k == 0 { "0%".to_string() } else { format!("{}%", 100.0 - 100.0 / 10f64.powi(k)) });
        let _ = write!(
            s,
            "<line x1=\"{left}\" y1=\"{ty:.1}\" x2=\"{:.1}\" y2=\"{ty:.1}\" stroke=\"#ddd\"/>",
            left + plot_w
        );
        text(&mut s, left - 4.0, ty + 3.0, "end", 9, &label);
    }
    for (i, Series { label, points: pts, .. }) in series.iter().enumerate() {
        let (color, dash) = stroke(i);
        let points: Vec<String> =
            pts.iter().map(|&(q, ns)| format!("{:.1},{:.1}", x(ns as f64), y(nines(q, cap)))).collect();
        let _ = write!(
            s,
            "<polyline class=\"series\" fill=\"none\" stroke=\"{color}\" stroke-width=\"1.6\"{dash} points=\"{}\"><title>{}</title></polyline>",
            points.join(" "),
            esc(label)
        );
        let ly = top + 6.0 + i as f64 * 13.0;
        let lx = left + plot_w + 10.0;
        let _ = write!(s, "<line x1=\"{lx}\" y1=\"{ly:.1}\" x2=\"{:.1}\" y2=\"{ly:.1}\" stroke=\"{color}\" stroke-width=\"2\"{dash}/>", lx + 16.0);
        text(&mut s, lx + 20.0, ly + 3.0, "start", 10, label);
    }
    let base = top + plot_h;
    let _ = write!(s, "<line x1=\"{left}\" y1=\"{base}\" x2=\"{:.1}\" y2=\"{base}\" stroke=\"#444\"/>", left + plot_w);
    text(&mut s, left + plot_w, h as f64 - 4.0, "end", 9, "lateness (log)");
    text(&mut s, 4.0, top - 6.0, "start", 9, "quantile");
    s + "</svg>"
}

/// The trade-off of several subjects: normal-path cost (the throughput overhead against
/// `none`, %) on the x axis against p99 latency (log scale, a tick per decade) on the y axis,
/// one labelled point per `(label, overhead %, p99 ns)`; a subject without an overhead figure
/// is left out (and named under the chart).
pub(crate) fn tradeoff(title: &str, points: &[(String, Option<f64>, u64)]) -> String {
    let (w, h, left, right, top, bottom) = (620u32, 300u32, 60.0, 20.0, 24.0, 46.0);
    let (plot_w, plot_h) = (w as f64 - left - right, h as f64 - top - bottom);
    let shown: Vec<(usize, &String, f64, u64)> = points
        .iter()
        .enumerate()
        .filter_map(|(i, (l, o, p))| o.filter(|o| o.is_finite()).map(|o| (i, l, o, *p)))
        .collect();
    let (xlo, xhi) = shown.iter().fold((0.0f64, 0.0f64), |(l, h), p| (l.min(p.2), h.max(p.2)));
    let pad = ((xhi - xlo) * 0.08).max(1.0);
    let (xlo, xhi) = (xlo - pad, xhi + pad);
    let (lo, hi) = decades(shown.iter().map(|p| p.3 as f64));
    let x = |o: f64| left + (o - xlo) / (xhi - xlo) * plot_w;
    let y = |ns: f64| top + plot_h - ((ns.max(10f64.powf(lo)).log10() - lo) / (hi - lo)).clamp(0.0, 1.0) * plot_h;
    let mut s = open(w, h, "chart tradeoff", title);
    text(&mut s, left + plot_w / 2.0, 14.0, "middle", 12, title);
    for d in lo as i32..=hi as i32 {
        let ty = y(10f64.powi(d));
        let _ = write!(
            s,
            "<line x1=\"{left}\" y1=\"{ty:.1}\" x2=\"{:.1}\" y2=\"{ty:.1}\" stroke=\"#ddd\"/>",
            left + plot_w
        );
        text(&mut s, left - 4.0, ty + 3.0, "end", 9, &fmt_ns(10u64.pow(d.max(0) as u32)));
    }
    let z = x(0.0);
    let _ = write!(s, "<line x1=\"{z:.1}\" y1=\"{top}\" x2=\"{z:.1}\" y2=\"{:.1}\" stroke=\"#444\"/>", top + plot_h);
    let base = top + plot_h;
    let _ = write!(s, "<line x1=\"{left}\" y1=\"{base}\" x2=\"{:.1}\" y2=\"{base}\" stroke=\"#444\"/>", left + plot_w);
    for t in [xlo, 0.0, xhi] {
        text(&mut s, x(t), base + 13.0, "middle", 9, &format!("{t:+.0}%"));
    }
    for &(i, label, o, p99) in &shown {
        let (color, _) = stroke(i);
        let (px, py) = (x(o), y(p99 as f64));
        let _ = write!(
            s,
            "<circle class=\"point\" cx=\"{px:.1}\" cy=\"{py:.1}\" r=\"4\" fill=\"{color}\"><title>{}: overhead {o:+.2}%, p99 {}</title></circle>",
            esc(label),
            fmt_ns(p99)
        );
        // A label near the right edge goes to the point's left.
        if px > left + plot_w * 0.8 {
            text(&mut s, px - 6.0, py - 5.0, "end", 10, label);
        } else {
            text(&mut s, px + 6.0, py - 5.0, "start", 10, label);
        }
    }
    text(&mut s, left + plot_w, h as f64 - 18.0, "end", 9, "normal-path cost: throughput overhead against none");
    let missing: Vec<&str> = points.iter().filter(|p| !p.1.is_some_and(f64::is_finite)).map(|p| p.0.as_str()).collect();
    if !missing.is_empty() {
        text(
            &mut s,
            left,
            h as f64 - 4.0,
            "start",
            9,
            &format!("no overhead figure (no none row): {}", missing.join(", ")),
        );
    }
    text(&mut s, 4.0, top - 6.0, "start", 9, "p99 (log)");
    s + "</svg>"
}

/// The seed scenario's timeline: the system call's atoms, the interrupt, the RT task running.
pub(crate) fn timeline(r: &ScenarioResult) -> String {
    let (w, h, left) = (620u32, 92u32, 20.0);
    let end = r.timeline.iter().map(|e| e.t_ns).max().unwrap_or(1).max(1) as f64;
    let plot_w = w as f64 - 2.0 * left;
    let x = |t: u64| left + t as f64 / end * plot_w;
    let title = format!(
        "preempt={}: IRQ in atom {}, RT ran after atom {}, waited {:.3} ms",
        r.model,
        r.irq_during_atom,
        r.rt_ran_after_atom,
        r.rt_wait_ns as f64 / 1e6
    );
    let mut s = open(w, h, "chart timeline", &title);
    text(&mut s, left, 14.0, "start", 12, &title);
    let at = |what: &str| r.timeline.iter().find(|e| e.what == what).map(|e| e.t_ns);
    for atom in 1..=r.atoms {
        let (Some(b), Some(e)) =
            (at(&format!("atom {atom} begins")), at(&format!("atom {atom} ends: preemption point")))
        else {
            continue;
        };
        let fill = if atom % 2 == 1 { "#9dbbe0" } else { "#6f97c8" };
        let _ = write!(
            s,
            "<rect x=\"{:.1}\" y=\"28\" width=\"{:.1}\" height=\"24\" fill=\"{fill}\"/>",
            x(b),
            (x(e) - x(b)).max(0.5)
        );
        text(&mut s, (x(b) + x(e)) / 2.0, 44.0, "middle", 10, &format!("atom {atom}"));
    }
    for e in &r.timeline {
        let (color, label) = match e.who {
            "irq" => ("#d62728", "IRQ"),
            "rt" => ("#2ca02c", "rt runs"),
            _ if e.what == "ret_from_syscall" => ("#444", "ret"),
            _ => continue,
        };
        let xe = x(e.t_ns);
        let _ = write!(
            s,
            "<line x1=\"{xe:.1}\" y1=\"22\" x2=\"{xe:.1}\" y2=\"60\" stroke=\"{color}\" stroke-width=\"2\"/>"
        );
        let y = if e.who == "rt" { 84.0 } else { 72.0 };
        text(&mut s, xe, y, "middle", 10, label);
    }
    s + "</svg>"
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The CDF draws a curve per subject, its tail on the nines scale (p99 two decades up),
    /// and the trade-off a point per subject with an overhead figure.
    #[test]
    fn the_cdf_and_the_tradeoff_draw_every_subject() {
        let series = vec![
            Series {
                label: "a<b".into(),
                samples: 1000,
                points: vec![(0.0, 1000), (0.5, 10_000), (0.99, 100_000), (1.0, 1_000_000)],
            },
            Series { label: "c".into(), samples: 10, points: vec![(0.0, 5000), (1.0, 5000)] },
        ];
        let c = cdf("latency", &series);
        assert!(!c.contains("NaN") && !c.contains("inf") && c.contains("a&lt;b"), "{c}");
        assert_eq!(c.matches("<polyline class=\"series\"").count(), 2);
        let ys: Vec<f64> = c
            .split("points=\"")
            .nth(1)
            .unwrap()
            .split('"')
            .next()
            .unwrap()
            .split(' ')
            .map(|p| p.split(',').nth(1).unwrap().parse().unwrap())
            .collect();
        let (p0, p50, p99, max) = (ys[0], ys[1], ys[2], ys[3]);
        assert!(p0 > p50 && p50 > p99 && p99 > max, "up the chart as the quantile grows: {ys:?}");
        assert!(((p0 - p99) - 2.0 * (p0 - max) / 3.0).abs() < 0.5, "p99 at 2 of 3 nines: {ys:?}");
        let points =
            vec![("x".to_string(), Some(3.0), 20_000), ("y".to_string(), None, 1_000), ("z".into(), Some(-5.0), 10)];
        let t = tradeoff("cost", &points);
        assert_eq!(t.matches("<circle class=\"point\"").count(), 2, "{t}");
        assert!(t.contains("no overhead figure (no none row): y") && !t.contains("NaN"), "{t}");
        assert!(!cdf("empty", &[]).contains("NaN") && !tradeoff("empty", &[]).contains("NaN"));
    }

    #[test]
    fn charts_are_svg_with_escaped_text_and_finite_numbers() {
        let h = histogram("a<b", &[Bin { lo_ns: 0, hi_ns: 1000, count: 3 }], 10);
        assert!(h.starts_with("<svg") && h.ends_with("</svg>") && h.contains("a&lt;b"));
        let b = bars("o", &[("none".into(), 0.0), ("full".into(), -1.5), ("x".into(), f64::NAN)], "%");
        assert!(!b.contains("NaN") && b.contains("-1.50%"), "{b}");
        assert!(!histogram("empty", &[], 0).contains("NaN"));
    }

    /// The widths of log bars: 20 µs and 200 µs one decade apart, 2 ms another decade further.
    #[test]
    fn log_bars_put_each_decade_the_same_distance_apart() {
        let items: Vec<(String, f64)> =
            [("a", 20.0), ("b", 200.0), ("c", 2000.0), ("z", 0.0), ("n", f64::NAN)].map(|(l, v)| (l.into(), v)).into();
        let svg = log_bars("p50", &items, " µs");
        assert!(!svg.contains("NaN") && !svg.contains("inf"), "{svg}");
        let widths: Vec<f64> = svg
            .split("<rect ")
            .skip(1)
            .map(|r| r.split("width=\"").nth(1).unwrap().split('"').next().unwrap().parse().unwrap())
            .collect();
        assert_eq!(widths.len(), 5);
        let (d1, d2) = (widths[1] - widths[0], widths[2] - widths[1]);
        assert!(d1 > 10.0 && (d1 - d2).abs() < 0.2, "{widths:?}");
        assert!(widths[3] <= 0.5 && widths[4] <= 0.5, "zero and NaN at the left edge: {widths:?}");
        for tick in ["10 µs", "100 µs", "1000 µs", "10000 µs"] {
            assert!(svg.contains(tick), "decade tick {tick}: {svg}");
        }
    }
}
