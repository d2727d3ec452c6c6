//! Hand-written SVG charts for the report: a log-scale latency histogram, horizontal bars and
//! the seed scenario's timeline.
//!
//! **Mechanism.** Each chart is a string of SVG elements built from the data with fixed
//! geometry: no scripts, fonts or external references, so the page that embeds them is
//! self-contained.
//!
//! **Invariant.** Every text that comes from data is escaped ([`esc`]), and every coordinate is
//! finite (empty or zero data draws an empty frame, never NaN).

use services::lab::Bin;
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
