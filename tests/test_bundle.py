"""The bundle's atomic writers: whole files or none, with the usual permissions."""
import json
import os
import stat

import pytest

from dyfip import bundle


def test_write_json_replaces_whole_file(tmp_path):
    path = tmp_path / "sub" / "report.json"
    bundle.write_json(path, {"a": 1})
    bundle.write_json(path, {"a": 2})
    assert json.loads(path.read_text()) == {"a": 2}
    assert [p.name for p in path.parent.iterdir()] == ["report.json"]  # no temp files left


def test_failed_write_leaves_old_file_and_no_temp(tmp_path):
    path = tmp_path / "config.json"
    bundle.write_text(path, "old")

    def fail(tmp: str) -> None:
        with open(tmp, "w") as f:
            f.write("half")
        raise OSError("disk full")

    with pytest.raises(OSError, match="disk full"):
        bundle.atomic_write_with(path, fail)
    assert path.read_text() == "old"
    assert [p.name for p in tmp_path.iterdir()] == ["config.json"]


def test_files_get_umask_permissions_not_mkstemp_0600(tmp_path):
    umask = os.umask(0)
    os.umask(umask)
    path = tmp_path / "tables.npz"
    bundle.write_npz(path, x=[1, 2])
    assert stat.S_IMODE(path.stat().st_mode) == 0o666 & ~umask


NESTED = {"k": 2, "tau": 0.9, "flag": True, "stages": {"b": {"params": "b.npz"}},
          "streams": [{"shape": [1, 10]}]}


@pytest.mark.parametrize("key, kind, value", [
    ("k", int, 2), ("k", float, 2), ("tau", float, 0.9), ("flag", bool, True),
    ("stages.b.params", str, "b.npz"), ("stages.b", dict, {"params": "b.npz"}),
    ("tau", (int, str), None), ("streams.0.shape", list, [1, 10]),
])
def test_json_field_types(key, kind, value):
    """JSON typing: an integer is a number, true/false are neither; dotted keys nest."""
    if value is None:
        with pytest.raises(ValueError, match=r"f\.json: field 'tau' must be an integer or a "
                                             r"string; got 0\.9: redo"):
            bundle.json_field(NESTED, key, "f.json", kind, "redo")
    else:
        assert bundle.json_field(NESTED, key, "f.json", kind, "redo") == value


@pytest.mark.parametrize("data, key, kind, message", [
    (NESTED, "flag", int, r"field 'flag' must be an integer; got True"),
    (NESTED, "flag", float, r"field 'flag' must be a number; got True"),
    (NESTED, "tau", int, r"field 'tau' must be an integer; got 0\.9"),
    (NESTED, "stages.a.params", str, r"f\.json has no field 'stages\.a\.params': redo"),
    (NESTED, "k.x", int, r"f\.json: field 'k' must be a JSON object; got 2: redo"),
    ([1], "k", int, r"f\.json: the file must be a JSON object; got \[1\]: redo"),
    (NESTED, "streams.1.shape", list, r"f\.json has no field 'streams\.1\.shape': redo"),
    (NESTED, "streams.0.shape.x", int, r"field 'streams\.0\.shape' must be a JSON object"),
])
def test_json_field_names_file_field_and_value(data, key, kind, message):
    with pytest.raises(RuntimeError, match=message):
        bundle.json_field(data, key, "f.json", kind, "redo", error=RuntimeError)


def test_json_field_default_only_when_absent():
    assert bundle.json_field(NESTED, "k_max", "f.json", int, default=0) == 0
    assert bundle.json_field(NESTED, "stages.a.params", "f.json", str, default=None) is None
    with pytest.raises(ValueError, match="must be an integer"):
        bundle.json_field(NESTED, "tau", "f.json", int, default=0)


def test_written_together_replaces_all_or_none(tmp_path):
    a, b = tmp_path / "a.json", tmp_path / "b.npz"
    bundle.write_json(a, {"v": 0})
    bundle.write_npz(b, x=[0])
    with pytest.raises(RuntimeError, match="disk full"):
        with bundle.written_together():
            bundle.write_json(a, {"v": 1})
            bundle.write_npz(b, x=[1])
            raise RuntimeError("disk full")
    assert json.loads(a.read_text()) == {"v": 0} and bundle.read_npz(b)["x"].tolist() == [0]
    with bundle.written_together():
        bundle.write_json(a, {"v": 2})
        assert json.loads(a.read_text()) == {"v": 0}  # replaced only at the end
        bundle.write_npz(b, x=[2])
    assert json.loads(a.read_text()) == {"v": 2} and bundle.read_npz(b)["x"].tolist() == [2]
    bundle.write_json(a, {"v": 3})  # outside a block: at once
    assert json.loads(a.read_text()) == {"v": 3}
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.json", "b.npz"]  # no temps
