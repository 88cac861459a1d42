//! Line charts of training and test curves (PNG), drawn with an embedded font so no system
//! font library is needed, into memory, then encoded and written atomically.
use crate::run_dir::write_atomic;
use anyhow::{anyhow, Result};
use plotters::coord::combinators::WithKeyPoints;
use plotters::coord::Shift;
use plotters::element::DashedPathElement;
use plotters::style::text_anchor::{HPos, Pos, VPos};
use plotters::coord::ranged1d::{AsRangedCoord, ValueFormatter};
use plotters::prelude::*;
use std::path::Path;
use std::sync::Once;

static FONT: Once = Once::new();

fn register_font() {
    FONT.call_once(|| {
        let bytes: &'static [u8] = include_bytes!("../assets/DejaVuSans.ttf");
        // The font is compiled in; failure would be a build defect, not a user error.
        plotters::style::register_font("sans-serif", FontStyle::Normal, bytes).ok().expect("embedded font parses");
    });
}

pub struct Series {
    pub label: String,
    pub points: Vec<(f64, f64)>,
}

#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Scale {
    Linear,
    /// For losses that fall over orders of magnitude.
    Log,
}

/// A chart's title, axis labels and where its legend goes.
struct ChartText<'a> {
    title: &'a str,
    x_label: &'a str,
    y_label: &'a str,
    legend_at: SeriesLabelPosition,
}

/// Draws the series on one chart, written atomically to `path`.
pub fn line_chart(path: &Path, title: &str, x_label: &str, y_label: &str, series: &[Series], scale: Scale) -> Result<()> {
    // Losses fall from the top left and accuracies rise: keep the legend off the curves.
    let mut legend_at = match scale {
        Scale::Linear => SeriesLabelPosition::LowerRight,
        Scale::Log => SeriesLabelPosition::LowerLeft,
    };
    register_font();
    // The x axis spans every iteration, also those whose values diverged (NaN, inf).
    let x_max = series.iter().flat_map(|s| s.points.iter().map(|p| p.0)).filter(|x| x.is_finite()).fold(1.0f64, f64::max);
    let (mut y_min, mut y_max) = (f64::INFINITY, f64::NEG_INFINITY);
    for &(_, y) in series.iter().flat_map(|s| s.points.iter()).filter(|p| drawable(p.1, scale)) {
        y_min = y_min.min(y);
        y_max = y_max.max(y);
    }
    if !y_min.is_finite() {
        (y_min, y_max) = (1e-3, 1.0);
    }
    let with_zeros;
    let mut series = series;
    if scale == Scale::Log && series.iter().any(|s| s.points.iter().any(|p| p.1 == 0.0)) {
        let floor = zero_floor(y_min);
        y_min = floor;
        with_zeros = zeros_at(series, floor);
        series = &with_zeros;
        // The zeros run along the bottom, where the legend would hide them.
        legend_at = SeriesLabelPosition::UpperRight;
    }
    let text = ChartText { title, x_label, y_label, legend_at };
    render(path, (960, 600), |root| match scale {
        Scale::Linear => {
            let pad = ((y_max - y_min) * 0.05).max(1e-6);
            draw(root, path, &text, series, x_max, ((y_min - pad)..(y_max + pad), linear_decimals(y_max - y_min + 2.0 * pad)), scale)
        }
        Scale::Log => draw(root, path, &text, series, x_max, (log_axis(y_min * 0.8, y_max * 1.25), 0), scale),
    })
}

/// Where zeros go on a log axis whose smallest positive value is `y_min`: the power of ten a
/// decade or more below it, apart from every real value.
fn zero_floor(y_min: f64) -> f64 {
    10f64.powi(y_min.log10().floor() as i32 - 1)
}

/// The series with their zeros at `floor`, each label that has some saying so: a log axis has
/// no place for 0, and an XOR run whose loss reached exactly 0 showed only its first point.
fn zeros_at(series: &[Series], floor: f64) -> Vec<Series> {
    series.iter().map(|s| {
        let has_zero = s.points.iter().any(|p| p.1 == 0.0);
        Series {
            label: if has_zero { format!("{} (0 drawn at {})", s.label, log_label(floor)) } else { s.label.clone() },
            points: s.points.iter().map(|&(x, y)| (x, if y == 0.0 { floor } else { y })).collect(),
        }
    }).collect()
}

