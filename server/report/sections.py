"""The report sections a coordinator reads to judge the model, beyond the AUROC tables.

Which round is reported and why (validation, never test), how far the external health system falls
behind the training sites, whether predicted risks can be read as probabilities at each site
(calibration), how label prevalence differs between sites (which moves AUROC and calibration), and
whether what each site attested to sending is exactly what the server received (egress).
Each function returns Markdown lines: a short sentence on how to read the section, the figure when
it was written, and a table with the numbers. Sections degrade to one sentence for runs recorded
before the fields they need existed.
"""

from __future__ import annotations

from server.report.data import (
    criterion_word,
    final_entry,
    has_calibration,
    has_validation,
    mean,
    selected_round,
    selection,
    sites_with_role,
    task_values,
    validation_values,
)
from server.round_selection import MIN_LABELS
from strategies.exchange import MIN_BIN_COUNT


def fmt(value: float | None, digits: int = 3) -> str:
    return "–" if value is None else f"{value:.{digits}f}"


def _role(site: dict) -> str:
    return "**external**" if site["role"] == "external" else site["role"]


def _score_table(chosen: dict) -> list[str]:
    scores = sorted((int(r), v) for r, v in chosen.get("score_per_round", {}).items())
    if not scores:
        return []
    return [
        "| round | " + " | ".join(str(r) for r, _ in scores) + " |",
        "|---|" + "---:|" * len(scores),
        f"| validation {criterion_word(chosen)} | " + " | ".join(
            f"**{fmt(v)}**" if r == int(chosen["round"]) else fmt(v) for r, v in scores) + " |",
        "",
    ]


def is_thin(n: int | None, positives: int | None) -> bool:
    """Whether a split has fewer than `MIN_LABELS` positives or negatives (False when not
    counted: a run recorded before counts were sent)."""
    if n is None or positives is None or n == 0:
        return False
    return min(positives, n - positives) < MIN_LABELS


def _validation_cell(values: dict, left_out: bool) -> str:
    n, positives = values.get("n"), values.get("positives")
    counts = [f"n={n}"] if n else []
    if n and positives is not None:
        counts.append(f"{positives} positive{'' if positives == 1 else 's'}")
    cell = fmt(values.get("auroc")) + (f" ({', '.join(counts)})" if counts else "")
    return cell + (" ⚠ left out" if left_out else "")


def _left_out(chosen: dict | None) -> set[tuple[str, str]]:
    return {(cell["site"], cell["task"]) for cell in (chosen or {}).get("left_out", [])}


def _validation_table(metrics: dict) -> list[str]:
    entry, tasks = final_entry(metrics), metrics["run"]["tasks"]
    left_out = _left_out(selection(metrics))
    lines = ["| site | role | loss | " + " | ".join(tasks) + " |",
             "|---|---|---:|" + "---:|" * len(tasks)]
    for site in metrics["sites"]:
        loss = entry["evaluation"].get(site["name"], {}).get("validation_loss")
        cells = [fmt(loss)] + [_validation_cell(validation_values(entry, site["name"], task),
                                                (site["name"], task) in left_out)
                               for task in tasks]
        lines.append(f"| {site['name']} | {_role(site)} | " + " | ".join(cells) + " |")
    return lines + [""]


def _left_out_lines(chosen: dict) -> list[str]:
    """Which site × task cells were too thin to help choose, and what that did to the choice."""
    cells = chosen.get("left_out") or []
    if not cells:
        return []
    minimum = chosen.get("min_labels", MIN_LABELS)
    named = "; ".join(f"{c['site']} × {c['task']} ({c['positives']} positive"
                      f"{'' if c['positives'] == 1 else 's'}, {c['negatives']} negative"
                      f"{'' if c['negatives'] == 1 else 's'})" for c in cells)
    lines = [f"**Left out of the choice** (fewer than {minimum} positives or negatives in the "
             f"validation split, so their validation AUROC is mostly noise): {named}."]
    if all(v is None for v in chosen.get("score_per_round", {}).values()):
        lines.append("No cell was left to choose with: the last round is reported.")
    return lines + [""]


