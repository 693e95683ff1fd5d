//! PNG line charts of training curves (reward, entropy, temperature, eval
//! pass@1 over steps) for the run report.
//!
//! Fonts: plotters is built without font-kit (it needs fontconfig), so chart
//! text uses a font file found at run time: the path in `TRAINER_PLOT_FONT`
//! first, then a few common system paths (DejaVu Sans, Liberation Sans,
//! Arial). The first that loads is registered once per process. Where none
//! does, charts are still drawn (axes, grid, ticks, lines) with no text at all,
//! and [`Drawn::text`] says so.

use std::ops::Range;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use anyhow::{anyhow, ensure, Context as _};
use plotters::prelude::*;
use plotters::style::text_anchor::{HPos, Pos, VPos};
use plotters::style::{register_font, FontStyle, RGBColor};

/// One named line.
#[derive(Debug, Clone, PartialEq)]
pub struct Series {
    /// The legend text.
    pub name: String,
    /// `(x, y)` points in drawing order; NaN, infinite or huge (beyond ±1e300)
    /// ones are skipped.
    pub points: Vec<(f64, f64)>,
}

/// A chart: title, axis labels, one or more lines (distinct colours, a legend
/// when more than one).
#[derive(Debug, Clone, PartialEq)]
pub struct Chart {
    /// The caption above the plot.
    pub title: String,
    /// The x axis description.
    pub x_label: String,
    /// The y axis description.
    pub y_label: String,
    /// The lines; empty ones are skipped.
    pub series: Vec<Series>,
    /// Optional horizontal reference line (e.g. a target value), drawn dashed
    /// in grey.
    pub reference: Option<(String, f64)>,
}

/// What drawing did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Drawn {
    /// Whether text (title, labels, legend) was drawn (a font was found).
    pub text: bool,
}

/// The environment variable naming a .ttf file for chart text.
const FONT_ENV: &str = "TRAINER_PLOT_FONT";

/// Where a font is looked for when `TRAINER_PLOT_FONT` names none that loads.
const COMMON_FONTS: &[&str] = &[
    "/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf",
    "/usr/share/fonts/TTF/DejaVuSans.ttf",
    "/usr/share/fonts/truetype/liberation/LiberationSans-Regular.ttf",
    "/usr/share/fonts/dejavu/DejaVuSans.ttf",
    "/Library/Fonts/Arial.ttf",
    "/System/Library/Fonts/Supplemental/Arial.ttf",
    "C:\\Windows\\Fonts\\arial.ttf",
];

/// The family name the found font is registered under.
const FAMILY: &str = "trainer-plot-sans";
/// A family never registered: text styles of a chart drawn without a font use
/// it (and are transparent), so any text plotters did try to draw would fail.
const NO_FAMILY: &str = "trainer-plot-none";

/// Line colours (0xRRGGBB), in series order: the tab10 palette less its grey.
const PALETTE: [u32; 9] = [
    0x1f77b4, 0xff7f0e, 0x2ca02c, 0xd62728, 0x9467bd, 0x8c564b, 0xe377c2, 0xbcbd22, 0x17becf,
];
/// Larger values are skipped like NaN: plotters' tick search never ends on
/// ranges whose width overflows.
const LIMIT: f64 = 1e300;
/// The reference line's colour.
const REFERENCE: RGBColor = RGBColor(128, 128, 128);

/// The colour of the `i`th series.
fn colour(i: usize) -> RGBColor {
    let [_, r, g, b] = PALETTE[i % PALETTE.len()].to_be_bytes();
    RGBColor(r, g, b)
}

/// Whether a font for chart text was found (and which). Looked up and
/// registered once per process.
pub fn font() -> Option<&'static Path> {
    static FONT: OnceLock<Option<PathBuf>> = OnceLock::new();
    FONT.get_or_init(|| {
        let mut candidates: Vec<PathBuf> = std::env::var_os(FONT_ENV)
            .filter(|v| !v.is_empty())
            .map(PathBuf::from)
            .into_iter()
            .collect();
        candidates.extend(COMMON_FONTS.iter().map(PathBuf::from));
        let found = load_font(&candidates);
        if found.is_none() {
            tracing::warn!("no font for chart text (set {FONT_ENV}); charts will have no text");
        }
        found
    })
    .as_deref()
}

/// Registers the first of `candidates` that reads and parses as a font under
/// [`FAMILY`]; its bytes are leaked (plotters keeps `'static` font data).
fn load_font(candidates: &[PathBuf]) -> Option<PathBuf> {
    candidates.iter().find_map(|path| {
        let bytes = std::fs::read(path).ok()?;
        let bytes: &'static [u8] = Box::leak(bytes.into_boxed_slice());
        match register_font(FAMILY, FontStyle::Normal, bytes) {
            Ok(()) => Some(path.clone()),
            Err(_) => {
                tracing::warn!("{} is not a usable font", path.display());
                None
            }
        }
    })
}