/// The picture `render` draws on: an RGB bitmap in memory.
type Picture<'a> = DrawingArea<BitMapBackend<'a>, Shift>;

/// Draws a white `size` picture with `draw` and writes it as a PNG. Encoded in memory and
/// written by `write_atomic`, which sees every write error: plotters writing the file itself
/// lost its last write's (a full disk left a truncated figure in place, and the command
/// succeeded).
fn render(path: &Path, (width, height): (u32, u32), draw: impl FnOnce(&Picture) -> Result<()>) -> Result<()> {
    register_font();
    let mut rgb = vec![0u8; width as usize * height as usize * 3];
    {
        let root = BitMapBackend::with_buffer(&mut rgb, (width, height)).into_drawing_area();
        root.fill(&WHITE).map_err(|e| draw_error(path, &e))?;
        draw(&root)?;
        root.present().map_err(|e| draw_error(path, &e))?;
    }
    write_png(path, &rgb, (width, height))
}

/// An RGB picture as a PNG (the encoder and settings plotters used), written atomically.
fn write_png(path: &Path, rgb: &[u8], (width, height): (u32, u32)) -> Result<()> {
    use image::ImageEncoder;
    let mut png = Vec::new();
    image::codecs::png::PngEncoder::new(&mut png).write_image(rgb, width, height, image::ColorType::Rgb8).map_err(|e| draw_error(path, &e))?;
    write_atomic(path, &png)
}

/// Whether a value has a place on the axis: finite, and above 0 on a log one.
fn drawable(y: f64, scale: Scale) -> bool {
    y.is_finite() && (scale == Scale::Linear || y > 0.0)
}

/// A series' runs of drawable points: a NaN or an infinity is a gap in the line, not a fall to
/// the axis's floor.
fn segments(points: &[(f64, f64)], scale: Scale) -> Vec<Vec<(f64, f64)>> {
    points.split(|p| !drawable(p.1, scale)).filter(|s| !s.is_empty()).map(<[_]>::to_vec).collect()
}

/// Enough decimals that a linear axis's labels, about a tenth of its span apart, differ.
fn linear_decimals(span: f64) -> usize {
    if !(span.is_finite() && span > 0.0) {
        return 2;
    }
    ((-(span / 10.0).log10()).ceil().max(0.0) as usize).clamp(2, 8)
}

/// A log axis from `lo` to `hi` with a light grid line at 1 to 9 of each decade, labelled at 1,
/// 2 and 5 (at every grid line where the range holds fewer than two of those). plotters' own
/// log key points left short ranges with one or two labels and crowded a decade's top.
fn log_axis(lo: f64, hi: f64) -> WithKeyPoints<LogCoord<f64>> {
    let mut grid = Vec::new();
    for exponent in lo.log10().floor() as i32..=hi.log10().ceil() as i32 {
        // m / 10^k, not m * 0.1^k: 3 / 10 is 0.3, 3 * 0.1 is not.
        let at = |m: f64| if exponent >= 0 { m * 10f64.powi(exponent) } else { m / 10f64.powi(-exponent) };
        grid.extend((1..=9).map(|m| at(m as f64)).filter(|y| (lo..=hi).contains(y)));
    }
    let one_two_five = |y: &f64| {
        let mantissa = y / 10f64.powf(y.log10().floor());
        [1.0, 2.0, 5.0].iter().any(|m| (mantissa - m).abs() < 1e-6)
    };
    let mut labelled: Vec<f64> = grid.iter().copied().filter(one_two_five).collect();
    if labelled.len() < 2 {
        labelled = grid.clone();
    }
    // Over many decades (a diverged run's loss) 1, 2 and 5 would crowd: the powers of ten only,
    // every k-th of them beyond fifteen.
    if labelled.len() > 20 {
        let decades: Vec<f64> = labelled.iter().copied().filter(|y| (y.log10() - y.log10().round()).abs() < 1e-9).collect();
        let every = decades.len().div_ceil(15).max(1);
        labelled = decades.into_iter().step_by(every).collect();
    }
    (lo..hi).log_scale().with_key_points(labelled).with_light_points(grid)
}

