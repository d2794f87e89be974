"""The model registry: versions appear whole, CURRENT switches atomically, rollback works."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import textwrap

import pytest

from ml.registry import ModelRegistry, RegistryError
from ml.serving import TimeframeMismatchError, check_timeframe
from tests.paths import ROOT

META = {
    "feature_set": "seed",
    "feature_columns": ["Close"],
    "label": {"kind": "next_bar_direction"},
}


def add_version(registry: ModelRegistry, tmp_path, n: int, promote: bool = True) -> str:
    predictor = tmp_path / f"predictor-{n}"
    predictor.mkdir()
    (predictor / "predictor.pkl").write_bytes(b"x")
    return registry.add("btc", predictor, {**META, "n": n}, promote=promote).version


def test_added_version_has_metadata_predictor_and_becomes_current(tmp_path):
    registry = ModelRegistry(tmp_path / "models")
    version = add_version(registry, tmp_path, 1)
    entry = registry.current("btc")
    assert entry is not None
    assert entry.version == version
    assert (entry.predictor_path / "predictor.pkl").exists()
    assert entry.metadata["name"] == "btc"
    assert not [p for p in (tmp_path / "models" / "btc").iterdir() if ".staging" in p.name]


def test_promote_and_rollback_walk_the_history(tmp_path):
    registry = ModelRegistry(tmp_path / "models")
    v1 = add_version(registry, tmp_path, 1)
    v2 = add_version(registry, tmp_path, 2)
    v3 = add_version(registry, tmp_path, 3, promote=False)
    assert registry.current("btc").version == v2
    assert registry.aliases("btc") == {"champion": v2, "previous": v1}
    registry.set_challenger("btc", v3, "retrained")
    registry.promote("btc", v3, reason="beat the champion")
    assert registry.aliases("btc") == {"champion": v3, "previous": v2}  # challenger cleared
    assert registry.rollback("btc").version == v2
    assert registry.aliases("btc") == {"champion": v2, "previous": v1}
    assert registry.rollback("btc").version == v1
    assert registry.aliases("btc") == {"champion": v1}
    with pytest.raises(RegistryError, match="no earlier version"):
        registry.rollback("btc")
    assert [c.kind for c in registry.history("btc")] == [
        "promote", "promote", "register", "promote", "rollback", "rollback",
    ]  # fmt: skip
    periods = [(p.version, p.end is None) for p in registry.champion_periods("btc")]
    assert periods == [(v1, False), (v2, False), (v3, False), (v2, False), (v1, True)]
    assert registry.champion_periods("btc")[2].start.reason == "beat the champion"


def test_an_alias_never_points_at_a_missing_version_and_a_torn_line_is_ignored(tmp_path):
    registry = ModelRegistry(tmp_path / "models")
    v1 = add_version(registry, tmp_path, 1)
    with pytest.raises(RegistryError, match="has no version 'gone'"):
        registry.set_challenger("btc", "gone", "x")
    history = tmp_path / "models" / "btc" / "aliases.jsonl"
    with history.open("a") as f:
        f.write('{"seq": 2, "kind": "promote", "aliases": {"champ')  # killed mid-write
    assert registry.aliases("btc") == {"champion": v1}
    v2 = add_version(registry, tmp_path, 2)  # the next change still appends whole lines
    assert registry.aliases("btc") == {"champion": v2, "previous": v1}


def test_purge_keeps_the_newest_and_every_aliased_version(tmp_path):
    registry = ModelRegistry(tmp_path / "models")
    versions = [add_version(registry, tmp_path, n, promote=n in (1, 2)) for n in range(1, 8)]
    registry.set_challenger("btc", versions[3], "in shadow")
    removed = registry.purge("btc", keep=2)
    assert removed == [versions[2], versions[4]]  # not v1/v2 (aliased), v4 (challenger)
    left = [v.version for v in registry.versions("btc")]
    assert left == [versions[0], versions[1], versions[3], versions[5], versions[6]]
    assert not registry.incomplete("btc")


def test_leftovers_of_a_killed_registration_are_found_and_removed(tmp_path):
    registry = ModelRegistry(tmp_path / "models")
    add_version(registry, tmp_path, 1)
    model_dir = tmp_path / "models" / "btc"
    (model_dir / ".20260101T000000Z.abcd1234.staging").mkdir()
    (model_dir / ".train-xyz").mkdir()
    assert len(registry.incomplete("btc")) == 2
    assert [v.version for v in registry.versions("btc")] == [registry.current("btc").version]
    registry.remove_incomplete("btc")
    assert not registry.incomplete("btc")


def test_a_registry_with_a_current_file_reads_it_as_the_champion(tmp_path):
    registry = ModelRegistry(tmp_path / "models")
    v1 = add_version(registry, tmp_path, 1, promote=False)
    (tmp_path / "models" / "btc" / "CURRENT").write_text(v1 + "\n")
    assert registry.current("btc").version == v1
    v2 = add_version(registry, tmp_path, 2)
    assert registry.aliases("btc") == {"champion": v2, "previous": v1}


def test_unknown_versions_names_and_corrupt_metadata_are_clear_errors(tmp_path):
    registry = ModelRegistry(tmp_path / "models")
    version = add_version(registry, tmp_path, 1)
    with pytest.raises(RegistryError, match="has no version 'nope'"):
        registry.get("btc", "nope")
    with pytest.raises(RegistryError, match="invalid model name"):
        registry.get("../etc", "x")
    (tmp_path / "models" / "btc" / version / "metadata.json").write_text("{broken")
    with pytest.raises(RegistryError, match="unreadable metadata"):
        registry.get("btc", version)
    (tmp_path / "models" / "btc" / version / "metadata.json").write_text(json.dumps({"x": 1}))
    with pytest.raises(RegistryError, match="lacks 'feature_set'"):
        registry.get("btc", version)
    assert registry.current("eth") is None


@pytest.mark.parametrize(
    ("recorded", "timeframe"),
    [
        ({"timeframe": "1h"}, "1h"),
        ({"data": {"timeframe": "1d"}}, "1d"),  # registered before the top-level key
        ({"data": {"path": "sample"}}, None),
    ],
)
def test_a_version_knows_the_timeframe_it_was_trained_on(tmp_path, recorded, timeframe):
    predictor = tmp_path / "predictor"
    predictor.mkdir()
    entry = ModelRegistry(tmp_path / "models").add("btc", predictor, {**META, **recorded})
    assert entry.timeframe == timeframe


def test_a_model_is_refused_on_another_timeframe_unless_allowed(tmp_path):
    predictor = tmp_path / "predictor"
    predictor.mkdir()
    hourly = ModelRegistry(tmp_path / "models").add("btc", predictor, {**META, "timeframe": "1h"})
    override = "pass --allow-it"
    assert check_timeframe(hourly, "1h", allow=False, override=override) == ""
    with pytest.raises(TimeframeMismatchError) as refused:
        check_timeframe(hourly, "1d", allow=False, override=override)
    assert str(refused.value) == (
        f"model btc/{hourly.version} was trained on 1h bars, but the data is 1d: "
        "train a model on 1d bars, or pass --allow-it"
    )
    warning = check_timeframe(hourly, "1d", allow=True, override=override)
    assert warning == f"model btc/{hourly.version} was trained on 1h bars, but the data is 1d"


def test_a_registration_killed_while_writing_is_never_visible(tmp_path):
    registry = ModelRegistry(tmp_path / "models")
    kept = add_version(registry, tmp_path, 1)
    predictor = tmp_path / "predictor-2"
    predictor.mkdir()
    (predictor / "predictor.pkl").write_bytes(b"x")
    # The process may write 4 KiB per file: the kernel kills it (SIGXFSZ) part-way
    # through metadata.json, as a crash or a full disk would.
    script = textwrap.dedent(
        f"""
        import resource, signal
        from ml.registry import ModelRegistry
        meta = {{**{META!r}, "notes": "x" * 100_000}}
        signal.signal(signal.SIGXFSZ, signal.SIG_DFL)  # Python ignores it: die, no cleanup
        resource.setrlimit(resource.RLIMIT_FSIZE, (4096, 4096))
        ModelRegistry({str(registry.root)!r}).add("btc", {str(predictor)!r}, meta)
        """
    )
    done = subprocess.run([sys.executable, "-c", script], cwd=ROOT, capture_output=True, timeout=60)
    assert done.returncode == -signal.SIGXFSZ, done.stderr.decode()
    assert not predictor.exists()  # it got as far as moving the predictor in

    assert [v.version for v in registry.versions("btc")] == [kept]
    assert registry.current("btc").version == kept
    later = add_version(registry, tmp_path, 3)
    assert [v.version for v in registry.versions("btc")] == [kept, later]
