//! `bench compare --repeat N`: the same comparison N times, the systems in
//! alternating order, and each figure's median over the rounds.
//!
//! One run of `compare` on a shared two-core machine moves by ±15% from
//! the next with nothing changed, for the engine and its peers alike, so a
//! ratio near its target is decided by the median of several rounds, not
//! by one. Odd rounds measure the systems in the order given, even rounds
//! in reverse, so a drift of the machine's speed over the run weighs on
//! every system alike.

use std::fmt::Write as _;

use serde::Serialize;

/// The system whose ratios to the others are the figures.
const ENGINE: &str = "switchboard";

/// One system's figures of one scenario in one round.
#[derive(Debug, Clone)]
pub struct Row {
    pub name: &'static str,
    /// `fanout` or `chat`.
    pub scenario: &'static str,
    pub max_deliveries_per_s: f64,
    /// p99 at the load every system was given (fan-out's common load,
    /// chat's fixed rate).
    pub same_load_p99_ms: Option<f64>,
    /// Whether every owed delivery of its phases arrived exactly once.
    pub valid: bool,
    /// CPU seconds the hypervisor took during its maximum's window.
    pub max_steal_s: Option<f64>,
}

/// What a figure is bound by.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Target {
    AtLeast(f64),
    AtMost(f64),
}

impl Target {
    pub fn met(self, value: f64) -> bool {
        match self {
            Self::AtLeast(bound) => value >= bound,
            Self::AtMost(bound) => value <= bound,
        }
    }

    pub fn text(self, unit: &str) -> String {
        match self {
            Self::AtLeast(bound) => format!("≥ {bound:?}{unit}"),
            Self::AtMost(bound) => format!("≤ {bound:?}{unit}"),
        }
    }
}

/// One figure of one round; `value` is `None` when a row it is taken from
/// lost or repeated deliveries.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Figure {
    pub name: String,
    /// `x` (a ratio), `ms` or `deliveries/s` or `s`.
    pub unit: &'static str,
    pub value: Option<f64>,
    pub target: Option<Target>,
}

/// The targets of issue 19's table: the engine's maximum over a peer's, per
/// scenario.
pub fn ratio_target(scenario: &str, peer: &str) -> Option<Target> {
    match (scenario, peer) {
        ("fanout" | "chat", "centrifugo") => Some(Target::AtLeast(1.0)),
        ("fanout", "socketio") => Some(Target::AtLeast(3.0)),
        ("fanout", "ceiling") => Some(Target::AtLeast(0.6)),
        _ => None,
    }
}

/// A round's figures, the ones with a target first: the engine's maximum
/// over each peer's per scenario, its p99 at fan-out's common load and
/// chat's fixed rate (alone and over each peer's; the targets are on
/// fan-out's, alone and over Centrifugo's),
/// then each system's own maximum and p99, and the
/// steal during the round's maxima.
pub fn figures(rows: &[Row]) -> Vec<Figure> {
    let mut targeted = Vec::new();
    let mut plain = Vec::new();
    let mut push = |figure: Figure| {
        if figure.target.is_some() { targeted.push(figure) } else { plain.push(figure) }
    };
    for scenario in ["fanout", "chat"] {
        // The targets are on fan-out's common load; chat's fixed rate is
        // the same for every system too, and is shown beside it.
        let has_targets = scenario == "fanout";
        let load = if has_targets { "the common load" } else { "the fixed rate" };
        let of: Vec<&Row> = rows.iter().filter(|row| row.scenario == scenario).collect();
        let engine = of.iter().find(|row| row.name == ENGINE);
        if let Some(engine) = engine {
            for peer in of.iter().filter(|row| row.name != ENGINE && row.max_deliveries_per_s > 0.0) {
                push(Figure {
                    name: format!("{scenario} max, {ENGINE} / {}", peer.name),
                    unit: "x",
                    value: (engine.valid && peer.valid)
                        .then(|| engine.max_deliveries_per_s / peer.max_deliveries_per_s),
                    target: ratio_target(scenario, peer.name),
                });
            }
            if let Some(p99) = engine.same_load_p99_ms {
                push(Figure {
                    name: format!("{scenario} p99 at {load}, {ENGINE}"),
                    unit: "ms",
                    value: engine.valid.then_some(p99),
                    target: has_targets.then_some(Target::AtMost(5.0)),
                });
                for peer in of.iter().filter(|row| row.name != ENGINE) {
                    let Some(peer_p99) = peer.same_load_p99_ms else { continue };
                    push(Figure {
                        name: format!("{scenario} p99 at {load}, {ENGINE} / {}", peer.name),
                        unit: "x",
                        value: (engine.valid && peer.valid && peer_p99 > 0.0).then(|| p99 / peer_p99),
                        target: (has_targets && peer.name == "centrifugo").then_some(Target::AtMost(1.0)),
                    });
                }
            }
        }
        for row in &of {
            push(Figure {
                name: format!("{scenario} max, {}", row.name),
                unit: "deliveries/s",
                value: row.valid.then_some(row.max_deliveries_per_s),
                target: None,
            });
        }
        for row in of.iter().filter(|row| row.name != ENGINE) {
            if let Some(p99) = row.same_load_p99_ms {
                push(Figure {
                    name: format!("{scenario} p99 at {load}, {}", row.name),
                    unit: "ms",
                    value: row.valid.then_some(p99),
                    target: None,
                });
            }
        }
    }
    let steal: Vec<f64> = rows.iter().filter_map(|row| row.max_steal_s).collect();
    if !steal.is_empty() {
        push(Figure {
            name: "steal during the round's maxima, all together".to_owned(),
            unit: "s",
            value: Some(steal.iter().sum()),
            target: None,
        });
    }
    targeted.append(&mut plain);
    targeted
}

