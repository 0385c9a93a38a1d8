//! The frontier report as files: `frontier.json` (everything), `frontier.csv` (one row per
//! measured policy) and `frontier.html`, self-contained, with SVG charts drawn by plotters.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use plotters::coord::Shift;
use plotters::element::ErrorBar;
use plotters::prelude::*;

use super::fit::Fit;
use super::{FrontierPoint, FrontierReport};
use crate::error::{Error, Result};

/// The whole chart: the plot on the left, its legend in a panel of its own on the right (a
/// legend drawn inside the plot covered points).
const WIDTH: u32 = 1000;
const PLOT_WIDTH: u32 = 690;
const HEIGHT: u32 = 460;

/// One row per measured policy: best-of-n points, then every run's points. `kl` is always the
/// measured KL (Σ log π/π_ref over sampled tokens) and `sqrt_kl` its root; best-of-n rows also
/// give the analytic bound log n − (n−1)/n in `analytic_kl`.
pub fn to_csv(report: &FrontierReport) -> String {
    let mut out = String::from(
        "run,method,coef,proxy,step_or_n,kl,kl_ci95,sqrt_kl,analytic_kl,proxy_reward,proxy_ci95,gold_reward,gold_ci95,tokens_per_second\n",
    );
    if let Some(bon) = &report.best_of_n {
        for p in &bon.points {
            let gold = p.monitor_reward.unwrap_or(p.reward);
            let _ = writeln!(
                out,
                "best-of-n,best_of_n,,{},{},{},{},{},{},{},{},{},{},",
                bon.proxy,
                p.n,
                p.kl.mean,
                p.kl.ci95,
                p.sqrt_kl(),
                p.analytic_kl,
                p.reward.mean,
                p.reward.ci95,
                gold.mean,
                gold.ci95
            );
        }
    }
    for run in &report.runs {
        for p in &run.points {
            let proxy = p.proxies.get(&run.proxy);
            let _ = writeln!(
                out,
                "\"{}\",{},{},{},{},{},{},{},,{},{},{},{},{}",
                run.name,
                run.method,
                run.coef
                    .or(p.weight)
                    .map(|c| c.to_string())
                    .unwrap_or_default(),
                run.proxy,
                p.step,
                p.kl.mean,
                p.kl.ci95,
                p.sqrt_kl,
                proxy.map(|m| m.mean).unwrap_or(f64::NAN),
                proxy.map(|m| m.ci95).unwrap_or(f64::NAN),
                p.gold.mean,
                p.gold.ci95,
                p.tokens_per_second
                    .map(|t| format!("{t:.1}"))
                    .unwrap_or_default()
            );
        }
    }
    out
}

/// Writes frontier.json, frontier.csv and frontier.html into `dir`; returns their paths.
pub fn write(report: &FrontierReport, dir: &Path) -> Result<Vec<PathBuf>> {
    std::fs::create_dir_all(dir).map_err(|e| Error::io(dir, e))?;
    let files = [
        (
            "frontier.json",
            serde_json::to_string_pretty(report).expect("serialises"),
        ),
        ("frontier.csv", to_csv(report)),
        ("frontier.html", html(report)?),
    ];
    let mut paths = Vec::new();
    for (name, text) in files {
        let path = dir.join(name);
        let partial = path.with_extension("partial");
        std::fs::write(&partial, text).map_err(|e| Error::io(&partial, e))?;
        std::fs::rename(&partial, &path).map_err(|e| Error::io(&path, e))?;
        paths.push(path);
    }
    Ok(paths)
}

#[derive(Clone, Copy, PartialEq)]
enum Style {
    /// Measured points joined in step order, with an arrow on each segment.
    Trajectory,
    /// Measured points joined in order of n (best-of-n), no arrows.
    Points,
    /// A fitted or analytic curve: dashed, no markers.
    Curve,
}

struct Series {
    label: String,
    points: Vec<(f64, f64)>,
    /// Vertical 95% half-widths, when known.
    errors: Vec<f64>,
    style: Style,
    colour: usize,
}

