//! `flowgate bench --plot FILE.svg`: the closed-loop phases over time, one after another, in
//! three panels: accepts per second, the answer time's p50 and p99 each second, and the
//! queue backlog each second. Drawn by plotters' SVG backend.

use std::path::Path;

use plotters::prelude::*;

use crate::bench_kit::{Phase, ms, percentile};

/// One second of one phase, as plotted.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct Point {
    /// Seconds since the first phase began.
    pub t: f64,
    /// Requests accepted that second.
    pub accepts: f64,
    /// Answer time p50 that second, in ms.
    pub p50: f64,
    /// Answer time p99 that second, in ms.
    pub p99: f64,
}

/// Where each phase starts (seconds) and at which concurrency, for the labels.
type Starts = Vec<(f64, usize)>;
/// The backlog: (seconds, messages).
type Backlog = Vec<(f64, f64)>;

/// The phases' seconds, end to end; each phase's start and concurrency; the backlog.
pub(crate) fn points(phases: &[&Phase]) -> (Vec<Point>, Starts, Backlog) {
    let (mut points, mut starts, mut backlog) = (Vec::new(), Vec::new(), Vec::new());
    let mut offset = 0.0;
    for phase in phases {
        starts.push((offset, phase.concurrency));
        for (second, answers) in phase.seconds.iter().enumerate() {
            let mut sorted = answers.clone();
            sorted.sort_unstable();
            points.push(Point {
                t: offset + second as f64,
                accepts: sorted.len() as f64,
                p50: ms(percentile(&sorted, 50.0)),
                p99: ms(percentile(&sorted, 99.0)),
            });
        }
        for (second, depth) in phase.backlog.iter().enumerate() {
            backlog.push((offset + second as f64 + 1.0, *depth as f64));
        }
        // Requests are sent only before the deadline, so a phase's seconds end with it.
        offset += phase.seconds.len().max(phase.backlog.len()) as f64;
    }
    (points, starts, backlog)
}

/// Draws `phases` into an SVG file at `file`.
pub(crate) fn draw(file: &Path, phases: &[&Phase]) -> Result<(), Box<dyn std::error::Error>> {
    let (points, starts, backlog) = points(phases);
    let end = points.last().map_or(1.0, |p| p.t + 1.0).max(1.0);
    let root = SVGBackend::new(file, (960, 900)).into_drawing_area();
    root.fill(&WHITE)?;
    let panels = root.split_evenly((3, 1));
    let label = |c: &usize| format!("c{c}");
    let series = [
        (
            "accepts per second",
            vec![(
                "accepts/s",
                points.iter().map(|p| (p.t, p.accepts)).collect::<Vec<_>>(),
                BLUE,
            )],
        ),
        (
            "answer time (ms), each second",
            vec![
                ("p50", points.iter().map(|p| (p.t, p.p50)).collect(), GREEN),
                ("p99", points.iter().map(|p| (p.t, p.p99)).collect(), RED),
            ],
        ),
        (
            "backlog (accepted, not yet created), each second",
            vec![("messages", backlog.clone(), MAGENTA)],
        ),
    ];
    for (area, (title, lines)) in panels.iter().zip(series) {
        let top = lines
            .iter()
            .flat_map(|(_, line, _)| line.iter().map(|(_, y)| *y))
            .fold(1.0f64, f64::max);
        let mut chart = ChartBuilder::on(area)
            .caption(title, ("sans-serif", 18))
            .margin(10)
            .x_label_area_size(28)
            .y_label_area_size(56)
            .build_cartesian_2d(0.0..end, 0.0..top * 1.1)?;
        chart
            .configure_mesh()
            .x_desc("seconds")
            .light_line_style(WHITE.mix(0.0))
            .draw()?;
        for (start, concurrency) in &starts {
            chart.draw_series(std::iter::once(PathElement::new(
                vec![(*start, 0.0), (*start, top * 1.1)],
                BLACK.mix(0.3),
            )))?;
            chart.draw_series(std::iter::once(Text::new(
                label(concurrency),
                (*start + 0.2, top * 1.05),
                ("sans-serif", 13),
            )))?;
        }
        for (name, line, color) in lines {
            chart
                .draw_series(LineSeries::new(line, color.stroke_width(2)))?
                .label(name)
                .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 16, y)], color));
        }
        chart
            .configure_series_labels()
            .position(SeriesLabelPosition::UpperMiddle)
            .background_style(WHITE.mix(0.8))
            .border_style(BLACK.mix(0.3))
            .draw()?;
    }
    root.present()?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn phase(concurrency: usize, seconds: Vec<Vec<u64>>, backlog: Vec<u64>) -> Phase {
        Phase {
            shape: crate::bench_kit::Shape::Start,
            concurrency,
            answered: 0,
            accepted: Vec::new(),
            latencies_us: Vec::new(),
            seconds,
            backlog,
            errors: Default::default(),
            elapsed: Duration::from_millis(1900),
        }
    }

    #[test]
    fn phases_are_laid_end_to_end_and_drawn() {
        let a = phase(1, vec![vec![1000, 2000, 3000], vec![4000]], vec![5, 6]);
        let b = phase(64, vec![vec![10_000; 10]], vec![7]);
        let (points, starts, backlog) = points(&[&a, &b]);
        assert_eq!(
            starts,
            vec![(0.0, 1), (2.0, 64)],
            "the first phase had 2 seconds"
        );
        assert_eq!(points.len(), 3);
        assert_eq!(
            (points[0].accepts, points[0].p50, points[0].p99),
            (3.0, 2.0, 3.0)
        );
        assert_eq!((points[2].t, points[2].accepts), (2.0, 10.0));
        assert_eq!(backlog, vec![(1.0, 5.0), (2.0, 6.0), (3.0, 7.0)]);
        let dir = tempfile::tempdir().expect("a temp dir");
        let file = dir.path().join("bench.svg");
        draw(&file, &[&a, &b]).expect("drawn");
        let svg = std::fs::read_to_string(&file).expect("an SVG");
        assert!(
            svg.starts_with("<svg") && svg.contains("accepts per second") && svg.contains("c64")
        );
    }
}
