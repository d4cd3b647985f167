//! The latency plot: CDFs of the 64 B echo at concurrency 1, one panel per
//! stub, noslate-fc vs the Node baseline vs the direct floor.

use std::path::Path;

use plotters::prelude::*;

use crate::stats::percentile;

pub struct Series {
    pub label: String,
    /// Sorted latencies in nanoseconds.
    pub sorted_ns: Vec<u64>,
    pub color: RGBColor,
}

pub struct Panel {
    pub title: String,
    pub series: Vec<Series>,
}

const FONTS: &[&str] = &[
    "/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf",
    "/usr/share/fonts/dejavu/DejaVuSans.ttf",
    "/usr/share/fonts/TTF/DejaVuSans.ttf",
    "/usr/share/fonts/truetype/liberation/LiberationSans-Regular.ttf",
    "/usr/share/fonts/truetype/freefont/FreeSans.ttf",
];

fn register_font() -> Result<(), String> {
    for path in FONTS {
        if let Ok(bytes) = std::fs::read(path) {
            let bytes: &'static [u8] = Box::leak(bytes.into_boxed_slice());
            if plotters::style::register_font("sans-serif", FontStyle::Normal, bytes).is_ok() {
                return Ok(());
            }
        }
    }
    Err(format!("no TrueType font found (tried {FONTS:?}; Debian: apt-get install fonts-dejavu-core)"))
}

pub fn latency_cdf(path: &Path, title: &str, panels: &[Panel]) -> Result<(), String> {
    register_font()?;
    let err = |e: &dyn std::fmt::Display| e.to_string();
    let root = BitMapBackend::new(path, (1500, 640)).into_drawing_area();
    root.fill(&WHITE).map_err(|e| err(&e))?;
    let (head, body) = root.split_vertically(44);
    head.draw_text(title, &("sans-serif", 24).into_font().color(&BLACK), (20, 12)).map_err(|e| err(&e))?;
    let areas = body.split_evenly((1, panels.len().max(1)));
    for (area, panel) in areas.iter().zip(panels) {
        let all: Vec<u64> = panel.series.iter().flat_map(|s| s.sorted_ns.iter().copied()).collect();
        if all.is_empty() {
            continue;
        }
        // x range: from the fastest sample to the slowest p99.9, in µs.
        let lo = panel.series.iter().filter_map(|s| s.sorted_ns.first()).min().copied().unwrap_or(1) as f64 / 1e3;
        let hi = panel.series.iter().map(|s| percentile(&s.sorted_ns, 99.9)).fold(1.0, f64::max) / 1e3;
        let (lo, hi) = ((lo * 0.8).max(1.0), hi * 1.25);
        let mut chart = ChartBuilder::on(area)
            .caption(&panel.title, ("sans-serif", 20))
            .margin(14)
            .x_label_area_size(48)
            .y_label_area_size(56)
            .build_cartesian_2d((lo..hi).log_scale(), 0f64..100f64)
            .map_err(|e| err(&e))?;
        chart
            .configure_mesh()
            .y_labels(11)
            .light_line_style(RGBColor(238, 238, 238))
            .x_desc("latency per request, µs (log scale)")
            .y_desc("percentile")
            .x_label_formatter(&|v| if *v >= 100.0 { format!("{v:.0}") } else { format!("{v:.1}") })
            .label_style(("sans-serif", 14))
            .axis_desc_style(("sans-serif", 16))
            .draw()
            .map_err(|e| err(&e))?;
        for p in [50.0, 99.0] {
            chart
                .draw_series(LineSeries::new([(lo, p), (hi, p)], BLACK.mix(0.25).stroke_width(1)))
                .map_err(|e| err(&e))?;
        }
        for s in &panel.series {
            if s.sorted_ns.is_empty() {
                continue;
            }
            let n = s.sorted_ns.len();
            let points: Vec<(f64, f64)> = (0..=1000)
                .map(|i| {
                    let p = i as f64 / 10.0;
                    (percentile(&s.sorted_ns, p.max(100.0 / n as f64)) / 1e3, p)
                })
                .filter(|(x, _)| *x <= hi)
                .collect();
            let color = s.color;
            let p50 = percentile(&s.sorted_ns, 50.0) / 1e3;
            let p99 = percentile(&s.sorted_ns, 99.0) / 1e3;
            chart
                .draw_series(LineSeries::new(points, color.stroke_width(3)))
                .map_err(|e| err(&e))?
                .label(format!("{}: p50 {p50:.0} µs, p99 {p99:.0} µs", s.label))
                .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 24, y)], color.stroke_width(4)));
        }
        chart
            .configure_series_labels()
            .position(SeriesLabelPosition::LowerRight)
            .label_font(("sans-serif", 15))
            .background_style(WHITE.mix(0.9))
            .border_style(BLACK)
            .draw()
            .map_err(|e| err(&e))?;
    }
    root.present().map_err(|e| err(&e))?;
    Ok(())
}