/// Colours that stay apart on white (no yellow), in the order runs get them.
const PALETTE: [RGBColor; 10] = [
    RGBColor(31, 119, 180),
    RGBColor(214, 39, 40),
    RGBColor(44, 160, 44),
    RGBColor(148, 103, 189),
    RGBColor(255, 127, 14),
    RGBColor(23, 190, 207),
    RGBColor(140, 86, 75),
    RGBColor(227, 119, 194),
    RGBColor(80, 80, 80),
    RGBColor(128, 128, 0),
];

fn colour(i: usize) -> RGBColor {
    PALETTE[i % PALETTE.len()]
}

fn extent(series: &[Series], axis: impl Fn(&(f64, f64)) -> f64) -> (f64, f64) {
    let values = series.iter().flat_map(|s| s.points.iter().map(&axis));
    let (lo, hi) = values
        .filter(|v| v.is_finite())
        .fold((f64::INFINITY, f64::NEG_INFINITY), |(lo, hi), v| {
            (lo.min(v), hi.max(v))
        });
    if !lo.is_finite() {
        return (0.0, 1.0);
    }
    let pad = ((hi - lo) * 0.06).max(1e-3);
    (lo - pad, hi + pad)
}

fn plot_error<E: std::fmt::Debug>(e: E) -> Error {
    Error::Input(format!("drawing a chart failed: {e:?}"))
}

/// A filled arrowhead at the middle of the segment `from → to` (pixels), pointing along it.
fn arrowhead(from: (i32, i32), to: (i32, i32)) -> Option<Vec<(i32, i32)>> {
    let (dx, dy) = ((to.0 - from.0) as f64, (to.1 - from.1) as f64);
    let length = (dx * dx + dy * dy).sqrt();
    if length < 14.0 {
        return None;
    }
    let (ux, uy) = (dx / length, dy / length);
    let tip = (
        from.0 as f64 + dx * 0.5 + ux * 5.0,
        from.1 as f64 + dy * 0.5 + uy * 5.0,
    );
    let back = (tip.0 - ux * 10.0, tip.1 - uy * 10.0);
    let corner = |side: f64| {
        (
            (back.0 - uy * 4.5 * side).round() as i32,
            (back.1 + ux * 4.5 * side).round() as i32,
        )
    };
    Some(vec![
        (tip.0.round() as i32, tip.1.round() as i32),
        corner(1.0),
        corner(-1.0),
    ])
}

/// One chart as an SVG string: the plot, and its legend beside it.
fn chart(title: &str, x_label: &str, y_label: &str, series: &[Series]) -> Result<String> {
    let mut svg = String::new();
    {
        let root: DrawingArea<SVGBackend, Shift> =
            SVGBackend::with_string(&mut svg, (WIDTH, HEIGHT)).into_drawing_area();
        root.fill(&WHITE).map_err(plot_error)?;
        let (plot_area, legend_area) = root.split_horizontally(PLOT_WIDTH);
        let (x0, x1) = extent(series, |p| p.0);
        let (y0, y1) = {
            let (lo, hi) = extent(series, |p| p.1);
            let spread = series
                .iter()
                .flat_map(|s| s.errors.iter().copied())
                .filter(|e| e.is_finite())
                .fold(0.0, f64::max);
            (lo - spread, hi + spread)
        };
        let mut chart = ChartBuilder::on(&plot_area)
            .caption(title, ("sans-serif", 16))
            .margin(12)
            .x_label_area_size(40)
            .y_label_area_size(56)
            .build_cartesian_2d(x0..x1, y0..y1)
            .map_err(plot_error)?;
        chart
            .configure_mesh()
            .x_desc(x_label)
            .y_desc(y_label)
            .light_line_style(WHITE.mix(0.0))
            .draw()
            .map_err(plot_error)?;
        for s in series {
            let c = colour(s.colour);
            let points: Vec<(f64, f64)> = s
                .points
                .iter()
                .copied()
                .filter(|p| p.0.is_finite() && p.1.is_finite())
                .collect();
            if s.style == Style::Curve {
                chart
                    .draw_series(DashedLineSeries::new(points, 6, 4, c.stroke_width(2)))
                    .map_err(plot_error)?;
                continue;
            }
            chart
                .draw_series(LineSeries::new(points.clone(), c.stroke_width(2)))
                .map_err(plot_error)?;
            chart
                .draw_series(points.iter().map(|&p| Circle::new(p, 4, c.filled())))
                .map_err(plot_error)?;
            if s.style == Style::Trajectory {
                for pair in points.windows(2) {
                    let from = chart.backend_coord(&pair[0]);
                    let to = chart.backend_coord(&pair[1]);
                    if let Some(head) = arrowhead(from, to) {
                        root.draw(&Polygon::new(head, c.filled()))
                            .map_err(plot_error)?;
                    }
                }
            }
            if !s.errors.is_empty() {
                chart
                    .draw_series(
                        s.points
                            .iter()
                            .zip(&s.errors)
                            .filter(|(p, e)| p.0.is_finite() && p.1.is_finite() && e.is_finite())
                            .map(|(&(x, y), &e)| {
                                ErrorBar::new_vertical(x, y - e, y, y + e, c.stroke_width(1), 6)
                            }),
                    )
                    .map_err(plot_error)?;
            }
        }
        draw_legend(&legend_area, series)?;
        root.present().map_err(plot_error)?;
    }
    Ok(svg)
}

