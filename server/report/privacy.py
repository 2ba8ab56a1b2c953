"""The privacy section of `report.md` and its figure, written for a privacy reviewer.

A reviewer asks what a DP claim covers before asking what ε is. The section therefore follows the
reporting checklist of "How to DP-fy ML" (Ponomareva et al., 2023): DP setting, privacy unit,
mechanism, accounting, what was released and what the guarantee does not cover, trust model,
hyperparameter tuning and budget across runs — next to the numbers each site reported (budget,
spend of this run and of the site's data over all runs, σ, q, C, accountant, declined rounds) and
the ledger head and signer that let the reviewer check the site's ledger without trusting this
report (`lang1-fl privacy verify`).

Everything comes from `metrics["privacy"]` (see `server.report.metrics_file.privacy_summary`): what the
sites themselves reported — their own budgets and their ledgers' state at the end of the run —
never the coordinator's consortium file. A metrics.json written before privacy reporting has no
such block, and the section then says that nothing was recorded instead of failing.
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


def _over_budget(site: dict) -> bool:
    over_run = (site.get("run_epsilon") or 0.0) > (site.get("run_epsilon_allocation") or
                                                  float("inf")) * (1 + 1e-6)
    over_life = (site.get("epsilon") or 0.0) > (site.get("lifetime_epsilon") or
                                               float("inf")) * (1 + 1e-6)
    return over_run or over_life


def _spent(site: dict) -> str:
    spent = _num(site.get("run_epsilon"), ".2f")
    return f"**{spent} (over budget)**" if _over_budget(site) else spent


def _head(site: dict) -> str:
    head = site.get("ledger_head")
    return f"`{head[:SHORT_HASH]}`" if head else "–"


def _site_row(name: str, site: dict) -> str:
    declined = ", ".join(str(r) for r in site.get("declined_rounds", [])) or "none"
    if not site["dp"]:
        return f"| {name} | **no DP** | – | – | – | – | – | {declined} | – | {site.get('source', '–')} |"
    lifetime = (f"{_num(site.get('epsilon'), '.2f')} of {_num(site.get('lifetime_epsilon'), 'g')}")
    return (
        f"| {name} | {site.get('unit') or '–'} | {_num(site.get('delta'), 'g')} "
        f"| {_spent(site)} | {_num(site.get('run_epsilon_allocation'), 'g')} | {lifetime} "
        f"| {site.get('ledger_entries', '–')} | {declined} | {_head(site)} | {site.get('source', '–')} |"
    )


def site_table(privacy: dict) -> list[str]:
    """One row per training site, as the site's own ledger reports it; no DP in bold."""
    lines = [
        "| site | privacy unit | δ | ε this run | run allocation | ε of its data, all runs "
        "(of lifetime budget) | ledger entries | rounds declined | ledger head | source |",
        "|---|---|---:|---:|---:|---:|---:|---|---|---|",
    ]
    return lines + [_site_row(name, site) for name, site in privacy["sites"].items()]


def mechanism_table(privacy: dict) -> list[str]:
    """The DP-SGD parameters each DP site reported, and who signs its ledger."""
    sites = _dp_sites(privacy)
    if not sites:
        return []
    lines = ["| site | σ (noise multiplier) | q (sample rate) | C (clipping norm) | accountant "
             "| noise | ledger signer |", "|---|---:|---:|---:|---|---|---|"]
    for name, site in sites.items():
        lines.append(
            f"| {name} | {_num(site.get('noise_multiplier'), '.3f')} "
            f"| {_num(site.get('sample_rate'), '.4g')} | {_num(site.get('max_grad_norm'), 'g')} "
            f"| {site.get('accountant') or '–'} | {site.get('noise_source') or '–'} "
            f"| `{site.get('signer') or '–'}` |")
    return lines + [""]


def _non_dp_warning(privacy: dict) -> list[str]:
    plain = [name for name, site in privacy["sites"].items() if not site["dp"]]
    if not plain:
        return []
    return [f"**Sites without DP: {', '.join(plain)}.** Everything they sent (adapter and head "
            "tensors every round, metrics) is released without any privacy guarantee.", ""]


