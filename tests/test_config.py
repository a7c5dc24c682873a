"""The official config file: all 49 keys both ways, archived keys policed, off-default settings flagged."""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import pytest

from deltamem import ConfigError, DeltaMemConfig, OffTrainedDefaultsWarning

FIXTURE = Path(__file__).parent / "fixtures" / "parity" / "tsw_released" / "adapter" / "delta_mem_config.json"


def test_official_file_round_trips_with_all_49_keys_in_order(tmp_path: Path) -> None:
    official = json.loads(FIXTURE.read_text())
    assert len(official) == 49
    config = DeltaMemConfig.load(FIXTURE)
    assert config.delta_heads == ("q", "o") and config.rank == 8 and config.scaling == 2.0
    written = json.loads(config.save(tmp_path).read_text())
    assert list(written) == list(official)
    assert written == official


def test_unknown_key_is_an_error_naming_it() -> None:
    data = json.loads(FIXTURE.read_text()) | {"memory_turbo": True}
    with pytest.raises(ConfigError, match="unknown key 'memory_turbo'"):
        DeltaMemConfig.from_dict(data)


@pytest.mark.parametrize("key,value", [("num_memory_partitions", 2), ("memory_readout_mode", "synthetic_kv"),
                                       ("memory_reader_layers", [3]), ("slot_read_top_k", 4),
                                       ("delta_scale_parameterization", "rank")])
def test_archived_key_with_a_live_value_is_an_error_naming_it(key: str, value: object) -> None:
    data = json.loads(FIXTURE.read_text()) | {key: value}
    with pytest.raises(ConfigError, match=key):
        DeltaMemConfig.from_dict(data)


@pytest.mark.parametrize("key,value", [("state_update_mode", "sideways"), ("memory_write_granularity", "word"),
                                       ("rank", 0), ("delta_scale_init", 3.0), ("delta_heads", "q,x")])
def test_invalid_values_name_the_key(key: str, value: object) -> None:
    with pytest.raises(ConfigError, match=key):
        DeltaMemConfig.from_dict({key: value}, warn=False)


@pytest.mark.parametrize("override,fragment", [({"rank": 16}, "rank 16"), ({"alpha": 8.0}, "alpha 8"),
                                               ({"delta_heads": ["q", "k", "v", "o"]}, "branches q,k,v,o")])
def test_off_trained_defaults_warn(override: dict, fragment: str) -> None:
    data = json.loads(FIXTURE.read_text()) | override
    with pytest.warns(OffTrainedDefaultsWarning, match=fragment):
        DeltaMemConfig.from_dict(data)


def test_released_settings_do_not_warn() -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        DeltaMemConfig.load(FIXTURE)


def test_branch_spellings_are_normalised() -> None:
    assert DeltaMemConfig(delta_heads="Q, o,q").delta_heads == ("q", "o")
    assert DeltaMemConfig(delta_heads="none").delta_heads == ()


def test_missing_and_broken_files_say_which(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="no δ-mem config"):
        DeltaMemConfig.load(tmp_path)
    (tmp_path / "delta_mem_config.json").write_text("{nope")
    with pytest.raises(ConfigError, match="not valid JSON"):
        DeltaMemConfig.load(tmp_path)
