"""Settings, host.json, NCRONTAB schedules and HTTP response mapping, in process."""

from __future__ import annotations

import datetime
import json
from pathlib import Path

import azure.functions as func
import pytest

from devstack.funchost.host_config import load_host_config, parse_timespan
from devstack.funchost.settings import SettingNotFoundError, apply_local_settings, resolve_binding_expression
from devstack.funchost.timers import Schedule
from devstack.funchost.trigger_objects import http_response_data


def test_local_settings_fill_in_but_environment_wins(tmp_path: Path) -> None:
    (tmp_path / "local.settings.json").write_text(json.dumps({"Values": {"A": "file", "B": "file", "N": 5}}))
    environ = {"A": "env"}
    applied = apply_local_settings(tmp_path, environ)
    assert environ == {"A": "env", "B": "file", "N": "5"}
    assert sorted(applied) == ["B", "N"]
    assert apply_local_settings(tmp_path / "missing", environ) == []


def test_binding_expressions() -> None:
    environ = {"LANE": "chunks-high", "SCHEDULE": "*/5 * * * * *"}
    assert resolve_binding_expression("%LANE%", environ) == "chunks-high"
    assert resolve_binding_expression("plain-name", environ) == "plain-name"
    with pytest.raises(SettingNotFoundError):
        resolve_binding_expression("%MISSING%", environ)


def test_host_json_values_and_defaults(tmp_path: Path) -> None:
    (tmp_path / "host.json").write_text(
        json.dumps(
            {
                "version": "2.0",
                "functionTimeout": "00:10:00",
                "extensions": {
                    "http": {"routePrefix": ""},
                    "serviceBus": {"maxConcurrentSessions": 3, "sessionIdleTimeout": "00:00:02.500"},
                },
            }
        )
    )
    config = load_host_config(tmp_path)
    assert config.route_prefix == ""
    assert config.function_timeout == 600
    assert config.service_bus.max_concurrent_sessions == 3
    assert config.service_bus.session_idle_timeout == 2.5
    assert config.service_bus.auto_complete_messages is True
    assert config.service_bus.max_auto_lock_renewal_duration == 300
    assert load_host_config(tmp_path / "none").route_prefix == "api"
    assert parse_timespan("1.02:00:00") == 93600


def test_ncrontab_has_seconds_first() -> None:
    moment = datetime.datetime(2026, 1, 1, 0, 0, 3, tzinfo=datetime.UTC)
    assert Schedule("*/5 * * * * *").next_after(moment) == moment.replace(second=5)
    assert Schedule("0 */5 * * * *").next_after(moment) == moment.replace(minute=5, second=0)
    assert Schedule("0 30 9 * * 1-5").next_after(moment) == moment.replace(hour=9, minute=30, second=0)
    assert Schedule("00:00:10").next_after(moment) == moment + datetime.timedelta(seconds=10)
    with pytest.raises(ValueError):
        Schedule("*/5 * * * *")  # five fields: not NCRONTAB


def test_http_response_mapping() -> None:
    response = http_response_data(
        func.HttpResponse("{}", status_code=202, mimetype="application/json", headers={"Location": "/x"})
    )
    assert response.status_code == 202
    assert ("Location", "/x") in response.headers and ("Content-Type", "application/json") in response.headers
    text = http_response_data("hi")
    assert (text.status_code, text.body) == (200, b"hi")
    assert ("Content-Type", "text/plain; charset=utf-8") in text.headers
