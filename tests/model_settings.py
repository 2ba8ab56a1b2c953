"""Model and optimizer settings for tests, with the values the tests were written against.

The client's settings dataclasses have no defaults (a run's defaults live once, in pyproject.toml,
and `client.settings` reads them); a test names the values it relies on, and these helpers fill in
the rest with the same values for every test.
"""

from __future__ import annotations

from client.base_model import MINILM
from client.model import LoraSettings, ModelSettings
from client.train import OptimizerSettings
from sites.tasks import TASK_NAMES


def lora_settings(**fields) -> LoraSettings:
    return LoraSettings(**{"r": 8, "alpha": 16.0, "dropout": 0.05, **fields})


def model_settings(**fields) -> ModelSettings:
    return ModelSettings(**{"base": MINILM, "max_length": 256, "lora": lora_settings(),
                            "tasks": TASK_NAMES, "seed": 0, "scoring": "auto", **fields})


def optimizer_settings(**fields) -> OptimizerSettings:
    return OptimizerSettings(**{"learning_rate": 1e-3, "head_learning_rate": 1e-2, **fields})
