//! The report's answer charts: per workload the trade-off of normal-path cost against p99
//! latency (the models as points, the floor and the peers as reference lines), and where each
//! model's wakeups went (a stacked bar per model); and the label layout both rely on.
//!
//! **Mechanism.** Labels are placed greedily ([`place`]): each label has candidate boxes in
//! order of preference (around its point at growing distances; along its reference line), and
//! takes the first that stays inside the plot and touches neither an already placed label nor
//! an obstacle (the points' markers); when none is free, the nearest free box of a scan of the
//! whole plot. A label set away from its point gets a leader line. Text widths are estimated
//! from the character count, generously, so the browser's text fits the reserved box.
//!
//! **Invariant.** Placed labels never overlap each other or a point's marker, as long as the
//! plot has room (the scan falls back to the least overlap only when it has none); the
//! latency axis is set by the models and the floor, never by a peer (a peer off the scale is
//! named at the plot's edge).

use crate::svg::{self, esc, fig_us, open, text, tick_us};
use lab::verdict::Range;
use std::fmt::Write;

/// An axis-aligned box in SVG user units (y down).
#[derive(Clone, Copy, Debug, PartialEq)]
pub(crate) struct Rect {
    pub(crate) x: f64,
    pub(crate) y: f64,
    pub(crate) w: f64,
    pub(crate) h: f64,
}

impl Rect {
    /// Whether the two boxes share area, `gap` units of clearance counted as shared.
    pub(crate) fn hits(&self, o: &Rect, gap: f64) -> bool {
        self.x < o.x + o.w + gap
            && o.x < self.x + self.w + gap
            && self.y < o.y + o.h + gap
            && o.y < self.y + self.h + gap
    }

    fn inside(&self, b: &Rect) -> bool {
        self.x >= b.x && self.y >= b.y && self.x + self.w <= b.x + b.w && self.y + self.h <= b.y + b.h
    }

    /// The point of the box nearest to `(px, py)`.
    fn nearest(&self, px: f64, py: f64) -> (f64, f64) {
        (px.clamp(self.x, self.x + self.w), py.clamp(self.y, self.y + self.h))
    }

    fn overlap_area(&self, o: &Rect) -> f64 {
        let w = (self.x + self.w).min(o.x + o.w) - self.x.max(o.x);
        let h = (self.y + self.h).min(o.y + o.h) - self.y.max(o.y);
        w.max(0.0) * h.max(0.0)
    }
}

/// Clearance kept between a label and anything else.
const GAP: f64 = 2.0;

/// A label's size at font size `size`: a generous width per character (wider than DejaVu's
/// and Liberation's average), the line's height.
pub(crate) fn label_size(t: &str, size: f64) -> (f64, f64) {
    (t.chars().count() as f64 * size * 0.66 + 2.0, size * 1.3)
}

/// One label to place: its anchor (the point it names), its size, and the top-left corners
/// it may take, in order of preference.
pub(crate) struct Want {
    pub(crate) anchor: (f64, f64),
    pub(crate) w: f64,
    pub(crate) h: f64,
    pub(crate) cands: Vec<(f64, f64)>,
}

/// Candidates around a point: 8 directions at growing distances from the marker.
pub(crate) fn around(px: f64, py: f64, w: f64, h: f64) -> Vec<(f64, f64)> {
    let mut c = Vec::new();
    for d in [6.0, 12.0, 20.0, 30.0, 44.0, 60.0] {
        let e = d * 0.7;
        c.extend([
            (px + d, py - h / 2.0),
            (px - d - w, py - h / 2.0),
            (px + e, py - e - h),
            (px - e - w, py - e - h),
            (px + e, py + e),
            (px - e - w, py + e),
            (px - w / 2.0, py - d - h),
            (px - w / 2.0, py + d),
        ]);
    }
    c
}

