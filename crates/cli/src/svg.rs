//! Hand-written SVG charts for the report: a latency CDF of several subjects, a log-scale
//! latency histogram and the seed scenario's timelines on one ms axis; and what every chart
//! shares: the frame, text, the axes' ticks (1-2-5 on a log axis, "nice" steps on a linear one)
//! and the colour-blind-safe palette (Okabe-Ito).
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

pub(crate) fn open(w: u32, h: u32, class: &str, title: &str) -> String {
    format!(
        "<svg xmlns=\"http://www.w3.org/2000/svg\" class=\"{class}\" width=\"{w}\" height=\"{h}\" viewBox=\"0 0 {w} {h}\" role=\"img\"><title>{}</title>",
        esc(title)
    )
}

pub(crate) fn text(s: &mut String, x: f64, y: f64, anchor: &str, size: u32, t: &str) {
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

/// A figure in µs as the tables print it: one decimal below 100 µs, none up to 10 ms, then ms.
pub(crate) fn fig_us(us: f64) -> String {
    if us >= 10_000.0 {
        format!("{:.1} ms", us / 1e3)
    } else if us >= 100.0 {
        format!("{us:.0} µs")
    } else {
        format!("{us:.1} µs")
    }
}

/// A tick's value in µs, as short as it goes: `20 µs`, `0.5 µs`, `2 ms`.
pub(crate) fn tick_us(us: f64) -> String {
    let short = |v: f64| format!("{v:.2}").trim_end_matches('0').trim_end_matches('.').to_string();
    if us >= 1000.0 {
        format!("{} ms", short(us / 1e3))
    } else {
        format!("{} µs", short(us))
    }
}

/// The 1-2-5 values from `lo` to `hi` (positive); only the decades when there would be more
/// than 10.
pub(crate) fn log125_ticks(lo: f64, hi: f64) -> Vec<f64> {
    if !(lo > 0.0 && hi >= lo && hi.is_finite()) {
        return Vec::new();
    }
    let all = |ms: &[f64]| -> Vec<f64> {
        let (a, b) = (lo.log10().floor() as i32, hi.log10().ceil() as i32);
        (a..=b)
            .flat_map(|d| ms.iter().map(move |m| m * 10f64.powi(d)))
            .filter(|v| *v >= lo * 0.999 && *v <= hi * 1.001)
            .collect()
    };
    let t = all(&[1.0, 2.0, 5.0]);
    if t.len() > 10 {
        all(&[1.0])
    } else {
        t
    }
}

/// A log axis' domain holding every positive value of `vs`, widened by 10% and out to the
/// 1-2-5 values around it (1 to 10 without one).
pub(crate) fn log_domain(vs: impl Iterator<Item = f64>) -> (f64, f64) {
    let (lo, hi) =
        vs.filter(|v| v.is_finite() && *v > 0.0).fold((f64::INFINITY, 0.0f64), |(l, h), v| (l.min(v), h.max(v)));
    if !lo.is_finite() || hi <= 0.0 {
        return (1.0, 10.0);
    }
    let steps = |d: i32| [1.0, 2.0, 5.0].map(|m| m * 10f64.powi(d));
    let (lo, hi) = (lo / 1.1, hi * 1.1);
    let (a, b) = (lo.log10().floor() as i32, hi.log10().floor() as i32);
    let down = (a - 1..=a).flat_map(steps).filter(|v| *v <= lo).fold(0.0, f64::max);
    let up = (b..=b + 1).flat_map(steps).find(|v| *v >= hi).unwrap_or(hi);
    (down, up.max(down * 2.0))
}

/// About `n` "nice" ticks (steps of 1, 2 or 5 times a power of ten) from at or below `lo` to at
/// or above `hi`.
pub(crate) fn nice_ticks(lo: f64, hi: f64, n: usize) -> Vec<f64> {
    let (lo, hi) = if lo.is_finite() && hi.is_finite() && hi > lo { (lo, hi) } else { (0.0, 1.0) };
    let raw = (hi - lo) / n.max(1) as f64;
    let p = 10f64.powf(raw.log10().floor());
    let step = [1.0, 2.0, 5.0, 10.0].into_iter().map(|m| m * p).find(|s| *s >= raw).unwrap_or(10.0 * p);
    let (a, b) = ((lo / step).floor() as i64, (hi / step).ceil() as i64);
    (a..=b).map(|k| (k as f64 * step * 1e6).round() / 1e6).collect()
}

/// How a subject's line is drawn: its colour and dash.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Style {
    pub(crate) color: &'static str,
    pub(crate) dash: &'static str,
}