/// Draws `chart` into a PNG of `width` x `height` pixels at `path` (parent dirs
/// must exist; error naming the path otherwise). The format follows the
/// extension, so `path` should end in `.png`.
pub fn line_chart(path: &Path, chart: &Chart, width: u32, height: u32) -> anyhow::Result<Drawn> {
    render(path, chart, width, height, font().is_some())
}

/// [`line_chart`], with or without text.
fn render(path: &Path, chart: &Chart, width: u32, height: u32, text: bool) -> anyhow::Result<Drawn> {
    ensure!(
        width >= 120 && height >= 90,
        "chart {}: {width}x{height} pixels is too small (at least 120x90)",
        path.display()
    );
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        ensure!(
            dir.is_dir(),
            "cannot write chart {}: directory {} does not exist",
            path.display(),
            dir.display()
        );
    }
    draw(path, chart, (width, height), text)
        .map_err(|e| anyhow!("{e}"))
        .with_context(|| format!("drawing chart {}", path.display()))?;
    Ok(Drawn { text })
}

/// The plotting itself; errors are plotters' own.
fn draw(path: &Path, chart: &Chart, size: (u32, u32), text: bool) -> Result<(), Box<dyn std::error::Error>> {
    // (palette index, finite points) of every line with something to draw.
    let lines: Vec<(usize, Vec<(f64, f64)>)> = chart
        .series
        .iter()
        .enumerate()
        .map(|(i, s)| {
            let pts = s.points.iter().copied().filter(|&(x, y)| usable(x) && usable(y));
            (i, pts.collect::<Vec<_>>())
        })
        .filter(|(_, pts)| !pts.is_empty())
        .collect();
    let reference = chart.reference.as_ref().filter(|(_, y)| usable(*y));
    let all = || lines.iter().flat_map(|(_, pts)| pts.iter().copied());
    let x = range(all().map(|p| p.0), 0.0);
    let y = range(all().map(|p| p.1).chain(reference.map(|r| r.1)), 0.05);

    let family = if text { FAMILY } else { NO_FAMILY };
    let ink = if text { BLACK.to_rgba() } else { TRANSPARENT };
    let font = |px: u32| TextStyle::from((family, px).into_font()).color(&ink);

    let root = BitMapBackend::new(path, size).into_drawing_area();
    root.fill(&WHITE)?;
    let mut builder = ChartBuilder::on(&root);
    builder
        .margin(12)
        .x_label_area_size(if text { 44 } else { 8 })
        .y_label_area_size(if text { 64 } else { 8 });
    if text && !chart.title.is_empty() {
        builder.caption(&chart.title, font(20));
    }
    let mut ctx = builder.build_cartesian_2d(x.clone(), y.clone())?;
    let mut mesh = ctx.configure_mesh();
    mesh.x_labels(8).y_labels(6).label_style(font(13));
    mesh.x_label_formatter(&tick).y_label_formatter(&tick);
    if text {
        mesh.axis_desc_style(font(15))
            .x_desc(&chart.x_label)
            .y_desc(&chart.y_label);
    }
    mesh.draw()?;

    let mut legend = 0;
    if let Some((name, value)) = reference {
        let style = REFERENCE.stroke_width(2);
        let ends = [(x.start, *value), (x.end, *value)];
        let anno = ctx.draw_series(DashedLineSeries::new(ends, 8, 6, style))?;
        if text && !name.is_empty() {
            legend += 1;
            anno.label(name)
                .legend(move |(x, y)| PathElement::new([(x, y), (x + 20, y)], style));
        }
    }
    for (i, pts) in &lines {
        let style = colour(*i).stroke_width(2);
        let dot = if pts.len() == 1 { 3 } else { 0 };
        let anno = ctx.draw_series(LineSeries::new(pts.iter().copied(), style).point_size(dot))?;
        let name = &chart.series[*i].name;
        if text && !name.is_empty() {
            legend += 1;
            anno.label(name)
                .legend(move |(x, y)| PathElement::new([(x, y), (x + 20, y)], style));
        }
    }
    if text && lines.len() + usize::from(reference.is_some()) > 1 && legend > 0 {
        ctx.configure_series_labels()
            .position(emptiest_corner(all(), &x, &y))
            .background_style(WHITE.mix(0.85))
            .border_style(BLACK)
            .label_font(font(13))
            .draw()?;
    }
    if text && lines.is_empty() {
        let centre = ((x.start + x.end) / 2.0, (y.start + y.end) / 2.0);
        let style = font(18).pos(Pos::new(HPos::Center, VPos::Center));
        ctx.plotting_area().draw(&Text::new("no data", centre, style))?;
    }
    root.present()?;
    Ok(())
}