/// Places `wants` in order inside `bounds`, clear of each other and of `obstacles`: the
/// first free candidate, else the free box nearest the anchor on a 3-unit grid, else the
/// candidate that overlaps least.
pub(crate) fn place(wants: &[Want], obstacles: &[Rect], bounds: Rect) -> Vec<Rect> {
    let mut placed: Vec<Rect> = Vec::new();
    for want in wants {
        let rect = |(x, y): (f64, f64)| Rect { x, y, w: want.w, h: want.h };
        let free =
            |r: &Rect, placed: &[Rect]| r.inside(&bounds) && !placed.iter().chain(obstacles).any(|o| r.hits(o, GAP));
        let mut got = want.cands.iter().map(|&c| rect(c)).find(|r| free(r, &placed));
        if got.is_none() {
            let (ax, ay) = want.anchor;
            let (nx, ny) =
                (((bounds.w - want.w) / 3.0).max(0.0) as usize, ((bounds.h - want.h) / 3.0).max(0.0) as usize);
            got = (0..=nx)
                .flat_map(|i| (0..=ny).map(move |j| (i, j)))
                .map(|(i, j)| rect((bounds.x + i as f64 * 3.0, bounds.y + j as f64 * 3.0)))
                .filter(|r| free(r, &placed))
                .min_by(|a, b| {
                    let d = |r: &Rect| (r.x + r.w / 2.0 - ax).hypot(r.y + r.h / 2.0 - ay);
                    d(a).total_cmp(&d(b))
                });
        }
        let r = got.unwrap_or_else(|| {
            let cost = |r: &Rect| placed.iter().chain(obstacles).map(|o| r.overlap_area(o)).sum::<f64>();
            want.cands.iter().map(|&c| rect(c)).min_by(|a, b| cost(a).total_cmp(&cost(b))).unwrap_or(rect(want.anchor))
        });
        placed.push(r);
    }
    placed
}

/// Writes a label's text into its box, with a leader line from `anchor` when the box is away
/// from it.
fn label(s: &mut String, r: &Rect, anchor: (f64, f64), size: f64, t: &str, title: &str) {
    let (nx, ny) = r.nearest(anchor.0, anchor.1);
    if (nx - anchor.0).hypot(ny - anchor.1) > 9.0 {
        let _ = write!(
            s,
            "<line class=\"leader\" x1=\"{:.1}\" y1=\"{:.1}\" x2=\"{nx:.1}\" y2=\"{ny:.1}\" stroke=\"#555\" stroke-width=\"1\"/>",
            anchor.0, anchor.1
        );
    }
    let _ = write!(
        s,
        "<text class=\"label\" x=\"{:.1}\" y=\"{:.1}\" font-size=\"{size}\" fill=\"#222\">{}<title>{}</title></text>",
        r.x + 1.0,
        r.y + size * 0.98,
        esc(t),
        esc(title)
    );
}

/// A model on the trade-off chart.
pub(crate) struct Model {
    pub(crate) label: String,
    pub(crate) color: &'static str,
    /// p99 in µs with the spread of the rounds.
    pub(crate) p99: Range,
    /// The cost against `none` in percent with its spread; `None`: no `none` row to compare.
    pub(crate) cost: Option<Range>,
}

/// A reference line (the floor, a peer): a p99 with no comparable cost.
pub(crate) struct Reference {
    pub(crate) label: String,
    pub(crate) p99_us: f64,
}

