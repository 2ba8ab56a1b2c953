"""How a site's clinician picks words: whether to mention a fact, which phrasing, and the typos.

A fact is written with the style's held-out phrasing (the external system), an abbreviation or the
plain words, in that order of chance. Typos are the ones fast typists make (two letters swapped,
one dropped, one doubled); they never turn a word into one that states a label.
"""

from __future__ import annotations

import math
import random
import re

import sites.synthetic.vocabulary as vocab
from sites.synthetic.styles import NoteStyle

NEVER_WRITTEN = re.compile(
    r"\b(?:expired|died|dead|death|deceased|mortality|passed away|readmit\w*|re-admi\w*"
    r"|readmission|denied|denial|charlson|cci|length of stay)\b", re.IGNORECASE)
"""Words that would state a label (outcome, return, claim, comorbidity score, stay length)."""
_TYPO_WORD = re.compile(r"[a-z]{5,}")


class Words:
    """One style's word choices, drawn from one random stream."""

    def __init__(self, style: NoteStyle, rng: random.Random) -> None:
        self.style, self.rng = style, rng

    def mention(self, rate: float | None = None) -> bool:
        """Whether an optional fact is written (the style's mention rate unless `rate`)."""
        return self.rng.random() < (self.style.mention_rate if rate is None else rate)

    def pick(self, phrasing: vocab.Phrasing, variant: int | None = None) -> str:
        """One phrasing: held-out (external style), short or plain. `variant` fixes which
        alternative (a patient's cancer stays the same cancer from note to note)."""
        novel = self.style.novel_vocabulary_rate
        if novel and self.rng.random() < novel:
            options = phrasing.external
        elif self.rng.random() < self.style.abbreviation_rate:
            options = phrasing.short
        else:
            options = phrasing.plain
        if variant is None:
            return self.rng.choice(options)
        return options[variant % len(options)]

    def short(self) -> bool:
        """Whether this mention abbreviates (lists, lab names, frequencies)."""
        return self.rng.random() < self.style.abbreviation_rate

    def one(self, options: tuple[str, ...] | list[str]) -> str:
        return self.rng.choice(options)

    def typos(self, text: str) -> str:
        """`text` with a Poisson number of typos (the style's rate per word) in its longer
        lower-case words; a typo that would write a label word is not made."""
        rate = self.style.typo_rate * (text.count(" ") + 1)
        count = _poisson(self.rng, rate) if rate > 0 else 0
        if not count:
            return text
        words = list(_TYPO_WORD.finditer(text))
        if not words:
            return text
        for _ in range(count):
            match = self.rng.choice(words)
            changed = _typo(match.group(0), self.rng)
            if len(changed) == len(match.group(0)) and not NEVER_WRITTEN.search(changed):
                text = text[:match.start()] + changed + text[match.end():]
        return text


def capital(text: str) -> str:
    """The first letter upper-cased (phrasings are stored in lower case)."""
    return text[:1].upper() + text[1:]


def _typo(word: str, rng: random.Random) -> str:
    """Swap two inner letters, or drop one and double another (same length, so the words found
    before stay where they were)."""
    i = rng.randrange(1, len(word) - 2)
    if rng.random() < 0.6:
        return word[:i] + word[i + 1] + word[i] + word[i + 2:]
    j = rng.randrange(1, len(word) - 1)
    dropped = word[:i] + word[i + 1:]
    return dropped[:j] + dropped[j - 1] + dropped[j:] if j < len(dropped) else word


def _poisson(rng: random.Random, mean: float) -> int:
    """A Poisson draw by inversion (means here are far below 1, so one uniform draw usually)."""
    u, k = rng.random(), 0
    p = math.exp(-mean)
    total = p
    while u > total and k < 20:
        k += 1
        p *= mean / k
        total += p
    return k
