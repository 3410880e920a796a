//! The files a run leaves in its output folder: `summary.json` (the report
//! with its per-second timeline) and `chart.svg` (throughput and latency
//! percentiles over time).

use std::path::Path;

use anyhow::Context;
use charts_rs::{LineChart, Series};

use crate::progress::Sample;

/// Writes `summary.json` and `chart.svg` for one run into `dir`.
pub fn write(dir: &Path, summary: &serde_json::Value, timeline: &[Sample], title: &str) -> anyhow::Result<()> {
    std::fs::create_dir_all(dir).with_context(|| format!("create {}", dir.display()))?;
    std::fs::write(dir.join("summary.json"), serde_json::to_vec_pretty(summary)?)?;
    std::fs::write(dir.join("chart.svg"), timeline_chart(title, timeline)?)?;
    Ok(())
}

/// Rates per second on the left axis, latency percentiles on the right.
pub fn timeline_chart(title: &str, timeline: &[Sample]) -> anyhow::Result<String> {
    let rate = |name: &str, value: fn(&Sample) -> u64| {
        Series::new(name.to_owned(), timeline.iter().map(|s| value(s) as f32).collect())
    };
    let latency = |name: &str, value: fn(&Sample) -> Option<f64>| {
        let mut series =
            Series::new(name.to_owned(), timeline.iter().map(|s| value(s).unwrap_or_default() as f32).collect());
        series.y_axis_index = 1;
        series
    };
    let series = vec![
        rate("deliveries/s", |s| s.deliveries_per_s),
        rate("acked sends/s", |s| s.acked_per_s),
        rate("open connections", |s| s.open),
        latency("p50 ms", |s| s.p50_ms),
        latency("p99 ms", |s| s.p99_ms),
    ];
    let seconds = timeline.iter().map(|s| format!("{}s", s.t_s)).collect();
    let mut chart = LineChart::new(series, seconds);
    title.clone_into(&mut chart.base.title.text);
    chart.base.width = 900.0;
    chart.base.height = 450.0;
    let mut latency_axis = chart.y_axis_configs[0].clone();
    latency_axis.formatter = Some("{c} ms".to_owned());
    latency_axis.title = Some("latency".to_owned());
    chart.y_axis_configs.push(latency_axis);
    chart.svg().map_err(|error| anyhow::anyhow!("chart: {error:?}"))
}
