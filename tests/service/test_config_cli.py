"""Settings: one class, ANOMALY_* environment variables and CLI flags set the same fields;
the CLI plugin registers `anomaly serve`; importing the service never imports torch."""

from __future__ import annotations

import argparse
import subprocess
import sys
from pathlib import Path

import pytest

from service.cli import add_arguments, register, settings_from_args
from service.config import Settings


def _parse(*argv: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    add_arguments(parser)
    return parser.parse_args(list(argv))


def test_every_setting_has_a_flag() -> None:
    parser = argparse.ArgumentParser()
    add_arguments(parser)
    dests = {a.dest for a in parser._actions}
    assert set(Settings.model_fields) <= dests


def test_flags_override_environment_which_overrides_defaults(
        monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("ANOMALY_MAX_BATCH_SIZE", "32")
    monkeypatch.setenv("ANOMALY_PORT", "9001")
    monkeypatch.setenv("ANOMALY_PROVIDERS", "CPUExecutionProvider")
    monkeypatch.setenv("ANOMALY_API_KEY", "from-env")
    monkeypatch.setenv("ANOMALY_DYNAMIC_BATCHING", "false")
    s = settings_from_args(_parse("--port", "9002", "--models", str(tmp_path),
                                  "--max-queue-delay-us", "250"))
    assert s.port == 9002  # flag beats env
    assert s.max_batch_size == 32  # env beats default
    assert s.models == tmp_path
    assert s.max_queue_delay_us == 250
    assert s.providers == ["CPUExecutionProvider"]
    assert s.api_key_value() == "from-env"
    assert s.dynamic_batching is False
    assert settings_from_args(_parse("--dynamic-batching")).dynamic_batching is True
    assert Settings().max_queue_size == 2048  # untouched default


def test_provider_list_flag_and_validation() -> None:
    s = settings_from_args(_parse("--providers", "CUDAExecutionProvider, CPUExecutionProvider"))
    assert s.providers == ["CUDAExecutionProvider", "CPUExecutionProvider"]
    with pytest.raises(ValueError, match="max_batch_size"):
        settings_from_args(_parse("--max-batch-size", "0"))
    with pytest.raises(ValueError, match="log level"):
        Settings(log_level="loud")


def test_register_adds_serve_subcommand() -> None:
    parser = argparse.ArgumentParser()
    commands = parser.add_subparsers(dest="command")
    register(commands)
    args = parser.parse_args(["serve", "--models", "m", "--port", "8123", "--no-access-log"])
    assert args.func.__name__ == "serve"
    s = settings_from_args(args)
    assert (s.port, s.access_log, s.models) == (8123, False, Path("m"))


def test_serve_refuses_a_missing_repository(tmp_path: Path) -> None:
    out = subprocess.run([sys.executable, "-m", "service", "--models",
                          str(tmp_path / "absent")], capture_output=True, text=True, timeout=60)
    assert out.returncode == 2
    assert "not a directory" in out.stderr
    bad = subprocess.run([sys.executable, "-m", "service", "--port", "99999"],
                         capture_output=True, text=True, timeout=60)
    assert bad.returncode == 2 and "port" in bad.stderr


def _fresh_python(code: str) -> None:
    """Run ``code`` in a new interpreter; it must print 'ok' (its asserts say what failed)."""
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         timeout=120)
    assert out.returncode == 0 and out.stdout.strip() == "ok", out.stderr


def test_importing_the_service_never_imports_torch() -> None:
    code = ("import sys, service, service.main, service.cli, service.routes_v1, "
            "service.routes_v2, service.repository; "
            "service.main.create_app(service.Settings()); "
            "assert 'torch' not in sys.modules, 'torch imported'; "
            "assert 'training' not in sys.modules, 'training imported'; print('ok')")
    _fresh_python(code)


def test_the_service_starts_without_plotting_or_batch_machinery() -> None:
    """matplotlib (heat maps) and the batch scorer load on first use, not with the service:
    they cost start-up time and memory that a scoring process does not need."""
    code = ("import sys, service.main; service.main.create_app(service.Settings()); "
            "left = [m for m in ('matplotlib', 'anomaly.evaluation', 'anomaly.batch', "
            "'pandas', 'scipy', 'sklearn') if m in sys.modules]; "
            "assert not left, left; import anomaly; anomaly.score_path; "
            "assert 'anomaly.batch' in sys.modules; print('ok')")
    _fresh_python(code)
