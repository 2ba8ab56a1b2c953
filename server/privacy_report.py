"""The privacy section of `report.md` and its figure, written for a privacy reviewer.

A reviewer asks what a DP claim covers before asking what ε is. The section therefore follows the
reporting checklist of "How to DP-fy ML" (Ponomareva et al., 2023): DP setting, privacy unit,
mechanism, accounting, what was released and what the guarantee does not cover, trust model,
hyperparameter tuning and budget across runs — next to the numbers each site reported (budget,
spend, σ, q, C, accountant, declined rounds) and the ledger head that lets the reviewer check the
site's ledger without trusting this report (`lang1-fl privacy verify`).

Everything comes from `metrics["privacy"]` (see `server.metrics_file.privacy_summary`) and the
per-round `declined` entries; a metrics.json written before privacy reporting has neither, and the
section then says that nothing was recorded instead of failing.
"""

from __future__ import annotations

from pathlib import Path

FIGURE = "privacy_per_round.png"
SHORT_HASH = 12


def _num(value: float | None, spec: str) -> str:
    return "–" if value is None else format(value, spec)


def _privacy(metrics: dict) -> dict | None:
    return metrics.get("privacy")


def _dp_sites(privacy: dict) -> dict[str, dict]:
    return {name: site for name, site in privacy["sites"].items() if site["dp"]}


def _run_name(metrics: dict) -> str:
    return metrics["run"].get("run_name") or "<run-name>"


def _over_budget(site: dict) -> bool:
    return (site.get("epsilon") or 0.0) > site["target_epsilon"] * (1 + 1e-6)


def _spent(site: dict) -> str:
    spent = _num(site.get("epsilon"), ".2f")
    return f"**{spent} (over budget)**" if _over_budget(site) else spent


def _site_row(name: str, site: dict) -> str:
    declined = ", ".join(str(r) for r in site.get("declined_rounds", [])) or "none"
    if not site["dp"]:
        return f"| {name} | **no DP** | – | – | – | – | – | – | – | {declined} | – |"
    head = site.get("ledger_head")
    return (
        f"| {name} | DP-SGD | {_num(site['target_epsilon'], 'g')} | {_num(site['delta'], 'g')} "
        f"| {_spent(site)} | {_num(site.get('noise_multiplier'), '.3f')} "
        f"| {_num(site.get('sample_rate'), '.4g')} | {_num(site['max_grad_norm'], 'g')} "
        f"| {site['accountant']} | {declined} | {f'`{head[:SHORT_HASH]}`' if head else '–'} |"
    )


def site_table(privacy: dict) -> list[str]:
    """One row per training site; a site without DP is marked in bold."""
    lines = [
        "| site | DP | target ε | δ | ε spent (final) | σ (noise multiplier) | q (sample rate) "
        "| C (clipping norm) | accountant | rounds declined | ledger head |",
        "|---|---|---:|---:|---:|---:|---:|---:|---|---|---|",
    ]
    return lines + [_site_row(name, site) for name, site in privacy["sites"].items()]


def _non_dp_warning(privacy: dict) -> list[str]:
    plain = [name for name, site in privacy["sites"].items() if not site["dp"]]
    if not plain:
        return []
    return [f"**Sites without DP: {', '.join(plain)}.** Everything they sent (adapter and head "
            "tensors every round, metrics) is released without any privacy guarantee.", ""]


def verify_lines(metrics: dict, privacy: dict) -> list[str]:
    """The command a reviewer runs on each DP site's ledger, with the full head hash."""
    run = _run_name(metrics)
    commands = [f"lang1-fl privacy verify <{name}: privacy.ledger_dir>/{run}.jsonl "
                f"--head {site['ledger_head']} --public-key <{name}: signing key .pub>"
                for name, site in _dp_sites(privacy).items() if site.get("ledger_head")]
    if not commands:
        return []
    return [
        "**How to check a site's spend.** Each DP site keeps one hash-chained ledger per run, "
        f"`<privacy.ledger_dir>/{run}.jsonl` (default `ledger_dir`: a `privacy-ledger` folder beside "
        "the site's data table); ask the site for it and run the command below. It checks the hash "
        "chain against the head hash the site reported to the server (this catches a ledger cut "
        "short or rewritten), checks every entry's signature against the site's public key (its "
        "registered SuperNode key; for a simulated site, `signing-key.pub` in its ledger folder), "
        "and checks every round's ε against "
        "what the recorded (σ, q, steps) provably spend, with Google's dp-accounting, an accountant "
        "that did not train. Full head hashes are also in "
        "`metrics.json` (`privacy.sites.<site>.ledger_head`).",
        "",
        "```",
        *commands,
        "```",
        "",
    ]


