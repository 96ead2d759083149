//! `refpoint bench --plot FILE.svg`: the bench's wall times as a bar chart
//! (plotters, SVG backend), the ratios in the caption.

use std::path::Path;

use plotters::prelude::*;
use serde_json::Value;

use crate::error::{RefpointError, ReturnCode};

fn failed(message: String) -> RefpointError {
    RefpointError::new(ReturnCode::Failed, message)
}

/// Draws the bench document `v` (the `--json` document) into `path`.
///
/// # Errors
/// 32768 naming the file when the chart cannot be drawn or written.
pub(super) fn draw(path: &Path, v: &Value) -> Result<(), RefpointError> {
    let f = |k: &str| v[k].as_f64().unwrap_or(0.0);
    let limit_kind = v["limit_kind"].as_str().unwrap_or("?");
    let mut bars: Vec<(String, f64, RGBColor)> = vec![
        (
            "limit: SHA-256 pass, all cores".to_owned(),
            f("sha256_pass_s"),
            RGBColor(150, 150, 150),
        ),
        (
            "limit: write + fsync".to_owned(),
            f("write_fsync_s"),
            RGBColor(150, 150, 150),
        ),
        (
            "limit: source read".to_owned(),
            f("source_read_s"),
            RGBColor(150, 150, 150),
        ),
        (
            "refpoint full export".to_owned(),
            f("export_s"),
            RGBColor(31, 119, 180),
        ),
        (
            "refpoint differential export".to_owned(),
            f("differential_s"),
            RGBColor(31, 119, 180),
        ),
        (
            "refpoint verify".to_owned(),
            f("verify_s"),
            RGBColor(31, 119, 180),
        ),
        (
            "refpoint collection export".to_owned(),
            f("collection_s"),
            RGBColor(31, 119, 180),
        ),
    ];
    for p in v["peers"].as_array().into_iter().flatten() {
        bars.push((
            p["name"].as_str().unwrap_or("peer").to_owned(),
            p["wall_s"].as_f64().unwrap_or(0.0),
            RGBColor(214, 39, 40),
        ));
    }
    bars.retain(|(_, s, _)| s.is_finite());
    let xmax = bars.iter().map(|(_, s, _)| *s).fold(0.1, f64::max) * 1.7;
    let n = bars.len();
    let caption = format!(
        "refpoint bench: export {:.2}× limit ({limit_kind}), verify {:.2}× SHA-256 pass, differential {:.3}× export",
        f("export_to_limit"),
        f("verify_to_sha256_over_output"),
        f("differential_to_export")
    );
    let err = |e: &dyn std::fmt::Display| failed(format!("cannot draw '{}': {e}", path.display()));
    let root =
        SVGBackend::new(path, (1000, 60 + 48 * u32::try_from(n).unwrap_or(20))).into_drawing_area();
    root.fill(&WHITE).map_err(|e| err(&e))?;
    let mut chart = ChartBuilder::on(&root)
        .caption(caption, ("sans-serif", 16))
        .margin(12)
        .x_label_area_size(36)
        .y_label_area_size(8)
        .build_cartesian_2d(0f64..xmax, 0f64..n as f64)
        .map_err(|e| err(&e))?;
    chart
        .configure_mesh()
        .disable_y_mesh()
        .disable_y_axis()
        .x_desc("wall time, seconds (median of the rounds)")
        .draw()
        .map_err(|e| err(&e))?;
    let row = |i: usize| (n - 1 - i) as f64;
    chart
        .draw_series(bars.iter().enumerate().map(|(i, (_, secs, color))| {
            Rectangle::new(
                [(0.0, row(i) + 0.15), (*secs, row(i) + 0.85)],
                color.filled(),
            )
        }))
        .map_err(|e| err(&e))?;
    chart
        .draw_series(bars.iter().enumerate().map(|(i, (label, secs, _))| {
            Text::new(
                format!("{label}: {secs:.2} s"),
                (secs + xmax * 0.01, row(i) + 0.62),
                ("sans-serif", 14),
            )
        }))
        .map_err(|e| err(&e))?;
    root.present().map_err(|e| err(&e))?;
    Ok(())
}
