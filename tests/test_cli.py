"""The ``xaccel`` command, run as a user runs it: a separate process."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

XACCEL = Path(sys.executable).parent / "xaccel"


def run(argv: list[str], env: dict[str, str], module: bool = False) -> subprocess.CompletedProcess[str]:
    clean = {k: v for k, v in os.environ.items() if not k.startswith("XACCEL_")}
    command = [sys.executable, "-m", "xaccel_middleware", *argv] if module else [str(XACCEL), *argv]
    return subprocess.run(command, env={**clean, **env}, capture_output=True, text=True, timeout=30)


@pytest.mark.parametrize("module", [False, True], ids=["script", "module"])
def test_check_prints_the_effective_settings(tmp_path: Path, module: bool) -> None:
    assert module or XACCEL.exists(), "the xaccel script is not installed next to this Python"
    secret = "0123456789abcdef0123"
    env = {
        "XACCEL_MODE": "offload",
        "XACCEL_ROOTS": f"{tmp_path}=/protected",
        "XACCEL_PROXY_SECRET": secret,
        "XACCEL_TRUSTED_PROXIES": "10.0.0.0/8",
    }
    result = run(["check"], env, module)
    assert result.returncode == 0, result.stderr
    lines = dict(line.split(None, 1) for line in result.stdout.splitlines())
    assert lines["XACCEL_MODE"] == "offload"
    assert lines["XACCEL_ROOTS"] == f"{tmp_path.resolve()}=/protected"
    assert lines["XACCEL_TRUSTED_PROXIES"] == "10.0.0.0/8"
    assert lines["XACCEL_PROXY_SECRET"] == "(set)"
    assert lines["XACCEL_MAX_RANGES"] == "100"
    assert secret not in result.stdout


@pytest.mark.parametrize(
    ("variable", "value"),
    [("XACCEL_MODE", "sometimes"), ("XACCEL_ROOTS", "/no/such/dir=/p"), ("XACCEL_CHUNK_SIZE", "1")],
)
def test_check_with_a_bad_variable_exits_2_naming_it(variable: str, value: str) -> None:
    result = run(["check"], {variable: value})
    assert result.returncode == 2
    assert variable in result.stderr
    assert result.stdout == ""
    assert "Traceback" not in result.stderr


def test_unknown_command_is_a_usage_error() -> None:
    result = run(["frobnicate"], {}, module=True)
    assert result.returncode == 2
    assert "usage" in result.stderr
