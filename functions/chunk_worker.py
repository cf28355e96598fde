"""Service Bus triggers: one per priority lane (session-enabled), plus the manifest expander.

The host holds the peek-lock and renews it; returning completes the message, raising abandons it (Service Bus
redelivers it, and dead-letters it after maxDeliveryCount).
"""

from __future__ import annotations

import logging

import azure.functions as func

from shared.config import EXPAND_QUEUE, Lane
from shared.models import ExpandMessage
from shared.services.chunks import process_chunk
from shared.services.context import get_context
from shared.services.expand import expand_manifest

bp = func.Blueprint()
log = logging.getLogger(__name__)


def _run_chunk(msg: func.ServiceBusMessage) -> None:
    outcome = process_chunk(
        get_context(), msg.get_body().decode("utf-8"), msg.delivery_count or 1, msg.enqueued_time_utc
    )
    log.info(
        "job %s chunk %d: %d processed, %d already done, finished=%s cancelled=%s",
        outcome.job_id,
        outcome.chunk,
        outcome.processed,
        outcome.skipped_as_done,
        outcome.finished,
        outcome.cancelled,
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


@bp.service_bus_queue_trigger(arg_name="msg", queue_name=EXPAND_QUEUE, connection="ServiceBusConnection")
def expand_job(msg: func.ServiceBusMessage) -> None:
    expand_manifest(get_context(), ExpandMessage.model_validate_json(msg.get_body()))
