"""The code and the deployment must not drift apart.

Source of truth for names: shared/config.py (Settings.env_names(), ALL_QUEUES/LANE_QUEUES/EXPAND_QUEUE,
ALL_CONTAINERS, COSMOS_CONTAINERS, PLATFORM_SETTINGS). Compared with: infra/bicep (parsed with pycep),
local.settings.example.json, host.json and devstack/servicebus.config.json.
"""

from __future__ import annotations

import ast
import json
import re
from pathlib import Path
from typing import Any

import pytest

from shared.config import (
    ALL_CONTAINERS,
    ALL_QUEUES,
    COSMOS_CONTAINERS,
    EXPAND_QUEUE,
    FINISH_QUEUE,
    LANE_QUEUES,
    PLATFORM_SETTINGS,
    Lane,
    Settings,
)
from tests.infra.bicep_model import (
    BICEP_DIR,
    MAIN,
    MODULES,
    ROOT,
    RUNTIME,
    bicep_files,
    main_doc,
    module_doc,
    references,
    resolve,
    resource_body,
    seconds,
    unquote,
    variable,
)

# Read by the code, set only locally, deliberately never deployed.
LOCAL_ONLY_SETTINGS = frozenset(
    {
        "COSMOS_KEY",  # Cosmos DB keys are disabled in Azure (disableLocalAuth); the app uses its identity
        "COSMOS_EMULATOR_INSECURE_TLS",  # only for the emulator's self-signed certificate on 127.0.0.1
        "SERVICEBUS_ADMIN_ENDPOINT",  # the local emulator's admin port; in Azure the namespace serves it
        "FETCH_ALLOW_LOOPBACK_FOR_TESTS",  # tests only: would weaken the SSRF guard
    }
)
# Connection-string forms (local); Azure gets the identity-based `<name>__...` settings instead.
CONNECTION_STRING_SETTINGS = frozenset({"AzureWebJobsStorage", "ServiceBusConnection"})
# Identity-based forms read by the code that exist only in Azure (local.settings.example.json has the
# connection-string form instead).
CLOUD_ONLY_SETTINGS = frozenset(
    {
        "AzureWebJobsStorage__accountName",
        "AzureWebJobsStorage__clientId",
        "ServiceBusConnection__fullyQualifiedNamespace",
        "ServiceBusConnection__clientId",
        "COSMOS_CLIENT_ID",
    }
)
# Set in Bicep, consumed by the Functions host / SDK connection resolver, not by shared/config.py.
DEPLOY_PLATFORM_SETTINGS = frozenset(
    {
        "AzureWebJobsStorage__credential",  # identity-based host storage
        "AzureWebJobsStorage__blobServiceUri",
        "AzureWebJobsStorage__queueServiceUri",
        "ServiceBusConnection__credential",  # identity-based Service Bus trigger connection
        "APPLICATIONINSIGHTS_AUTHENTICATION_STRING",  # Entra ID telemetry ingestion (local auth disabled)
    }
)
# Platform settings that Flex Consumption takes as site properties rather than app settings.
FLEX_SITE_PROPERTIES = {"FUNCTIONS_WORKER_RUNTIME": "functionAppConfig.runtime.name"}

# Placeholders for values only Azure knows, so Settings can validate the deployed configuration offline.
RUNTIME_PLACEHOLDERS = {
    "AzureWebJobsStorage__accountName": "stexample",
    "AzureWebJobsStorage__blobServiceUri": "https://stexample.blob.core.windows.net/",
    "AzureWebJobsStorage__queueServiceUri": "https://stexample.queue.core.windows.net/",
    "AzureWebJobsStorage__clientId": "00000000-0000-0000-0000-000000000001",
    "ServiceBusConnection__fullyQualifiedNamespace": "sb-example.servicebus.windows.net",
    "ServiceBusConnection__clientId": "00000000-0000-0000-0000-000000000001",
    "COSMOS_ENDPOINT": "https://cosmos-example.documents.azure.com:443/",
    "COSMOS_CLIENT_ID": "00000000-0000-0000-0000-000000000001",
    "APPLICATIONINSIGHTS_CONNECTION_STRING": "InstrumentationKey=00000000-0000-0000-0000-000000000000",
    "APPLICATIONINSIGHTS_AUTHENTICATION_STRING": "ClientId=00000000-0000-0000-0000-000000000001;Authorization=AAD",
    "OTEL_ENABLED": "true",
    "JOB_RETENTION_SECONDS": "2592000",
}

