"""The development host's test fixture: one function per behaviour the host must reproduce.

Functions append one JSON line per start and end to the file named by SAMPLE_EVENTS_FILE, so tests can see
what ran, where (pid), in which order and for how long. Service Bus message bodies are JSON that say how to
behave: {"sleep": seconds, "fail": true}.
"""

from __future__ import annotations

import json
import os
import time
from typing import Any

import azure.functions as func

app = func.FunctionApp(http_auth_level=func.AuthLevel.ANONYMOUS)
http = func.Blueprint()


def record(event: str, function: str, **fields: Any) -> None:
    path = os.environ.get("SAMPLE_EVENTS_FILE")
    if not path:
        return
    line = json.dumps({"event": event, "function": function, "pid": os.getpid(), "t": time.time(), **fields})
    # One write() of a short line with O_APPEND: lines from concurrent processes never interleave.
    with open(path, "a", encoding="utf-8") as events:
        events.write(line + "\n")


@http.route(route="echo/{name}", methods=["GET", "POST"])
def echo(req: func.HttpRequest) -> func.HttpResponse:
    answer = {
        "method": req.method,
        "url": req.url,
        "params": dict(req.params),
        "route_params": dict(req.route_params),
        "header": req.headers.get("x-sample"),
        "body": req.get_body().decode(),
    }
    status = int(req.params.get("status", "200"))
    return func.HttpResponse(
        json.dumps(answer), status_code=status, mimetype="application/json", headers={"X-Echo": "yes"}
    )


@http.route(route="jobs/{id:guid}", methods=["GET"])
def job_by_id(req: func.HttpRequest) -> str:
    return f"job {req.route_params['id']}"


@http.route(route="slow", methods=["GET"])
def slow(req: func.HttpRequest) -> func.HttpResponse:
    time.sleep(float(req.params.get("seconds", "1")))
    return func.HttpResponse(str(os.getpid()))


@http.route(route="boom")
def boom(req: func.HttpRequest) -> func.HttpResponse:
    raise RuntimeError("boom")


@http.route(route="setting", methods=["GET"])
def setting(req: func.HttpRequest) -> func.HttpResponse:
    return func.HttpResponse(os.environ.get("SAMPLE_GREETING", "<unset>"))


app.register_functions(http)


def _run_message(function: str, msg: func.ServiceBusMessage) -> None:
    instructions = json.loads(msg.get_body() or b"{}")
    fields = {
        "message_id": msg.message_id,
        "session_id": msg.session_id,
        "delivery_count": msg.delivery_count,
        "properties": msg.user_properties,
    }
    record("start", function, **fields)
    time.sleep(float(instructions.get("sleep", 0)))
    if instructions.get("fail"):
        record("fail", function, **fields)
        raise RuntimeError(f"asked to fail: {msg.message_id}")
    record("end", function, **fields)


@app.service_bus_queue_trigger(
    arg_name="msg", connection="ServiceBusConnection", queue_name="%SESSION_QUEUE%", is_sessions_enabled=True
)
def session_worker(msg: func.ServiceBusMessage) -> None:
    _run_message("session_worker", msg)


@app.service_bus_queue_trigger(arg_name="msg", connection="ServiceBusConnection", queue_name="%PLAIN_QUEUE%")
def plain_worker(msg: func.ServiceBusMessage) -> None:
    _run_message("plain_worker", msg)


@app.timer_trigger(arg_name="timer", schedule="%TICK_SCHEDULE%", run_on_startup=False)
def ticker(timer: func.TimerRequest) -> None:
    record("start", "ticker", past_due=timer.past_due)
    time.sleep(float(os.environ.get("TICK_SLEEP", "0")))
    record("end", "ticker")