/// The legend panel: a sample of each series' line or marker and its label, one per row.
fn draw_legend(area: &DrawingArea<SVGBackend, Shift>, series: &[Series]) -> Result<()> {
    let font = ("sans-serif", 12).into_font();
    for (row, s) in series.iter().enumerate() {
        let y = 44 + 19 * row as i32;
        let c = colour(s.colour);
        match s.style {
            Style::Curve => {
                for x in [4, 14] {
                    area.draw(&PathElement::new(
                        vec![(x, y), (x + 6, y)],
                        c.stroke_width(2),
                    ))
                    .map_err(plot_error)?;
                }
            }
            _ => {
                area.draw(&PathElement::new(vec![(4, y), (22, y)], c.stroke_width(2)))
                    .map_err(plot_error)?;
                area.draw(&Circle::new((13, y), 4, c.filled()))
                    .map_err(plot_error)?;
            }
        }
        area.draw(&Text::new(s.label.clone(), (28, y - 7), font.clone()))
            .map_err(plot_error)?;
    }
    Ok(())
}

/// The fitted curve between the smallest and largest d it was fitted on: outside them (also
/// between the base at d = 0 and the first measured policy) the form says nothing.
fn fit_curve(fit: &Fit) -> Vec<(f64, f64)> {
    (0..=60)
        .map(|i| {
            let d = fit.d_min + (fit.d_max - fit.d_min) * i as f64 / 60.0;
            (d, fit.predict(d))
        })
        .collect()
}

fn escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

/// A fit as the report quotes it: its parameters when it holds, else why not.
pub fn fit_text(fit: &Option<Fit>) -> String {
    match fit {
        None => "no fit (too few points)".into(),
        Some(f) => match f.rejection() {
            Some(why) => format!("no fit ({why})"),
            None => {
                let peak = match (f.peak_in_range(), f.peak_d()) {
                    (Some(d), _) => format!(", peak at √KL {d:.2}"),
                    (None, Some(d)) => format!(
                        ", no peak within the measured √KL {:.2}–{:.2} (the form's, at {d:.2}, is extrapolated)",
                        f.d_min, f.d_max
                    ),
                    (None, None) => String::new(),
                };
                format!(
                    "α {:.3}, β {:.3}, R² {:.2} on {} points{peak}",
                    f.alpha, f.beta, f.r_squared, f.points
                )
            }
        },
    }
}

/// The fit's curve as a series, when the fit holds.
fn fit_series(fit: &Option<Fit>, name: &str, form: &str, colour: usize) -> Option<Series> {
    let fit = fit.as_ref().filter(|f| f.rejection().is_none())?;
    Some(Series {
        label: format!("{name} fit {form}, R² {:.2}", fit.r_squared),
        points: fit_curve(fit),
        errors: Vec::new(),
        style: Style::Curve,
        colour,
    })
}