SERVICEBUS_CONFIG = ROOT / "devstack" / "servicebus.config.json"


def _bicep_app_settings() -> dict[str, Any]:
    raw = variable("appSettings")
    return {unquote(key): value for key, value in raw.items()}


def _example_settings() -> dict[str, str]:
    values: dict[str, str] = json.loads((ROOT / "local.settings.example.json").read_text())["Values"]
    return values


def _host_json() -> dict[str, Any]:
    result: dict[str, Any] = json.loads((ROOT / "host.json").read_text())
    return result


def _bicep_queues() -> list[dict[str, Any]]:
    queues: list[dict[str, Any]] = resolve(variable("serviceBusQueues"), main_doc())
    return queues


def _module_call(symbolic_name: str) -> dict[str, Any]:
    module: dict[str, Any] = main_doc()["modules"][symbolic_name]
    return module


# --- app settings ------------------------------------------------------------------------------------------------


def test_documented_exceptions_are_still_read_by_the_code() -> None:
    read = Settings.env_names()
    for group in (LOCAL_ONLY_SETTINGS, CONNECTION_STRING_SETTINGS, CLOUD_ONLY_SETTINGS):
        assert group - read == set(), f"the code no longer reads {sorted(group - read)}: update this test's lists"


def test_every_setting_the_code_reads_is_deployed() -> None:
    expected = Settings.env_names() - LOCAL_ONLY_SETTINGS - CONNECTION_STRING_SETTINGS
    missing = expected - set(_bicep_app_settings())
    assert missing == set(), f"read by shared/config.py but not in main.bicep appSettings: {sorted(missing)}"


def test_every_deployed_setting_is_used() -> None:
    allowed = Settings.env_names() | set(PLATFORM_SETTINGS) | DEPLOY_PLATFORM_SETTINGS
    unused = set(_bicep_app_settings()) - allowed
    assert unused == set(), f"set in Bicep but read by nothing: {sorted(unused)}"


def test_platform_settings_are_deployed() -> None:
    settings = _bicep_app_settings()
    for name in PLATFORM_SETTINGS:
        if name in FLEX_SITE_PROPERTIES:
            assert name not in settings, f"{name} is a site property on Flex Consumption, not an app setting"
            runtime = resource_body(module_doc("functionapp"), "app")["properties"]["functionAppConfig"]["runtime"]
            assert runtime["name"] == _example_settings()[name], f"{name} differs from functionAppConfig.runtime"
        else:
            assert name in settings, f"platform setting {name} is not deployed"


def test_local_only_and_connection_string_settings_are_not_deployed() -> None:
    leaked = (LOCAL_ONLY_SETTINGS | CONNECTION_STRING_SETTINGS) & set(_bicep_app_settings())
    assert leaked == set(), f"local-only settings must not be deployed: {sorted(leaked)}"


def test_connections_are_identity_based_through_one_user_assigned_identity() -> None:
    settings = _bicep_app_settings()
    assert resolve(settings["AzureWebJobsStorage__credential"], main_doc()) == "managedidentity"
    assert resolve(settings["ServiceBusConnection__credential"], main_doc()) == "managedidentity"
    for name in ("AzureWebJobsStorage__clientId", "ServiceBusConnection__clientId", "COSMOS_CLIENT_ID"):
        assert references(settings[name]) == "identity.outputs.clientId", f"{name} is not the app identity's client id"
    assert references(settings["AzureWebJobsStorage__accountName"]) == "storage.outputs.name"
    assert references(settings["ServiceBusConnection__fullyQualifiedNamespace"]).startswith("serviceBus.outputs.")
    assert references(settings["COSMOS_ENDPOINT"]) == "cosmos.outputs.endpoint"
    app = resource_body(module_doc("functionapp"), "app")
    assert app["identity"]["type"] == "UserAssigned"
    assert app["properties"]["functionAppConfig"]["deployment"]["storage"]["authentication"]["type"] == (
        "UserAssignedIdentity"
    )


def test_no_keys_or_connection_strings_in_the_deployment() -> None:
    for path in bicep_files():
        text = path.read_text()
        for forbidden in ("listKeys(", "listConnectionStrings(", "AccountKey=", "SharedAccessKey", "primaryKey"):
            assert forbidden not in text, f"{path.name} uses {forbidden!r}: secrets must not reach the app"
    for name in _bicep_app_settings():
        upper = name.upper()
        if name == "APPLICATIONINSIGHTS_CONNECTION_STRING":
            continue  # an ingestion address; local auth is disabled, ingestion needs the identity
        if name == "ADMIN_API_KEY_SHA256":
            continue  # the digest of the operator key, not the key (shared/services/operator.py)
        assert not any(word in upper for word in ("KEY", "SECRET", "PASSWORD", "CONNECTIONSTRING")), name


