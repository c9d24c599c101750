"""Allowed roots: what a served dashboard may open, `..` and symlinks resolved before the check."""

import os

import pytest

from backend.data import check_allowed_spec
from backend.errors import ConfigError
from backend.storage import ROOTS_ENV, allowed_roots, check_allowed_path


def test_the_workspace_assets_and_configured_roots_are_allowed(tmp_path, monkeypatch, workspace):
    data = tmp_path / "data"
    (data / "isic").mkdir(parents=True)
    monkeypatch.setenv(ROOTS_ENV, os.pathsep.join([str(data), str(tmp_path / "models")]))
    roots = allowed_roots()
    assert workspace.resolve() in roots and data.resolve() in roots
    assert check_allowed_path(data / "isic", "dataset folder") == (data / "isic").resolve()
    assert check_allowed_spec(f"isic:{data / 'isic'}?size=64").path == str(data / "isic")
    check_allowed_spec("synthderm?artifact=ruler")  # no folder to check


@pytest.mark.parametrize("kind", ["absolute", "dotdot", "symlink"])
def test_escapes_are_refused(tmp_path, monkeypatch, kind):
    root, outside = tmp_path / "root", tmp_path / "outside"
    root.mkdir()
    outside.mkdir()
    monkeypatch.setenv(ROOTS_ENV, str(root))
    monkeypatch.chdir(root)
    if kind == "absolute":
        target = outside
    elif kind == "dotdot":
        target = root / ".." / "outside"
    else:
        (root / "link").symlink_to(outside)
        target = root / "link"
    with pytest.raises(
        ConfigError, match=f"outside the folders this dashboard may read; add its folder to {ROOTS_ENV}"
    ):
        check_allowed_path(target, "dataset folder")
    with pytest.raises(ConfigError, match="outside the folders"):
        check_allowed_spec(f"folder:{target}")
