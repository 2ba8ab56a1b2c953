"""An empirical privacy audit of one site's training, beside the ε its accountant claims.

ε is computed, not observed: a DP-SGD that silently stopped clipping or adding noise (opacus #820
with peft is such a case: ε accumulated normally while the updates were corrupted) would report
the same ε. This module runs the one-run audit of Steinke, Nasr and Jagielski (NeurIPS 2023; the
statistic is client/privacy/audit_bound.py): m canary encounters (client/privacy/audit.py) are
each put into the site's training split by a fair coin of the audit's own seeded generator; the
site's model is built and trained exactly as the site trains it — the run's model settings and
optimizer, rounds × local steps, and with a `privacy` block DP-SGD at the plan's σ and q, planned
for the training split *with* the canaries it holds — and every canary is then scored. Guessing
"member" for the highest scores and "non-member" for the lowest, v correct of r guesses refute
every ε below ε_lower at confidence 1 − β. ε_lower above the accounted ε means DP is broken.

The site trains alone here, with no other site's update averaged in between rounds: its DP
guarantee is about its own releases, and all the federation does with them is post-processing
(given the other sites' data), which cannot make them leak more.

The audit writes nothing at the site and sends nothing: no ledger entry, no egress log, no reply,
and its model is discarded when `run_audit` returns. Why no ledger entry: the ledger accounts for
what the site releases to the federation, and the audit releases nothing to it. Its output — m, r,
v, ε_lower — is a statistic of synthetic canaries and of the audit's own coins; it depends on the
hospital's encounters only through a model that never leaves this function, and it is printed
where the data already is. (A site that publishes ε_lower beyond its walls publishes a number that
depends weakly on its data: covered by the audit run's own (ε, δ) under DP, by post-processing,
and by nothing in the non-private arm.)
"""

from __future__ import annotations

import logging
import math
import secrets
import time
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from client.data import EncodedSplit, encode_site, encode_split
from client.evaluate import log_probs
from client.model import TaskModel, base_scoring, build_model, load_tokenizer, select_device
from client.privacy.audit_bound import BETA, grid_epsilon_lower_bounds
from client.privacy.dp_sgd import train_steps_private
from client.privacy.plan import PrivacyPlan, plan_privacy
from client.privacy.site_keys import site_noise_source
from client.settings import ClientSettings
from client.train import make_optimizer, train_steps
from sites.config import SiteConfig
from sites.dataset import read_site_table
from sites.encounter_table import TrainingUnits
from sites.tasks import NOTE_COLUMNS, SPLIT_COLUMN, TASKS

log = logging.getLogger(__name__)

DEFAULT_CANARIES = 1000
DEFAULT_DELTA = 1e-5
"""δ of the bound for a site without a `privacy` block (it claims no (ε, δ) at all)."""
WORDS_PER_NOTE = 16
"""Words in a canary's notes. Measured with a tiny encoder (hidden 128, 300 steps without DP):
membership AUROC 0.86 at 16 words, 0.84 at 8."""
GUESS_SHARES: tuple[float, ...] = (0.02, 0.05, 0.1, 0.2, 0.5, 1.0)
"""The default grid of guess counts, as shares of m, fixed before training: r = share·m guesses,
half "member" for the highest scores, half "non-member" for the lowest. The best of the grid is
reported, each point at β / len(grid) (a union bound, client/privacy/audit_bound.py): a strong
signal needs many guesses to show a large ε, a weak one a few confident guesses to show any."""


@dataclass(frozen=True)
class Guess:
    """One grid point: `members` guessed in, as many guessed out, `correct` of them right."""

    members: int
    correct: int
    epsilon_lower: float
    """ε_lower of this point alone, at β / len(grid)."""

    @property
    def guesses(self) -> int:
        return 2 * self.members


@dataclass(frozen=True)
class AuditResult:
    """What an audit found at one site; every count is about canaries, none about patients."""

    site: str
    canaries: int
    """m: canaries planted, each included with probability ½."""
    included: int
    """Canaries the coins put into training."""
    guesses: int
    """r of the grid point that gave ε_lower."""
    correct: int
    """v of that grid point."""
    epsilon_lower: float
    """Empirical lower bound on ε at `delta`, valid with probability 1 − `beta`."""
    accounted_epsilon: float
    """ε the site's plan spends on this training (inf without DP)."""
    delta: float
    beta: float
    private: bool
    """Trained with DP-SGD (False: the non-private arm, or a site without a `privacy` block)."""
    steps: int
    """rounds × local steps trained."""
    examples: int
    """Training encounters, canaries included (the n of the plan)."""
    seed: int
    """The audit's own seed: canaries and coins are reproducible from it."""
    grid: tuple[Guess, ...]
    ceiling: float
    """The largest ε_lower this grid could show, every guess right: about ln(m / ln(G/β)) for m
    canaries and G guess counts, 5.27 for 1,000 at δ = 1e-5. At or below the accounted ε the
    alarm cannot sound."""
    noise_multiplier: float = 0.0
    """σ the plan trained with (0 without DP)."""
    seconds: float = 0.0
    scores: np.ndarray | None = field(default=None, repr=False, compare=False)
    """Membership score per canary, for diagnostics."""
    members: np.ndarray | None = field(default=None, repr=False, compare=False)
    """The coins (True = trained on), for diagnostics."""

    @property
    def alarm(self) -> bool:
        """True when the measured privacy loss exceeds the accounted one: DP is broken."""
        return self.epsilon_lower > self.accounted_epsilon


