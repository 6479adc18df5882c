//! `--report FILE.html`: one self-contained page (inline SVG drawn here, no scripts, nothing
//! fetched) with the latency histogram, the rates over time and the summary table of a run.

use std::fmt::Write as _;

use serde_json::Value;

use super::stats::Report;
use super::timeline::RatePoint;

/// Size of each chart's drawing area, in SVG units.
const W: f64 = 760.0;
const H: f64 = 240.0;
/// Margins for the axes' labels.
const LEFT: f64 = 70.0;
const BOTTOM: f64 = 30.0;

/// The whole page.
pub fn render(report: &Report) -> String {
    let mut page = String::new();
    let _ = write!(
        page,
        "<!doctype html><html><head><meta charset=\"utf-8\"><title>iris bench {0}</title><style>\
         body{{font-family:sans-serif;max-width:900px;margin:2em auto;color:#222}}\
         table{{border-collapse:collapse}}td{{border:1px solid #ccc;padding:2px 8px;font-size:13px;\
         vertical-align:top}}td:first-child{{font-weight:bold}}svg{{background:#fafafa}}</style></head>\
         <body><h1>iris bench {0}</h1>",
        escape(report.scenario)
    );
    page.push_str("<h2>Send→delivered latency</h2>");
    page.push_str(&histogram(&report.charts.histogram));
    page.push_str("<h2>Rate over time (per 100 ms, as msgs/s)</h2>");
    page.push_str(&rates(&report.charts.rates));
    page.push_str("<h2>Summary</h2><table>");
    if let Ok(Value::Object(fields)) = serde_json::to_value(report) {
        for (key, value) in fields {
            let shown = match value {
                Value::String(s) => s,
                other => other.to_string(),
            };
            let _ = write!(page, "<tr><td>{}</td><td>{}</td></tr>", escape(&key), escape(&shown));
        }
    }
    page.push_str("</table></body></html>\n");
    page
}

/// Bars per logarithmic latency bucket.
fn histogram(buckets: &[(f64, u64)]) -> String {
    let Some(top) = buckets.iter().map(|b| b.1).max().filter(|&m| m > 0) else {
        return "<p>No latencies recorded.</p>".into();
    };
    let mut svg = open_svg();
    let bar = (W - LEFT) / buckets.len() as f64;
    for (i, (upper_ms, count)) in buckets.iter().enumerate() {
        let h = (H - BOTTOM) * *count as f64 / top as f64;
        let x = LEFT + i as f64 * bar;
        let _ = write!(
            svg,
            "<rect x=\"{x:.1}\" y=\"{:.1}\" width=\"{:.1}\" height=\"{h:.1}\" fill=\"#4a78c2\">\
             <title>≤ {upper_ms:.3} ms: {count}</title></rect>",
            H - BOTTOM - h,
            (bar - 1.0).max(1.0)
        );
        if i % (buckets.len() / 8).max(1) == 0 {
            let _ = write!(svg, "<text x=\"{x:.1}\" y=\"{:.1}\" font-size=\"11\">{}</text>", H - 10.0, ms(*upper_ms));
        }
    }
    axis_labels(&mut svg, &top.to_string(), "messages per bucket; x: latency (log scale)");
    svg.push_str("</svg>");
    svg
}

/// One line of the rate chart: name, colour, and which rate it draws.
type Series = (&'static str, &'static str, fn(&RatePoint) -> f64);

/// Lines of sent, accepted and delivered per second over the run.
fn rates(points: &[RatePoint]) -> String {
    if points.len() < 2 {
        return "<p>Too short for a rate chart.</p>".into();
    }
    let top = points.iter().map(|p| p.sent.max(p.accepted).max(p.delivered)).fold(1.0, f64::max);
    let end = points.last().map_or(1.0, |p| p.t_s).max(0.1);
    let mut svg = open_svg();
    let series: [Series; 3] = [
        ("sent", "#aaa", |p| p.sent),
        ("accepted", "#e39c2f", |p| p.accepted),
        ("delivered", "#2f8f4e", |p| p.delivered),
    ];
    for (idx, (name, color, value)) in series.iter().enumerate() {
        let path: Vec<String> = points
            .iter()
            .map(|p| {
                let x = LEFT + (W - LEFT) * p.t_s / end;
                let y = (H - BOTTOM) * (1.0 - value(p) / top);
                format!("{x:.1},{y:.1}")
            })
            .collect();
        let _ = write!(
            svg,
            "<polyline fill=\"none\" stroke=\"{color}\" stroke-width=\"1.5\" points=\"{}\"/>\
             <text x=\"{:.0}\" y=\"14\" font-size=\"12\" fill=\"{color}\">{name}</text>",
            path.join(" "),
            LEFT + 10.0 + 80.0 * idx as f64
        );
    }
    let _ = write!(svg, "<text x=\"{:.0}\" y=\"{:.0}\" font-size=\"11\">{end:.1} s</text>", W - 40.0, H - 10.0);
    axis_labels(&mut svg, &format!("{top:.0}/s"), "x: seconds since the first event");
    svg.push_str("</svg>");
    svg
}

fn open_svg() -> String {
    format!(
        "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{W}\" height=\"{H}\" viewBox=\"0 0 {W} {H}\">\
         <line x1=\"{LEFT}\" y1=\"0\" x2=\"{LEFT}\" y2=\"{0}\" stroke=\"#333\"/>\
         <line x1=\"{LEFT}\" y1=\"{0}\" x2=\"{W}\" y2=\"{0}\" stroke=\"#333\"/>",
        H - BOTTOM
    )
}

fn axis_labels(svg: &mut String, top: &str, caption: &str) {
    let _ = write!(
        svg,
        "<text x=\"2\" y=\"12\" font-size=\"11\">{}</text><text x=\"2\" y=\"{:.0}\" font-size=\"11\">0</text>\
         <text x=\"{LEFT}\" y=\"{H}\" font-size=\"10\" fill=\"#666\">{}</text>",
        escape(top),
        H - BOTTOM,
        escape(caption)
    );
}

fn ms(v: f64) -> String {
    if v < 1.0 {
        format!("{:.0}µs", v * 1000.0)
    } else {
        format!("{v:.0}ms")
    }
}

fn escape(s: &str) -> String {
    s.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;").replace('"', "&quot;")
}

#[cfg(test)]
mod tests {
    use super::super::harness::Counters;
    use super::super::stats::Latencies;
    use super::*;

    #[test]
    fn the_page_is_self_contained_and_has_both_charts_and_the_table() {
        let mut lat = Latencies::new();
        for us in [100, 200, 5_000, 20_000] {
            lat.record_ns(us * 1_000);
        }
        let counters = Counters::default();
        counters.on_sent();
        let mut report = counters.report("throughput", std::time::Duration::from_secs(1), &lat);
        report.charts.rates = vec![
            RatePoint { t_s: 0.0, sent: 10.0, ..Default::default() },
            RatePoint { t_s: 0.1, ..Default::default() },
        ];
        let page = render(&report);
        assert_eq!(page.matches("<svg").count(), 2, "{page}");
        assert!(page.contains("<td>msgs_per_s</td>"));
        assert!(!page.contains("<script") && !page.contains("src=") && !page.contains("href="), "{page}");
    }
}
