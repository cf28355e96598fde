"""Service Bus triggers: per priority lane a session-enabled one (jobs of several chunks, capped and interleaved by
session) and an express one without sessions (jobs of one chunk), plus the manifest expander and the finish queue.

The host holds the peek-lock and renews it; returning completes the message, raising abandons it (Service Bus
redelivers it, and dead-letters it after maxDeliveryCount).
"""

from __future__ import annotations

import logging

import azure.functions as func

from shared.config import EXPAND_QUEUE, FINISH_QUEUE, Lane
from shared.models import ExpandMessage, FinishMessage
from shared.services.chunks import process_chunk
from shared.services.context import get_context
from shared.services.expand import expand_manifest
from shared.services.finish import handle_finish

bp = func.Blueprint()
log = logging.getLogger(__name__)


def _run_chunk(msg: func.ServiceBusMessage) -> None:
    outcome = process_chunk(
        get_context(), msg.get_body().decode("utf-8"), msg.delivery_count or 1, msg.enqueued_time_utc
    )
    log.info(
        "job %s chunk %d: %s, %d processed, %d already done",
        outcome.job_id,
        outcome.chunk,
        outcome.end.value,
        outcome.processed,
        outcome.skipped_as_done,
    )


@bp.service_bus_queue_trigger(
    arg_name="msg", queue_name=Lane.HIGH.queue_name, connection="ServiceBusConnection", is_sessions_enabled=True
)
def chunk_worker_high(msg: func.ServiceBusMessage) -> None:
    _run_chunk(msg)


@bp.service_bus_queue_trigger(
    arg_name="msg", queue_name=Lane.STANDARD.queue_name, connection="ServiceBusConnection", is_sessions_enabled=True
)
def chunk_worker_standard(msg: func.ServiceBusMessage) -> None:
    _run_chunk(msg)


@bp.service_bus_queue_trigger(
    arg_name="msg", queue_name=Lane.BULK.queue_name, connection="ServiceBusConnection", is_sessions_enabled=True
)
def chunk_worker_bulk(msg: func.ServiceBusMessage) -> None:
    _run_chunk(msg)


@bp.service_bus_queue_trigger(
    arg_name="msg", queue_name=Lane.HIGH.express_queue_name, connection="ServiceBusConnection"
)
def express_worker_high(msg: func.ServiceBusMessage) -> None:
    _run_chunk(msg)


@bp.service_bus_queue_trigger(
    arg_name="msg", queue_name=Lane.STANDARD.express_queue_name, connection="ServiceBusConnection"
)
def express_worker_standard(msg: func.ServiceBusMessage) -> None:
    _run_chunk(msg)


@bp.service_bus_queue_trigger(
    arg_name="msg", queue_name=Lane.BULK.express_queue_name, connection="ServiceBusConnection"
)
def express_worker_bulk(msg: func.ServiceBusMessage) -> None:
    _run_chunk(msg)


@bp.service_bus_queue_trigger(arg_name="msg", queue_name=EXPAND_QUEUE, connection="ServiceBusConnection")
def expand_job(msg: func.ServiceBusMessage) -> None:
    expand_manifest(get_context(), ExpandMessage.model_validate_json(msg.get_body()))


@bp.service_bus_queue_trigger(arg_name="msg", queue_name=FINISH_QUEUE, connection="ServiceBusConnection")
def finish_job(msg: func.ServiceBusMessage) -> None:
    message = FinishMessage.model_validate_json(msg.get_body())
    outcome = handle_finish(get_context(), message)
    log.info("job %s %s (end %d): %s", message.job_id, message.action, message.end, outcome)