/// The median of `values` (the mean of the middle two when even); `None`
/// when there are none.
pub fn median(values: &[f64]) -> Option<f64> {
    let mut sorted = values.to_vec();
    sorted.sort_by(f64::total_cmp);
    let n = sorted.len();
    match n {
        0 => None,
        _ if !n.is_multiple_of(2) => Some(sorted[n / 2]),
        _ => Some(f64::midpoint(sorted[n / 2 - 1], sorted[n / 2])),
    }
}

/// The systems' order in round `round` (counted from 1): as given in odd
/// rounds, reversed in even ones.
pub fn order<T: Clone>(systems: &[T], round: usize) -> Vec<T> {
    let mut order = systems.to_vec();
    if round.is_multiple_of(2) {
        order.reverse();
    }
    order
}

/// One round as the summary records it.
#[derive(Debug, Serialize)]
pub struct Round {
    pub round: usize,
    /// The folder (under `--out`) holding that round's own summaries.
    pub dir: String,
    pub order: Vec<&'static str>,
    pub figures: Vec<Figure>,
}

/// One figure over every round.
#[derive(Debug, Serialize)]
pub struct Aggregate {
    pub name: String,
    pub unit: &'static str,
    /// Per round, in round order; `null` where the figure was not taken
    /// or a row it comes from lost or repeated deliveries.
    pub values: Vec<Option<f64>>,
    pub median: Option<f64>,
    pub min: Option<f64>,
    pub max: Option<f64>,
    /// Rounds in which a row it comes from lost or repeated deliveries.
    pub invalid_rounds: usize,
    pub target: Option<Target>,
    /// Whether the median meets the target.
    pub met: Option<bool>,
}