/// The models' colours: Okabe and Ito's palette, told apart with the common colour-vision
/// deficiencies (yellow last: it is faint on white).
pub(crate) const OKABE_ITO: [&str; 8] =
    ["#0072B2", "#E69F00", "#009E73", "#D55E00", "#56B4E9", "#CC79A7", "#000000", "#F0E442"];

/// Model `i`'s style (a second round of the palette dashed); the references' are grey.
pub(crate) fn model_style(i: usize) -> Style {
    Style { color: OKABE_ITO[i % OKABE_ITO.len()], dash: if (i / OKABE_ITO.len()) % 2 == 1 { "5 3" } else { "" } }
}

/// Reference `i`'s style (the floor first): grey, a dash pattern each.
pub(crate) fn reference_style(i: usize) -> Style {
    const DASHES: [&str; 4] = ["2 2", "6 3", "8 2 2 2", "1 3"];
    Style { color: if i == 0 { "#444444" } else { "#8c8c8c" }, dash: DASHES[i % DASHES.len()] }
}

/// A latency histogram: half-octave bins on the x axis (so the axis is logarithmic in
/// latency, a tick per decade), sample counts on a logarithmic y axis (a tick per decade:
/// 1, 10, 100, 1k, ...). `nbins` fixes the x range so that charts of one workload compare
/// (bins beyond the data are empty).
pub(crate) fn histogram(title: &str, bins: &[Bin], nbins: usize) -> String {
    let (w, h, left, bottom, top) = (300u32, 176u32, 40.0, 32.0, 26.0);
    let nbins = nbins.max(bins.len()).max(1);
    let plot_w = w as f64 - left - 8.0;
    let plot_h = h as f64 - bottom - top;
    let max = bins.iter().map(|b| b.count).max().unwrap_or(0);
    let decades = ((max + 1) as f64).log10().ceil().max(1.0);
    let y = |count: u64| top + plot_h - ((count + 1) as f64).log10() / decades * plot_h;
    let mut s = open(w, h, "chart histogram", title);
    text(&mut s, w as f64 / 2.0, 14.0, "middle", 12, title);
    let bw = plot_w / nbins as f64;
    let base = top + plot_h;
    for k in 0..=decades as u32 {
        let c = 10u64.pow(k);
        let ty = y(c);
        let _ = write!(
            s,
            "<line x1=\"{left}\" y1=\"{ty:.1}\" x2=\"{:.1}\" y2=\"{ty:.1}\" stroke=\"#e4e4e4\"/>",
            left + plot_w
        );
        let label = match c {
            c if c >= 1_000_000 => format!("{}M", c / 1_000_000),
            c if c >= 1000 => format!("{}k", c / 1000),
            c => c.to_string(),
        };
        text(&mut s, left - 4.0, ty + 3.0, "end", 9, &label);
    }
    for (i, b) in bins.iter().enumerate().filter(|(_, b)| b.count > 0) {
        let _ = write!(
            s,
            "<rect x=\"{:.1}\" y=\"{:.1}\" width=\"{:.1}\" height=\"{:.1}\" fill=\"#0072B2\"><title>{}..{}: {}</title></rect>",
            left + i as f64 * bw,
            y(b.count),
            (bw - 1.0).max(0.5),
            base - y(b.count),
            fmt_ns(b.lo_ns),
            fmt_ns(b.hi_ns),
            b.count
        );
    }
    let _ = write!(s, "<line x1=\"{left}\" y1=\"{base}\" x2=\"{}\" y2=\"{base}\" stroke=\"#444\"/>", left + plot_w);
    let _ = write!(s, "<line x1=\"{left}\" y1=\"{top}\" x2=\"{left}\" y2=\"{base}\" stroke=\"#444\"/>");
    for tick in [1_000u64, 10_000, 100_000, 1_000_000, 10_000_000, 100_000_000] {
        // bin 0 is [0, 1 µs); bin k >= 1 starts at 2^((k-1)/2) µs
        let k = 1.0 + 2.0 * (tick as f64 / 1000.0).log2();
        if k < nbins as f64 {
            let x = left + k * bw;
            let _ =
                write!(s, "<line x1=\"{x:.1}\" y1=\"{base}\" x2=\"{x:.1}\" y2=\"{}\" stroke=\"#444\"/>", base + 4.0);
            text(&mut s, x, base + 14.0, "middle", 9, &fmt_ns(tick));
        }
    }
    text(&mut s, 4.0, top - 5.0, "start", 9, "samples (log)");
    text(&mut s, left + plot_w, h as f64 - 3.0, "end", 9, "lateness (log)");
    s + "</svg>"
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
    pub(crate) style: Style,
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
    for (i, Series { label, points: pts, style, .. }) in series.iter().enumerate() {
        let color = style.color;
        let dash = if style.dash.is_empty() { String::new() } else { format!(" stroke-dasharray=\"{}\"", style.dash) };
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

/// The seed scenario's runs, one lane per model on one shared ms axis: the system call's
/// atoms, the interrupt, the RT task's wait (from the interrupt to its run) and its run.
pub(crate) fn timelines(runs: &[ScenarioResult]) -> String {
    let (w, left, right, lane, top) = (700.0, 88.0, 16.0, 26.0, 34.0);
    let h = top + lane * runs.len() as f64 + 34.0;
    let plot_w = w - left - right;
    let end = runs.iter().flat_map(|r| r.timeline.iter().map(|e| e.t_ns)).max().unwrap_or(0) as f64 / 1e6;
    let ticks = nice_ticks(0.0, end.max(0.001), 6);
    let span = ticks.last().copied().unwrap_or(1.0).max(1e-9);
    let x = |t_ns: u64| left + t_ns as f64 / 1e6 / span * plot_w;
    let title = "The seed scenario per model: a 5-atom system call, an interrupt in atom 1 wakes an RT task";
    let mut s = open(w as u32, h as u32, "chart timeline", title);
    text(&mut s, 4.0, 14.0, "start", 12, title);
    let legend =
        [("#9dbbe0", "atom (the worker's system call)"), ("#D55E00", "interrupt"), ("#009E73", "RT task runs")];
    let mut lx = left;
    for (color, name) in legend {
        let _ = write!(s, "<rect x=\"{lx:.1}\" y=\"20\" width=\"10\" height=\"8\" fill=\"{color}\"/>");
        text(&mut s, lx + 13.0, 28.0, "start", 10, name);
        lx += 26.0 + name.chars().count() as f64 * 5.6;
    }
    let _ = write!(
        s,
        "<line x1=\"{lx:.1}\" y1=\"24\" x2=\"{:.1}\" y2=\"24\" stroke=\"#D55E00\" stroke-dasharray=\"3 2\"/>",
        lx + 16.0
    );
    text(&mut s, lx + 19.0, 28.0, "start", 10, "RT task waits");
    let base = top + lane * runs.len() as f64;
    for &t in &ticks {
        let tx = left + t / span * plot_w;
        let _ =
            write!(s, "<line x1=\"{tx:.1}\" y1=\"{top}\" x2=\"{tx:.1}\" y2=\"{:.1}\" stroke=\"#e4e4e4\"/>", base + 4.0);
        text(&mut s, tx, base + 15.0, "middle", 9, &format!("{t} ms"));
    }
    text(&mut s, left + plot_w, h - 3.0, "end", 9, "time since the system call began");
    for (i, r) in runs.iter().enumerate() {
        let y = top + i as f64 * lane;
        text(&mut s, left - 6.0, y + 16.0, "end", 11, &r.model);
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
                "<rect class=\"atom\" x=\"{:.1}\" y=\"{:.1}\" width=\"{:.1}\" height=\"14\" fill=\"{fill}\"><title>atom {atom}</title></rect>",
                x(b),
                y + 5.0,
                (x(e) - x(b)).max(0.5)
            );
        }
        let find = |who: &str| r.timeline.iter().find(|e| e.who == who);
        if let (Some(irq), Some(rt)) = (find("irq"), find("rt")) {
            let (xi, xr) = (x(irq.t_ns), x(rt.t_ns));
            let _ = write!(
                s,
                "<line class=\"wait\" x1=\"{xi:.1}\" y1=\"{:.1}\" x2=\"{xr:.1}\" y2=\"{:.1}\" stroke=\"#D55E00\" stroke-width=\"1.5\" stroke-dasharray=\"3 2\"/>",
                y + 22.0,
                y + 22.0
            );
            let _ = write!(
                s,
                "<line class=\"irq\" x1=\"{xi:.1}\" y1=\"{:.1}\" x2=\"{xi:.1}\" y2=\"{:.1}\" stroke=\"#D55E00\" stroke-width=\"2\"><title>{}</title></line>",
                y + 2.0,
                y + 24.0,
                esc(&irq.what)
            );
            let _ = write!(
                s,
                "<rect class=\"rt\" x=\"{xr:.1}\" y=\"{:.1}\" width=\"4\" height=\"20\" fill=\"#009E73\"><title>the RT task {}</title></rect>",
                y + 3.0,
                esc(&rt.what)
            );
            let said = format!("waited {:.2} ms", r.rt_wait_ns as f64 / 1e6);
            let room = left + plot_w - xr - 8.0 >= said.chars().count() as f64 * 6.0;
            let (tx, anchor) = if room { (xr + 7.0, "start") } else { (xr - 3.0, "end") };
            let _ = write!(s, "<text x=\"{tx:.1}\" y=\"{:.1}\" text-anchor=\"{anchor}\" font-size=\"10\" fill=\"#222\" paint-order=\"stroke\" stroke=\"#fafafa\" stroke-width=\"3\">{said}</text>", y + 16.0);
        }
    }
    s + "</svg>"
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The CDF draws a curve per subject, its tail on the nines scale (p99 two decades up).
    #[test]
    fn the_cdf_draws_every_subject() {
        let series = vec![
            Series {
                label: "a<b".into(),
                style: model_style(0),
                samples: 1000,
                points: vec![(0.0, 1000), (0.5, 10_000), (0.99, 100_000), (1.0, 1_000_000)],
            },
            Series {
                label: "c".into(),
                style: reference_style(0),
                samples: 10,
                points: vec![(0.0, 5000), (1.0, 5000)],
            },
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
        assert!(c.contains("stroke-dasharray=\"2 2\""), "the floor's dash: {c}");
        assert!(!cdf("empty", &[]).contains("NaN"));
    }

    #[test]
    fn charts_are_svg_with_escaped_text_and_finite_numbers() {
        let h = histogram("a<b", &[Bin { lo_ns: 0, hi_ns: 1000, count: 3 }], 10);
        assert!(h.starts_with("<svg") && h.ends_with("</svg>") && h.contains("a&lt;b"));
        for tick in [">1<", ">10<", ">1 µs<", "samples (log)"] {
            assert!(h.contains(tick), "{tick}: {h}");
        }
        assert!(!h.contains("log n"), "{h}");
        assert!(!histogram("empty", &[], 0).contains("NaN"));
    }

    /// Ticks: 1-2-5 on a log axis (decades only when that makes more than 10), nice steps on
    /// a linear one, short labels; a log domain out to the 1-2-5 values around the data.
    #[test]
    fn axes_have_readable_ticks() {
        assert_eq!(log125_ticks(10.0, 1000.0), [10.0, 20.0, 50.0, 100.0, 200.0, 500.0, 1000.0]);
        assert_eq!(log125_ticks(1.0, 1e6), [1.0, 10.0, 100.0, 1e3, 1e4, 1e5, 1e6]);
        assert!(log125_ticks(0.0, 10.0).is_empty());
        assert_eq!(log_domain([22.0, 41.0].into_iter()), (20.0, 50.0));
        assert_eq!(log_domain([f64::NAN].into_iter()), (1.0, 10.0));
        assert_eq!(nice_ticks(-1.5, 42.0, 5), [-10.0, 0.0, 10.0, 20.0, 30.0, 40.0, 50.0]);
        assert_eq!(nice_ticks(0.0, 0.0, 5), [0.0, 0.2, 0.4, 0.6, 0.8, 1.0]);
        assert_eq!((tick_us(20.0), tick_us(2000.0), tick_us(0.5)), ("20 µs".into(), "2 ms".into(), "0.5 µs".into()));
        assert_eq!(
            (fig_us(26.14), fig_us(1772.6), fig_us(37_715.9)),
            ("26.1 µs".into(), "1773 µs".into(), "37.7 ms".into())
        );
        assert_ne!(model_style(0), model_style(1));
        assert_eq!(model_style(8).dash, "5 3", "a second round of the palette is dashed");
    }

    /// Every model's lane on one axis: its atoms, the interrupt, the wait and the RT run.
    #[test]
    fn the_timelines_share_one_axis() {
        let runs: Vec<ScenarioResult> = ["none", "full"]
            .into_iter()
            .map(|m| {
                let boot = kernel::Config { preempt: m.parse().unwrap(), ..kernel::Config::default() };
                services::scenario::run_with(boot, &services::scenario::ScenarioConfig::default()).unwrap()
            })
            .collect();
        let t = timelines(&runs);
        assert_eq!(t.matches("<rect class=\"rt\"").count(), 2, "{t}");
        assert_eq!(t.matches("<line class=\"irq\"").count(), 2, "{t}");
        assert_eq!(t.matches("<rect class=\"atom\"").count(), 10, "{t}");
        assert!(t.contains(">0 ms<") && t.contains("time since the system call began") && !t.contains("NaN"), "{t}");
        assert!(!timelines(&[]).contains("NaN"));
    }
}
