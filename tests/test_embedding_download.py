"""Where the default model's files come from (chroma.embedding.files): the model directory, the
cache, and the download through huggingface_hub from a hub on 127.0.0.1 (HF_ENDPOINT) serving
the real files, intact, corrupted, truncated, or dying mid-transfer."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

import chroma
from chroma import cli, errors
from chroma.embedding import files
from model_files import model_dir
from model_hub import hub


@pytest.fixture
def no_model(monkeypatch, tmp_path):
    """Neither CHROMA_EMBEDDING_MODEL_DIR nor a filled cache (an empty one under tmp_path)."""
    model_dir()
    monkeypatch.delenv(files.MODEL_DIR_VARIABLE, raising=False)
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.setenv("CHROMA_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.setenv("HF_HUB_DISABLE_XET", "1")
    return tmp_path


def leftovers(directory: Path) -> list[str]:
    return sorted(p.name for p in directory.iterdir()) if directory.exists() else []


def test_a_good_download_fills_the_cache_which_then_serves_without_a_hub(no_model, monkeypatch):
    with hub("good", monkeypatch) as server:
        directory = files.resolve()
    assert directory == files.cache_entry()
    assert any(r.startswith("GET") and r.endswith("model.safetensors") for r in server.requests)
    files.check_files(directory)
    assert leftovers(directory.parent) == [files.MODEL_REVISION]  # no partial directory left
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    assert files.resolve() == directory


@pytest.mark.parametrize("mode", ["corrupt", "truncated", "dies"])
def test_a_bad_download_raises_and_leaves_no_cache_entry(no_model, monkeypatch, mode):
    with hub(mode, monkeypatch), pytest.raises(errors.EmbeddingModelUnavailable) as info:
        files.resolve()
    message = str(info.value)
    assert files.MODEL_DIR_VARIABLE in message and "chroma models fetch" in message
    if mode != "dies":
        assert "SHA-256" in message
    entry = files.cache_entry()
    assert not entry.exists()
    assert leftovers(entry.parent) == []
    # and nothing that looks valid: the next attempt, offline, still says the model is missing
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(errors.EmbeddingModelUnavailable, match="chroma models fetch"):
        files.resolve()


def test_offline_without_the_model_names_the_variable_and_the_command(no_model, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(errors.EmbeddingModelUnavailable) as info:
        files.resolve()
    assert files.MODEL_DIR_VARIABLE in str(info.value) and "chroma models fetch" in str(info.value)


def test_a_model_dir_with_a_wrong_file_is_refused(no_model, monkeypatch):
    broken = no_model / "broken"
    broken.mkdir()
    for name in files.MODEL_FILES:
        (broken / name).write_bytes((model_dir() / name).read_bytes())
    (broken / "config.json").write_text("{}")
    monkeypatch.setenv(files.MODEL_DIR_VARIABLE, str(broken))
    with pytest.raises(errors.EmbeddingModelUnavailable, match="config.json has SHA-256"):
        files.resolve()


def test_models_fetch_fills_a_directory_for_an_offline_machine(no_model, monkeypatch, capsys):
    target = no_model / "for-docker"
    with hub("good", monkeypatch):
        assert cli.main(["models", "fetch", "--dir", str(target)]) == 0
    assert files.MODEL_DIR_VARIABLE in capsys.readouterr().out
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv(files.MODEL_DIR_VARIABLE, str(target))
    assert files.resolve() == target


def test_models_fetch_failing_exits_non_zero_with_the_reason(no_model, monkeypatch, capsys):
    with hub("corrupt", monkeypatch):
        assert cli.main(["models", "fetch", "--dir", str(no_model / "d")]) == 1
    assert "SHA-256" in capsys.readouterr().err


@pytest.mark.parametrize("command", [["run", "--port", "0"], ["run", "--impl", "flight", "--port", "0"], ["worker"]],
                         ids=["http-server", "flight-server", "celery-worker"])
def test_servers_and_workers_without_the_model_fail_at_start_up(no_model, command):
    env = {key: value for key, value in os.environ.items()
           if not key.startswith("CHROMA_") and key not in ("HF_ENDPOINT", "PYTHONPATH")}
    env.update(CHROMA_CACHE_DIR=str(no_model / "empty-cache"), HF_HUB_OFFLINE="1",
               PYTHONPATH=str(Path(chroma.__file__).parent.parent))
    done = subprocess.run([sys.executable, "-m", "chroma", *command], env=env, capture_output=True, text=True,
                          timeout=120)
    assert done.returncode == 1, done.stdout + done.stderr
    assert "CHROMA_EMBEDDING_MODEL_DIR" in done.stderr and "chroma models fetch" in done.stderr
    assert "listening" not in done.stdout