/// The trade-off of one workload: p99 latency (log x, 1-2-5 ticks) against the normal-path
/// cost (%, y), a point per model with its rounds' spread as whiskers, the references as
/// vertical lines. Lower left is better.
pub(crate) fn tradeoff(title: &str, models: &[Model], refs: &[Reference]) -> String {
    let (w, h, left, right, top, bottom) = (600.0, 340.0, 58.0, 14.0, 34.0, 48.0);
    let plot = Rect { x: left, y: top, w: w - left - right, h: h - top - bottom };
    let shown: Vec<(&Model, Range)> = models.iter().filter_map(|m| Some((m, m.cost?))).collect();
    // The latency axis: the models' spreads and the floor (the first reference).
    let xs = shown.iter().flat_map(|(m, _)| [m.p99.lo, m.p99.hi]).chain(refs.first().map(|r| r.p99_us));
    let (xlo, xhi) = svg::log_domain(xs);
    let x =
        |us: f64| plot.x + ((us.max(xlo).log10() - xlo.log10()) / (xhi.log10() - xlo.log10())).clamp(0.0, 1.0) * plot.w;
    let (ylo, yhi) = shown.iter().fold((0.0f64, 0.0f64), |(l, h), (_, c)| (l.min(c.lo), h.max(c.hi)));
    let yt = svg::nice_ticks(ylo, yhi, 5);
    let (ylo, yhi) = (yt.first().copied().unwrap_or(0.0), yt.last().copied().unwrap_or(1.0));
    let yspan = if yhi > ylo { yhi - ylo } else { 1.0 };
    let y = |c: f64| plot.y + plot.h - (c - ylo) / yspan * plot.h;
    let mut s = open(w as u32, h as u32, "chart tradeoff", title);
    text(&mut s, plot.x + plot.w / 2.0, 15.0, "middle", 12, title);
    let (bx, by) = (plot.x + plot.w, plot.y + plot.h);
    for &t in &svg::log125_ticks(xlo, xhi) {
        let tx = x(t);
        let _ = write!(s, "<line x1=\"{tx:.1}\" y1=\"{top}\" x2=\"{tx:.1}\" y2=\"{by:.1}\" stroke=\"#e4e4e4\"/>");
        text(&mut s, tx, by + 13.0, "middle", 9, &tick_us(t));
    }
    for &t in &yt {
        let ty = y(t);
        let stroke = if t == 0.0 { "#999" } else { "#e4e4e4" };
        let _ = write!(s, "<line x1=\"{left}\" y1=\"{ty:.1}\" x2=\"{bx:.1}\" y2=\"{ty:.1}\" stroke=\"{stroke}\"/>");
        text(&mut s, left - 4.0, ty + 3.0, "end", 9, &format!("{t:+}%"));
    }
    let _ = write!(
        s,
        "<rect x=\"{left}\" y=\"{top}\" width=\"{:.1}\" height=\"{:.1}\" fill=\"none\" stroke=\"#444\"/>",
        plot.w, plot.h
    );
    text(&mut s, bx, h - 20.0, "end", 10, "p99 latency (log scale; the whiskers: lowest and highest round) →");
    text(&mut s, 4.0, top - 9.0, "start", 10, "cost % against none ↑");
    // Markers first: they are the obstacles of every label.
    let mut obstacles = Vec::new();
    for (m, c) in &shown {
        let (px, py) = (x(m.p99.value), y(c.value));
        let stroke = format!("stroke=\"{}\" stroke-width=\"1\"", m.color);
        let _ = write!(
            s,
            "<line class=\"spread\" x1=\"{:.1}\" y1=\"{py:.1}\" x2=\"{:.1}\" y2=\"{py:.1}\" {stroke}/><line class=\"spread\" x1=\"{px:.1}\" y1=\"{:.1}\" x2=\"{px:.1}\" y2=\"{:.1}\" {stroke}/>",
            x(m.p99.lo),
            x(m.p99.hi),
            y(c.lo),
            y(c.hi)
        );
        let _ = write!(
            s,
            "<circle class=\"point\" cx=\"{px:.1}\" cy=\"{py:.1}\" r=\"4.5\" fill=\"{}\" stroke=\"#222\" stroke-width=\"0.6\"><title>{}: p99 {} [{}, {}], cost {:+.1}% [{:+.1}, {:+.1}]</title></circle>",
            m.color,
            esc(&m.label),
            fig_us(m.p99.value),
            fig_us(m.p99.lo),
            fig_us(m.p99.hi),
            c.value,
            c.lo,
            c.hi
        );
        obstacles.push(Rect { x: px - 5.5, y: py - 5.5, w: 11.0, h: 11.0 });
    }
    // The references: a line where it falls on the scale, else an arrow at the edge.
    let mut wants = Vec::new();
    let mut texts = Vec::new();
    for r in refs {
        let t = format!("{} {}", r.label, fig_us(r.p99_us));
        let (t, lx) = if r.p99_us > xhi {
            (format!("{t} →"), bx)
        } else if r.p99_us < xlo {
            (format!("← {t}"), left)
        } else {
            (t, x(r.p99_us))
        };
        let (lw, lh) = label_size(&t, 10.0);
        if (left..=bx).contains(&lx) && r.p99_us >= xlo && r.p99_us <= xhi {
            let _ = write!(s, "<line class=\"reference\" x1=\"{lx:.1}\" y1=\"{top}\" x2=\"{lx:.1}\" y2=\"{by:.1}\" stroke=\"#555\" stroke-dasharray=\"4 3\"><title>{}</title></line>", esc(&t));
        }
        let rows = (0..((plot.h - lh) / (lh + GAP)) as usize).map(|k| plot.y + 2.0 + k as f64 * (lh + GAP));
        let cands = if lx >= bx {
            rows.map(|ry| (bx - 2.0 - lw, ry)).collect()
        } else if lx <= left && r.p99_us < xlo {
            rows.map(|ry| (left + 2.0, ry)).collect()
        } else {
            rows.flat_map(|ry| [(lx + 3.0, ry), (lx - 3.0 - lw, ry)]).collect()
        };
        wants.push(Want { anchor: (lx, plot.y + 2.0), w: lw, h: lh, cands });
        texts.push((t.clone(), 10.0, format!("{t}: its p99 (a reference; its cost is not comparable)"), true));
    }
    for (m, c) in &shown {
        let (px, py) = (x(m.p99.value), y(c.value));
        let (lw, lh) = label_size(&m.label, 11.0);
        wants.push(Want { anchor: (px, py), w: lw, h: lh, cands: around(px, py, lw, lh) });
        texts.push((m.label.clone(), 11.0, m.label.clone(), false));
    }
    let boxes = place(&wants, &obstacles, plot);
    for ((r, want), (t, size, title, on_line)) in boxes.iter().zip(&wants).zip(&texts) {
        // A reference's label names its line wherever along it the label sits.
        let anchor = if *on_line { r.nearest(want.anchor.0, r.y + r.h / 2.0) } else { want.anchor };
        label(&mut s, r, anchor, *size, t, title);
    }
    let missing: Vec<&str> = models.iter().filter(|m| m.cost.is_none()).map(|m| m.label.as_str()).collect();
    if !missing.is_empty() {
        text(&mut s, left, h - 5.0, "start", 9, &format!("no cost figure (no none row): {}", missing.join(", ")));
    }
    s + "</svg>"
}

