//! `--svg`: a bar chart comparing runs, written by hand (no plotting
//! crate): for each figure (total hit ratio, origin bytes, bytes x hops,
//! mean and p99 latency) one bar per run, scaled to the largest of the
//! runs, with the value written above it.

use super::report::{Report, Row};

const PALETTE: [&str; 4] = ["#4e79a7", "#f28e2b", "#59a14f", "#e15759"];

fn escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

fn hit_ratio(r: &Row) -> f64 {
    (r.hit_ratio_local + r.hit_ratio_sibling + r.hit_ratio_parent) * 100.0
}

/// The chart of `runs` (their totals).
pub fn svg(runs: &[Report]) -> String {
    type Figure = (&'static str, fn(&Row) -> f64, fn(f64) -> String);
    let figures: [Figure; 5] = [
        ("hit ratio %", hit_ratio, |v| format!("{v:.1}")),
        (
            "origin MiB",
            |r| r.origin_bytes as f64 / 1048576.0,
            |v| format!("{v:.1}"),
        ),
        (
            "bytes x hops MiB",
            |r| r.bytes_hops / 1048576.0,
            |v| format!("{v:.1}"),
        ),
        (
            "mean latency ms",
            |r| r.latency_mean_ms,
            |v| format!("{v:.1}"),
        ),
        (
            "p99 latency ms",
            |r| r.latency_p99_ms,
            |v| format!("{v:.1}"),
        ),
    ];
    let bar_w = 36.0;
    let group_w = bar_w * runs.len().max(1) as f64 + 40.0;
    let chart_h = 220.0;
    let top = 40.0;
    let width = 40.0 + group_w * figures.len() as f64;
    let height = top + chart_h + 50.0 + 20.0 * runs.len() as f64;
    let mut out = format!(
        "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{width:.0}\" height=\"{height:.0}\" \
         font-family=\"sans-serif\" font-size=\"11\">\n\
         <rect width=\"100%\" height=\"100%\" fill=\"white\"/>\n\
         <text x=\"20\" y=\"22\" font-size=\"14\">cuttle simulate: totals per run</text>\n"
    );
    let base = top + chart_h;
    for (f, (label, value, show)) in figures.iter().enumerate() {
        let x0 = 40.0 + group_w * f as f64;
        let max = runs.iter().map(|r| value(&r.total)).fold(0.0_f64, f64::max);
        for (i, run) in runs.iter().enumerate() {
            let v = value(&run.total);
            let h = if max > 0.0 { v / max * chart_h } else { 0.0 };
            let x = x0 + bar_w * i as f64;
            out.push_str(&format!(
                "<rect x=\"{x:.1}\" y=\"{:.1}\" width=\"{:.1}\" height=\"{h:.1}\" fill=\"{}\"/>\n\
                 <text x=\"{:.1}\" y=\"{:.1}\" text-anchor=\"middle\">{}</text>\n",
                base - h,
                bar_w - 4.0,
                PALETTE[i % PALETTE.len()],
                x + (bar_w - 4.0) / 2.0,
                base - h - 4.0,
                escape(&show(v)),
            ));
        }
        out.push_str(&format!(
            "<text x=\"{:.1}\" y=\"{:.1}\" text-anchor=\"middle\">{}</text>\n",
            x0 + bar_w * runs.len() as f64 / 2.0,
            base + 16.0,
            escape(label)
        ));
    }
    out.push_str(&format!(
        "<line x1=\"30\" y1=\"{base:.1}\" x2=\"{:.1}\" y2=\"{base:.1}\" stroke=\"black\"/>\n",
        width - 10.0
    ));
    for (i, run) in runs.iter().enumerate() {
        let y = base + 40.0 + 20.0 * i as f64;
        out.push_str(&format!(
            "<rect x=\"40\" y=\"{:.1}\" width=\"12\" height=\"12\" fill=\"{}\"/>\n\
             <text x=\"58\" y=\"{:.1}\">{}</text>\n",
            y - 10.0,
            PALETTE[i % PALETTE.len()],
            y,
            escape(&run.mesh)
        ));
    }
    out.push_str("</svg>\n");
    out
}