def selection_lines(metrics: dict) -> list[str]:
    """`## Which round is reported`: the selected round, its criterion and the validation scores."""
    chosen, number = selection(metrics), selected_round(metrics)
    lines = ["## Which round is reported", ""]
    if chosen is None:
        return lines + [f"This run recorded no round selection, so the final numbers below are the "
                        f"last round's (**round {number}**).", ""]
    lines += [
        f"The final numbers below are from **round {number}**, selected by "
        f"{chosen.get('criterion', 'validation AUROC')}. Test AUROC never chose it, so the test "
        "numbers reported for it are not inflated by the choice.",
        "",
    ]
    lines += _score_table(chosen)
    lines += _left_out_lines(chosen)
    if has_validation(metrics):
        lines += [f"Validation loss and AUROC per site at round {number} (the external system "
                  "has no validation split):", ""] + _validation_table(metrics)
    return lines


def external_gap(metrics: dict) -> dict[str, dict[str, float | None]]:
    """Per task at the final round: training sites' mean AUROC, the external AUROC and its CI,
    and external − mean (negative: the system that never trained does worse)."""
    entry = final_entry(metrics)
    inside, external = sites_with_role(metrics, "train"), sites_with_role(metrics, "external")
    gaps = {}
    for task in metrics["run"]["tasks"]:
        trained = mean([task_values(entry, s, task).get("auroc") for s in inside])
        values = [task_values(entry, s, task) for s in external]
        outside = mean([v.get("auroc") for v in values])
        low, high = (values[0].get("ci") or [None, None]) if len(values) == 1 else (None, None)
        gaps[task] = {"in_distribution": trained, "external": outside, "external_low": low,
                      "external_high": high,
                      "gap": None if None in (trained, outside) else outside - trained}
    return gaps


def gap_lines(metrics: dict, figure: str | None) -> list[str]:
    """`## External vs in-distribution`: does the model travel to a system that never trained?"""
    lines = ["## External vs in-distribution", ""]
    if not sites_with_role(metrics, "external"):
        return lines + ["This consortium has no external site.", ""]
    lines += [
        f"At round {selected_round(metrics)}: the external health system (red) against the "
        "training sites (grey, with their mean as a black bar), each with its 95 % CI. A gap well "
        "below zero means the model does not transfer to a hospital it never saw.",
        "",
    ]
    if figure:
        lines += [f"![External vs in-distribution AUROC]({figure})", ""]
    lines += ["| task | training sites (mean) | external [95 % CI] | external − mean |",
              "|---|---:|---|---:|"]
    for task, row in external_gap(metrics).items():
        gap = "–" if row["gap"] is None else f"{row['gap']:+.3f}"
        lines.append(f"| {task} | {fmt(row['in_distribution'])} | {fmt(row['external'])} "
                     f"[{fmt(row['external_low'])}, {fmt(row['external_high'])}] | {gap} |")
    return lines + [""]


def _ece_table(metrics: dict) -> list[str]:
    entry, tasks = final_entry(metrics), metrics["run"]["tasks"]
    lines = ["| site | role | " + " | ".join(f"ECE {t}" for t in tasks) + " |",
             "|---|---|" + "---:|" * len(tasks)]
    for site in metrics["sites"]:
        cells = [fmt(task_values(entry, site["name"], t).get("ece")) for t in tasks]
        lines.append(f"| {site['name']} | {_role(site)} | " + " | ".join(cells) + " |")
    return lines + [""]


