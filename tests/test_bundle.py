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