def declined_lines(metrics: dict) -> list[str]:
    """Every round a site declined (its budget would have been exceeded), with the site's reason."""
    lines = [f"- Round {entry['round']}, site {site}: {reason}"
             for entry in metrics["rounds"] for site, reason in entry.get("declined", {}).items()]
    return lines or ["- No site declined a round."]


def _client_level_table(client: dict) -> list[str]:
    return [
        "| σ (noise multiplier) | C (update clipping norm) | δ | ε after all rounds | sites "
        "| accountant | privacy unit |",
        "|---:|---:|---:|---:|---:|---|---|",
        f"| {_num(client.get('noise_multiplier'), '.3f')} | {_num(client.get('clipping_norm'), 'g')} "
        f"| {_num(client.get('delta'), 'g')} | {_num(client.get('epsilon'), '.2f')} "
        f"| {client.get('num_sites', '–')} | {client.get('accountant', '–')} "
        f"| {client.get('privacy_unit', 'site')} |",
    ]


def client_level_lines(privacy: dict) -> list[str]:
    """DP-FedAvg at the server, when the run used it: numbers, what it protects, its caveat."""
    client = privacy.get("client_level")
    if not client:
        return []
    sites = client.get("num_sites")
    return [
        "### Client-level DP (DP-FedAvg, server-side fixed clipping)",
        "",
        *_client_level_table(client),
        "",
        "- **Unit and setting.** The privacy unit is a whole site: the guarantee bounds what the "
        "aggregated model reveals about whether a site took part at all, a coarser statement than "
        "the per-encounter guarantee above.",
        "- **Mechanism.** Each round the server clips every site's update to L2 norm C and adds "
        "Gaussian noise of std σ·C to their sum before averaging; ε composes over all rounds.",
        "- **Trust.** The server clips and adds the noise, so it sees each site's update unnoised: "
        "this protects sites from the other sites and from anyone who sees the aggregated or final "
        "model, not from the server.",
        f"- **Caveat.** With few sites ({sites if sites is not None else 'here'}) the noise needed is "
        "large relative to the average update: the averaged update's noise has std σ·C ÷ sites, "
        "while each clipped update is at most C, so unless σ is small (ε large) the noise can "
        "swamp the averaged update.",
        "",
    ]


def _checklist() -> list[str]:
    """The "How to DP-fy ML" reporting items for example-level DP-SGD at each site."""
    return [
        "- **DP setting.** Example-level DP at each DP site, local to that site: the site clips and "
        "noises its own training before anything leaves it, so its guarantee holds whatever the "
        "server or other sites do. It is not patient-level (user-level) DP, and nothing spans "
        "sites: a patient seen at two hospitals is two records under two separate guarantees.",
        "- **Privacy unit.** One encounter: one row of the site's table with its notes and labels. "
        "A patient with k encounters at a site is protected only through group privacy: ε scales "
        "to k·ε (and δ grows faster, to about k·e^((k−1)ε)·δ).",
        "- **Mechanism.** DP-SGD with opacus: per-encounter gradients of the LoRA adapter and task "
        "heads (the frozen base model gets none), each clipped to L2 norm C, summed, Gaussian noise "
        "of std σ·C added, divided by the expected batch size; batches drawn by Poisson sampling "
        "at rate q.",
        "- **Accounting.** Each site's opacus accountant (column *accountant*) at its δ, composing "
        "every DP-SGD step of this run at the site, all rounds together: σ is fixed once before the "
        "first step so that rounds × local steps land at the target ε. Each round is written to the "
        "site's ledger before it trains (commit before spend): a crash over-counts a round, never "
        "under-counts; a round that would pass the target is declined instead.",
        "- **What was released.** Covered by the guarantee: every round's adapter and head tensors "
        "each DP site sent to the server, and everything computed from them (aggregates, the final "
        "adapter) — by post-processing, since DP-SGD's guarantee holds for every intermediate "
        "iterate, not only the last. **Not covered:** evaluation metrics (AUROC with bootstrap CIs, "
        "loss, counts n and prevalence on the test splits, calibration — ECE and reliability "
        "bins, bins of fewer than 10 encounters withheld — and the validation AUROC that "
        "selects the round, all released without noise), "
        "`num-examples` (the training-set size, also implied by q = batch size ÷ n), and, for "
        "sites without DP, everything they sent. DP sites' training loss is withheld.",
        "- **Trust model.** Each site is trusted with its own data and runs its own accountant and "
        "ledger; the server, the other sites and anyone who sees any round's update or the final "
        "adapter are not trusted. Noise and Poisson sampling draw from OS entropy, never from the "
        "public run seed (which only drives dropout).",
        "- **Hyperparameter tuning.** Not accounted: the budget covers this run's training only. "
        "Its hyperparameters are fixed in the configuration before the first step and were not "
        "tuned on the sites' private data in this run. The one choice made on site data is which "
        "round's adapter to keep, by the validation AUROC the sites release without noise (not "
        "covered, as above). Any tuning on that data in other runs spends budget this ε does not "
        "include.",
        "- **Budget per run.** Each run has its own ledger and its own budget. A site's total over "
        "several runs on the same data adds up: sum the final ε (and δ) of every ledger in the "
        "site's `privacy-ledger` folder.",
    ]