def test_deployed_values_are_valid_settings() -> None:
    """The Bicep's values (parameter defaults resolved) pass the app's own start-up validation."""
    env: dict[str, str] = {}
    for name, value in _bicep_app_settings().items():
        literal = resolve(value, main_doc())
        if literal is RUNTIME:
            assert name in RUNTIME_PLACEHOLDERS, f"{name} has a runtime value: add a placeholder here"
            literal = RUNTIME_PLACEHOLDERS[name]
        assert isinstance(literal, str), f"app setting {name} must be a string, got {literal!r}"
        env[name] = literal
    settings = Settings.from_env(env)
    assert settings.storage_connection is None and settings.servicebus_connection is None
    assert settings.cosmos_key is None and not settings.cosmos_emulator_insecure_tls
    assert not settings.fetch_allow_loopback


# Deployed deliberately with a different value than the local example.
CLOUD_VALUE_DIFFERS = {
    "OTEL_ENABLED": "telemetry goes to Application Insights in Azure; locally it is off",
    "JOB_RETENTION_SECONDS": "jobs expire after jobRetentionDays in Azure (the containers' TTL); locally never",
}


def test_deployed_defaults_match_the_local_example() -> None:
    """Tuning values are the same locally and in Azure unless listed in CLOUD_VALUE_DIFFERS."""
    example = _example_settings()
    for name, value in _bicep_app_settings().items():
        literal = resolve(value, main_doc())
        if name not in example or literal is RUNTIME or name in CLOUD_VALUE_DIFFERS:
            continue
        assert literal == example[name], f"{name}: Bicep deploys {literal!r}, the local example {example[name]!r}"


def test_local_settings_example_lists_every_setting() -> None:
    example = set(_example_settings())
    read = Settings.env_names()
    missing = read - CLOUD_ONLY_SETTINGS - example
    assert missing == set(), f"read by the code but missing from local.settings.example.json: {sorted(missing)}"
    stale = example - read - set(PLATFORM_SETTINGS)
    assert stale == set(), f"in local.settings.example.json but read by nothing: {sorted(stale)}"


def test_bicep_sets_every_example_setting() -> None:
    example = set(_example_settings()) - LOCAL_ONLY_SETTINGS - CONNECTION_STRING_SETTINGS - set(FLEX_SITE_PROPERTIES)
    missing = example - set(_bicep_app_settings())
    assert missing == set(), f"in local.settings.example.json but not deployed: {sorted(missing)}"


# --- Service Bus -------------------------------------------------------------------------------------------------


def test_queues_match_the_code() -> None:
    queues = {queue["name"]: queue for queue in _bicep_queues()}
    assert set(queues) == set(ALL_QUEUES), f"Bicep queues {sorted(queues)} != code queues {sorted(ALL_QUEUES)}"
    for name, queue in queues.items():
        assert queue["requiresSession"] is (name in LANE_QUEUES), f"{name}: sessions on lane queues only"
    assert queues[EXPAND_QUEUE]["requiresSession"] is False
    assert queues[FINISH_QUEUE]["requiresSession"] is False
    lanes: dict[str, set[str]] = {}
    for name, queue in queues.items():
        if queue["lane"]:
            lanes.setdefault(queue["lane"], set()).add(name)
    expected = {lane.value: {lane.queue_name, lane.express_queue_name} for lane in Lane}
    assert lanes == expected, "every lane needs its own session queue and its own express queue"


def test_queue_resource_uses_the_declared_properties() -> None:
    body = resource_body(module_doc("servicebus"), "queueResources")["properties"]
    assert references(body["requiresSession"]) == "queue.requiresSession"
    assert references(body["lockDuration"]) == "queue.lockDuration"
    assert references(body["maxDeliveryCount"]) == "queue.maxDeliveryCount"
    assert body["deadLetteringOnMessageExpiration"] is True
    assert body["requiresDuplicateDetection"] is True
    namespace = resource_body(module_doc("servicebus"), "namespace")["properties"]
    assert namespace["disableLocalAuth"] is True, "SAS keys must be disabled"
    assert resolve(_module_call("serviceBus")["config"]["params"]["queues"], main_doc()) == _bicep_queues()