/// A log axis's label: plain numbers from 0.01 to 10^5, else 1e-3 and the like.
fn log_label(y: f64) -> String {
    if y <= 0.0 {
        return String::new();
    }
    if (0.01..1e5).contains(&y) { format!("{}", (y * 1e6).round() / 1e6) } else { format!("{y:.0e}") }
}

/// `decimals`: the linear axis's label precision (`linear_decimals`).
fn draw<Y>(root: &Picture, path: &Path, text: &ChartText, series: &[Series], x_max: f64, (y, decimals): (Y, usize), scale: Scale) -> Result<()>
where
    Y: AsRangedCoord<Value = f64>,
    Y::CoordDescType: ValueFormatter<f64>,
{
    let fail = |e: &dyn std::fmt::Display| draw_error(path, e);
    let mut chart = ChartBuilder::on(root)
        .caption(text.title, ("sans-serif", 26))
        .margin(16)
        .margin_right(36)
        .x_label_area_size(48)
        .y_label_area_size(80)
        .build_cartesian_2d(0f64..x_max, y)
        .map_err(|e| fail(&e))?;
    chart
        .configure_mesh()
        .x_desc(text.x_label)
        // Iterations are whole: a short run's fractional key points are left unlabelled rather
        // than rounded into repeats ("0 0 1 1 1").
        .x_label_formatter(&|x| if x.fract() == 0.0 { format!("{x:.0}") } else { String::new() })
        .y_label_formatter(&|y| if scale == Scale::Log { log_label(*y) } else { format!("{y:.decimals$}") })
        .y_desc(text.y_label)
        .label_style(("sans-serif", 16))
        .axis_desc_style(("sans-serif", 18))
        .draw()
        .map_err(|e| fail(&e))?;
    let colors = [RGBColor(31, 119, 180), RGBColor(214, 39, 40), RGBColor(44, 160, 44), RGBColor(148, 103, 189)];
    for (s, color) in series.iter().zip(colors.iter().cycle()) {
        let style = ShapeStyle::from(color).stroke_width(2);
        let mut parts = segments(&s.points, scale).into_iter();
        // The first part carries the legend entry (an empty one when nothing is drawable).
        chart
            .draw_series(LineSeries::new(parts.next().unwrap_or_default(), style))
            .map_err(|e| fail(&e))?
            .label(s.label.clone())
            .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 24, y)], style));
        for part in parts {
            chart.draw_series(LineSeries::new(part, style)).map_err(|e| fail(&e))?;
        }
        // A point alone between gaps (a run that diverged after it) is no line: mark it.
        let alone = segments(&s.points, scale).into_iter().filter(|part| part.len() == 1).map(|part| Circle::new(part[0], 4, style.filled()));
        chart.draw_series(alone).map_err(|e| fail(&e))?;
    }
    chart
        .configure_series_labels()
        .background_style(WHITE.mix(0.85))
        .border_style(BLACK)
        .label_font(("sans-serif", 16))
        .position(text.legend_at.clone())
        .draw()
        .map_err(|e| fail(&e))?;
    Ok(())
}