/// The wakeup parts' colours (Okabe-Ito), in `kernel::time::WakeupParts::NAMES` order.
pub(crate) const PART_COLORS: [&str; 6] = ["#56B4E9", "#0072B2", "#E69F00", "#D55E00", "#009E73", "#CC79A7"];

/// One model's bar: its parts' medians (ns, in `WakeupParts::NAMES` order) and the words on
/// its worst wakeup (`text`, with a longer `title`).
pub(crate) struct Bar {
    pub(crate) label: String,
    pub(crate) median_ns: [u64; 6],
    pub(crate) worst: String,
    pub(crate) worst_title: String,
}

/// Where each model's wakeups went: a bar per model, a segment per part (the medians, µs on
/// a linear axis), a legend of the parts, the worst wakeup named at the bar's end.
pub(crate) fn breakdown(title: &str, bars: &[Bar]) -> String {
    let names = kernel::time::WakeupParts::NAMES;
    let (w, left, plot_w, row, top) = (600.0, 92.0, 290.0, 20.0, 46.0);
    let h = top + row * bars.len() as f64 + 30.0;
    let max = bars.iter().map(|b| b.median_ns.iter().sum::<u64>()).max().unwrap_or(0) as f64 / 1e3;
    let ticks = svg::nice_ticks(0.0, max.max(1.0), 5);
    let span = ticks.last().copied().unwrap_or(1.0).max(1e-9);
    let x = |us: f64| left + us / span * plot_w;
    let mut s = open(w as u32, h as u32, "chart breakdown", title);
    text(&mut s, w / 2.0, 15.0, "middle", 12, title);
    let mut lx = left;
    for (name, color) in names.iter().zip(PART_COLORS) {
        let _ =
            write!(s, "<rect class=\"legend\" x=\"{lx:.1}\" y=\"24\" width=\"10\" height=\"10\" fill=\"{color}\"/>");
        text(&mut s, lx + 13.0, 33.0, "start", 10, name);
        lx += 20.0 + label_size(name, 10.0).0;
    }
    let base = top + row * bars.len() as f64;
    for &t in &ticks {
        let _ =
            write!(s, "<line x1=\"{:.1}\" y1=\"{top}\" x2=\"{:.1}\" y2=\"{base:.1}\" stroke=\"#e4e4e4\"/>", x(t), x(t));
        text(&mut s, x(t), base + 13.0, "middle", 9, &tick_us(t));
    }
    text(&mut s, left + plot_w, h - 4.0, "end", 9, "median µs per part");
    for (i, b) in bars.iter().enumerate() {
        let y = top + i as f64 * row;
        text(&mut s, left - 6.0, y + 14.0, "end", 11, &b.label);
        let mut at = 0.0;
        for ((name, color), &ns) in names.iter().zip(PART_COLORS).zip(&b.median_ns) {
            let us = ns as f64 / 1e3;
            if us > 0.0 {
                let _ = write!(
                    s,
                    "<rect class=\"part\" x=\"{:.1}\" y=\"{:.1}\" width=\"{:.2}\" height=\"{:.1}\" fill=\"{color}\"><title>{}: {name} {:.2} µs (median)</title></rect>",
                    x(at),
                    y + 3.0,
                    (x(at + us) - x(at)).max(0.3),
                    row - 6.0,
                    esc(&b.label),
                    us
                );
            }
            at += us;
        }
        let _ = write!(
            s,
            "<text x=\"{:.1}\" y=\"{:.1}\" font-size=\"10\">{}<title>{}</title></text>",
            x(at) + 4.0,
            y + 14.0,
            esc(&b.worst),
            esc(&b.worst_title)
        );
    }
    let _ = write!(s, "<line x1=\"{left}\" y1=\"{top}\" x2=\"{left}\" y2=\"{base:.1}\" stroke=\"#444\"/>");
    s + "</svg>"
}