def test_lock_settings_agree_with_host_json() -> None:
    host = _host_json()
    service_bus = host["extensions"]["serviceBus"]
    function_timeout = seconds(host["functionTimeout"])
    renewal = seconds(service_bus["maxAutoLockRenewalDuration"])
    idle = seconds(service_bus.get("sessionIdleTimeout", "00:01:00"))
    chunk_budget = float(resolve(_bicep_app_settings()["CHUNK_TIME_BUDGET_SECONDS"], main_doc()))
    assert renewal >= function_timeout, "the host must renew locks for as long as a function may run"
    assert chunk_budget < function_timeout, "a chunk's time budget must end before functionTimeout"
    duplicate_window = seconds(resolve(module_doc("servicebus")["parameters"]["duplicateDetectionHistoryTimeWindow"]
                                       ["default"], module_doc("servicebus")))
    for queue in _bicep_queues():
        lock = seconds(queue["lockDuration"])
        assert 30 <= lock <= 300, f"{queue['name']}: lockDuration must be 30 s..5 min (Azure's maximum)"
        assert lock < renewal, f"{queue['name']}: the host renews the lock, so it must be shorter than the renewal"
        assert queue["maxDeliveryCount"] >= 2, f"{queue['name']}: a failed chunk needs at least one redelivery"
        if queue["requiresSession"]:
            assert idle < lock, f"{queue['name']}: sessionIdleTimeout must be well under the session lock"
        assert duplicate_window >= lock, "duplicate detection must outlast a lock (a redelivered send is dropped)"


def test_queues_agree_with_the_local_emulator_config() -> None:
    if not SERVICEBUS_CONFIG.is_file():
        pytest.skip(f"{SERVICEBUS_CONFIG.relative_to(ROOT)} does not exist yet")
    document = json.loads(SERVICEBUS_CONFIG.read_text())
    local: dict[str, dict[str, Any]] = {}
    for namespace in document["UserConfig"]["Namespaces"]:
        for queue in namespace.get("Queues", []):
            local[queue["Name"]] = queue.get("Properties", {})
    assert set(local) == set(ALL_QUEUES), f"emulator queues {sorted(local)} != code queues {sorted(ALL_QUEUES)}"
    sb = module_doc("servicebus")
    deployed_ttl = sb["parameters"]["defaultMessageTimeToLive"]["default"]
    deployed_window = sb["parameters"]["duplicateDetectionHistoryTimeWindow"]["default"]
    for queue in _bicep_queues():
        props = local[queue["name"]]
        name = queue["name"]
        assert props.get("RequiresSession", False) is queue["requiresSession"], f"{name}: RequiresSession"
        assert seconds(props.get("LockDuration", "PT1M")) == seconds(queue["lockDuration"]), f"{name}: LockDuration"
        assert props.get("MaxDeliveryCount", 10) == queue["maxDeliveryCount"], f"{name}: MaxDeliveryCount"
        assert props.get("DeadLetteringOnMessageExpiration", False) is True, f"{name}: DeadLetteringOnMessageExpiration"
        assert props.get("RequiresDuplicateDetection", False) is True, f"{name}: RequiresDuplicateDetection"
        if "DuplicateDetectionHistoryTimeWindow" in props:
            assert seconds(props["DuplicateDetectionHistoryTimeWindow"]) == seconds(deployed_window), name
        if "DefaultMessageTimeToLive" in props:
            assert seconds(props["DefaultMessageTimeToLive"]) == seconds(deployed_ttl), name


# --- Storage -----------------------------------------------------------------------------------------------------


def test_blob_containers_match_the_code() -> None:
    containers = resolve(variable("blobContainerNames"), main_doc())
    assert sorted(containers) == sorted(ALL_CONTAINERS), f"Bicep containers {containers} != code {ALL_CONTAINERS}"
    params = _module_call("storage")["config"]["params"]
    assert params["containerNames"] == "blobContainerNames"
    assert params["expiringContainerNames"] == "blobContainerNames", "job blobs must expire"
    assert params["retentionDays"] == "jobRetentionDays"


def test_storage_is_identity_only() -> None:
    props = resource_body(module_doc("storage"), "account")["properties"]
    assert props["allowSharedKeyAccess"] is False
    assert props["allowBlobPublicAccess"] is False
    assert props["minimumTlsVersion"] == "TLS1_2"
    assert props["supportsHttpsTrafficOnly"] is True
    rule = resource_body(module_doc("storage"), "lifecycle")["properties"]["policy"]["rules"][0]
    assert references(rule["definition"]["actions"]["baseBlob"]["delete"]["daysAfterModificationGreaterThan"]) == (
        "retentionDays"
    )