fn gold_series(report: &FrontierReport) -> Vec<Series> {
    let mut series = Vec::new();
    if let Some(bon) = &report.best_of_n {
        series.push(Series {
            label: format!("best-of-n ({}), n = 1…", bon.proxy),
            points: bon
                .points
                .iter()
                .map(|p| {
                    (
                        p.sqrt_kl(),
                        p.monitor_reward.map(|m| m.mean).unwrap_or(f64::NAN),
                    )
                })
                .collect(),
            errors: bon
                .points
                .iter()
                .map(|p| p.monitor_reward.map(|m| m.ci95).unwrap_or(f64::NAN))
                .collect(),
            style: Style::Points,
            colour: 0,
        });
        series.extend(fit_series(&bon.gold_fit, "best-of-n", "d(α − βd)", 0));
    }
    for (i, run) in report.runs.iter().enumerate() {
        series.push(Series {
            label: run.name.clone(),
            points: run
                .points
                .iter()
                .map(|p| (p.sqrt_kl, p.gold.mean))
                .collect(),
            errors: run.points.iter().map(|p| p.gold.ci95).collect(),
            style: Style::Trajectory,
            colour: i + 1,
        });
        series.extend(fit_series(&run.gold_fit, &run.name, "d(α − β ln d)", i + 1));
    }
    series
}

fn run_series(
    report: &FrontierReport,
    value: impl Fn(&FrontierPoint, &str) -> (f64, f64),
    bon_value: impl Fn(&crate::algo::best_of_n::BestOfNPoint) -> (f64, f64),
) -> Vec<Series> {
    let mut series = Vec::new();
    if let Some(bon) = &report.best_of_n {
        series.push(Series {
            label: format!("best-of-n ({}), n = 1…", bon.proxy),
            points: bon.points.iter().map(&bon_value).collect(),
            errors: Vec::new(),
            style: Style::Points,
            colour: 0,
        });
    }
    for (i, run) in report.runs.iter().enumerate() {
        series.push(Series {
            label: run.name.clone(),
            points: run.points.iter().map(|p| value(p, &run.proxy)).collect(),
            errors: Vec::new(),
            style: Style::Trajectory,
            colour: i + 1,
        });
    }
    series
}

/// A point's mean reward under proxy `name` (NaN when it was not measured with it).
fn proxy_of(point: &FrontierPoint, name: &str) -> f64 {
    point.proxies.get(name).map_or(f64::NAN, |m| m.mean)
}

/// The decoding-time methods' points with what each costs per request, and which method
/// reaches a gold reward at the lowest KL.
fn decoding_tables(report: &FrontierReport, page: &mut String) {
    let steered: Vec<_> = report
        .runs
        .iter()
        .filter(|r| r.points.iter().any(|p| p.tokens_per_second.is_some()))
        .collect();
    if !steered.is_empty() {
        page.push_str("<h2>Decoding-time methods</h2><p>The base steered as it decodes, no weights changed; KL is exact per token. Tokens/s is what steering costs at every request (new tokens per second of decoding).</p><table><tr><th>run</th><th>w = 1/β</th><th>KL</th><th>proxy</th><th>gold</th><th>tokens/s</th></tr>");
        for run in steered {
            for p in &run.points {
                let _ = write!(
                    page,
                    "<tr><td>{}</td><td>{}</td><td>{:.3} ± {:.3}</td><td>{:.3}</td><td>{:.3} ± {:.3}</td><td>{:.0}</td></tr>",
                    escape(&run.name),
                    p.weight.map(|w| w.to_string()).unwrap_or_default(),
                    p.kl.mean,
                    p.kl.ci95,
                    proxy_of(p, &run.proxy),
                    p.gold.mean,
                    p.gold.ci95,
                    p.tokens_per_second.unwrap_or(f64::NAN)
                );
            }
        }
        page.push_str("</table>");
    }
    page.push_str("<h2>Lowest KL to a gold reward</h2><p>For each target, every method that reaches that mean gold reward at some measured point, with the lowest KL at which it does, cheapest first.</p><table><tr><th>gold target</th><th>cheapest methods (KL, gold)</th></tr>");
    for target in report.gold_targets() {
        let cheapest: Vec<String> = report
            .cheapest_to(target)
            .iter()
            .map(|c| format!("{} ({:.2}, {:.2})", escape(&c.name), c.kl, c.gold))
            .collect();
        let _ = write!(
            page,
            "<tr><td>{target:.2}</td><td style=\"text-align:left\">{}</td></tr>",
            cheapest.join("; ")
        );
    }
    page.push_str("</table>");
}

