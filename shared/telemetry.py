"""OpenTelemetry traces and metrics to Application Insights, when configured (OTEL_ENABLED and a connection
string from the platform setting APPLICATIONINSIGHTS_CONNECTION_STRING)."""

from __future__ import annotations

import logging
import os

from shared.config import Settings

log = logging.getLogger(__name__)


def configure_telemetry(settings: Settings) -> bool:
    if not settings.otel_enabled or not os.environ.get("APPLICATIONINSIGHTS_CONNECTION_STRING"):
        return False
    from azure.monitor.opentelemetry import configure_azure_monitor

    from shared.adapters.identity import azure_credential

    # The connection string is read from the environment by the distro; it is never logged. The deployed
    # Application Insights accepts Entra ID-authenticated telemetry only: send it as the app's managed identity.
    configure_azure_monitor(logger_name="shared", credential=azure_credential(settings.cosmos_client_id))
    log.info("OpenTelemetry export to Application Insights enabled")
    return True
