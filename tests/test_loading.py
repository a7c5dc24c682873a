"""Loading: local folders end to end, and one clear sentence for every way it can fail."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from deltamem.context import ContextPolicy
from deltamem.runtime.loading import LoadError, choose_runtime, load
from deltamem_chat.aliases import ALIASES, AliasError, resolve_models


@pytest.fixture
def local_model(tiny_model_dirs: tuple[Path, Path]) -> tuple[Path, Path]:
    return tiny_model_dirs


def test_local_folders_load_end_to_end(local_model: tuple[Path, Path]) -> None:
    base_dir, adapter_dir = local_model
    loaded = load(str(adapter_dir), str(base_dir), device="cpu", attn="eager")
    assert loaded.choice.dtype == torch.float32 and loaded.choice.attn == "eager"
    assert loaded.tokenizer.eos_token == "<|im_end|>"
    with torch.no_grad():
        assert loaded.model(input_ids=torch.tensor([[5, 6, 7]])).logits.shape == (1, 3, 300)


def test_cpu_defaults_are_float32_and_sdpa() -> None:
    choice = choose_runtime("cpu")
    assert (choice.device, choice.dtype, choice.attn) == ("cpu", torch.float32, "sdpa")
    assert choose_runtime("cpu", "bf16", "eager").dtype == torch.bfloat16


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the message on a machine without CUDA")
def test_asking_for_cuda_without_a_gpu_says_so() -> None:
    with pytest.raises(LoadError, match="no CUDA GPU: use --device cpu"):
        choose_runtime("cuda")


@pytest.mark.parametrize("kwargs,fragment", [
    ({"dtype": "fp8"}, "unknown dtype 'fp8'"),
    ({"attn": "flash_attention_2"}, "flash-attn is not installed"),
    ({"attn": "magic"}, "unknown attention 'magic'"),
])
def test_bad_runtime_choices_are_one_sentence(kwargs: dict, fragment: str) -> None:
    with pytest.raises(LoadError, match=fragment):
        choose_runtime("cpu", **kwargs)


def test_alias_without_a_released_adapter_says_what_to_do() -> None:
    with pytest.raises(AliasError, match="no released adapter: pass --adapter with a local folder"):
        resolve_models("qwen3-8b", None)


def test_unknown_adapter_without_base_says_what_to_do(local_model: tuple[Path, Path]) -> None:
    with pytest.raises(AliasError, match="pass --base"):
        resolve_models(str(local_model[1]), None)


def test_aliases_resolve_once_into_what_to_load() -> None:
    models = resolve_models("qwen3-4b", None)
    assert (models.adapter, models.base) == ("declare-lab/delta-mem_qwen3_4b-instruct", "Qwen/Qwen3-4B-Instruct-2507")
    assert models.context == ContextPolicy(1024) and models.names is None
    other = resolve_models("some/adapter", "qwen3-8b")
    assert (other.adapter, other.base, other.alias, other.context) == ("some/adapter", "Qwen/Qwen3-8B", None, None)
    demo = resolve_models("demo", None)
    assert demo.names == ("deltamem demo backbone", "deltamem demo adapter")
    assert resolve_models("demo", "qwen3-8b").names is None, "another base: record the folders, not the labels"


def test_a_name_that_is_neither_folder_nor_hub_id(local_model: tuple[Path, Path]) -> None:
    with pytest.raises(LoadError, match="neither an existing folder nor a hub id"):
        load("no-such-thing", str(local_model[0]), device="cpu")


def test_offline_and_not_cached_says_to_download(local_model, monkeypatch, tmp_path: Path) -> None:
    import huggingface_hub.constants

    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(tmp_path / "empty-cache"))
    with pytest.raises(LoadError, match="not in the local cache and the hub cannot be reached"):
        load("declare-lab/not-here", str(local_model[0]), device="cpu")


@pytest.mark.parametrize("error,fragment", [("GatedRepoError", "is gated: accept its licence"),
                                            ("RepositoryNotFoundError", "does not exist on the hub")])
def test_hub_refusals_are_one_sentence(monkeypatch, local_model, error: str, fragment: str) -> None:
    import huggingface_hub
    import huggingface_hub.errors as errors

    def refuse(*args, **kwargs):
        response = type("Response", (), {"status_code": 403, "headers": {}, "url": "x", "request": None})()
        raise getattr(errors, error)("refused", response=response)

    monkeypatch.setattr(huggingface_hub, "snapshot_download", refuse)
    with pytest.raises(LoadError, match=fragment):
        load("org/gated-model", str(local_model[0]), device="cpu")


def test_a_folder_without_weights_is_refused(local_model, tmp_path: Path) -> None:
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(LoadError, match="holds no .safetensors weights"):
        load(str(local_model[1]), str(empty), device="cpu")


def test_a_model_too_large_for_memory_fails_before_loading(local_model, tmp_path: Path) -> None:
    huge = tmp_path / "huge"
    huge.mkdir()
    (huge / "config.json").write_text('{"dtype": "bfloat16"}')
    with open(huge / "model.safetensors", "wb") as f:
        f.truncate(2**40)  # sparse: takes no disk
    with pytest.raises(LoadError, match=r"needs about .* GiB but only .* GiB of free RAM"):
        load(str(local_model[1]), str(huge), device="cpu")


def test_aliases_name_the_released_models() -> None:
    alias = ALIASES["qwen3-4b"]
    assert alias.base == "Qwen/Qwen3-4B-Instruct-2507"
    assert alias.adapter == "declare-lab/delta-mem_qwen3_4b-instruct"
    assert ALIASES["smollm3-3b"].base == "HuggingFaceTB/SmolLM3-3B"


def _offline_with_an_empty_cache(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    import huggingface_hub.constants

    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(tmp_path / "empty-cache"))


def test_no_adapter_offline_opens_the_demo_and_names_the_command(monkeypatch, tmp_path: Path) -> None:
    from typer.testing import CliRunner

    import deltamem_chat.tui as tui
    from deltamem_chat.cli import app

    _offline_with_an_empty_cache(monkeypatch, tmp_path)
    opened: list[str] = []
    steps: list[object] = []
    monkeypatch.setattr(tui, "run_chat", lambda load, *args, **kwargs: opened.append(load(steps.append).adapter) or 0)
    result = CliRunner().invoke(app, ["--device", "cpu"])
    assert result.exit_code == 0, result.output
    assert opened == ["deltamem demo adapter"]
    assert "`deltamem-chat download qwen3-4b`" in result.output and "offline demo" in result.output
    assert "Loading weights" not in result.output


def test_an_alias_offline_names_its_download_command(monkeypatch, tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from deltamem_chat.cli import app
    from deltamem_chat.tui import DeltaMemApp, LoadingScreen

    _offline_with_an_empty_cache(monkeypatch, tmp_path)
    started: list[DeltaMemApp] = []
    monkeypatch.setattr(DeltaMemApp, "run", lambda app: started.append(app))
    CliRunner().invoke(app, ["--adapter", "qwen3-4b", "--device", "cpu"])
    loading = started[0].first
    assert isinstance(loading, LoadingScreen)
    with pytest.raises(LoadError, match="`deltamem-chat download qwen3-4b`"):   # the sentence the screen shows
        loading.prepare(lambda step: None)
    fixture = Path(__file__).parent / "fixtures" / "replay_small.jsonl"
    result = CliRunner().invoke(app, ["replay", str(fixture), "--headless", "--adapter", "qwen3-4b", "--device", "cpu"])
    assert result.exit_code == 2 and "`deltamem-chat download qwen3-4b`" in result.output
    again = CliRunner().invoke(app, ["download", "qwen3-4b"])
    assert again.exit_code == 2 and "hub cannot be reached from here" in again.output
    assert "Traceback" not in result.output + again.output


def test_a_mistyped_local_path_is_no_such_folder(local_model, monkeypatch, tmp_path: Path) -> None:
    (tmp_path / "myadapters").mkdir()
    monkeypatch.chdir(tmp_path)
    with pytest.raises(LoadError, match=r"myadapters/typo: no such folder \(the folder myadapters has no 'typo'"):
        load("myadapters/typo", str(local_model[0]), device="cpu")