/// A 10x10 confusion matrix as a heat map with every count written in its cell.
pub fn confusion_chart(path: &Path, title: &str, counts: &[Vec<u64>]) -> Result<()> {
    render(path, (760, 720), |root| {
        let fail = |e: &dyn std::fmt::Display| draw_error(path, e);
        let n = counts.len() as i32;
        let mut chart = ChartBuilder::on(root)
            .caption(title, ("sans-serif", 22))
            .margin(16)
            .x_label_area_size(48)
            .y_label_area_size(56)
            // Cell p spans [p - 0.5, p + 0.5], so the integer ticks sit at the cells' middles.
            .build_cartesian_2d(-0.5..(n as f64 - 0.5), -0.5..(n as f64 - 0.5))
            .map_err(|e| fail(&e))?;
        chart
            .configure_mesh()
            .disable_mesh()
            .x_desc("Predicted digit")
            .y_desc("True digit")
            .x_labels(n as usize)
            .y_labels(n as usize)
            .x_label_formatter(&|x| format!("{}", x.round() as i32))
            .y_label_formatter(&|y| format!("{}", n - 1 - y.round() as i32))
            .label_style(("sans-serif", 16))
            .axis_desc_style(("sans-serif", 18))
            .draw()
            .map_err(|e| fail(&e))?;
        let max = counts.iter().flatten().copied().max().unwrap_or(1).max(1) as f64;
        for (t, row) in counts.iter().enumerate() {
            for (p, &c) in row.iter().enumerate() {
                // Log shading so the small off-diagonal counts stay visible.
                let shade = ((c as f64 + 1.0).ln() / (max + 1.0).ln()).clamp(0.0, 1.0);
                let color = RGBColor((255.0 * (1.0 - 0.85 * shade)) as u8, (255.0 * (1.0 - 0.55 * shade)) as u8, 255);
                let (x, y) = (p as f64, (n - 1 - t as i32) as f64);
                chart.draw_series(std::iter::once(Rectangle::new([(x - 0.5, y - 0.5), (x + 0.5, y + 0.5)], color.filled())))
                    .map_err(|e| fail(&e))?;
                let text_color = if shade > 0.6 { WHITE } else { BLACK };
                // Anchored at the cell's top-left corner, offset in pixels towards its middle.
                let label = EmptyElement::at((x - 0.5, y + 0.5)) + Text::new(format!("{c}"), (18, 22), ("sans-serif", 15).into_font().color(&text_color));
                chart.draw_series(std::iter::once(label)).map_err(|e| fail(&e))?;
            }
        }
        Ok(())
    })
}

/// An axis tick with three significant digits, trailing zeros dropped.
fn tick(x: f64) -> String {
    if x == 0.0 || !x.is_finite() {
        return format!("{x}");
    }
    let decimals = (2 - x.abs().log10().floor() as i32).max(0) as usize;
    let s = format!("{x:.decimals$}");
    if s.contains('.') { s.trim_end_matches('0').trim_end_matches('.').to_string() } else { s }
}

/// One configuration's curve in a band chart: (x, mean, min, max) points.
pub struct Band {
    pub label: String,
    pub points: Vec<(f64, f64, f64, f64)>,
}

/// Ten colours that tell apart (matplotlib's tab10, in the order the figures had).
const PALETTE: [RGBColor; 10] = [
    RGBColor(31, 119, 180), RGBColor(214, 39, 40), RGBColor(44, 160, 44), RGBColor(148, 103, 189), RGBColor(255, 127, 14),
    RGBColor(23, 190, 207), RGBColor(140, 86, 75), RGBColor(227, 119, 194), RGBColor(127, 127, 127), RGBColor(188, 189, 34),
];

/// A band chart's mean line: its colour and dash (pixels drawn, pixels skipped; none is solid).
#[derive(Clone, Copy)]
struct LineLook {
    color: RGBColor,
    dash: Option<(u32, u32)>,
}

/// The `i`-th configuration's look: the ten colours solid, then dashed, then dotted, so that
/// 30 configurations differ (with 6 colours, 15 had three red lines).
fn line_look(i: usize) -> LineLook {
    const DASHES: [Option<(u32, u32)>; 3] = [None, Some((12, 6)), Some((3, 4))];
    LineLook { color: PALETTE[i % PALETTE.len()], dash: DASHES[(i / PALETTE.len()) % DASHES.len()] }
}

/// A line from `points` in `look`, solid or dashed (plotters draws either as one element).
fn styled_line<DB: DrawingBackend, C: Clone + 'static>(points: Vec<C>, look: LineLook) -> DynElement<'static, DB, C> {
    let style = ShapeStyle::from(look.color).stroke_width(2);
    match look.dash {
        None => PathElement::new(points, style).into_dyn(),
        Some((dash, gap)) => DashedPathElement::new(points, dash, gap, style).into_dyn(),
    }
}

/// The band chart's legend, beside the plot rather than over it: rows of `LEGEND_ROW` pixels
/// from `LEGEND_TOP` (the plot area's top), as many as the 600-pixel height holds.
const LEGEND_TOP: i32 = 56;
const LEGEND_ROW: i32 = 22;
const LEGEND_ROWS: usize = ((600 - LEGEND_TOP - 16) / LEGEND_ROW) as usize;
/// Longer labels are cut (report.csv has them whole), so that the legend stays narrow.
const LEGEND_LABEL_CHARS: usize = 60;