/// An axis range over `values` (all [`usable`]), padded by `pad` of its width;
/// never empty or degenerate (0..1 for no values; a constant gets room).
fn range(values: impl Iterator<Item = f64>, pad: f64) -> Range<f64> {
    let (lo, hi) = values.fold((f64::INFINITY, f64::NEG_INFINITY), |(lo, hi), v| {
        (lo.min(v), hi.max(v))
    });
    if lo > hi {
        return 0.0..1.0;
    }
    let (mid, half) = ((lo + hi) / 2.0, (hi - lo) / 2.0);
    let size = lo.abs().max(hi.abs());
    // Constant (or too close to it for plotters' ticks): 10% of its size either
    // side, or 1 around 0.
    let r = if half > size * 1e-9 {
        half * (1.0 + 2.0 * pad)
    } else if size > 0.0 {
        size * 0.1
    } else {
        1.0
    };
    mid - r..mid + r
}

/// A tick label: plain with at most 4 decimals, or in exponent form for
/// very large or small magnitudes.
fn tick(v: &f64) -> String {
    let a = v.abs();
    if a != 0.0 && !(1e-3..1e5).contains(&a) {
        return format!("{v:.1e}");
    }
    let s = format!("{v:.4}");
    let s = s.trim_end_matches('0').trim_end_matches('.');
    if s == "-0" { "0" } else { s }.to_string()
}

/// Whether a value can be plotted: finite and within ±[`LIMIT`].
fn usable(v: f64) -> bool {
    v.is_finite() && v.abs() <= LIMIT
}

