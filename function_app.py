"""Composition root: the Function App and its blueprints. Settings are validated here, once, at start-up."""

import azure.functions as func

from functions import chunk_worker, dashboard_api, jobs_api, limits_api, ops_api, status_timer
from shared.config import get_settings
from shared.services.context import warm_up
from shared.telemetry import configure_telemetry

settings = get_settings()  # fails the start with every configuration problem named
configure_telemetry(settings)

app = func.FunctionApp(http_auth_level=func.AuthLevel.ANONYMOUS)
for blueprint in (jobs_api.bp, limits_api.bp, ops_api.bp, dashboard_api.bp, chunk_worker.bp, status_timer.bp):
    app.register_functions(blueprint)

warm_up()  # connections opened before the worker reports ready: a route's first call costs what later ones do