def calibration_lines(metrics: dict, figure: str | None) -> list[str]:
    """`## Calibration`: reliability curves per task and the ECE per site."""
    lines = ["## Calibration", ""]
    if not has_calibration(metrics):
        return lines + ["No calibration recorded in this run's metrics.json.", ""]
    lines += [
        f"Can a predicted risk be read as a probability? At round {selected_round(metrics)}, "
        "each site sorts its test encounters into "
        "10 bins by predicted probability (multi-class tasks: the top label's probability) and "
        "compares the bin's mean prediction with what happened (binary: the share of positives; "
        "multi-class: the share whose top label was right). On the dotted diagonal the model is "
        "calibrated; below it, it over-predicts. ECE is the encounter-weighted mean distance from "
        "the diagonal (0 is perfect). To keep single encounters at the site, bins with fewer "
        f"than {MIN_BIN_COUNT} encounters (and, when those are few, the next-smallest) are not "
        "sent and are missing from the curves.",
        "",
    ]
    if figure:
        lines += [f"![Reliability per task]({figure})", ""]
    return lines + _ece_table(metrics)


def prevalence_lines(figure: str | None) -> list[str]:
    """`## Label prevalence per site`: case mix differs between hospitals."""
    lines = [
        "## Label prevalence per site",
        "",
        "Share of positive labels on each site's test split (multi-class tasks: the share of the "
        "most frequent class). Sites with very different prevalence are not directly comparable "
        "on calibration, and a rare label gives wide AUROC intervals.",
        "",
    ]
    return lines + ([f"![Label prevalence per site]({figure})", ""] if figure else
                    ["No prevalence recorded in this run's metrics.json.", ""])


def _round_span(rounds: list[int]) -> str:
    if not rounds:
        return "–"
    if rounds == list(range(rounds[0], rounds[-1] + 1)) and len(rounds) > 1:
        return f"{rounds[0]}–{rounds[-1]}"
    return ", ".join(str(r) for r in rounds)


def egress_lines(metrics: dict) -> list[str]:
    """Per training site, what it attested to sending and whether the server received exactly
    that (`client.egress`); part of `## What left the sites`."""
    egress = metrics.get("egress")
    if not egress or not egress.get("sites"):
        return ["No egress attestation recorded in this run's metrics.json.", ""]
    lines = [
        "**Egress attestation.** Before a reply leaves, each site checks it against what its "
        "model declares — the adapter and head tensors' names, shapes and float32, the declared "
        "metric keys — and refuses anything else (it sends an error, no content). It then writes "
        "the reply's manifest (per tensor: shape, dtype, bytes, SHA-256) to an append-only egress "
        "log on its own disk, one line per train and evaluate reply, and sends the manifest's "
        "digest along. The server recomputes the manifest of every reply it received: *digests "
        "match* means it received exactly what the site logged.",
        "",
        "| site | training rounds | tensors per round | bytes (all rounds) | digests match | "
        "evaluation replies: digests match | egress log (at the site) |",
        "|---|---|---:|---:|---|---|---|",
    ]
    for name, site in egress["sites"].items():
        if not site["rounds"]:
            match = "–"
        elif site["match"]:
            match = "yes"
        else:
            match = f"**NO** (round {_round_span(site['mismatched_rounds'])})"
        replies = site.get("evaluation_replies", 0)
        scored = "–" if not replies else (
            f"yes ({replies})" if site.get("evaluation_match") else f"**NO** ({replies})")
        lines.append(f"| {name} | {_round_span(site['rounds']) if site['rounds'] else '–'} | "
                     f"{site['tensors']} | {site['bytes']:,} | {match} | {scored} | "
                     f"`{site['log']}` |")
    mismatched = [n for n, s in egress["sites"].items()
                  if s["mismatched_rounds"] or (s.get("evaluation_replies")
                                                and not s.get("evaluation_match"))]
    if mismatched:
        lines += ["", f"**What the server received differs from what {', '.join(mismatched)} "
                  "logged.** Compare `egress.rounds` in metrics.json with the site's egress log."]
    return lines + [""]