def verify_lines(metrics: dict, privacy: dict) -> list[str]:
    """The command a reviewer runs on each DP site's ledger, with the full head hash."""
    commands = [f"lang1-fl privacy verify '<state folder of {name}>/{site.get('dataset')}/"
                f"privacy-ledger.jsonl' --public-key '<{name}: registered public key>' "
                f"--head {site['ledger_head']}"
                for name, site in _dp_sites(privacy).items() if site.get("ledger_head")]
    if not commands:
        return []
    return [
        "**How to check a site's spend.** Each DP site keeps one signed, hash-chained ledger per "
        "dataset in its own state folder, `<state_dir>/<dataset>/privacy-ledger.jsonl`, charged by "
        "every run on that data (the table above is what the sites' ledgers said at the end of "
        "this run). Ask the site for it and run the command below with the public key the site "
        "registered (its SuperNode key, or `<state_dir>/signing-key.pub` for a simulated site). It "
        "checks every entry's signature, the hash chain against the head hash the site reported "
        "(this catches a ledger cut short or rewritten), and checks every round's ε against what the "
        "recorded (σ, q, steps) provably spend, with Google's dp-accounting, an accountant that did "
        "not train. Full "
        "head hashes are in `metrics.json` (`privacy.sites.<site>.ledger_head`).",
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


def _checklist(privacy: dict) -> list[str]:
    """The "How to DP-fy ML" reporting items for record-level DP-SGD at each site."""
    units = ", ".join(f"{name}: {site.get('unit')}" for name, site in _dp_sites(privacy).items())
    return [
        "- **DP setting.** Record-level DP at each DP site, local to that site: the site clips and "
        "noises its own training before anything leaves it, so its guarantee holds whatever the "
        "server or other sites do. Nothing spans sites: a patient seen at two hospitals is two "
        "records under two separate guarantees.",
        f"- **Privacy unit** (column *privacy unit*; {units}). `patient`: each step samples "
        "patients and clips the sum of all of a patient's encounters' gradients once, so the "
        "guarantee covers a patient's whole record at the site. `encounter`: one row of the "
        "site's table with its notes and labels; a patient with k encounters is protected only "
        "through group privacy: ε scales to k·ε (and δ grows faster, to about k·e^((k−1)ε)·δ).",
        "- **Mechanism.** DP-SGD with opacus: per-encounter gradients of the LoRA adapter and task "
        "heads (the frozen base model gets none), each clipped to L2 norm C, summed, Gaussian noise "
        "of std σ·C added, divided by the expected batch size; batches drawn by Poisson sampling "
        "at rate q.",
        "- **Accounting.** Each site's opacus accountant (column *accountant*) at its δ, composing "
        "every DP-SGD step the site ever trained on the same data, in every run: σ is fixed once "
        "before a run's first step so that its rounds × local steps land at the run's allocation, "
        "and a run is declined before it trains unless it fits what the data has left of its "
        "lifetime budget. Each round is written to the site's signed ledger before it trains "
        "(commit before spend): a crash over-counts a round, never under-counts; a round that "
        "would pass the run's allocation or the lifetime budget is declined instead.",
        "- **What was released.** Covered by the guarantee: every round's adapter and head tensors "
        "each DP site sent to the server, and everything computed from them (aggregates, the final "
        "adapter) — by post-processing, since DP-SGD's guarantee holds for every intermediate "
        "iterate, not only the last. **Not covered:** evaluation metrics (AUROC with bootstrap CIs, "
        "loss, counts n and prevalence on the test splits, calibration — ECE and reliability "
        "bins, bins of fewer than 10 encounters withheld — and the validation loss and AUROC "
        "that select the round, all released without noise), "
        "`num-examples` (the training-set size, also implied by q = batch size ÷ n), and, for "
        "sites without DP, everything they sent. DP sites' training loss is withheld.",
        "- **Trust model.** Each site is trusted with its own data and runs its own accountant and "
        "ledger; the server, the other sites and anyone who sees any round's update or the final "
        "adapter are not trusted (docs/privacy-review.md says what each can and cannot learn). "
        "Noise and Poisson sampling draw from a cryptographically secure generator (column "
        "*noise*), never from the public run seed (which only drives dropout).",
        "- **Hyperparameter tuning.** Not accounted: the budget covers this run's training only. "
        "Its hyperparameters are fixed in the configuration before the first step and were not "
        "tuned on the sites' private data in this run. The one choice made on site data is which "
        "round's adapter to keep, by the validation scores the sites release without noise (not "
        "covered, as above). Any tuning on that data in other runs spends budget this ε does not "
        "include.",
        "- **Budget across runs.** The budget belongs to the site's data, not to a run: one ledger "
        "per site and dataset composes every run on it, and no server message can open a fresh "
        "one. Column *ε of its data, all runs* is that composition; *ε this run* is this run's "
        "share.",
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
    lines += site_table(privacy) + [""] + mechanism_table(privacy) + _non_dp_warning(privacy)
    lines += verify_lines(metrics, privacy) + _figure_lines(privacy, figure)
    if _dp_sites(privacy):
        lines += ["### What the guarantee covers", ""] + _checklist(privacy) + [""]
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
    targets = {site.get("run_epsilon_allocation") for site in sites.values()} - {None}
    for name, site in sites.items():
        rounds, eps = _curve(site.get("epsilon_per_round", {}))
        (line,) = ax.plot(rounds, eps, marker="o", label=f"{name} (ε this run)")
        if len(targets) > 1 and site.get("run_epsilon_allocation") is not None:
            ax.axhline(site["run_epsilon_allocation"], color=line.get_color(), linestyle="--",
                       linewidth=1, label=f"{name} run allocation")
    if len(targets) == 1:
        ax.axhline(targets.pop(), color="grey", linestyle="--", linewidth=1,
                   label="run allocation")


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
    ax.set_ylabel("cumulative ε of this run")
    ax.set_ylim(0, 1.15 * ax.get_ylim()[1])
    ax.legend(fontsize="small", loc="lower right")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return True