#[cfg(test)]
mod tests {
    use super::*;

    fn no_collisions(boxes: &[Rect], obstacles: &[Rect], bounds: Rect) {
        for (i, a) in boxes.iter().enumerate() {
            assert!(a.inside(&bounds), "{a:?} outside {bounds:?}");
            for b in &boxes[i + 1..] {
                assert!(!a.hits(b, 0.0), "labels overlap: {a:?} {b:?}");
            }
            for o in obstacles {
                assert!(!a.hits(o, 0.0), "label on a marker: {a:?} {o:?}");
            }
        }
    }

    /// Points piled on one spot, in a row, and at the plot's corners: every label finds a
    /// free box inside the plot, off every marker, and the nearest candidate when it is free.
    #[test]
    fn labels_never_overlap_each_other_or_the_markers() {
        let bounds = Rect { x: 58.0, y: 26.0, w: 548.0, h: 266.0 };
        let names = ["none", "voluntary", "full", "lazy", "cpulock", "patch-int3", "patch-call"];
        let layouts: Vec<Vec<(f64, f64)>> = vec![
            vec![(300.0, 150.0); 14],
            (0..14).map(|i| (300.0 + i as f64 * 3.0, 150.0)).collect(),
            vec![(58.0, 26.0), (606.0, 26.0), (58.0, 292.0), (606.0, 292.0), (60.0, 28.0), (604.0, 290.0)],
            (0..7).map(|i| (70.0 + i as f64 * 2.0, 280.0 - i as f64 * 2.0)).collect(),
        ];
        for pts in layouts {
            let obstacles: Vec<Rect> =
                pts.iter().map(|&(x, y)| Rect { x: x - 5.5, y: y - 5.5, w: 11.0, h: 11.0 }).collect();
            let wants: Vec<Want> = pts
                .iter()
                .enumerate()
                .map(|(i, &(x, y))| {
                    let (w, h) = label_size(&format!("{}/threaded", names[i % 7]), 11.0);
                    Want { anchor: (x, y), w, h, cands: around(x, y, w, h) }
                })
                .collect();
            let boxes = place(&wants, &obstacles, bounds);
            assert_eq!(boxes.len(), pts.len());
            no_collisions(&boxes, &obstacles, bounds);
        }
        let lone = Want { anchor: (300.0, 150.0), w: 40.0, h: 14.0, cands: around(300.0, 150.0, 40.0, 14.0) };
        assert_eq!(place(&[lone], &[], bounds)[0], Rect { x: 306.0, y: 143.0, w: 40.0, h: 14.0 }, "right of the point");
    }