# --- Cosmos DB ---------------------------------------------------------------------------------------------------


def _cosmos_containers() -> dict[str, dict[str, Any]]:
    return {container["name"]: container for container in resolve(variable("cosmosContainers"), main_doc())}


def test_cosmos_containers_and_partition_keys_match_the_code() -> None:
    deployed = {name: tuple(container["partitionKeys"]) for name, container in _cosmos_containers().items()}
    assert deployed == COSMOS_CONTAINERS
    body = resource_body(module_doc("cosmos"), "containerResources")["properties"]["resource"]["partitionKey"]
    assert references(body["paths"]) == "container.partitionKeys"
    assert "MultiHash" in json.dumps(body["kind"]) and body["version"] == 2, "several paths need a MultiHash key"


def test_cosmos_database_matches_the_setting() -> None:
    database = resolve(variable("cosmosDatabaseName"), main_doc())
    assert database == Settings.model_fields["cosmos_database"].default
    assert resolve(_bicep_app_settings()["COSMOS_DATABASE"], main_doc()) == database
    assert _example_settings()["COSMOS_DATABASE"] == database


def test_cosmos_keys_are_disabled_and_the_identity_has_a_data_role() -> None:
    cosmos = module_doc("cosmos")
    assert resource_body(cosmos, "account")["properties"]["disableLocalAuth"] is True
    assignment = cosmos["resources"]["dataContributorAssignments"]
    assert assignment["type"] == "Microsoft.DocumentDB/databaseAccounts/sqlRoleAssignments"
    assert resolve(cosmos["variables"]["dataContributorRoleId"]["value"], cosmos) == (
        "00000000-0000-0000-0000-000000000002"
    )
    principals = json.dumps(_module_call("cosmos")["config"]["params"]["dataContributorPrincipalIds"])
    assert '"identity"' in principals and '"principalId"' in principals, "the app identity needs the data role"


