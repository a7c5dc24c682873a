"""An eval's folder: `run.json` (the settings) and one results file per shard, appended one unit at a time.

Each finished unit is one JSON line, flushed and synced before the next unit starts, so a crash or Ctrl-C loses at
most the unit in progress. A line cut short by a crash is dropped (and cut off the file) when the run resumes.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from deltamem.files import atomic_write_text, parse_json, read_json
from deltamem_chat.eval.plan import EvalError, EvalSettings

RUN_FILE = "run.json"
FORMAT = "deltamem-chat eval"


def results_name(shard: tuple[int, int] | None) -> str:
    return "results.jsonl" if shard is None else f"results-{shard[0]}-of-{shard[1]}.jsonl"


def read_settings(folder: Path) -> EvalSettings:
    path = folder / RUN_FILE
    data = read_json(path, EvalError, "no eval run here (run.json is missing)")
    if not isinstance(data, dict) or data.get("format") != FORMAT:
        raise EvalError(f"{path}: not a deltamem-chat eval run")
    return EvalSettings.from_dict(data.get("settings") or {}, str(path))


def open_run(folder: Path, settings: EvalSettings) -> None:
    """Start a run in `folder`, or check that the run already there has the same settings."""
    path = folder / RUN_FILE
    if path.exists():
        differences = read_settings(folder).differences(settings)
        if differences:
            raise EvalError(f"{folder} holds a run with other settings ({'; '.join(differences)}): use another "
                            "--out, or the settings it was started with")
        return
    atomic_write_text(path, json.dumps({"format": FORMAT, "settings": settings.to_dict()}, indent=1) + "\n")


def read_results(path: Path, *, repair: bool = False) -> list[dict[str, Any]]:
    """The units recorded in one results file; a last line cut short is dropped (and, with `repair`, cut off).

    Each unit is written as one line ending in a newline, so only the text after the last newline can be a line
    cut short by a crash: it is the unit that was being written, and it runs again.
    """
    if not path.exists():
        return []
    data = path.read_bytes()
    complete, _, torn = data.rpartition(b"\n")
    results: list[dict[str, Any]] = []
    for number, line in enumerate(complete.split(b"\n") if complete else [], start=1):
        if not line.strip():
            continue
        try:
            record = parse_json(line.decode("utf-8"))
        except ValueError:                  # bad JSON, bad UTF-8 or past the JSON limits
            raise EvalError(f"{path}:{number}: not a valid result line (was the file edited?)") from None
        if not isinstance(record, dict) or not isinstance(record.get("unit"), str):
            raise EvalError(f'{path}:{number}: a result line needs a "unit" name')
        results.append(record)
    if repair and torn:
        with open(path, "r+b") as handle:
            handle.truncate(len(data) - len(torn))
    return results


def append_result(path: Path, result: dict[str, Any]) -> None:
    """Add one finished unit, on disk before this returns."""
    with open(path, "a", encoding="utf-8") as handle:
        handle.write(json.dumps(result, ensure_ascii=False) + "\n")
        handle.flush()
        os.fsync(handle.fileno())


def collect(folders: Iterable[Path]) -> tuple[EvalSettings, list[dict[str, Any]]]:
    """The settings and every unit's result in the results files of `folders`, which must share one run."""
    settings: EvalSettings | None = None
    results: dict[str, dict[str, Any]] = {}
    for folder in folders:
        here = read_settings(folder)
        if settings is None:
            settings = here
        elif settings.differences(here):
            raise EvalError(f"{folder} was run with other settings ({'; '.join(settings.differences(here))})")
        files = sorted(folder.glob("results*.jsonl"))
        if not files:
            raise EvalError(f"{folder}: no results files")
        for path in files:
            for result in read_results(path):
                if result["unit"] in results and results[result["unit"]] != result:
                    raise EvalError(f"{path}: unit {result['unit']!r} is also in another results file, differently")
                results[result["unit"]] = result
    if settings is None:
        raise EvalError("no eval folders to read")
    return settings, list(results.values())