    fn range(v: f64) -> Range {
        Range { value: v, lo: v * 0.9, hi: v * 1.1, rounds: 3 }
    }

    /// The trade-off: a point per model with a cost, the floor and a peer on the scale as
    /// lines, a peer far off it named at the edge without widening the axis.
    #[test]
    fn the_tradeoff_draws_models_as_points_and_references_as_lines() {
        let models: Vec<Model> =
            [("none", 40.0, Some(0.0)), ("full", 45.0, Some(2.0)), ("lazy", 44.0, Some(2.1)), ("x", 50.0, None)]
                .into_iter()
                .map(|(l, p, c)| Model { label: l.into(), color: "#000", p99: range(p), cost: c.map(range) })
                .collect();
        let refs = vec![
            Reference { label: "floor".into(), p99_us: 20.0 },
            Reference { label: "peer:host-fifo".into(), p99_us: 30.0 },
            Reference { label: "peer:go".into(), p99_us: 40_000.0 },
        ];
        let t = tradeoff("hog", &models, &refs);
        assert!(!t.contains("NaN") && !t.contains("inf"), "{t}");
        assert_eq!(t.matches("<circle class=\"point\"").count(), 3, "{t}");
        assert_eq!(t.matches("<line class=\"reference\"").count(), 2, "the floor and host-fifo on the scale: {t}");
        assert!(
            t.contains("peer:go 40.0 ms →") && !t.contains(">50 ms<") && !t.contains(">10 ms<"),
            "go named at the edge: {t}"
        );
        assert!(t.contains(">20 µs<") && t.contains(">50 µs<"), "1-2-5 ticks: {t}");
        assert!(t.contains("no cost figure (no none row): x"), "{t}");
        assert_eq!(t.matches("<text class=\"label\"").count(), 6, "a label per point and reference: {t}");
        assert!(!tradeoff("empty", &[], &[]).contains("NaN"));
    }

    #[test]
    fn the_breakdown_stacks_each_part_and_names_the_worst() {
        let bars = vec![
            Bar {
                label: "full".into(),
                median_ns: [5000, 700, 100, 0, 900, 500],
                worst: "worst 1.2 ms".into(),
                worst_title: "t".into(),
            },
            Bar {
                label: "none".into(),
                median_ns: [5000, 700, 100, 20_000, 90, 500],
                worst: "w".into(),
                worst_title: "t".into(),
            },
        ];
        let b = breakdown("hog", &bars);
        assert_eq!(b.matches("<rect class=\"part\"").count(), 11, "zero parts are not drawn: {b}");
        assert_eq!(b.matches("<rect class=\"legend\"").count(), 6);
        assert!(b.contains("worst 1.2 ms") && !b.contains("NaN"), "{b}");
        assert!(!breakdown("empty", &[]).contains("NaN"));
    }
}