def _query_strings() -> list[str]:
    queries = []
    for path in sorted((ROOT / "shared").rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
            if isinstance(node, ast.Constant) and isinstance(node.value, str) and re.search(r"\bFROM c\b", node.value):
                queries.append(node.value)
    return queries


def test_indexing_covers_every_filtered_or_sorted_field() -> None:
    queries = _query_strings()
    assert queries, "no Cosmos queries found in shared/: the extraction is broken"
    fields = set()
    for query in queries:
        # Fields after WHERE (filters, ORDER BY) need the index; the SELECT projection does not.
        parts = re.split(r"\bWHERE\b", query, maxsplit=1, flags=re.IGNORECASE)
        if len(parts) == 1:
            parts = re.split(r"\bORDER BY\b", query, maxsplit=1, flags=re.IGNORECASE)
        if len(parts) == 2:
            fields |= set(re.findall(r"\bc\.([A-Za-z_]\w*)", parts[1]))
    for name, container in _cosmos_containers().items():
        policy = container["indexingPolicy"]
        assert policy["indexingMode"] == "consistent", name
        assert {"path": "/*"} in policy["includedPaths"], f"{name}: index everything by default"
        excluded = [entry["path"] for entry in policy["excludedPaths"]]
        for field in sorted(fields):
            covering = [path for path in excluded if path.startswith(f"/{field}/")]
            assert covering == [], f"{name}: c.{field} is filtered/sorted in shared/ but excluded by {covering}"


# --- roles, app, outputs, azd ------------------------------------------------------------------------------------


def test_least_privilege_roles() -> None:
    rbac = module_doc("rbac")
    roles = resolve(rbac["variables"]["roles"]["value"], rbac)
    assert roles["serviceBusDataSender"] == "69a216fc-b8fb-44d8-bc22-1f3c2cd27a39"
    assert roles["serviceBusDataReceiver"] == "4f6d3b9b-027b-4f4c-9142-0e5a2a2247e0"
    assert roles["storageBlobDataOwner"] == "b7e6dc6d-f1e8-4753-8033-0f276bb0955b"
    assert roles["storageQueueDataContributor"] == "974c5e8b-45b9-4653-ba55-5f855dd0fb88"
    text = (MODULES / "rbac.bicep").read_text()
    assert "scope: resourceGroup()" not in text and "subscription()" not in text.replace(
        "subscriptionResourceId", ""
    ), "roles are scoped to single resources"
    for forbidden in ("8e3af657-a8ff-443c-a75c-2fe8c4bcb635", "b24988ac-6180-42a0-ab88-20f7382dd24c"):
        assert forbidden not in text, "no Owner/Contributor assignments"


def test_function_app_is_flex_consumption_python_311() -> None:
    app_module = module_doc("functionapp")
    plan = resource_body(app_module, "plan")
    assert plan["sku"] == {"name": "FC1", "tier": "FlexConsumption"}
    params = _module_call("functionApp")["config"]["params"]
    assert params["pythonVersion"] == "3.11"
    assert params["appSettings"] == "appSettings"
    for bicep_param in ("functionInstanceMemoryMB", "functionMaximumInstanceCount", "functionAlwaysReady"):
        assert bicep_param in main_doc()["parameters"], f"main.bicep lacks parameter {bicep_param}"
    scale = resource_body(app_module, "app")["properties"]["functionAppConfig"]["scaleAndConcurrency"]
    assert set(scale) == {"instanceMemoryMB", "maximumInstanceCount", "alwaysReady"}


def test_outputs_azd_needs() -> None:
    outputs = set(main_doc()["outputs"])
    needed = {
        "AZURE_LOCATION",
        "AZURE_TENANT_ID",
        "AZURE_RESOURCE_GROUP",
        "AZURE_FUNCTION_APP_NAME",
        "AZURE_FUNCTION_APP_URL",
        "AZURE_STORAGE_ACCOUNT_NAME",
        "AZURE_SERVICEBUS_NAMESPACE",
        "AZURE_COSMOS_ACCOUNT_NAME",
    }
    assert needed - outputs == set()
    for name in outputs:
        assert not any(word in name for word in ("KEY", "SECRET", "CONNECTION_STRING")), f"output {name} looks secret"


def test_parameters_file_matches_main() -> None:
    declared = main_doc()["parameters"]
    given = json.loads((BICEP_DIR / "main.parameters.json").read_text())["parameters"]
    assert set(given) - set(declared) == set(), "main.parameters.json sets parameters main.bicep does not declare"
    required = {name for name, param in declared.items() if "default" not in param}
    assert required - set(given) == set(), "required parameters must come from the azd environment"


def test_azure_yaml_points_at_the_bicep_and_the_tagged_app() -> None:
    text = (ROOT / "azure.yaml").read_text()
    assert re.search(r"^infra:\n(?:  .*\n)*  provider: bicep\n", text, re.MULTILINE)
    path = re.search(r"^  path: (\S+)$", text, re.MULTILINE)
    assert path and (ROOT / path.group(1) / "main.bicep") == MAIN
    service = re.search(r"^services:\n  (\w+):\n((?:    .*\n)+)", text, re.MULTILINE)
    assert service, "azure.yaml declares no service"
    assert "host: function" in service.group(2) and "language: python" in service.group(2)
    assert _module_call("functionApp")["config"]["params"]["azdServiceName"] == service.group(1)


def test_funcignore_keeps_development_files_out() -> None:
    lines = {line.strip() for line in (ROOT / ".funcignore").read_text().splitlines()}
    for entry in ("devstack/", "tests/", "infra/", "bench/", "docs/", ".venv*", "node_modules/", "local.settings.json"):
        assert entry in lines, f".funcignore lacks {entry}"
    for needed in ("function_app.py", "functions/", "shared/", "host.json", "requirements.txt"):
        assert needed not in lines, f".funcignore must not exclude {needed}"


def test_main_is_the_only_entry_point() -> None:
    assert main_doc()["globals"]["scope"]["value"] == "subscription"
    assert Path(MAIN).parent == BICEP_DIR


def test_trigger_connections_are_deployed() -> None:
    """Every `connection="X"` a trigger or binding names resolves in Azure to X's identity-based settings."""
    connections: set[str] = set()
    for path in [*sorted((ROOT / "functions").rglob("*.py")), ROOT / "function_app.py"]:
        if not path.is_file():
            continue
        for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
            if isinstance(node, ast.keyword) and node.arg == "connection" and isinstance(node.value, ast.Constant):
                connections.add(str(node.value.value))
    settings = _bicep_app_settings()
    for connection in connections:
        identity_forms = {f"{connection}__fullyQualifiedNamespace", f"{connection}__accountName"}
        assert identity_forms & set(settings), f"trigger connection {connection!r} has no identity-based settings"
        assert f"{connection}__credential" in settings and f"{connection}__clientId" in settings, connection