fn legend_font() -> FontDesc<'static> {
    ("sans-serif", 15).into_font()
}

/// The legend's rows: each shown label with its look, and when more configurations than rows,
/// a last row that says how many are left out.
fn legend_rows(bands: &[Band]) -> Vec<(String, Option<LineLook>)> {
    let cut = |label: &str| match label.char_indices().nth(LEGEND_LABEL_CHARS) {
        Some((at, _)) => format!("{}…", &label[..at]),
        None => label.to_string(),
    };
    let shown = if bands.len() > LEGEND_ROWS { LEGEND_ROWS - 1 } else { bands.len() };
    let mut rows: Vec<(String, Option<LineLook>)> = bands[..shown].iter().enumerate().map(|(i, b)| (cut(&b.label), Some(line_look(i)))).collect();
    if shown < bands.len() {
        rows.push((format!("{} more configurations in report.csv", bands.len() - shown), None));
    }
    rows
}

/// The legend's width in pixels: a line sample, the widest label and margins.
fn legend_width(rows: &[(String, Option<LineLook>)]) -> u32 {
    let font = legend_font();
    let text = rows.iter().map(|(label, _)| font.box_size(label).map_or(8 * label.chars().count() as u32, |(w, _)| w)).max();
    text.map_or(0, |w| 8 + 36 + w + 16)
}

fn draw_legend(area: &Picture, path: &Path, rows: &[(String, Option<LineLook>)]) -> Result<()> {
    let fail = |e: &dyn std::fmt::Display| draw_error(path, e);
    let (width, _) = area.dim_in_pixel();
    let bottom = LEGEND_TOP + LEGEND_ROW * rows.len() as i32;
    area.draw(&Rectangle::new([(0, LEGEND_TOP - 6), (width as i32 - 8, bottom + 6)], BLACK.stroke_width(1))).map_err(|e| fail(&e))?;
    let text = TextStyle::from(legend_font()).pos(Pos::new(HPos::Left, VPos::Center));
    for (row, (label, look)) in rows.iter().enumerate() {
        let y = LEGEND_TOP + LEGEND_ROW * row as i32 + LEGEND_ROW / 2;
        if let Some(look) = look {
            area.draw(&styled_line(vec![(8, y), (36, y)], *look)).map_err(|e| fail(&e))?;
        }
        area.draw(&Text::new(label.as_str(), (44, y), &text)).map_err(|e| fail(&e))?;
    }
    Ok(())
}

/// The report's figure: mean curves with a shaded min-max band each (over seeds), and beside
/// the 960x600 plot a legend (the canvas is widened for it), written atomically to `path`.
pub fn band_chart(path: &Path, title: &str, x_label: &str, y_label: &str, bands: &[Band], scale: Scale) -> Result<()> {
    let finite = |y: f64| y.is_finite() && (scale == Scale::Linear || y > 0.0);
    let all = bands.iter().flat_map(|b| b.points.iter());
    let x_max = all.clone().map(|p| p.0).fold(1.0, f64::max);
    let ys: Vec<f64> = all.flat_map(|p| [p.2, p.3]).filter(|&y| finite(y)).collect();
    let (mut lo, mut hi) = (ys.iter().copied().fold(f64::INFINITY, f64::min), ys.iter().copied().fold(f64::NEG_INFINITY, f64::max));
    if !lo.is_finite() {
        (lo, hi) = (1e-3, 1.0);
    }
    register_font();
    let legend = legend_rows(bands);
    render(path, (960 + legend_width(&legend), 600), |root| {
        let (plot, beside) = root.split_horizontally(960);
        draw_legend(&beside, path, &legend)?;
        let mut builder = chart_builder(&plot, title);
        let fail = |e: &dyn std::fmt::Display| draw_error(path, e);
        macro_rules! body {
            ($chart:expr) => {{
                let mut chart = $chart.map_err(|e| fail(&e))?;
                chart.configure_mesh().x_desc(x_label).y_desc(y_label).label_style(("sans-serif", 16)).axis_desc_style(("sans-serif", 18))
                    .x_label_formatter(&|x| format!("{x:.0}"))
                    .y_label_formatter(&|y| if scale == Scale::Log { log_label(*y) } else { tick(*y) })
                    .draw().map_err(|e| fail(&e))?;
                for (i, b) in bands.iter().enumerate() {
                    let look = line_look(i);
                    let pts: Vec<_> = b.points.iter().filter(|p| finite(p.1) && finite(p.2) && finite(p.3)).collect();
                    let outline: Vec<(f64, f64)> = pts.iter().map(|p| (p.0, p.3)).chain(pts.iter().rev().map(|p| (p.0, p.2))).collect();
                    chart.draw_series(std::iter::once(Polygon::new(outline, look.color.mix(0.18).filled()))).map_err(|e| fail(&e))?;
                    chart.draw_series(std::iter::once(styled_line(pts.iter().map(|p| (p.0, p.1)).collect(), look))).map_err(|e| fail(&e))?;
                }
            }};
        }
        match scale {
            Scale::Linear => {
                let pad = ((hi - lo) * 0.05).max(1e-6);
                body!(builder.build_cartesian_2d(0f64..x_max, (lo - pad)..(hi + pad)))
            }
            Scale::Log => body!(builder.build_cartesian_2d(0f64..x_max, log_axis(lo * 0.8, hi * 1.25))),
        }
        Ok(())
    })
}

