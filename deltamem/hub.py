"""Finding model files: a local folder as it is, or a hub id fetched into (or found in) the Hugging Face cache.

Every failure (offline, a missing or gated repo) is a `LoadError` sentence that says what to do. No torch here, so
`deltamem-chat models` and `download` start at once.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any


class LoadError(RuntimeError):
    """Loading failed; the message is one sentence for the user."""


class OfflineError(LoadError):
    """A hub repo is not in the local cache and the hub cannot be reached; the caller knows which command fetches
    it (an alias's `deltamem-chat download`), so it may word the sentence again."""

    def __init__(self, message: str, what: str, repo: str) -> None:
        super().__init__(message)
        self.what, self.repo = what, repo


ADAPTER_FILES = ["delta_mem_config.json", "delta_mem_adapter.pt", "delta_mem_adapter.safetensors"]
MODEL_FILES = ["*.json", "*.safetensors", "tokenizer*", "*.txt", "*.model", "*.jinja"]


def resolve(spec: str, what: str, files: list[str], bar: Any = None) -> Path:
    """A local folder as is; a hub id downloaded (or found in the cache) with a progress bar (`bar`: the tqdm
    class to draw it with, the hub's own by default)."""
    path = Path(spec).expanduser()
    if path.exists():
        if not path.is_dir():
            raise LoadError(f"{what} {spec}: expected a folder, found a file")
        return path
    if spec.count("/") != 1 or spec.startswith((".", "/", "~")):
        raise LoadError(f"{what} {spec!r} is neither an existing folder nor a hub id like org/name")
    if path.parent.is_dir() and path.parent != Path("."):
        # `myadapters/typo` where `myadapters` is a folder here: a mistyped path, not a hub id.
        raise LoadError(f"{what} {spec}: no such folder (the folder {path.parent} has no {path.name!r} in it)")
    return download(spec, what, files, bar)


def download(repo: str, what: str, files: list[str], bar: Any = None) -> Path:
    """Fetch `repo` into the hub cache (or find it there when offline), translating every failure."""
    from huggingface_hub import snapshot_download
    from huggingface_hub.errors import (
        GatedRepoError,
        HfHubHTTPError,
        LocalEntryNotFoundError,
        RepositoryNotFoundError,
    )

    try:
        return Path(snapshot_download(repo, allow_patterns=files, tqdm_class=bar))
    except GatedRepoError:
        raise LoadError(f"{what} {repo} is gated: accept its licence on its hub page, then log in with "
                        "`hf auth login`") from None
    except RepositoryNotFoundError:
        raise LoadError(f"{what} {repo} does not exist on the hub (or is private): check the name") from None
    except LocalEntryNotFoundError:
        raise OfflineError(f"{what} {repo} is not in the local cache and the hub cannot be reached: run "
                           f"`hf download {repo}` where there is a network, or pass a local folder (no folder "
                           f"{repo} exists here)", what, repo) from None
    except (HfHubHTTPError, OSError) as exc:
        raise LoadError(f"{what} {repo} could not be downloaded ({str(exc).splitlines()[0]})") from None


def is_cached(repo: str) -> bool:
    """Whether a hub repo is already in the local cache (no network)."""
    from huggingface_hub import scan_cache_dir

    try:
        return any(r.repo_id == repo for r in scan_cache_dir().repos)
    except Exception:  # an absent or unreadable cache simply holds nothing
        return False