/// The legend corner with the fewest points near it.
fn emptiest_corner(
    points: impl Iterator<Item = (f64, f64)>,
    x: &Range<f64>,
    y: &Range<f64>,
) -> SeriesLabelPosition {
    use SeriesLabelPosition::{LowerLeft, LowerRight, UpperLeft, UpperRight};
    let at = |v: f64, r: &Range<f64>| (v - r.start) / (r.end - r.start);
    let pts: Vec<_> = points.map(|(px, py)| (at(px, x), at(py, y))).collect();
    let side = |f: f64, high: bool| if high { f > 0.55 } else { f < 0.45 };
    let near = |right, top| {
        pts.iter()
            .filter(|&&(fx, fy)| side(fx, right) && side(fy, top))
            .count()
    };
    let corners = [
        (UpperRight, true, true),
        (UpperLeft, false, true),
        (LowerRight, true, false),
    ];
    let corners = corners.into_iter().chain([(LowerLeft, false, false)]);
    corners
        .min_by_key(|&(_, right, top)| near(right, top))
        .map_or(UpperRight, |c| c.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn series(name: &str, points: Vec<(f64, f64)>) -> Series {
        Series {
            name: name.into(),
            points,
        }
    }

    fn chart(series: Vec<Series>, reference: Option<(String, f64)>) -> Chart {
        Chart {
            title: "reward".into(),
            x_label: "step".into(),
            y_label: "mean reward".into(),
            series,
            reference,
        }
    }

    fn one(points: Vec<(f64, f64)>) -> Chart {
        chart(vec![series("one", points)], None)
    }

    fn curve(f: impl Fn(f64) -> f64) -> Vec<(f64, f64)> {
        (0..50).map(|i| (f64::from(i), f(f64::from(i)))).collect()
    }

    /// Decodes `path`; checks its size and that something besides the
    /// background was drawn. Returns how many pixels have each of `colours`.
    fn check_png(path: &Path, (w, h): (u32, u32), colours: &[RGBColor]) -> Vec<usize> {
        let img = image::open(path).expect("decodes").to_rgb8();
        assert_eq!(img.dimensions(), (w, h));
        assert!(img.pixels().any(|p| p.0 != [255, 255, 255]), "all background");
        colours
            .iter()
            .map(|c| img.pixels().filter(|p| p.0 == [c.0, c.1, c.2]).count())
            .collect()
    }

    #[test]
    fn draws_lines_legend_and_reference() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("reward.png");
        let c = chart(
            vec![
                series("train", curve(|x| (x / 10.0).sin())),
                series("eval", curve(|x| x / 50.0)),
            ],
            Some(("target".into(), 0.5)),
        );
        let drawn = line_chart(&path, &c, 640, 400).unwrap();
        assert_eq!(drawn.text, font().is_some());
        let counts = check_png(&path, (640, 400), &[colour(0), colour(1), REFERENCE]);
        assert!(counts.iter().all(|&n| n > 0), "{counts:?}");
    }

    #[test]
    fn no_font_draws_lines_without_text() {
        assert_eq!(load_font(&[]), None);
        let dir = tempfile::tempdir().unwrap();
        let bogus = dir.path().join("not-a-font.ttf");
        std::fs::write(&bogus, b"not a font").unwrap();
        assert_eq!(load_font(&[dir.path().join("missing.ttf"), bogus.clone()]), None);
        if let Some(found) = font() {
            let found = found.to_path_buf();
            assert_eq!(load_font(&[bogus, found.clone()]), Some(found));
        }

        let path = dir.path().join("plain.png");
        let c = chart(
            vec![series("a", curve(|x| x * x)), series("b", curve(|x| 3.0 * x))],
            Some(("target".into(), 100.0)),
        );
        assert_eq!(render(&path, &c, 320, 200, false).unwrap(), Drawn { text: false });
        let counts = check_png(&path, (320, 200), &[colour(0), colour(1)]);
        assert!(counts.iter().all(|&n| n > 0), "{counts:?}");
        // Without text the caption band stays empty: the top rows are white.
        let img = image::open(&path).unwrap().to_rgb8();
        assert!((0..320).all(|x| (0..10).all(|y| img.get_pixel(x, y).0 == [255; 3])));
    }

    #[test]
    fn bad_data_never_panics() {
        let dir = tempfile::tempdir().unwrap();
        let (nan, inf) = (f64::NAN, f64::INFINITY);
        let odd = vec![(0.0, 1.0), (1.0, nan), (inf, 2.0), (2.0, -inf), (3.0, 1.5)];
        let odd = chart(vec![series("odd", odd), series("empty", vec![])], None);
        let target = chart(vec![], Some(("target".into(), 0.5)));
        let cases = [
            ("odd", odd, true),
            ("constant", one(curve(|_| 0.25)), true),
            ("zero", one(curve(|_| 0.0)), true),
            ("one point", one(vec![(5.0, 0.7)]), true),
            ("huge", one(vec![(0.0, -1e300), (1.0, 1e300)]), true),
            ("too huge", one(vec![(0.0, -f64::MAX), (1.0, f64::MAX)]), false),
            ("tiny", one(vec![(0.0, 1e-300), (1.0, 2e-300)]), true),
            ("near constant", one(vec![(0.0, 1e16), (1.0, 1e16 + 2.0)]), true),
            ("all nan", one(vec![(nan, 1.0)]), false),
            ("nothing", chart(vec![], Some(("nan".into(), nan))), false),
            ("reference only", target, false),
        ];
        for text in [false, font().is_some()] {
            for (name, c, has_line) in &cases {
                let path = dir.path().join(format!("{name}-{text}.png"));
                let drawn = render(&path, c, 300, 200, text).unwrap_or_else(|e| panic!("{name}: {e:#}"));
                assert_eq!(drawn.text, text);
                let n = check_png(&path, (300, 200), &[colour(0)])[0];
                assert_eq!(n > 0, *has_line, "{name} (text {text}): {n} line pixels");
            }
        }
    }

    #[test]
    fn constant_series_gets_room() {
        for v in [0.0, 0.25, -3.0, 1e12, 1e-12, LIMIT, -LIMIT] {
            let r = range([v, v].into_iter(), 0.05);
            let finite = (r.end - r.start).is_finite();
            assert!(r.start < v && v < r.end && finite, "{v}: {r:?}");
        }
        assert_eq!(range(std::iter::empty(), 0.05), 0.0..1.0);
        let r = range([1.0, 3.0].into_iter(), 0.05);
        assert!((r.start - 0.9).abs() + (r.end - 3.1).abs() < 1e-12, "{r:?}");
    }

    #[test]
    fn errors_name_the_path() {
        let dir = tempfile::tempdir().unwrap();
        let c = chart(vec![series("a", curve(|x| x))], None);
        let path = dir.path().join("no-such-dir").join("chart.png");
        let err = format!("{:#}", line_chart(&path, &c, 400, 300).unwrap_err());
        assert!(err.contains(&path.display().to_string()), "{err}");
        assert!(!path.exists());
        let tiny = line_chart(&dir.path().join("tiny.png"), &c, 10, 10);
        let err = format!("{:#}", tiny.unwrap_err());
        assert!(err.contains("tiny.png") && err.contains("too small"), "{err}");
    }
}