def _figure_lines(privacy: dict, figure: str | None) -> list[str]:
    if figure:
        return [f"![Cumulative ε per round]({figure})", ""]
    if not _dp_sites(privacy) and not privacy.get("client_level"):
        return ["No ε figure: no site trained with DP.", ""]
    return []


def render_privacy_section(metrics: dict, figure: str | None = None) -> list[str]:
    """Markdown lines of the `## Privacy` section; `figure` is the ε plot's file name, if written."""
    lines = ["## Privacy", ""]
    privacy = _privacy(metrics)
    if privacy is None:
        return lines + ["No privacy information recorded in this run's metrics.json.", ""]
    lines += site_table(privacy) + [""] + _non_dp_warning(privacy)
    lines += verify_lines(metrics, privacy) + _figure_lines(privacy, figure)
    if _dp_sites(privacy):
        lines += ["### What the guarantee covers", ""] + _checklist() + [""]
    else:
        lines += ["**No site trained with DP-SGD:** no example-level guarantee covers anything "
                  "that left the sites.", ""]
    lines += client_level_lines(privacy)
    lines += ["### Declined rounds", ""] + declined_lines(metrics) + [""]
    return lines


def _curve(per_round: dict) -> tuple[list[int], list[float]]:
    points = sorted((int(r), eps) for r, eps in per_round.items() if eps is not None)
    return [r for r, _ in points], [eps for _, eps in points]


def _plot_sites(ax, sites: dict[str, dict]) -> None:
    targets = {site["target_epsilon"] for site in sites.values()}
    for name, site in sites.items():
        rounds, eps = _curve(site.get("epsilon_per_round", {}))
        (line,) = ax.plot(rounds, eps, marker="o", label=f"{name} (ε)")
        if len(targets) > 1:
            ax.axhline(site["target_epsilon"], color=line.get_color(), linestyle="--",
                       linewidth=1, label=f"{name} target ε")
    if len(targets) == 1:
        ax.axhline(targets.pop(), color="grey", linestyle="--", linewidth=1, label="target ε")


def _plot_client_level(ax, client: dict | None) -> None:
    if client and client.get("epsilon_per_round"):
        rounds, eps = _curve(client["epsilon_per_round"])
        ax.plot(rounds, eps, "k:", marker="s", label="client-level ε (unit: site)")


def _has_points(privacy: dict) -> bool:
    curves = [site.get("epsilon_per_round", {}) for site in _dp_sites(privacy).values()]
    curves.append((privacy.get("client_level") or {}).get("epsilon_per_round", {}))
    return any(_curve(curve)[0] for curve in curves)


def plot_privacy(metrics: dict, path: Path) -> bool:
    """Cumulative ε by round for every DP site, target ε dashed; False (nothing written) without DP."""
    privacy = _privacy(metrics)
    if privacy is None or not _has_points(privacy):
        return False
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import MaxNLocator

    fig, ax = plt.subplots(figsize=(5, 3.2))
    _plot_sites(ax, _dp_sites(privacy))
    _plot_client_level(ax, privacy.get("client_level"))
    ax.set_xlabel("round")
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_ylabel("cumulative ε")
    ax.set_ylim(0, 1.15 * ax.get_ylim()[1])
    ax.legend(fontsize="small", loc="lower right")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return True