/// The report page: charts, the fitted parameters, and tables of every measured point.
pub fn html(report: &FrontierReport) -> Result<String> {
    let gold_chart = chart(
        "Gold reward against √KL(π‖π_ref)",
        "√KL (nats^½)",
        "gold reward",
        &gold_series(report),
    )?;
    let proxy_chart = chart(
        "Proxy reward against √KL (each run's own proxy)",
        "√KL (nats^½)",
        "proxy reward",
        &run_series(
            report,
            |p, name| (p.sqrt_kl, proxy_of(p, name)),
            |p| (p.sqrt_kl(), p.reward.mean),
        ),
    )?;
    let overoptimisation_chart = chart(
        "Proxy against gold reward: over-optimisation is gold falling while proxy rises",
        "proxy reward",
        "gold reward",
        &run_series(
            report,
            |p, name| (proxy_of(p, name), p.gold.mean),
            |p| {
                (
                    p.reward.mean,
                    p.monitor_reward.map(|m| m.mean).unwrap_or(f64::NAN),
                )
            },
        ),
    )?;
    let bon_chart = match &report.best_of_n {
        None => String::new(),
        Some(bon) => {
            let max_n = bon.points.iter().map(|p| p.n).max().unwrap_or(1);
            let analytic: Vec<(f64, f64)> = (0..=60)
                .map(|i| {
                    let n = (max_n as f64).powf(i as f64 / 60.0);
                    // best_of_n::analytic_kl, log n − (n−1)/n, extended to real n.
                    (n.log2(), n.ln() - (n - 1.0) / n)
                })
                .collect();
            chart(
                "Best-of-n: KL(π_n‖π_ref), analytic log n − (n−1)/n against measured",
                "log₂ n",
                "KL (nats)",
                &[
                    Series {
                        label: "analytic bound log n − (n−1)/n".into(),
                        points: analytic,
                        errors: Vec::new(),
                        style: Style::Curve,
                        colour: 8,
                    },
                    Series {
                        label: "measured (95% CI)".into(),
                        points: bon
                            .points
                            .iter()
                            .map(|p| ((p.n as f64).log2(), p.kl.mean))
                            .collect(),
                        errors: bon.points.iter().map(|p| p.kl.ci95).collect(),
                        style: Style::Points,
                        colour: 0,
                    },
                ],
            )?
        }
    };

    let mut page = String::new();
    let _ = write!(
        page,
        "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\"><title>alignlab frontier</title>\
<style>body{{font-family:sans-serif;max-width:1040px;margin:2em auto;padding:0 1em;color:#222}}\
table{{border-collapse:collapse;font-size:0.85em;margin:1em 0}}td,th{{border:1px solid #ccc;padding:3px 6px;text-align:right}}\
th{{background:#f3f3f3}}td:first-child{{text-align:left}}figure{{margin:1.5em 0}}svg{{max-width:100%;height:auto}}</style></head><body>\
<h1>KL–reward frontier</h1><p>Model <code>{}</code>, prompts <code>{}</code>, gold reward <code>{}</code>, seed {}. \
Every policy, best-of-n included, is measured on the same {} held-out prompts: KL is Σ log π/π_ref over the sampled tokens \
(mean ± 95% CI), rewards are means ± 95% CI ({} samples per prompt; best-of-n: its groups per prompt). \
Best-of-n's KL is measured too (log n + (n−1)·log F̂ of the selected samples, F̂ the reward's CDF under π_ref from an \
independent pool; its interval bootstraps prompts and pools); the analytic value log n − (n−1)/n, an upper bound, is drawn \
as a curve on the best-of-n chart and listed in the table. Each run's points are joined in step order, an arrow on each \
segment: a line that doubles back along KL is a policy that moved back toward the reference. \
Gao et al.'s forms are drawn (over the measured range only) and quoted only where they hold: at least {} points, \
R² ≥ {}, and β > 0; otherwise the table says why not. {} gold-labelled pairs of base samples (a tenth held out).</p>",
        escape(&report.config.model),
        escape(&report.config.prompts),
        escape(&report.config.gold),
        report.config.seed,
        report.config.eval.prompts,
        report.config.eval.samples_per_prompt,
        super::fit::MIN_POINTS,
        super::fit::MIN_R_SQUARED,
        report.preference_pairs,
    );
    page.push_str("<h2>Proxy rewards</h2><table><tr><th>proxy</th><th>members</th><th>aggregation</th><th>training pairs</th><th>held-out accuracy</th></tr>");
    for p in &report.proxies {
        let _ = write!(
            page,
            "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
            escape(&p.name),
            p.members,
            escape(&p.aggregation),
            p.training_pairs,
            p.held_out_accuracy
                .map(|a| format!("{a:.3} ({} pairs)", p.held_out_pairs))
                .unwrap_or_else(|| "—".into())
        );
    }
    page.push_str("</table>");
    for svg in [
        &gold_chart,
        &proxy_chart,
        &overoptimisation_chart,
        &bon_chart,
    ] {
        if !svg.is_empty() {
            let _ = write!(page, "<figure>{svg}</figure>");
        }
    }
    page.push_str("<h2>Runs</h2><table><tr><th>run</th><th>final √KL</th><th>final proxy</th><th>gold peak</th><th>final gold</th><th>gold drop</th><th>gold fit</th></tr>");
    for run in &report.runs {
        let last = run.points.last().expect("runs have points");
        let (peak, final_gold) = run.gold_peak_and_final();
        let _ = write!(
            page,
            "<tr><td>{}</td><td>{:.3}</td><td>{:.3}</td><td>{:.3}</td><td>{:.3} ± {:.3}</td><td>{:.3}</td><td>{}</td></tr>",
            escape(&run.name),
            last.sqrt_kl,
            proxy_of(last, &run.proxy),
            peak,
            final_gold,
            last.gold.ci95,
            peak - final_gold,
            fit_text(&run.gold_fit)
        );
    }
    page.push_str("</table>");
    if let Some(bon) = &report.best_of_n {
        let _ = write!(
            page,
            "<h2>Best-of-n (selected by {})</h2><p>Gold fit d(α − βd): {}. Proxy fit: {}.</p>\
<table><tr><th>n</th><th>measured KL</th><th>analytic bound</th><th>proxy</th><th>gold</th></tr>",
            escape(&bon.proxy),
            fit_text(&bon.gold_fit),
            fit_text(&bon.proxy_fit)
        );
        for p in &bon.points {
            let gold = p.monitor_reward.unwrap_or(p.reward);
            let _ = write!(
                page,
                "<tr><td>{}</td><td>{:.3} ± {:.3}</td><td>{:.3}</td><td>{:.3} ± {:.3}</td><td>{:.3} ± {:.3}</td></tr>",
                p.n,
                p.kl.mean,
                p.kl.ci95,
                p.analytic_kl,
                p.reward.mean,
                p.reward.ci95,
                gold.mean,
                gold.ci95
            );
        }
        page.push_str("</table>");
    }
    decoding_tables(report, &mut page);
    page.push_str("<h2>Samples</h2><p>The first samples of the base policy and of each run's last policy, with their gold reward.</p><table><tr><th>policy</th><th>prompt</th><th>completion</th><th>gold</th></tr>");
    for (name, point) in report.final_points() {
        for e in &point.examples {
            let _ = write!(
                page,
                "<tr><td>{}</td><td style=\"text-align:left\">{}</td><td style=\"text-align:left\">{}</td><td>{:.2}</td></tr>",
                escape(name),
                escape(&e.prompt),
                escape(&e.completion),
                e.gold
            );
        }
    }
    page.push_str("</table>");
    page.push_str("<h2>Every measured policy</h2><table><tr><th>run</th><th>step</th><th>KL</th><th>proxy</th><th>gold</th></tr>");
    for run in &report.runs {
        for p in &run.points {
            let proxy = p.proxies.get(&run.proxy).copied();
            let _ = write!(
                page,
                "<tr><td>{}</td><td>{}</td><td>{:.3} ± {:.3}</td><td>{}</td><td>{:.3} ± {:.3}</td></tr>",
                escape(&run.name),
                p.step,
                p.kl.mean,
                p.kl.ci95,
                proxy
                    .map(|m| format!("{:.3} ± {:.3}", m.mean, m.ci95))
                    .unwrap_or_default(),
                p.gold.mean,
                p.gold.ci95
            );
        }
    }
    page.push_str("</table></body></html>\n");
    Ok(page)
}