/// Each figure found in any round, in the order of first appearance.
pub fn aggregate(rounds: &[Round]) -> Vec<Aggregate> {
    let mut names: Vec<(&str, &'static str, Option<Target>)> = Vec::new();
    for figure in rounds.iter().flat_map(|round| &round.figures) {
        if !names.iter().any(|(name, ..)| *name == figure.name) {
            names.push((&figure.name, figure.unit, figure.target));
        }
    }
    names
        .into_iter()
        .map(|(name, unit, target)| {
            let found: Vec<Option<&Figure>> =
                rounds.iter().map(|round| round.figures.iter().find(|figure| figure.name == name)).collect();
            let values: Vec<Option<f64>> = found.iter().map(|figure| figure.and_then(|f| f.value)).collect();
            let taken: Vec<f64> = values.iter().flatten().copied().collect();
            let median = median(&taken);
            Aggregate {
                name: name.to_owned(),
                unit,
                invalid_rounds: found.iter().flatten().filter(|figure| figure.value.is_none()).count(),
                median,
                min: taken.iter().copied().reduce(f64::min),
                max: taken.iter().copied().reduce(f64::max),
                values,
                target,
                met: target.zip(median).map(|(target, median)| target.met(median)),
            }
        })
        .collect()
}

fn cell(value: Option<f64>, unit: &str) -> String {
    match (value, unit) {
        (None, _) => "-".to_owned(),
        (Some(value), "deliveries/s") => format!("{value:.0}"),
        (Some(value), "x") => format!("{value:.2}x"),
        (Some(value), _) => format!("{value:.2}"),
    }
}

/// `summary.md` of a repeated comparison: each figure per round, its
/// median and spread, and the verdict on the median.
pub fn markdown(rounds: &[Round], aggregates: &[Aggregate], notes: &str) -> String {
    let mut text =
        format!("{} rounds of the same comparison; each round's own summaries are in its folder.\n\n", rounds.len());
    for round in rounds {
        let _ = writeln!(text, "- round {} (`{}/`): {}", round.round, round.dir, round.order.join(", "));
    }
    let _ = write!(text, "\n{notes}\n\n| figure |");
    for round in rounds {
        let _ = write!(text, " round {} |", round.round);
    }
    text.push_str(" median | spread | target | verdict on the median |\n|---|");
    text.push_str(&"---:|".repeat(rounds.len() + 2));
    text.push_str("---|---|\n");
    for figure in aggregates {
        let unit = if figure.unit == "x" { "" } else { figure.unit };
        let name = if unit.is_empty() { figure.name.clone() } else { format!("{} ({unit})", figure.name) };
        let _ = write!(text, "| {name} |");
        for value in &figure.values {
            let _ = write!(text, " {} |", cell(*value, figure.unit));
        }
        let spread = match (figure.min, figure.max) {
            (Some(min), Some(max)) => format!("{}–{}", cell(Some(min), figure.unit), cell(Some(max), figure.unit)),
            _ => "-".to_owned(),
        };
        let target = figure.target.map_or(String::new(), |target| {
            target.text(match figure.unit {
                "x" => "x",
                "ms" => " ms",
                _ => "",
            })
        });
        let verdict = match (figure.met, figure.invalid_rounds) {
            (None, 0) => String::new(),
            (None, invalid) => format!("{invalid} invalid rounds"),
            (Some(met), invalid) => {
                let verdict = if met { "met" } else { "missed" };
                if invalid == 0 { verdict.to_owned() } else { format!("{verdict} ({invalid} invalid rounds left out)") }
            }
        };
        let _ = writeln!(text, " {} | {spread} | {target} | {verdict} |", cell(figure.median, figure.unit));
    }
    text
}

/// Removes the `round-N` folders an earlier run left in `out`, so that a
/// folder of this run's output holds only this run's rounds. Answers the
/// names removed; other files and folders stay.
pub fn clear_earlier_rounds(out: &std::path::Path) -> std::io::Result<Vec<String>> {
    let mut removed = Vec::new();
    let entries = match std::fs::read_dir(out) {
        Ok(entries) => entries,
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => return Ok(removed),
        Err(error) => return Err(error),
    };
    for entry in entries {
        let entry = entry?;
        let name = entry.file_name().to_string_lossy().into_owned();
        let numbered =
            name.strip_prefix("round-").is_some_and(|n| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()));
        if numbered && entry.file_type()?.is_dir() {
            std::fs::remove_dir_all(entry.path())?;
            removed.push(name);
        }
    }
    removed.sort();
    Ok(removed)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(name: &'static str, scenario: &'static str, max: f64, p99: Option<f64>) -> Row {
        Row { name, scenario, max_deliveries_per_s: max, same_load_p99_ms: p99, valid: true, max_steal_s: Some(0.5) }
    }

    fn value(figures: &[Figure], name: &str) -> Option<f64> {
        figures.iter().find(|figure| figure.name == name).unwrap_or_else(|| panic!("no {name}")).value
    }

    #[test]
    fn only_the_numbered_round_folders_of_an_earlier_run_are_cleared() {
        let out = tempfile::tempdir().unwrap();
        for dir in ["round-1", "round-12", "round-x", "round-", "kept"] {
            std::fs::create_dir(out.path().join(dir)).unwrap();
        }
        std::fs::write(out.path().join("round-1").join("summary.json"), "{}").unwrap();
        std::fs::write(out.path().join("round-3"), "a file, not a round").unwrap();
        std::fs::write(out.path().join("summary.md"), "kept").unwrap();
        assert_eq!(clear_earlier_rounds(out.path()).unwrap(), ["round-1", "round-12"]);
        let mut left: Vec<String> = std::fs::read_dir(out.path())
            .unwrap()
            .map(|entry| entry.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        left.sort();
        assert_eq!(left, ["kept", "round-", "round-3", "round-x", "summary.md"]);
        let missing = out.path().join("not-made-yet");
        assert!(clear_earlier_rounds(&missing).unwrap().is_empty(), "no folder yet, nothing to clear");
    }

    #[test]
    fn the_median_of_an_odd_and_an_even_count_and_of_none() {
        assert_eq!(median(&[3.0, 1.0, 2.0]), Some(2.0));
        assert_eq!(median(&[4.0, 1.0, 3.0, 2.0]), Some(2.5));
        assert_eq!(median(&[]), None);
    }

    #[test]
    fn even_rounds_measure_the_systems_in_reverse() {
        let systems = ["a", "b", "c"];
        assert_eq!(order(&systems, 1), ["a", "b", "c"]);
        assert_eq!(order(&systems, 2), ["c", "b", "a"]);
        assert_eq!(order(&systems, 3), ["a", "b", "c"]);
    }

    #[test]
    fn a_round_gives_the_engines_ratios_with_their_targets_first() {
        let rows = [
            row("switchboard", "fanout", 600.0, Some(4.0)),
            row("centrifugo", "fanout", 800.0, Some(8.0)),
            row("socketio", "fanout", 150.0, Some(20.0)),
            row("switchboard", "chat", 90.0, Some(12.0)),
            row("centrifugo", "chat", 100.0, Some(4.0)),
        ];
        let figures = figures(&rows);
        // Chat's fixed rate is shown beside it, with no target.
        let chat_p99 = figures.iter().find(|f| f.name == "chat p99 at the fixed rate, switchboard / centrifugo");
        assert_eq!(chat_p99.map(|f| (f.value, f.target)), Some((Some(3.0), None)));
        assert_eq!(value(&figures, "fanout max, switchboard / centrifugo"), Some(0.75));
        assert_eq!(value(&figures, "fanout max, switchboard / socketio"), Some(4.0));
        assert_eq!(value(&figures, "chat max, switchboard / centrifugo"), Some(0.9));
        assert_eq!(value(&figures, "fanout p99 at the common load, switchboard"), Some(4.0));
        assert_eq!(value(&figures, "fanout p99 at the common load, switchboard / centrifugo"), Some(0.5));
        assert_eq!(value(&figures, "fanout p99 at the common load, switchboard / socketio"), Some(0.2));
        let over_socketio = figures.iter().find(|f| f.name == "fanout p99 at the common load, switchboard / socketio");
        assert_eq!(over_socketio.unwrap().target, None);
        assert_eq!(value(&figures, "fanout max, socketio"), Some(150.0));
        assert_eq!(value(&figures, "steal during the round's maxima, all together"), Some(2.5));
        let first_plain = figures.iter().position(|figure| figure.target.is_none()).unwrap();
        assert!(figures[first_plain..].iter().all(|figure| figure.target.is_none()), "{figures:?}");
        assert_eq!(first_plain, 5, "{figures:?}");
    }

    #[test]
    fn a_row_that_lost_deliveries_gives_no_value() {
        let mut peer = row("centrifugo", "chat", 100.0, None);
        peer.valid = false;
        let figures = figures(&[row("switchboard", "chat", 90.0, None), peer]);
        assert_eq!(value(&figures, "chat max, switchboard / centrifugo"), None);
        assert_eq!(value(&figures, "chat max, switchboard"), Some(90.0));
    }

    #[test]
    fn the_verdict_is_on_the_median_and_invalid_rounds_are_left_out() {
        let round = |n: usize, engine: f64, peer_valid: bool| {
            let mut peer = row("centrifugo", "chat", 100.0, None);
            peer.valid = peer_valid;
            Round {
                round: n,
                dir: format!("round-{n}"),
                order: vec!["switchboard", "centrifugo"],
                figures: figures(&[row("switchboard", "chat", engine, None), peer]),
            }
        };
        let rounds = [round(1, 80.0, true), round(2, 120.0, true), round(3, 105.0, true), round(4, 50.0, false)];
        let aggregates = aggregate(&rounds);
        let ratio = &aggregates[0];
        assert_eq!(ratio.name, "chat max, switchboard / centrifugo");
        assert_eq!(ratio.values, [Some(0.8), Some(1.2), Some(1.05), None]);
        assert_eq!((ratio.median, ratio.min, ratio.max), (Some(1.05), Some(0.8), Some(1.2)));
        assert_eq!((ratio.invalid_rounds, ratio.met), (1, Some(true)));
        let text = markdown(&rounds, &aggregates, "notes");
        assert!(
            text.contains(
                "| chat max, switchboard / centrifugo | 0.80x | 1.20x | 1.05x | - | 1.05x | 0.80x–1.20x | ≥ 1.0x | met (1 invalid rounds left out) |"
            ),
            "{text}"
        );
        assert!(text.contains("| chat max, switchboard (deliveries/s) | 80 | 120 | 105 | 50 | 92 |"), "{text}");
    }
}