fn draw_error(path: &Path, e: &dyn std::fmt::Display) -> anyhow::Error {
    anyhow!("cannot draw {}: {e}", path.display())
}

/// A 960x600 PNG with a caption, written atomically; `draw` builds its chart.
fn canvas(path: &Path, title: &str, draw: impl FnOnce(&mut ChartBuilder<'_, '_, BitMapBackend<'_>>) -> Result<()>) -> Result<()> {
    render(path, (960, 600), |root| draw(&mut chart_builder(root, title)))
}

/// The report figures' chart on `area`: caption, margins and axis label areas.
fn chart_builder<'a, 'b>(area: &'a Picture<'b>, title: &str) -> ChartBuilder<'a, 'b, BitMapBackend<'b>> {
    let mut builder = ChartBuilder::on(area);
    builder.caption(title, ("sans-serif", 24)).margin(16).margin_right(36).x_label_area_size(48).y_label_area_size(80);
    builder
}

/// Final values against one setting: the mean with a bar from min to max at each x.
pub fn error_bar_chart(path: &Path, title: &str, x_label: &str, y_label: &str, points: &[(f64, f64, f64, f64)]) -> Result<()> {
    let (x_min, x_max) = points.iter().fold((f64::INFINITY, f64::NEG_INFINITY), |(a, b), p| (a.min(p.0), b.max(p.0)));
    let (y_min, y_max) = points.iter().fold((f64::INFINITY, f64::NEG_INFINITY), |(a, b), p| (a.min(p.2), b.max(p.3)));
    let pad = ((y_max - y_min) * 0.1).max(1e-4);
    let log_x = x_min > 0.0 && x_max / x_min >= 10.0;
    canvas(path, title, |builder| {
        let fail = |e: &dyn std::fmt::Display| draw_error(path, e);
        let color = PALETTE[0];
        macro_rules! body {
            ($chart:expr) => {{
                let mut chart = $chart.map_err(|e| fail(&e))?;
                chart.configure_mesh().x_desc(x_label).y_desc(y_label).label_style(("sans-serif", 16)).axis_desc_style(("sans-serif", 18))
                    .x_labels(8).x_label_formatter(&|x| tick(*x)).draw().map_err(|e| fail(&e))?;
                chart.draw_series(points.iter().map(|&(x, mean, lo, hi)| ErrorBar::new_vertical(x, lo, mean, hi, color.filled(), 10)))
                    .map_err(|e| fail(&e))?;
                chart.draw_series(LineSeries::new(points.iter().map(|p| (p.0, p.1)), ShapeStyle::from(color).stroke_width(1))).map_err(|e| fail(&e))?;
            }};
        }
        if log_x {
            body!(builder.build_cartesian_2d(((x_min * 0.8)..(x_max * 1.25)).log_scale(), (y_min - pad)..(y_max + pad)))
        } else {
            let xpad = ((x_max - x_min) * 0.08).max(1e-6);
            body!(builder.build_cartesian_2d((x_min - xpad)..(x_max + xpad), (y_min - pad)..(y_max + pad)))
        }
        Ok(())
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn log_axes_label_at_least_two_points_and_grid_each_decade_evenly() {
        // A CNN's quick run: 1.5 to 20, labelled 2, 5, 10, 20 (plotters gave only 10 and 20).
        let axis = log_axis(1.5, 20.0);
        assert_eq!(axis.bold_points(), [2.0, 5.0, 10.0, 20.0]);
        assert_eq!(axis.light_points().len(), 8 + 2, "2..9, then 10 and 20");
        // Less than a 1-2-5 step wide: every grid line is labelled.
        assert_eq!(log_axis(0.3, 0.45).bold_points(), [0.3, 0.4]);
        assert_eq!(log_label(0.3), "0.3");
        assert_eq!(log_label(2e-5), "2e-5");
        // A diverged run's 13 decades: powers of ten only, not 39 labels.
        assert_eq!(log_axis(1500.0, 1.6e16).bold_points(), (4..=16).map(|k| 10f64.powi(k)).collect::<Vec<_>>());
    }

    /// A whole PNG: the signature, the IEND chunk last, and 960x600 RGB as it decodes.
    fn assert_whole_png(path: &Path, size: (u32, u32)) {
        let bytes = std::fs::read(path).unwrap();
        assert!(bytes.starts_with(b"\x89PNG\r\n\x1a\n"), "{}", path.display());
        assert!(bytes.ends_with(b"\0\0\0\0IEND\xaeB`\x82"), "{}", path.display());
        let picture = image::load_from_memory_with_format(&bytes, image::ImageFormat::Png).unwrap();
        assert_eq!((picture.width(), picture.height(), picture.color()), (size.0, size.1, image::ColorType::Rgb8));
    }

    #[test]
    fn figures_are_whole_rgb_pngs() {
        let dir = tempfile::tempdir().unwrap();
        let series = [Series { label: "loss".into(), points: vec![(0.0, 2.0), (1.0, 1.0), (2.0, 0.5)] }];
        line_chart(&dir.path().join("line.png"), "t", "x", "y", &series, Scale::Log).unwrap();
        let bands = [Band { label: "a".into(), points: vec![(0.0, 0.5, 0.4, 0.6), (10.0, 0.9, 0.85, 0.95)] }];
        band_chart(&dir.path().join("band.png"), "t", "x", "y", &bands, Scale::Linear).unwrap();
        error_bar_chart(&dir.path().join("bars.png"), "t", "x", "y", &[(0.01, 0.9, 0.85, 0.95), (0.1, 0.8, 0.7, 0.9)]).unwrap();
        confusion_chart(&dir.path().join("confusion.png"), "t", &vec![vec![1; 10]; 10]).unwrap();
        for name in ["line.png", "bars.png"] {
            assert_whole_png(&dir.path().join(name), (960, 600));
        }
        // Widened for its legend.
        let legend = legend_width(&legend_rows(&bands));
        assert_whole_png(&dir.path().join("band.png"), (960 + legend, 600));
        assert_whole_png(&dir.path().join("confusion.png"), (760, 720));
    }

    #[test]
    fn zeros_on_a_log_axis_are_drawn_at_its_floor_and_said_so() {
        // An XOR run whose loss is 0 from epoch 50 on: the line goes on along the floor, which
        // the label names, rather than stop at the first point.
        let points: Vec<(f64, f64)> = (0..=60).map(|k| (50.0 * k as f64, if k == 0 { 0.5 } else { 0.0 })).collect();
        let series = [Series { label: "seed 614".into(), points }];
        let shown = zeros_at(&series, zero_floor(0.5));
        assert_eq!(shown[0].label, "seed 614 (0 drawn at 0.01)");
        assert_eq!(segments(&shown[0].points, Scale::Log).len(), 1, "one line, no gap");
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("xor.png");
        line_chart(&path, "t", "Epoch", "Loss", &series, Scale::Log).unwrap();
        let picture = image::open(&path).unwrap().to_rgb8();
        // The first colour along the right half of the plot: the zeros' line.
        let blue = picture.enumerate_pixels().filter(|(x, y, p)| (500..900).contains(x) && *y > 300 && p.0 == [31, 119, 180]).count();
        assert!(blue > 300, "{blue} pixels of the line on the right half");
    }

    #[test]
    fn thirty_configurations_have_thirty_looks() {
        let looks: Vec<(RGBColor, Option<(u32, u32)>)> = (0..30).map(|i| (line_look(i).color, line_look(i).dash)).collect();
        for (i, a) in looks.iter().enumerate() {
            assert!(looks[..i].iter().all(|b| b != a), "configuration {i} looks like an earlier one");
        }
        // The first ones keep the colours the figures had.
        assert_eq!((line_look(1).color, line_look(1).dash), (RGBColor(214, 39, 40), None));
    }

    fn bands(n: usize, label: impl Fn(usize) -> String) -> Vec<Band> {
        (0..n).map(|i| {
            let end = 0.5 + 0.4 * i as f64 / n as f64;
            Band { label: label(i), points: vec![(0.0, 0.1, 0.05, 0.15), (50.0, end - 0.1, end - 0.15, end - 0.05), (100.0, end, end - 0.02, end + 0.02)] }
        }).collect()
    }

    #[test]
    fn the_legend_lies_beside_the_plot_and_says_what_it_leaves_out() {
        let rows = legend_rows(&bands(27, |i| format!("lr={i}")));
        assert_eq!(rows.len(), LEGEND_ROWS);
        let (note, look) = rows.last().unwrap();
        assert_eq!((note.as_str(), look.is_none()), (format!("{} more configurations in report.csv", 27 - (LEGEND_ROWS - 1)).as_str(), true));
        assert_eq!(legend_rows(&bands(5, |i| format!("lr={i}"))).len(), 5);
        // The plot's 960 columns are the same whatever the legend says: it covers no data.
        let dir = tempfile::tempdir().unwrap();
        let draw = |name: &str, label: fn(usize) -> String| {
            let path = dir.path().join(name);
            band_chart(&path, "t", "x", "y", &bands(27, label), Scale::Linear).unwrap();
            image::open(&path).unwrap().to_rgb8()
        };
        let short = draw("short.png", |i| format!("{i}"));
        let long = draw("long.png", |i| format!("learning_rate={i},batch_size=64,schedule=warmup_cosine(warmup={i}),dropout=0.5"));
        assert!(long.width() > short.width() && short.width() > 960 && long.height() == 600);
        let plot = |picture: &image::RgbImage| (0..600).flat_map(|y| (0..960).map(move |x| (x, y))).map(|(x, y)| picture.get_pixel(x, y).0).collect::<Vec<_>>();
        assert!(plot(&short) == plot(&long), "the legend reaches into the plot");
    }

    #[test]
    fn a_figure_that_cannot_be_written_is_an_error_and_leaves_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("file");
        std::fs::write(&file, "kept").unwrap();
        let e = write_png(&file.join("figure.png"), &[255; 4 * 3 * 3], (4, 3)).unwrap_err();
        assert!(format!("{e:#}").contains("cannot write"), "{e:#}");
        assert_eq!(std::fs::read_to_string(&file).unwrap(), "kept");
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 1, "no temporary file is left");
    }

    #[test]
    fn diverged_values_are_gaps_and_labels_differ() {
        let points = [(0.0, 1.0), (1.0, f64::NAN), (2.0, 2.0), (3.0, 3.0), (4.0, f64::INFINITY)];
        assert_eq!(segments(&points, Scale::Linear), [vec![(0.0, 1.0)], vec![(2.0, 2.0), (3.0, 3.0)]]);
        assert_eq!(segments(&[(0.0, 0.0), (1.0, 1.0)], Scale::Log), [vec![(1.0, 1.0)]]);
        // Accuracies from 0.09 to 0.10: labels a thousandth apart need three decimals.
        assert_eq!(linear_decimals(0.011), 3);
        assert_eq!(linear_decimals(0.9), 2);
        assert_eq!(linear_decimals(f64::NAN), 2);
    }
}
