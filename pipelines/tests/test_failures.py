"""One line for any failure: a user's own exception names their file and line."""

from __future__ import annotations

import importlib
import sys
from pathlib import Path

import pytest

from kubeforge.core.errors import KubeforgeError, describe_failure


def test_a_users_exception_names_its_type_message_file_and_line(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "team_lfs.py").write_text(
        "import numpy as np\n\ndef build():\n    return np.zeros(3).reshape(2, 2)\n"
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    module = importlib.import_module("team_lfs")
    try:
        module.build()
    except ValueError as exc:
        line = describe_failure(exc)
    sys.modules.pop("team_lfs", None)
    assert line.startswith("ValueError: cannot reshape array of size 3")
    assert line.endswith(f"(raised at {tmp_path / 'team_lfs.py'}:4)")  # not numpy's frame


def test_a_kubeforge_error_is_its_own_message() -> None:
    error = KubeforgeError("label column 'y' holds 1 class", "label_column")
    assert (
        describe_failure(error)
        == "label column 'y' holds 1 class (fix with parameter 'label_column')"
    )