@dataclass(frozen=True)
class _Planted:
    """The canaries, the coins, and the site's training split with the included canaries."""

    probes: EncodedSplit
    members: np.ndarray
    train: EncodedSplit


def guess_shares(canaries: int, guesses: int | None) -> tuple[float, ...]:
    """The grid: `GUESS_SHARES`, or the one fixed count `guesses` (no union bound needed)."""
    if guesses is None:
        return GUESS_SHARES
    if isinstance(guesses, bool) or not isinstance(guesses, int) or not (
            2 <= guesses <= canaries and guesses % 2 == 0):
        raise ValueError(f"`guesses` is {guesses!r}; expected an even number in 2..{canaries} "
                         "(`canaries`): half guessed in, half out")
    return (guesses / canaries,)


def guess_grid(scores: np.ndarray, members: np.ndarray, shares: Sequence[float], *,
               delta: float, beta: float) -> tuple[Guess, ...]:
    """For each share s: the ⌈s·m/2⌉ highest scores guessed in, as many lowest guessed out, and
    each point's ε_lower at `beta` / len(`shares`)."""
    m = len(scores)
    order = np.argsort(-scores, kind="stable")  # highest first
    counts = []
    for share in shares:
        half = min(max(1, math.ceil(share * m / 2)), m // 2)
        inside, outside = order[:half], order[m - half:]
        counts.append((half, int(members[inside].sum() + (~members[outside]).sum())))
    bounds = grid_epsilon_lower_bounds(
        canaries=m, outcomes=[(2 * half, correct) for half, correct in counts], delta=delta,
        beta=beta)
    return tuple(Guess(members=half, correct=correct, epsilon_lower=bound)
                 for (half, correct), bound in zip(counts, bounds))


def run_audit(site: SiteConfig, settings: ClientSettings, *, canaries: int = DEFAULT_CANARIES,
              guesses: int | None = None, rounds: int | None = None, private: bool = True,
              seed: int | None = None, delta: float | None = None, beta: float = BETA,
              words_per_note: int = WORDS_PER_NOTE) -> AuditResult:
    """Plant `canaries` canaries at `site`, train as the site would, score them, bound ε.

    `private=False` trains the same site without DP (the non-private arm). `rounds` defaults to
    the run's `num-server-rounds`, local steps to the run's or the site's; `guesses` fixes r
    (default: the `GUESS_SHARES` grid). `seed` drives the canaries and coins (default: fresh from
    the OS, recorded in the result). `delta` defaults to the site's `privacy.delta`, else
    `DEFAULT_DELTA`.
    """
    rounds = settings.num_rounds if rounds is None else rounds
    _check_arguments(site, canaries=canaries, rounds=rounds)
    shares = guess_shares(canaries, guesses)
    seed = secrets.randbits(63) if seed is None else seed
    if delta is None:
        delta = site.privacy.delta if site.privacy is not None else DEFAULT_DELTA
    started = time.perf_counter()
    # 1. Canaries, the coins, and the site's training split with the included canaries
    planted = _plant(site, settings, canaries, np.random.default_rng(seed), words_per_note)
    # 2. Train as the site would: DP-SGD at its plan for n with the canaries, if it has one
    local_steps = settings.local_steps or site.training.local_steps
    counts = TrainingUnits(encounters=planted.train.size, patients=planted.train.patient_count)
    plan = (plan_privacy(site, counts=counts, rounds=rounds, steps_per_round=local_steps)
            if private and site.is_private else None)
    model = build_model(settings.model, device=select_device(site.device))
    _train(model, planted.train, site, settings, plan, rounds=rounds, local_steps=local_steps)
    # 3. Score every canary; the model, never saved or sent, goes with this frame
    scores = membership_scores(model, planted.probes, batch_size=site.evaluation.batch_size)
    # 4. Guess and bound
    grid = guess_grid(scores, planted.members, shares, delta=delta, beta=beta)
    # On a tie (all at 0: nothing refuted) the most guesses, whose v/r is the overall accuracy
    best = max(grid, key=lambda g: (g.epsilon_lower, g.guesses))
    ceiling = max(grid_epsilon_lower_bounds(canaries=canaries, delta=delta, beta=beta,
                                            outcomes=[(g.guesses, g.guesses) for g in grid]))
    return AuditResult(
        site=site.name, canaries=canaries, included=int(planted.members.sum()),
        guesses=best.guesses, correct=best.correct, epsilon_lower=best.epsilon_lower,
        accounted_epsilon=plan.planned_epsilon if plan else math.inf, delta=delta, beta=beta,
        private=plan is not None, steps=rounds * local_steps,
        examples=plan.examples if plan else planted.train.size,
        seed=seed, grid=grid, ceiling=ceiling,
        noise_multiplier=plan.noise_multiplier if plan else 0.0,
        seconds=time.perf_counter() - started, scores=scores, members=planted.members)


def _check_arguments(site: SiteConfig, *, canaries: int, rounds: int) -> None:
    if site.is_external:
        raise ValueError(f"site {site.name!r} has role `external`: it never trains, so there is "
                         "nothing to audit; expected a training site")
    if isinstance(canaries, bool) or not isinstance(canaries, int) or canaries < 2:
        raise ValueError(f"`canaries` is {canaries!r}; expected an integer >= 2 (1,000 is "
                         "typical)")
    if isinstance(rounds, bool) or not isinstance(rounds, int) or rounds < 1:
        raise ValueError(f"`rounds` is {rounds!r}; expected an integer >= 1")


def _plant(site: SiteConfig, settings: ClientSettings, canaries: int, rng: np.random.Generator,
           words_per_note: int) -> _Planted:
    """Canaries and coins from the audit's `rng`; the site's table with the included canaries in
    its training split, encoded as the site encodes it; every canary encoded for scoring."""
    tokenizer = load_tokenizer(settings.model)
    tasks, scoring = settings.model.tasks, base_scoring(settings.model)
    max_length = settings.model.max_length
    planted = make_canaries(count=canaries, tasks=tasks, words=canary_words(tokenizer),
                            words_per_note=words_per_note, rng=rng)
    members = rng.random(canaries) < 0.5
    table = with_canaries(read_site_table(site), planted[members])
    train = encode_site(table, tokenizer, tasks, max_length=max_length, scoring=scoring)["train"]
    probes = encode_split(planted, tokenizer, tasks, max_length=max_length, scoring=scoring)
    return _Planted(probes=probes, members=members, train=train)


def _train(model: TaskModel, train: EncodedSplit, site: SiteConfig, settings: ClientSettings,
           plan: PrivacyPlan | None, *, rounds: int, local_steps: int) -> None:
    """`rounds` rounds of `local_steps` steps, each as the ClientApp trains a round: a fresh
    optimizer per round, or under DP one kept across rounds when the run keeps its state."""
    kept = (make_optimizer(model, settings.dp_optimizer)
            if plan is not None and settings.dp_keeps_optimizer_state else None)
    for server_round in range(1, rounds + 1):
        seed = settings.seed + 1000 * server_round  # dropout only
        if plan is None:
            result = train_steps(model, train, steps=local_steps,
                                 batch_size=site.training.batch_size, optimizer=settings.optimizer,
                                 seed=seed,
                                 max_physical_batch_size=site.training.max_physical_batch_size)
        else:
            result = train_steps_private(
                model, train, steps=local_steps, sample_rate=plan.sample_rate,
                noise_multiplier=plan.noise_multiplier, max_grad_norm=plan.max_grad_norm,
                optimizer=kept if kept is not None else settings.dp_optimizer, seed=seed,
                privacy_unit=plan.unit,
                noise=site_noise_source(site, run="privacy-audit", server_round=server_round),
                max_physical_batch_size=site.training.max_physical_batch_size,
                adapter_clip_share=settings.dp_adapter_clip_share)
        log.info("audit of site %s, round %d/%d: %d steps%s, loss %.4f", site.name,
                 server_round, rounds, result.steps, " of DP-SGD" if plan else "", result.loss)


# -----------------------------------------------------------------------------------------------
# Canaries for the privacy audit: fake encounters a model can only know by having trained on them.
#
# A canary is one legitimate training record — one encounter of its own fake patient, with an
# admission and a discharge note and a label for every task the site trains — so DP-SGD treats it
# exactly like a hospital's encounter (the privacy unit). What makes it a canary:
#
# - its notes are a few words drawn from the tokenizer's vocabulary, each a single token, each used
#   by no other canary: nothing in the hospital's notes or the other canaries says anything about
#   its labels, so its note is a fresh point the model has to memorise;
# - its labels are drawn uniformly at random for every task, independently of the note: a model
#   that did not train on the canary cannot predict them better than chance, and one that did can
#   only by memorising that record.
#
# The membership score is then how well the trained model predicts the canary's own labels: the sum
# over tasks of log p(label | note), each taken relative to the mean log-probability the model gives
# that class over all canaries (members and non-members alike, so the score uses nothing the coins
# decide). The relative form removes the model's class priors — a task whose positives are rare at
# the site would otherwise make every canary drawn positive look like a non-member — and leaves the
# part that only memorisation explains.
# -----------------------------------------------------------------------------------------------


CANARY_PREFIX = "audit-canary-"
"""Encounter and patient ids of canaries start with this; no hospital id does (validated ids are
the hospital's own, and `make_canaries` refuses a table that already uses the prefix)."""
MIN_WORD_LENGTH = 4
SPACE_MARKS = ("Ġ", "▁")
"""How byte-level BPE (GPT-2, Llama 3) and SentencePiece (Llama 2) vocabularies mark a word's
leading space."""


def canary_words(tokenizer) -> list[str]:
    """Words of the tokenizer's vocabulary that it reads back as exactly one token after a space:
    lowercase ASCII letters, at least `MIN_WORD_LENGTH` long, in vocabulary order. A byte-level
    BPE's `Ġword` and a SentencePiece `▁word` are read without their space mark; the round trip
    through the tokenizer then keeps only what really is one token."""
    candidates = []
    for token, _ in sorted(tokenizer.get_vocab().items(), key=lambda item: item[1]):
        word = token[1:] if token[:1] in SPACE_MARKS else token
        if word.isascii() and word.isalpha() and word.islower() and len(word) >= MIN_WORD_LENGTH:
            candidates.append(word)
    words = list(dict.fromkeys(candidates))
    if not words:
        return []
    encoded = tokenizer([" " + w for w in words], add_special_tokens=False)["input_ids"]
    return [w for w, ids in zip(words, encoded) if len(ids) == 1]


def make_canaries(*, count: int, tasks: tuple[str, ...], words: list[str], words_per_note: int,
                  rng: np.random.Generator) -> pd.DataFrame:
    """`count` canary encounters (split `train`), each with notes of `words_per_note` words and a
    uniformly random label per task. Words are not shared between canaries while the vocabulary
    lasts; beyond that they are reused, each canary still a distinct combination."""
    if count < 1:
        raise ValueError(f"`count` is {count}; expected at least 1 canary")
    if words_per_note < 1:
        raise ValueError(f"`words_per_note` is {words_per_note}; expected at least 1")
    if len(words) < words_per_note:
        raise ValueError(f"the tokenizer offers {len(words)} single-token words; expected at "
                         f"least `words_per_note` = {words_per_note} to write canary notes")
    pool = np.asarray(words)
    unique = count * words_per_note <= len(pool)
    order = rng.permutation(len(pool))
    rows = []
    for i in range(count):
        picked = (order[i * words_per_note:(i + 1) * words_per_note] if unique
                  else rng.choice(len(pool), size=words_per_note, replace=False))
        note = " ".join(pool[picked])
        row = {"encounter_id": f"{CANARY_PREFIX}{i:05d}", "patient_id": f"{CANARY_PREFIX}{i:05d}",
               SPLIT_COLUMN: "train"}
        for note_type in sorted({TASKS[t].note for t in tasks}):
            row[NOTE_COLUMNS[note_type]] = note
        for task in tasks:
            row[TASKS[task].label_column] = int(rng.integers(TASKS[task].num_classes))
        rows.append(row)
    return pd.DataFrame(rows)


def with_canaries(table: pd.DataFrame, canaries: pd.DataFrame) -> pd.DataFrame:
    """The site's table (only the columns canaries have) followed by `canaries`."""
    clash = table["encounter_id"].astype(str).str.startswith(CANARY_PREFIX)
    if clash.any():
        raise ValueError(f"the site's table already has encounter id "
                         f"{table['encounter_id'][clash].iat[0]!r}; expected no id starting "
                         f"with {CANARY_PREFIX!r}, which marks audit canaries")
    return pd.concat([table[list(canaries.columns)], canaries], ignore_index=True)


def membership_scores(model: TaskModel, canaries: EncodedSplit, *, batch_size: int
                      ) -> np.ndarray:
    """Per canary, Σ over tasks of log p(its label | its note) minus the mean of log p(that
    class) over all canaries: high for a canary the model memorised. Eval mode, no dropout."""
    table = log_probs(model, canaries, model.tasks, batch_size=batch_size)
    rows = np.arange(canaries.size)
    score = np.zeros(canaries.size)
    for task, logp in table.items():
        labels = canaries.labels[task].numpy()
        score += logp[rows, labels] - logp.mean(axis=0)[labels]
    return score
