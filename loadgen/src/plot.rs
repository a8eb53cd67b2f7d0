//! An SVG plot of latency percentiles against offered CPS for a capacity
//! search, written by hand (a few lines of SVG need no plotting library).

use std::fmt::Write;

use crate::capacity::{CapacityReport, Step};

const W: f64 = 760.0;
const H: f64 = 440.0;
const LEFT: f64 = 70.0;
const RIGHT: f64 = 150.0;
const TOP: f64 = 40.0;
const BOTTOM: f64 = 50.0;
/// Width and height of the plotting area inside the margins.
const PW: f64 = W - LEFT - RIGHT;
const PH: f64 = H - TOP - BOTTOM;

fn esc(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

/// A plotted percentile: name, colour, and how to read it from a summary.
type Series = (
    &'static str,
    &'static str,
    fn(&crate::report::LatencySummary) -> u64,
);

/// Milliseconds of a latency in microseconds, floored above zero for the
/// log scale.
fn ms(us: u64) -> f64 {
    (us as f64 / 1000.0).max(0.001)
}

/// The plot: p50, p90, p99 and p99.9 (log scale, milliseconds) against the
/// offered rate, steps that held as filled dots and failed ones as crosses,
/// the latency limit as a dashed line.
pub fn latency_vs_cps(r: &CapacityReport, limit_ms: f64) -> String {
    let mut steps: Vec<_> = r.steps.iter().collect();
    steps.sort_by(|a, b| a.offered_cps.total_cmp(&b.offered_cps));
    let mut plot = Plot::scaled_for(&steps, limit_ms);
    plot.canvas_and_title(r);
    plot.latency_axis();
    plot.rate_axis();
    plot.axis_labels();
    plot.limit_line(limit_ms);
    let series: [Series; 4] = [
        ("p50", "#1f77b4", |l| l.p50_us),
        ("p90", "#2ca02c", |l| l.p90_us),
        ("p99", "#ff7f0e", |l| l.p99_us),
        ("p99.9", "#9467bd", |l| l.p999_us),
    ];
    for (i, series) in series.iter().enumerate() {
        plot.series(i, series, &steps);
    }
    plot.legend_notes(r.highest_held_cps);
    plot.s.push_str("</svg>\n");
    plot.s
}

/// The SVG being written, with the scales of its axes.
struct Plot {
    s: String,
    /// The offered rate at the right end of the x axis.
    xmax: f64,
    /// The decades (log10 of milliseconds) at the bottom and top of the
    /// y axis.
    lo: f64,
    hi: f64,
}

impl Plot {
    /// Axes that hold every step's p99.9 and twice the limit, with some
    /// room to the right of the highest rate.
    fn scaled_for(steps: &[&Step], limit_ms: f64) -> Plot {
        let xmax = steps.iter().map(|s| s.offered_cps).fold(1.0, f64::max) * 1.05;
        let ymax_val = steps
            .iter()
            .map(|s| ms(s.latency.p999_us))
            .fold(limit_ms * 2.0, f64::max);
        Plot {
            s: String::new(),
            xmax,
            lo: 0.01f64.log10(),
            hi: ymax_val.log10().ceil(),
        }
    }

    fn x(&self, v: f64) -> f64 {
        LEFT + v / self.xmax * PW
    }

    fn y(&self, v: f64) -> f64 {
        TOP + PH - (v.max(0.01).log10() - self.lo) / (self.hi - self.lo) * PH
    }

    fn canvas_and_title(&mut self, r: &CapacityReport) {
        let s = &mut self.s;
        let _ = writeln!(
            s,
            r#"<svg xmlns="http://www.w3.org/2000/svg" width="{W}" height="{H}" font-family="sans-serif" font-size="12">"#
        );
        let _ = writeln!(s, r#"<rect width="{W}" height="{H}" fill="white"/>"#);
        let _ = writeln!(
            s,
            r#"<text x="{}" y="22" text-anchor="middle" font-size="14">{} latency against offered rate — {}</text>"#,
            W / 2.0,
            esc(&r.scenario),
            esc(&r.target)
        );
    }

    /// Both axes' lines, and a grid line with its label at each decade of
    /// milliseconds.
    fn latency_axis(&mut self) {
        let _ = writeln!(
            self.s,
            r#"<line x1="{LEFT}" y1="{}" x2="{}" y2="{}" stroke="black"/><line x1="{LEFT}" y1="{TOP}" x2="{LEFT}" y2="{}" stroke="black"/>"#,
            TOP + PH,
            LEFT + PW,
            TOP + PH,
            TOP + PH
        );
        let mut decade = self.lo;
        while decade <= self.hi + 1e-9 {
            let v = 10f64.powf(decade);
            let yy = self.y(v);
            let _ = writeln!(
                self.s,
                r##"<line x1="{LEFT}" y1="{yy:.1}" x2="{}" y2="{yy:.1}" stroke="#ddd"/><text x="{}" y="{:.1}" text-anchor="end">{}</text>"##,
                LEFT + PW,
                LEFT - 6.0,
                yy + 4.0,
                if v < 1.0 {
                    format!("{v}")
                } else {
                    format!("{v:.0}")
                }
            );
            decade += 1.0;
        }
    }

    /// A grid line with its label at each tick of the offered rate.
    fn rate_axis(&mut self) {
        // Round tick steps (1, 2 or 5 times a power of ten), about five of them.
        let raw = self.xmax / 5.0;
        let mag = 10f64.powf(raw.log10().floor());
        let step = [1.0, 2.0, 5.0, 10.0]
            .into_iter()
            .map(|m| m * mag)
            .find(|&s| s >= raw)
            .unwrap_or(raw);
        let ticks = (self.xmax / step).floor() as u32;
        for i in 0..=ticks {
            let v = step * f64::from(i);
            let xx = self.x(v);
            let _ = writeln!(
                self.s,
                r##"<line x1="{xx:.1}" y1="{TOP}" x2="{xx:.1}" y2="{}" stroke="#eee"/><text x="{xx:.1}" y="{}" text-anchor="middle">{:.0}</text>"##,
                TOP + PH,
                TOP + PH + 18.0,
                v
            );
        }
    }

    fn axis_labels(&mut self) {
        let _ = writeln!(
            self.s,
            r#"<text x="{}" y="{}" text-anchor="middle">offered calls per second</text><text x="16" y="{}" transform="rotate(-90 16 {})" text-anchor="middle">latency (ms, log)</text>"#,
            LEFT + PW / 2.0,
            H - 10.0,
            TOP + PH / 2.0,
            TOP + PH / 2.0
        );
    }

    fn limit_line(&mut self, limit_ms: f64) {
        let ly = self.y(limit_ms);
        let _ = writeln!(
            self.s,
            r##"<line x1="{LEFT}" y1="{ly:.1}" x2="{}" y2="{ly:.1}" stroke="#c00" stroke-dasharray="6,4"/><text x="{}" y="{:.1}" fill="#c00">p99 limit {limit_ms} ms</text>"##,
            LEFT + PW,
            LEFT + PW + 6.0,
            ly + 4.0
        );
    }

    /// One percentile: a line through the steps that measured latency, a
    /// dot or cross on each, and its legend entry (the `i`th).
    fn series(&mut self, i: usize, (name, color, get): &Series, steps: &[&Step]) {
        let pts: Vec<String> = steps
            .iter()
            .filter(|st| st.latency.count > 0)
            .map(|st| {
                format!(
                    "{:.1},{:.1}",
                    self.x(st.offered_cps),
                    self.y(ms(get(&st.latency)))
                )
            })
            .collect();
        if !pts.is_empty() {
            let _ = writeln!(
                self.s,
                r#"<polyline fill="none" stroke="{color}" stroke-width="2" points="{}"/>"#,
                pts.join(" ")
            );
        }
        for st in steps.iter().filter(|st| st.latency.count > 0) {
            let (cx, cy) = (self.x(st.offered_cps), self.y(ms(get(&st.latency))));
            if st.held {
                let _ = writeln!(
                    self.s,
                    r#"<circle cx="{cx:.1}" cy="{cy:.1}" r="3.5" fill="{color}"/>"#
                );
            } else {
                let _ = writeln!(
                    self.s,
                    r#"<path d="M{:.1},{:.1}l7,7m0,-7l-7,7" stroke="{color}" stroke-width="2"/>"#,
                    cx - 3.5,
                    cy - 3.5
                );
            }
        }
        let ly = TOP + 10.0 + 18.0 * i as f64;
        let _ = writeln!(
            self.s,
            r#"<line x1="{}" y1="{ly}" x2="{}" y2="{ly}" stroke="{color}" stroke-width="2"/><text x="{}" y="{}">{name}</text>"#,
            LEFT + PW + 10.0,
            LEFT + PW + 30.0,
            LEFT + PW + 36.0,
            ly + 4.0
        );
    }

    /// What dots and crosses mean, and the highest rate that held.
    fn legend_notes(&mut self, highest_held_cps: Option<f64>) {
        let note_y = TOP + 10.0 + 18.0 * 5.0;
        let _ = writeln!(
            self.s,
            r#"<text x="{}" y="{note_y}">● held  ✕ failed</text>"#,
            LEFT + PW + 10.0
        );
        if let Some(c) = highest_held_cps {
            let _ = writeln!(
                self.s,
                r#"<text x="{}" y="{}">held: {c:.0} cps</text>"#,
                LEFT + PW + 10.0,
                note_y + 18.0
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::capacity::Step;
    use crate::report::LatencySummary;

    fn step(cps: f64, p99: u64, held: bool) -> Step {
        Step {
            offered_cps: cps,
            achieved_cps: cps,
            started: 10,
            completed: 10,
            failed_ratio: 0.0,
            latency: LatencySummary {
                count: 10,
                mean_us: 1.0,
                p50_us: p99 / 4,
                p90_us: p99 / 2,
                p99_us: p99,
                p999_us: p99 * 2,
                max_us: p99 * 3,
            },
            retransmissions: 0,
            held,
            outcome: if held {
                crate::held::Outcome::Held
            } else {
                crate::held::Outcome::FailedByErrors
            },
            rate_share: 1.0,
            reason: None,
            generator_peak_busy: 0.1,
            pacing_lag_us: 0,
            generator_us_per_call: None,
            warnings: vec![],
        }
    }

    #[test]
    fn plot_has_a_point_per_step_and_series() {
        let r = CapacityReport {
            target: "127.0.0.1:5060".into(),
            scenario: "call".into(),
            criterion: String::new(),
            steps: vec![step(100.0, 500, true), step(200.0, 80_000, false)],
            highest_held_cps: Some(100.0),
            lowest_failed_cps: Some(200.0),
            generator_limited: false,
            profile: None,
        };
        let svg = latency_vs_cps(&r, 50.0);
        assert!(svg.starts_with("<svg") && svg.trim_end().ends_with("</svg>"));
        assert_eq!(svg.matches("<polyline").count(), 4);
        assert_eq!(svg.matches("<circle").count(), 4);
        assert_eq!(svg.matches("<path").count(), 4);
        assert!(svg.contains("held: 100 cps"));
    }
}
