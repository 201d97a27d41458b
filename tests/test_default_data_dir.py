"""The default data folder is one the embedded servers' account can use."""

from __future__ import annotations

import os
import pwd
import subprocess
import sys

import platformdirs
import pytest

from pipeline.embedded import SYSTEM_USER, _check_traversable
from pipeline.errors import EmbeddedServerError
from pipeline.settings import ROOT_DATA_DIR, default_data_dir


def _default_in_a_fresh_process() -> str:
    env = {k: v for k, v in os.environ.items() if not k.startswith("LIVECOACH_")}
    code = "from pipeline.settings import load_settings; print(load_settings().data_dir)"
    return subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True,
        timeout=60,
    ).stdout.strip()  # fmt: skip


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root")
def test_root_defaults_to_a_folder_the_system_account_can_enter() -> None:
    assert _default_in_a_fresh_process() == str(ROOT_DATA_DIR)
    try:
        account = pwd.getpwnam(SYSTEM_USER)
    except KeyError:
        pytest.skip(f"no {SYSTEM_USER} account yet (created by the first embedded server)")
    # What the embedded servers check before they start, on the folder's existing part.
    existing = next(p for p in [ROOT_DATA_DIR, *ROOT_DATA_DIR.parents] if p.exists())
    _check_traversable(existing, account)
    # The per-user folder of root is what failed before: /root is closed to others.
    user_dir = platformdirs.user_data_path("livecoach")
    if not os.stat("/root").st_mode & 0o001:
        with pytest.raises(EmbeddedServerError, match="cannot enter /root"):
            _check_traversable(user_dir, account)


@pytest.mark.skipif(os.geteuid() == 0, reason="needs an ordinary user")
def test_an_ordinary_user_keeps_the_user_data_folder() -> None:
    assert _default_in_a_fresh_process() == str(platformdirs.user_data_path("livecoach"))


def test_the_choice_follows_the_effective_user(monkeypatch: pytest.MonkeyPatch) -> None:
    # Pure unit test of the branch this machine's account does not take.
    monkeypatch.setattr(os, "geteuid", lambda: 0)
    assert default_data_dir() == ROOT_DATA_DIR
    monkeypatch.setattr(os, "geteuid", lambda: 1000)
    assert default_data_dir() == platformdirs.user_data_path("livecoach")
