"""The deployment (azure.yaml, infra/, the azd hooks), checked offline.

There is no Bicep compiler or Azure account here, so these tests read the templates the
way a reviewer would: every .bicep file is parsed with pycep and the security-relevant
structure is asserted (no keys, identity everywhere, least-privilege roles, the Event Grid
filter and dead-letter), checkov scans infra/, azure-functions-doctor checks the package
azd would deploy, and the hooks run against a stand-in `az` that records what they ask.
"""

from __future__ import annotations

import fnmatch
import functools
import json
import os
import re
import shutil
import stat
import subprocess
import time
import tomllib
from collections.abc import Iterator
from pathlib import Path
from typing import Any, cast

import pytest
import yaml  # type: ignore[import-untyped]
from pycep import BicepParser

from local.chaos_diff import MAX_DEQUEUE
from shared.chunk_messages import QUEUE_NAME

ROOT = Path(__file__).resolve().parent.parent
INFRA = ROOT / "infra"
APP = INFRA / "app"
HOOKS = INFRA / "hooks"
TOOLS_BIN = Path(os.environ.get("SNAPCOPY_TOOLS_BIN", ROOT / ".venv-tools" / "bin"))

# Built-in role definition ids the templates may assign, and nothing else.
BUILT_IN_ROLES = {
    "0a9a7e1f-b9d0-4cc4-a60d-0319b160aaa3": "Storage Table Data Contributor",
    "b7e6dc6d-f1e8-4753-8033-0f276bb0955b": "Storage Blob Data Owner",
    "974c5e8b-45b9-4653-ba55-5f855dd0fb88": "Storage Queue Data Contributor",
    "3913510d-42f4-4e42-8a64-420c390055eb": "Monitoring Metrics Publisher",
    "d5a91429-5739-47e2-a06b-3470a27159e7": "EventGrid Data Sender",
    "ba92f5b4-2d11-453d-a403-e96b0029c9fe": "Storage Blob Data Contributor",
}
CONTRIBUTOR = "b24988ac-6180-42a0-ab88-20f7382dd24c"
OWNER = "8e3af657-a8ff-443c-a75c-2fe8c4bcb635"
CUSTOM_ROLE_OUTPUTS = {
    "sourceReaderRoleGuid",
    "copyWriterRoleGuid",
    "operationReaderRoleGuid",
    "snapshotAccessRoleGuid",
}

# What each Compute SDK call in shared/arm.py needs (the SDK's LRO poll of a delete reads
# the subscription-level DiskOperations status; start_copy does not poll: polling=False).
ARM_CALL_ACTIONS = {
    "GET snapshots": {"Microsoft.Compute/snapshots/read"},  # raw reads: one snapshot, a group's, a subscription's
    "snapshots.begin_create_or_update": {"Microsoft.Compute/snapshots/write"},
    "snapshots.begin_delete": {"Microsoft.Compute/snapshots/delete", "Microsoft.Compute/locations/DiskOperations/read"},
    "disks.get": {"Microsoft.Compute/disks/read"},
    # the diff method's read access: both long-running, their status read like a delete's
    "snapshots.begin_grant_access": {
        "Microsoft.Compute/snapshots/beginGetAccess/action",
        "Microsoft.Compute/locations/DiskOperations/read",
    },
    "snapshots.begin_revoke_access": {
        "Microsoft.Compute/snapshots/endGetAccess/action",
        "Microsoft.Compute/locations/DiskOperations/read",
    },
}
EXPECTED_ROLE_ACTIONS = {
    "sourceReaderActions": {"Microsoft.Compute/snapshots/read", "Microsoft.Compute/disks/read"},
    "copyWriterActions": {
        "Microsoft.Compute/snapshots/read",
        "Microsoft.Compute/snapshots/write",
        "Microsoft.Compute/snapshots/delete",
    },
    "operationReaderActions": {"Microsoft.Compute/locations/DiskOperations/read"},
    "snapshotAccessActions": {
        "Microsoft.Compute/snapshots/beginGetAccess/action",
        "Microsoft.Compute/snapshots/endGetAccess/action",
    },
}

# Settings the app cannot start without in Azure (README "Settings"); the rest have defaults.
REQUIRED_SETTINGS = {
    "COPY_TARGET_REGIONS",
    "STATE_TABLE_ENDPOINT",
    "STATE_TABLE_NAME",
    "ARM_CREDENTIAL",
    "AZURE_CLIENT_ID",
}
# Settings the deployment must never set.
NEVER_SET = {
    "STATE_CONNECTION_STRING": "Azurite only; Azure uses STATE_TABLE_ENDPOINT with the managed identity",
    "ARM_ENDPOINT": "the default, https://management.azure.com, is the public cloud's ARM",
    "ARM_CA_BUNDLE": "the local emulator's CA only",
}

_GUID_RE = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}", re.IGNORECASE)

pytestmark = pytest.mark.slow  # checkov, shellcheck, azure-functions-doctor: external tools


# --- reading the templates -----------------------------------------------------------------


def bicep_files() -> list[Path]:
    return sorted(INFRA.rglob("*.bicep"))


@functools.cache
def parsed(path: Path) -> dict[str, Any]:
    return cast(dict[str, Any], BicepParser().parse(text=path.read_text()))


def body(element: dict[str, Any]) -> dict[str, Any]:
    """A resource's or module's properties, under any loop or `if` wrapper."""
    config: dict[str, Any] = element["config"]
    while "loop_type" in config or "condition" in config:
        config = config["config"]
    return config


def resources(path: Path, kind: str) -> dict[str, dict[str, Any]]:
    """Every resource of one type in a file, by symbolic name (existing ones excluded)."""
    return {
        name: element
        for name, element in parsed(path).get("resources", {}).items()
        if element["type"].lower() == kind.lower() and not element["existing"]
    }


def only(path: Path, kind: str) -> dict[str, Any]:
    found = resources(path, kind)
    assert len(found) == 1, f"{path.name}: expected one {kind}, found {sorted(found)}"
    return body(next(iter(found.values())))


def variable(path: Path, name: str) -> Any:
    return parsed(path)["variables"][name]["value"]


def param_default(path: Path, name: str) -> Any:
    return parsed(path)["parameters"][name]["default"]


def decorators(path: Path, name: str) -> dict[str, Any]:
    return {item["type"]: item.get("argument") for item in parsed(path)["parameters"][name]["decorators"]}


def accessor(node: Any) -> str | None:
    """`a.b.c` as a dotted string, when `node` is a plain property-access chain."""
    if isinstance(node, str):
        return node
    if isinstance(node, dict) and node.get("operator", {}).get("type") == "property_accessor":
        operands = node["operator"]["operands"]
        head, tail = accessor(operands["operand_1"]), accessor(operands["operand_2"])
        return f"{head}.{tail}" if head and tail else None
    return None


def resolve_variable(template: dict[str, Any], name: Any) -> list[Any]:
    """Every literal a variable can hold: lists flattened, both arms of a `?:`, names followed."""
    value = template["variables"][name]["value"] if isinstance(name, str) and name in template["variables"] else name
    if isinstance(value, list):
        return [leaf for item in value for leaf in resolve_variable(template, item)]
    if isinstance(value, dict) and value.get("operator", {}).get("type") == "conditional":
        operands = value["operator"]["operands"]
        return [
            *resolve_variable(template, operands["true_value"]),
            *resolve_variable(template, operands["false_value"]),
        ]
    if isinstance(value, str) and value in template["variables"]:
        return resolve_variable(template, value)
    return [value]


def walk(node: Any) -> Iterator[Any]:
    yield node
    if isinstance(node, dict):
        for value in node.values():
            yield from walk(value)
    elif isinstance(node, list):
        for value in node:
            yield from walk(value)


def module_calls(source: str) -> list[dict[str, Any]]:
    """Every module call in main.bicep whose path ends with `source`."""
    return [
        body(module)
        for module in parsed(INFRA / "main.bicep")["modules"].values()
        if module["detail"]["path"].endswith(source)
    ]


def infra_texts() -> dict[Path, str]:
    paths = [*INFRA.rglob("*.bicep"), *INFRA.rglob("*.json"), *HOOKS.glob("*.sh"), ROOT / "azure.yaml"]
    return {path: path.read_text() for path in paths}


# --- parsing and secrets -------------------------------------------------------------------


def test_every_bicep_file_parses_and_modules_resolve():
    assert {path.relative_to(INFRA).as_posix() for path in bicep_files()} >= {
        "main.bicep",
        "app/identity.bicep",
        "app/storage.bicep",
        "app/monitoring.bicep",
        "app/function.bicep",
        "app/rbac.bicep",
        "app/roles.bicep",
        "app/eventgrid-topic.bicep",
        "app/event-subscription.bicep",
    }
    for path in bicep_files():
        template = parsed(path)
        for name, module in template.get("modules", {}).items():
            target = path.parent / module["detail"]["path"]
            assert target.is_file(), f"{path.name}: module {name} points at missing {target}"
            passed = set(body(module).get("params", {}))
            declared = parsed(target)["parameters"]
            required = {key for key, value in declared.items() if value.get("default") is None}
            assert passed <= set(declared), f"{name}: unknown params {passed - set(declared)}"
            assert required <= passed, f"{name}: required params not passed {required - passed}"


def test_no_keys_sas_or_key_bearing_connection_strings_anywhere():
    allowed = ("APPLICATIONINSIGHTS_CONNECTION_STRING", "applicationInsights.properties.ConnectionString")
    forbidden = re.compile(
        r"listKeys|listAccountSas|listServiceSas|listConnectionStrings|AccountKey|SharedAccessSignature"
        r"|DefaultEndpointsProtocol|primaryKey|InstrumentationKey=|connection_?string",
        re.IGNORECASE,
    )
    for path, text in infra_texts().items():
        stripped = text
        for token in allowed:
            stripped = stripped.replace(token, "")
        assert not forbidden.search(stripped), f"{path}: {forbidden.search(stripped)}"
    for path in bicep_files():
        for node in walk(parsed(path)):
            if isinstance(node, dict) and "function" in node and isinstance(node["function"], dict):
                assert not str(node["function"].get("type", "")).startswith("list"), f"{path}: {node}"


# --- storage, monitoring, function app -----------------------------------------------------


def test_storage_account_takes_entra_id_only_tls12_and_no_public_blobs():
    account = only(APP / "storage.bicep", "Microsoft.Storage/storageAccounts")
    properties = account["properties"]
    assert properties["allowSharedKeyAccess"] is False
    assert properties["defaultToOAuthAuthentication"] is True
    assert properties["minimumTlsVersion"] == "TLS1_2"
    assert properties["allowBlobPublicAccess"] is False
    assert properties["supportsHttpsTrafficOnly"] is True
    containers = resources(APP / "storage.bicep", "Microsoft.Storage/storageAccounts/blobServices/containers")
    assert {body(c)["name"] for c in containers.values()} == {"deploymentContainerName", "deadLetterContainerName"}
    assert all(body(c)["properties"]["publicAccess"] == "None" for c in containers.values())
    table = only(APP / "storage.bicep", "Microsoft.Storage/storageAccounts/tableServices/tables")
    assert table["name"] == "stateTableName"
    assert param_default(INFRA / "main.bicep", "stateTableName") == "snapcopy"


def test_application_insights_refuses_local_auth_and_logs_to_a_workspace():
    component = only(APP / "monitoring.bicep", "Microsoft.Insights/components")
    assert component["properties"]["DisableLocalAuth"] is True
    assert accessor(component["properties"]["WorkspaceResourceId"]) == "logAnalytics.id"
    workspace = only(APP / "monitoring.bicep", "Microsoft.OperationalInsights/workspaces")
    assert workspace["properties"]["features"]["disableLocalAuth"] is True


def test_function_app_is_flex_consumption_python_of_the_tests_with_its_own_identity():
    function = APP / "function.bicep"
    plan = only(function, "Microsoft.Web/serverfarms")
    assert plan["sku"] == {"name": "FC1", "tier": "FlexConsumption"}
    assert plan["properties"]["reserved"] is True

    site = only(function, "Microsoft.Web/sites")
    assert site["kind"] == "functionapp,linux"
    assert site["identity"]["type"] == "UserAssigned"
    assert list(site["identity"]["userAssignedIdentities"]) == ["'${identityId}'"]
    assert site["tags"]["function"]["parameters"]["arg_2"] == {"'azd-service-name'": "api"}
    properties = site["properties"]
    assert properties["httpsOnly"] is True
    assert properties["siteConfig"]["minTlsVersion"] == "1.2"
    assert properties["siteConfig"]["ftpsState"] == "Disabled"
    assert "linuxFxVersion" not in properties["siteConfig"]  # Flex takes the runtime from functionAppConfig

    config = properties["functionAppConfig"]
    mypy_python = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["mypy"]["python_version"]
    assert config["runtime"] == {"name": "python", "version": mypy_python} == {"name": "python", "version": "3.11"}
    storage = config["deployment"]["storage"]
    assert storage["type"] == "blobContainer"
    assert storage["authentication"] == {
        "type": "UserAssignedIdentity",
        "userAssignedIdentityResourceId": "identityId",
    }

    policies = resources(function, "Microsoft.Web/sites/basicPublishingCredentialsPolicies")
    assert {body(p)["name"]: body(p)["properties"]["allow"] for p in policies.values()} == {"ftp": False, "scm": False}


def _app_settings() -> dict[str, Any]:
    """The app settings as deployed: main.bicep's snapcopySettings beside the host's."""
    site = only(APP / "function.bicep", "Microsoft.Web/sites")
    assert site["properties"]["siteConfig"]["appSettings"]["function"] == {
        "type": "concat",
        "parameters": {"arg_1": "snapcopySettings", "arg_2": "hostSettings"},
    }
    (call,) = module_calls("app/function.bicep")
    pairs = [*call["params"]["snapcopySettings"], *variable(APP / "function.bicep", "hostSettings")]
    names = [pair["name"] for pair in pairs]
    assert len(names) == len(set(names)), f"a setting is set twice: {names}"
    return {pair["name"]: pair["value"] for pair in pairs}


def test_every_setting_the_app_reads_is_deployed_and_storage_is_reached_by_identity():
    settings = _app_settings()
    read_by_app = set(re.findall(r"\(env, \"([A-Z][A-Z0-9_]+)\"", (ROOT / "shared" / "config.py").read_text()))
    read_by_app |= set(re.findall(r"environ\.get\(\"([A-Z][A-Z0-9_]+)\"", (ROOT / "shared" / "runtime.py").read_text()))
    assert REQUIRED_SETTINGS | set(NEVER_SET) <= read_by_app
    assert set(settings) >= REQUIRED_SETTINGS
    assert not set(NEVER_SET) & set(settings)
    snapcopy_settings = {name for name in settings if not name.startswith(("AzureWebJobs", "APPLICATIONINSIGHTS_"))}
    unknown = snapcopy_settings - read_by_app
    assert not unknown, f"the deployment sets settings shared/config.py does not read: {sorted(unknown)}"

    assert settings["ARM_CREDENTIAL"] == "managed-identity"
    assert accessor(settings["AZURE_CLIENT_ID"]) == "identity.outputs.clientId"
    assert accessor(settings["STATE_TABLE_ENDPOINT"]) == "storage.outputs.tableEndpoint"
    assert accessor(settings["STATE_TABLE_NAME"]) == "storage.outputs.stateTableName"
    assert settings["POLL_SCHEDULE"] == "pollSchedule"
    assert settings["SWEEP_SCHEDULE"] == "sweepSchedule"
    assert settings["PRUNE_SCHEDULE"] == "pruneSchedule"
    assert {"COPY_TARGET_REGIONS", "COPY_SOURCE_SCOPES", "COPY_TARGET_RESOURCE_GROUP", "COPY_POLICIES"} <= set(settings)

    assert settings["AzureWebJobsStorage__credential"] == "managedidentity"
    assert settings["AzureWebJobsStorage__clientId"] == "identityClientId"
    for service in ("blob", "queue", "table"):
        assert accessor(settings[f"AzureWebJobsStorage__{service}ServiceUri"]) == (
            f"storage.properties.primaryEndpoints.{service}"
        )
    assert "AzureWebJobsStorage" not in settings  # no connection string, no key
    assert settings["APPLICATIONINSIGHTS_AUTHENTICATION_STRING"] == "ClientId=${identityClientId};Authorization=AAD"
    # Flex Consumption rejects these: the runtime comes from functionAppConfig.runtime.
    assert not {"FUNCTIONS_WORKER_RUNTIME", "FUNCTIONS_EXTENSION_VERSION", "WEBSITE_RUN_FROM_PACKAGE"} & set(settings)


def test_the_diff_method_gets_its_queues_its_settings_and_blob_writes_on_its_target_accounts_only():
    settings = _app_settings()
    assert accessor(settings["DIFF_QUEUE_ENDPOINT"]) == "storage.outputs.queueEndpoint"
    assert accessor(settings["DIFF_MAX_PARALLEL_RANGES"]) is None  # string(diffMaxParallelRanges)
    storage = parsed(APP / "storage.bicep")
    assert storage["parameters"]["chunkQueueNames"]["default"] == [QUEUE_NAME, f"{QUEUE_NAME}-poison"]
    (queues,) = resources(APP / "storage.bicep", "Microsoft.Storage/storageAccounts/queueServices/queues").values()
    assert queues["config"]["loop_type"]["detail"]["array_name"] == "chunkQueueNames"
    # the host's queue trigger and the app's sends go through the app's identity (queue data role)
    assert "storageQueueDataContributor" in variable(APP / "rbac.bicep", "storageDataRoles")

    role = APP / "diff-storage-role.bicep"
    (assignment,) = (body(element) for element in resources(role, "Microsoft.Authorization/roleAssignments").values())
    assert assignment["scope"] == "account"  # the account itself, never its group or subscription
    granted = assignment["properties"]["roleDefinitionId"]["function"]["parameters"]["resource_name_1"]
    assert BUILT_IN_ROLES[variable(role, granted)] == "Storage Blob Data Contributor"
    assert parsed(role)["resources"]["account"]["existing"]
    module = parsed(INFRA / "main.bicep")["modules"]["diffStorageWrite"]
    assert module["config"]["loop_type"]["detail"]["array_name"] == "diffStorageAccountList"
    (call,) = module_calls("app/diff-storage-role.bicep")
    assert accessor(call["params"]["principalId"]) == "identity.outputs.principalId"
    parameters = json.loads((INFRA / "main.parameters.json").read_text())["parameters"]
    assert parameters["diffStorageAccountIds"]["value"] == "${DIFF_STORAGE_ACCOUNT_IDS}"
    # the chunk queue's retries: five deliveries (as the local host and the chaos matrix drive
    # them), 30 s apart, so a passing storage error does not poison an increment at once
    queues = json.loads((ROOT / "host.json").read_text())["extensions"]["queues"]
    assert queues["maxDequeueCount"] == 5 == MAX_DEQUEUE
    assert queues["visibilityTimeout"] == "00:00:30"


def test_every_setting_the_app_reads_is_in_the_readme_settings_table():
    read_by_app = set(re.findall(r"\(env, \"([A-Z][A-Z0-9_]+)\"", (ROOT / "shared" / "config.py").read_text()))
    readme = (ROOT / "README.md").read_text()
    table = readme[readme.index("## Settings") : readme.index("### Replication policies")]
    missing = sorted(name for name in read_by_app if f"| `{name}` |" not in table)
    assert not missing, f"settings missing from README's table: {missing}"


def test_every_taggable_resource_carries_the_azd_environment_tag():
    untaggable = {
        "Microsoft.Authorization/roleAssignments",
        "Microsoft.Authorization/roleDefinitions",
        "Microsoft.EventGrid/systemTopics/eventSubscriptions",
        "Microsoft.Web/sites/config",
        "Microsoft.Web/sites/basicPublishingCredentialsPolicies",
    }
    for path in bicep_files():
        for name, element in parsed(path).get("resources", {}).items():
            kind = element["type"]
            if element["existing"] or kind in untaggable or kind.count("/") > 1:
                continue  # child resources inherit nothing to tag
            assert "tags" in body(element), f"{path.name}: {name} ({kind}) has no tags"
    assert variable(INFRA / "main.bicep", "tags") == {"'azd-env-name'": "environmentName"}


# --- RBAC ----------------------------------------------------------------------------------


def test_only_allowlisted_built_in_roles_appear_and_never_contributor_or_owner():
    for path, text in infra_texts().items():
        for guid in _GUID_RE.findall(text):
            assert guid.lower() in BUILT_IN_ROLES, f"{path}: unexpected role or id {guid}"
        assert CONTRIBUTOR not in text.lower() and OWNER not in text.lower()


def test_every_role_assignment_grants_a_built_in_of_the_allowlist_or_a_snapcopy_custom_role():
    generic_modules = {"app/rbac/subscription-assignment.bicep", "app/rbac/resource-group-assignment.bicep"}
    for path in bicep_files():
        template = parsed(path)
        for name, element in resources(path, "Microsoft.Authorization/roleAssignments").items():
            config = body(element)
            assert config["name"]["function"]["type"] == "guid", f"{path.name}: {name}"
            role_id = config["properties"]["roleDefinitionId"]["function"]
            assert role_id["type"] == "subscription_resource_id"
            assert role_id["parameters"]["resource_type"] == "Microsoft.Authorization/roleDefinitions"
            role = role_id["parameters"]["resource_name_1"]
            relative = path.relative_to(INFRA).as_posix()
            if relative in generic_modules:
                assert role == "roleDefinitionGuid"  # a parameter: checked at every call below
                continue
            loop = element["config"].get("loop_type")
            if loop is not None and role == loop["detail"]["item_name"]:
                role = loop["detail"]["array_name"]
            roles = resolve_variable(template, role)
            assert set(roles) <= set(BUILT_IN_ROLES), f"{path.name}: {name} grants {roles}"

    calls = [call for module in generic_modules for call in module_calls(module)]
    assert len(calls) == 7  # source, writer (each on subscriptions and groups), operations, snapshot access (both)
    for call in calls:
        assert accessor(call["params"]["roleDefinitionGuid"]) in {f"roles.outputs.{o}" for o in CUSTOM_ROLE_OUTPUTS}
        assert accessor(call["params"]["principalId"]) == "identity.outputs.principalId"


def test_storage_and_telemetry_roles_are_granted_on_the_app_resources_only():
    rbac = APP / "rbac.bicep"
    assignments = {
        name: body(element) for name, element in resources(rbac, "Microsoft.Authorization/roleAssignments").items()
    }
    assert {name: a["scope"] for name, a in assignments.items()} == {
        "appStorageRoles": "storage",
        "appTelemetryRole": "applicationInsights",
        "eventGridDeadLetterRole": "deadLetterContainer",
        "sourceTopicDeadLetterRoles": "deadLetterContainer",  # the other source subscriptions' topics
        "userStorageRoles": "storage",
    }
    assert variable(rbac, "storageDataRoles") == [
        "storageBlobDataOwner",
        "storageQueueDataContributor",
        "storageTableDataContributor",
    ]
    names = {
        v: BUILT_IN_ROLES[variable(rbac, v)]
        for v in parsed(rbac)["variables"]
        if v.startswith(("storage", "monitoring")) and isinstance(variable(rbac, v), str)
    }
    assert names == {
        "storageBlobDataOwner": "Storage Blob Data Owner",
        "storageBlobDataContributor": "Storage Blob Data Contributor",
        "storageQueueDataContributor": "Storage Queue Data Contributor",
        "storageTableDataContributor": "Storage Table Data Contributor",
        "monitoringMetricsPublisher": "Monitoring Metrics Publisher",
    }
    assert assignments["appTelemetryRole"]["properties"]["principalId"] == "appPrincipalId"
    dead_letter = assignments["eventGridDeadLetterRole"]["properties"]
    assert dead_letter["principalId"] == "eventGridPrincipalId"
    assert dead_letter["roleDefinitionId"]["function"]["parameters"]["resource_name_1"] == "storageBlobDataContributor"
    container = parsed(rbac)["resources"]["deadLetterContainer"]
    assert container["existing"] and container["type"].endswith("blobServices/containers")
    (call,) = module_calls("app/rbac.bicep")
    assert accessor(call["params"]["eventGridPrincipalId"]) == "systemTopic.outputs.principalId"
    assert call["params"]["userPrincipalId"] == "principalId"  # AZURE_PRINCIPAL_ID: local debugging
    others = assignments["sourceTopicDeadLetterRoles"]["properties"]
    assert others["roleDefinitionId"]["function"]["parameters"]["resource_name_1"] == "storageBlobDataContributor"
    assert "sourceTopics" in json.dumps(call["params"]["sourceTopicPrincipalIds"])


def test_every_other_source_subscription_gets_its_own_system_topic():
    main = parsed(INFRA / "main.bicep")
    module = main["modules"]["sourceTopics"]
    assert module["detail"]["path"] == "app/source-events.bicep"
    assert module["config"]["loop_type"]["detail"]["array_name"] == "otherSourceSubscriptions"
    assert body(module)["scope"]["function"]["type"] == "subscription"
    assert "subscriptionId" in json.dumps(variable(INFRA / "main.bicep", "otherSourceSubscriptions"))
    events = parsed(APP / "source-events.bicep")
    assert set(events["resources"]) == {"group"} and set(events["modules"]) == {"topic"}
    assert body(events["modules"]["topic"])["params"]["create"] is True
    assert "EVENTGRID_SOURCE_TOPICS" in main["outputs"]


def test_custom_roles_hold_exactly_the_compute_actions_the_code_calls():
    arm = (ROOT / "shared" / "arm.py").read_text()
    calls = set(re.findall(r"client\.(\w+\.\w+)\(", arm))  # the SDK's operations
    # requests sent raw through the client: each method, on each resource type arm.py names
    kinds = re.findall(r'"/providers/Microsoft\.Compute/(\w+)"', arm)
    calls |= {f"{method} {kind}" for method in re.findall(r'HttpRequest\("(\w+)"', arm) for kind in kinds}
    assert calls == set(ARM_CALL_ACTIONS), f"shared/arm.py calls changed: {sorted(calls)}; update roles.bicep"
    needed = set().union(*ARM_CALL_ACTIONS.values())

    roles = APP / "roles.bicep"
    granted = {name: set(variable(roles, name)) for name in EXPECTED_ROLE_ACTIONS}
    assert granted == EXPECTED_ROLE_ACTIONS
    assert set().union(*granted.values()) == needed
    definitions = resources(roles, "Microsoft.Authorization/roleDefinitions")
    assert len(definitions) == 4
    used = set()
    for element in definitions.values():
        properties = body(element)["properties"]
        assert properties["type"] == "CustomRole"
        ((permission),) = properties["permissions"]
        assert permission["notActions"] == permission["notDataActions"] == []
        # data actions: only the diff method's reads through a SAS that takes an Entra token
        expected_data = "snapshotAccessDataActions" if permission["actions"] == "snapshotAccessActions" else []
        assert permission["dataActions"] == expected_data
        used.add(permission["actions"])
    assert used == set(EXPECTED_ROLE_ACTIONS)
    assert variable(roles, "snapshotAccessDataActions") == ["Microsoft.Compute/snapshots/download/action"]
    assert "*" not in "".join(set().union(*granted.values()))


def test_compute_roles_are_assigned_at_the_source_and_target_scopes_not_wider():
    main = parsed(INFRA / "main.bicep")["modules"]
    loops = {
        name: (
            module["config"]["loop_type"]["detail"]["array_name"],
            accessor(body(module)["params"]["roleDefinitionGuid"]),
        )
        for name, module in main.items()
        if module["detail"]["path"].startswith("app/rbac/")
    }
    assert loops == {
        "sourceReadOnSubscriptions": ("sourceSubscriptionScopes", "roles.outputs.sourceReaderRoleGuid"),
        "sourceReadOnGroups": ("sourceGroupScopes", "roles.outputs.sourceReaderRoleGuid"),
        "copyWriteOnSubscriptions": ("targetSubscriptionScopes", "roles.outputs.copyWriterRoleGuid"),
        "copyWriteOnGroups": ("targetGroupScopes", "roles.outputs.copyWriterRoleGuid"),
        "operationReadOnSubscriptions": ("operationSubscriptions", "roles.outputs.operationReaderRoleGuid"),
        "snapshotAccessOnSubscriptions": ("diffSubscriptionScopes", "roles.outputs.snapshotAccessRoleGuid"),
        "snapshotAccessOnGroups": ("diffGroupScopes", "roles.outputs.snapshotAccessRoleGuid"),
    }
    # the snapshot access role only where a policy's targets use the diff method
    diff = json.dumps(variable(INFRA / "main.bicep", "diffPolicies"))
    assert '"operand_1": "method", "operand_2": "diff"' in diff
    operations = json.dumps(variable(INFRA / "main.bicep", "operationSubscriptions"))
    assert "targetSubscriptionList" in operations and "diffSubscriptionEntries" in operations
    for name in ("sourceReadOnGroups", "copyWriteOnGroups"):
        assert main[name]["detail"]["path"] == "app/rbac/resource-group-assignment.bicep"
        assert body(main[name])["scope"]["function"]["type"] == "resource_group"
    for name in ("sourceReadOnSubscriptions", "copyWriteOnSubscriptions", "operationReadOnSubscriptions"):
        assert main[name]["detail"]["path"] == "app/rbac/subscription-assignment.bicep"
    # The writer role goes to the copy targets, which default to the source scopes: from the
    # old settings, or from each policy target (a group id, a group name, or beside the source).
    targets = json.dumps(variable(INFRA / "main.bicep", "targetScopeList"))
    assert "settingsTargetScopes" in targets and "policyTargetScopes" in targets
    assert "sourceScopeList" in json.dumps(variable(INFRA / "main.bicep", "settingsTargetScopes"))
    by_policy = json.dumps(variable(INFRA / "main.bicep", "policyTargetScopes"))
    assert all(name in by_policy for name in ("policyGroupIds", "policyGroupsByName", "sourceScopeList"))


# --- Event Grid ----------------------------------------------------------------------------


def test_system_topic_is_the_subscriptions_own_or_an_existing_one_reused():
    topic_file = APP / "eventgrid-topic.bicep"
    created = parsed(topic_file)["resources"]["createdTopic"]
    assert created["config"]["condition"] == "create"
    topic = body(created)
    assert topic["location"] == "global"
    assert topic["identity"] == {"type": "SystemAssigned"}  # dead-letters with it
    assert topic["properties"]["topicType"] == "Microsoft.Resources.Subscriptions"
    assert topic["properties"]["source"]["operator"]["operands"]["operand_2"] == "id"  # subscription().id
    reused = parsed(topic_file)["resources"]["reusedTopic"]
    assert reused["existing"] is True
    assert reused["config"]["condition"] == {"operator": {"type": "not", "operands": {"bool_value": "create"}}}
    assert "reusedTopic" in json.dumps(parsed(topic_file)["outputs"]["principalId"])

    main = INFRA / "main.bicep"
    (call,) = module_calls("app/eventgrid-topic.bicep")
    assert call["params"]["create"] == {"operator": {"type": "not", "operands": {"bool_value": "reuseSystemTopic"}}}
    assert call["scope"]["function"]["parameters"]["resource_group_name"] == "systemTopicResourceGroup"
    assert param_default(main, "existingSystemTopicName") == ""
    assert "existingSystemTopicResourceGroup" in json.dumps(variable(main, "systemTopicResourceGroup"))
    assert "existingSystemTopicName" in json.dumps(variable(main, "reuseSystemTopic"))


def test_event_subscription_delivers_only_snapshot_writes_and_dead_letters_to_storage(function_names):
    path = APP / "event-subscription.bicep"
    subscription = only(path, "Microsoft.EventGrid/systemTopics/eventSubscriptions")["properties"]
    assert subscription["eventDeliverySchema"] == "EventGridSchema"
    destination = subscription["destination"]
    assert destination["endpointType"] == "AzureFunction"
    assert destination["properties"]["resourceId"] == "${functionAppId}/functions/${functionName}"
    assert destination["properties"]["maxEventsPerBatch"] == 1
    assert variable(path, "functionName") == "on_snapshot_written"
    assert function_names["on_snapshot_written"] == "eventGridTrigger"

    assert subscription["filter"]["includedEventTypes"] == ["Microsoft.Resources.ResourceWriteSuccess"]
    assert variable(path, "operationFilter") == {
        "operatorType": "StringIn",
        "key": "data.operationName",
        "values": ["Microsoft.Compute/snapshots/write"],
    }
    assert variable(path, "scopeFilter") == {
        "operatorType": "StringBeginsWith",
        "key": "subject",
        "values": "scopeList",
    }
    filters = json.dumps(subscription["filter"]["advancedFilters"])
    assert "operationFilter" in filters and "scopeFilter" in filters

    assert subscription["retryPolicy"] == {
        "maxDeliveryAttempts": "maxDeliveryAttempts",
        "eventTimeToLiveInMinutes": "eventTimeToLiveInMinutes",
    }
    assert param_default(path, "eventTimeToLiveInMinutes") == 1440
    assert param_default(path, "maxDeliveryAttempts") == 30
    assert decorators(path, "maxDeliveryAttempts")["max_value"] == 30

    dead_letter = subscription["deadLetterWithResourceIdentity"]
    assert dead_letter["identity"] == {"type": "SystemAssigned"}  # the system topic's identity
    assert dead_letter["deadLetterDestination"] == {
        "endpointType": "StorageBlob",
        "properties": {"resourceId": "deadLetterStorageAccountId", "blobContainerName": "deadLetterContainerName"},
    }
    assert "deadLetterDestination" not in subscription  # never the key-based form


def test_event_subscription_waits_for_the_code_main_bicep_skips_it_by_default():
    main = INFRA / "main.bicep"
    module = parsed(main)["modules"]["eventSubscription"]
    assert module["config"]["condition"] == "deployEventSubscription"
    assert param_default(main, "deployEventSubscription") is False
    parameters = json.loads((INFRA / "main.parameters.json").read_text())["parameters"]
    assert parameters["deployEventSubscription"]["value"] == "${SNAPCOPY_DEPLOY_EVENT_SUBSCRIPTION=false}"


# --- azd: azure.yaml, parameters, outputs --------------------------------------------------


def test_azure_yaml_deploys_service_api_as_a_python_function_with_executable_hooks():
    project = yaml.safe_load((ROOT / "azure.yaml").read_text())
    assert project["services"] == {"api": {"project": ".", "language": "python", "host": "function"}}
    assert project["infra"] == {"provider": "bicep", "path": "infra", "module": "main"}
    assert set(project["hooks"]) == {"preprovision", "postdeploy", "predown"}
    for name, hook in project["hooks"].items():
        script = ROOT / hook["run"]
        assert script.is_file(), f"{name}: {script}"
        assert script.stat().st_mode & stat.S_IXUSR, f"{name}: {script} is not executable"
        assert hook["shell"] == "sh" and script.read_text().startswith("#!/bin/sh\n")
        assert hook["continueOnError"] is False


def test_main_parameters_come_from_the_azd_environment():
    parameters = json.loads((INFRA / "main.parameters.json").read_text())["parameters"]
    values = {name: entry["value"] for name, entry in parameters.items()}
    assert values["environmentName"] == "${AZURE_ENV_NAME}"
    assert values["location"] == "${AZURE_LOCATION}"
    assert values["principalId"] == "${AZURE_PRINCIPAL_ID}"
    assert values["targetRegions"] == "${COPY_TARGET_REGIONS}"
    assert values["sourceScopes"] == "${COPY_SOURCE_SCOPES}"
    assert values["targetResourceGroup"] == "${COPY_TARGET_RESOURCE_GROUP}"
    assert values["copyPoliciesJson"] == "${COPY_POLICIES}"
    declared = parsed(INFRA / "main.bicep")["parameters"]
    assert set(values) <= set(declared)
    required = {name for name, param in declared.items() if param["default"] is None}
    assert required <= set(values), f"main.bicep params azd would have to prompt for: {required - set(values)}"


def test_outputs_give_azd_and_the_hooks_what_they_read():
    outputs = set(parsed(INFRA / "main.bicep")["outputs"])
    assert {
        "AZURE_LOCATION",
        "AZURE_TENANT_ID",
        "AZURE_RESOURCE_GROUP",
        "RESOURCE_GROUP",
        "SERVICE_API_NAME",
        "AZURE_FUNCTION_APP_NAME",
        "STATE_TABLE_ENDPOINT",
    } <= outputs
    azd_provided = {"AZURE_ENV_NAME", "AZURE_SUBSCRIPTION_ID", "AZURE_LOCATION", "AZURE_PRINCIPAL_ID"}
    user_settings = {
        "COPY_TARGET_REGIONS",
        "COPY_SOURCE_SCOPES",
        "COPY_TARGET_RESOURCE_GROUP",
        "COPY_POLICIES",
        "SNAPCOPY_EXISTING_SYSTEM_TOPIC_NAME",
        "SNAPCOPY_EXISTING_SYSTEM_TOPIC_RESOURCE_GROUP",
        "SNAPCOPY_FUNCTION_WAIT_SECONDS",
    }
    for hook in HOOKS.glob("*.sh"):
        read = set(re.findall(r"\$\{?([A-Z][A-Z0-9_]{3,})", hook.read_text())) | set(
            re.findall(r"^\s+([A-Z][A-Z0-9_]{3,}) ", hook.read_text(), re.MULTILINE)
        )
        unknown = read - outputs - azd_provided - user_settings
        assert not unknown, f"{hook.name} reads {sorted(unknown)}, which nothing provides"


# --- the hooks, against a stand-in az ------------------------------------------------------

_FAKE_AZ = """#!/bin/sh
printf '%s\\n' "$*" >> "$AZ_LOG"
case "$1 $2" in
"eventgrid system-topic") printf '%b' "${FAKE_TOPICS:-}" ;;
"role assignment") [ "$3" = list ] && printf '%s\\n' "${FAKE_ASSIGNMENTS:-}" ;;
"rest --method") [ -z "${FAKE_REST_FAILS:-}" ] || exit 1 ;;
esac
exit 0
"""

SUBSCRIPTION = "00000000-0000-4000-8000-000000000001"
GROUP = f"/subscriptions/{SUBSCRIPTION}/resourceGroups/rg-dev"


@pytest.fixture
def fake_az(tmp_path: Path) -> dict[str, str]:
    """An environment whose PATH has a stand-in `az` that logs its arguments and no `azd`."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    az = bin_dir / "az"
    az.write_text(_FAKE_AZ)
    az.chmod(0o755)
    tools = ":".join(
        str(Path(shutil.which(t) or "/bin/sh").parent) for t in ("sh", "awk", "grep", "tr", "cut", "sleep")
    )
    return {
        "PATH": f"{bin_dir}:{tools}",
        "AZ_LOG": str(tmp_path / "az.log"),
        "AZURE_ENV_NAME": "dev",
        "AZURE_SUBSCRIPTION_ID": SUBSCRIPTION,
    }


def run_hook(name: str, env: dict[str, str]) -> tuple[subprocess.CompletedProcess[str], list[str]]:
    result = subprocess.run(["sh", str(HOOKS / name)], env=env, capture_output=True, text=True, timeout=60, check=False)
    log = Path(env["AZ_LOG"])
    return result, log.read_text().splitlines() if log.exists() else []


# what `azd provision` leaves in the environment for the postdeploy hook
POSTDEPLOY_OUTPUTS = {
    "AZURE_FUNCTION_APP_ID": f"{GROUP}/providers/Microsoft.Web/sites/func",
    "AZURE_STORAGE_ACCOUNT_ID": f"{GROUP}/providers/Microsoft.Storage/storageAccounts/st",
    "EVENTGRID_SYSTEM_TOPIC_NAME": "evgt",
    "EVENTGRID_SYSTEM_TOPIC_RESOURCE_GROUP": "rg-topic",
    "EVENTGRID_SUBSCRIPTION_NAME": "snapcopy-abc",
    "EVENTGRID_DEADLETTER_CONTAINER": "eventgrid-deadletter",
}


def test_postdeploy_deploys_the_event_subscription_module_with_every_parameter_it_needs(fake_az):
    env = {
        **fake_az,
        **POSTDEPLOY_OUTPUTS,
        "COPY_SOURCE_SCOPES": f"/subscriptions/{SUBSCRIPTION}/resourceGroups/prod",
    }
    result, calls = run_hook("postdeploy.sh", env)
    assert result.returncode == 0, result.stderr
    (wait,) = [c for c in calls if c.startswith("rest --method get")]
    assert f"{env['AZURE_FUNCTION_APP_ID']}/functions/on_snapshot_written?" in wait
    (deploy,) = [c for c in calls if c.startswith("deployment group create")]
    assert calls.index(deploy) > calls.index(wait)  # only once the function exists
    assert "--resource-group rg-topic " in deploy
    assert f"--template-file {INFRA / 'app' / 'event-subscription.bicep'} " in deploy
    passed = dict(re.findall(r"(\w+)=(\S+)", deploy.split("--parameters ", 1)[1]))
    declared = parsed(APP / "event-subscription.bicep")["parameters"]
    required = {name for name, param in declared.items() if param["default"] is None}
    assert required <= set(passed) <= set(declared)
    assert passed["functionAppId"] == env["AZURE_FUNCTION_APP_ID"]
    assert passed["sourceScopes"] == env["COPY_SOURCE_SCOPES"]
    # main.bicep's own (optional) copy of the module gets the same parameters.
    (call,) = module_calls("app/event-subscription.bicep")
    assert set(call["params"]) == set(passed)


def test_postdeploy_gives_up_when_the_function_never_appears(fake_az):
    env = {
        **fake_az,
        "FAKE_REST_FAILS": "1",
        "SNAPCOPY_FUNCTION_WAIT_SECONDS": "0",
        "AZURE_FUNCTION_APP_ID": "/subscriptions/x/resourceGroups/rg/providers/Microsoft.Web/sites/f",
        "AZURE_STORAGE_ACCOUNT_ID": "id",
        "EVENTGRID_SYSTEM_TOPIC_NAME": "evgt",
        "EVENTGRID_SYSTEM_TOPIC_RESOURCE_GROUP": "rg",
        "EVENTGRID_SUBSCRIPTION_NAME": "snapcopy-abc",
        "EVENTGRID_DEADLETTER_CONTAINER": "dl",
    }
    result, calls = run_hook("postdeploy.sh", env)
    assert result.returncode == 1
    assert "on_snapshot_written is not listed" in result.stderr
    assert not [c for c in calls if c.startswith("deployment")]


SECOND_SOURCE = "0a1b2c3d-4e5f-4a6b-8c7d-9e0f1a2b3c4d"


def _topic(name: str, group: str, identity: str = "SystemAssigned") -> str:
    return f"{name}\\t{group}\\t/subscriptions/{SUBSCRIPTION}\\tMicrosoft.Resources.Subscriptions\\t{identity}\\n"


@pytest.mark.parametrize(
    ("extra", "code", "message"),
    [
        ({}, 0, "preprovision checks passed"),
        ({"FAKE_TOPICS": _topic("evgt-snapcopy-x", "rg-dev")}, 0, "preprovision checks passed"),
        (
            {"FAKE_TOPICS": _topic("defender-topic", "rg-security")},
            1,
            "SNAPCOPY_EXISTING_SYSTEM_TOPIC_NAME defender-topic",
        ),
        (
            {
                "FAKE_TOPICS": _topic("defender-topic", "rg-security", identity=""),
                "SNAPCOPY_EXISTING_SYSTEM_TOPIC_NAME": "defender-topic",
                "SNAPCOPY_EXISTING_SYSTEM_TOPIC_RESOURCE_GROUP": "rg-security",
            },
            1,
            "--identity systemassigned",
        ),
        (
            {
                "FAKE_TOPICS": _topic("defender-topic", "RG-Security", identity="SystemAssigned, UserAssigned"),
                "SNAPCOPY_EXISTING_SYSTEM_TOPIC_NAME": "defender-topic",
                "SNAPCOPY_EXISTING_SYSTEM_TOPIC_RESOURCE_GROUP": "rg-security",
            },
            0,
            "reusing the system topic defender-topic",
        ),
        ({"COPY_SOURCE_SCOPES": "/subscriptions/not-a-guid"}, 1, "COPY_SOURCE_SCOPES: '/subscriptions/not-a-guid'"),
        ({"COPY_TARGET_REGIONS": "westus3,West US"}, 1, "COPY_TARGET_REGIONS"),
        ({"COPY_TARGET_RESOURCE_GROUP": "/subscriptions/x/rg"}, 1, "COPY_TARGET_RESOURCE_GROUP"),
        ({"COPY_TARGET_REGIONS": "", "COPY_POLICIES": '[{"name": "p"}]'}, 0, "preprovision checks passed"),
        ({"COPY_POLICIES": '[{"name": "p"}]'}, 1, "COPY_POLICIES and COPY_TARGET_REGIONS are both set"),
        ({"COPY_TARGET_REGIONS": "", "COPY_POLICIES": "{}"}, 1, "COPY_POLICIES: not a JSON array"),
        ({"COPY_TARGET_REGIONS": ""}, 1, "neither COPY_TARGET_REGIONS nor COPY_POLICIES"),
        (
            {
                "FAKE_TOPICS": _topic("evgt-snapcopy-x", "rg-dev") + _topic("defender-topic", "rg-security"),
                "COPY_SOURCE_SCOPES": f"/subscriptions/{SUBSCRIPTION},/subscriptions/{SECOND_SOURCE}",
            },
            1,
            f"source subscription {SECOND_SOURCE} already has an Event Grid system topic",
        ),
    ],
    ids=[
        "no-topic",
        "own-topic",
        "foreign-topic",
        "reuse-without-identity",
        "reuse",
        "bad-scope",
        "bad-region",
        "bad-target",
        "policies",
        "policies-and-regions",
        "policies-not-an-array",
        "no-targets",
        "other-subscription-has-a-topic",
    ],
)
def test_preprovision_checks_settings_and_the_one_system_topic_per_subscription(fake_az, extra, code, message):
    result, _ = run_hook("preprovision.sh", {**fake_az, "COPY_TARGET_REGIONS": "westus3", **extra})
    assert result.returncode == code, result.stdout + result.stderr
    assert message in result.stdout + result.stderr


def test_predown_removes_what_azd_down_leaves_behind(fake_az):
    role_ids = ",".join(
        f"/subscriptions/{SUBSCRIPTION}/providers/Microsoft.Authorization/roleDefinitions/r{i}" for i in range(3)
    )
    env = {
        **fake_az,
        "EVENTGRID_SYSTEM_TOPIC_REUSED": "True",
        "EVENTGRID_SYSTEM_TOPIC_NAME": "defender-topic",
        "EVENTGRID_SYSTEM_TOPIC_RESOURCE_GROUP": "rg-security",
        "EVENTGRID_SUBSCRIPTION_NAME": "snapcopy-abc",
        "AZURE_MANAGED_IDENTITY_PRINCIPAL_ID": "pid",
        "SNAPCOPY_RBAC_SUBSCRIPTIONS": SUBSCRIPTION,
        "SNAPCOPY_ROLE_DEFINITION_IDS": role_ids,
        "FAKE_ASSIGNMENTS": "/a/1\n/a/2",
    }
    result, calls = run_hook("predown.sh", env)
    assert result.returncode == 0, result.stderr
    assert any(
        c.startswith("resource delete --ids") and c.endswith("eventSubscriptions/snapcopy-abc --output none")
        for c in calls
    )
    assert [c for c in calls if c.startswith("role assignment delete")] == [
        "role assignment delete --ids /a/1 --output none",
        "role assignment delete --ids /a/2 --output none",
    ]
    deletes = [c for c in calls if c.startswith("rest --method delete")]
    assert len(deletes) == 3
    assert calls.index(deletes[0]) > max(i for i, c in enumerate(calls) if c.startswith("role assignment delete"))


OTHER = "0a1b2c3d-4e5f-4a6b-8c7d-9e0f1a2b3c4d"
THIRD = "11111111-2222-4333-8444-555555555555"
SOURCE_TOPICS = f"{OTHER}/rg-dev-snapcopy-events/evgt-snapcopy-x,{THIRD}/rg-dev-snapcopy-events/evgt-snapcopy-x"


def test_postdeploy_subscribes_the_function_to_every_other_source_subscriptions_topic(fake_az):
    env = {
        **fake_az,
        **POSTDEPLOY_OUTPUTS,
        "EVENTGRID_SOURCE_TOPICS": SOURCE_TOPICS,
    }
    result, calls = run_hook("postdeploy.sh", env)
    assert result.returncode == 0, result.stderr
    deploys = [c for c in calls if c.startswith("deployment group create")]
    assert len(deploys) == 3
    assert "--subscription" not in deploys[0] and "systemTopicName=evgt " in deploys[0]
    for deploy, subscription in zip(deploys[1:], (OTHER, THIRD), strict=True):
        assert f"--subscription {subscription} --resource-group rg-dev-snapcopy-events " in deploy
        assert "systemTopicName=evgt-snapcopy-x " in deploy and "deadLetterStorageAccountId=" in deploy


def test_predown_deletes_the_other_source_subscriptions_topic_groups(fake_az):
    result, calls = run_hook("predown.sh", {**fake_az, "EVENTGRID_SOURCE_TOPICS": SOURCE_TOPICS})
    assert result.returncode == 0, result.stderr
    assert [c for c in calls if c.startswith("group delete")] == [
        f"group delete --subscription {OTHER} --name rg-dev-snapcopy-events --yes --no-wait --output none",
        f"group delete --subscription {THIRD} --name rg-dev-snapcopy-events --yes --no-wait --output none",
    ]


def test_hooks_pass_shellcheck_as_posix_sh():
    shellcheck = TOOLS_BIN / "shellcheck"
    if not shellcheck.exists():
        pytest.fail(f"{shellcheck} is missing: run `make .venv-tools/.installed` (make test does)")
    hooks = sorted(str(path) for path in HOOKS.glob("*.sh"))
    result = subprocess.run(
        [str(shellcheck), "-s", "sh", "-x", *hooks], cwd=HOOKS, capture_output=True, text=True, check=False
    )
    assert result.returncode == 0, result.stdout


# --- checkov -------------------------------------------------------------------------------


def test_checkov_finds_nothing_and_every_skip_is_justified_and_used():
    checkov = TOOLS_BIN / "checkov"
    if not checkov.exists():
        pytest.fail(f"{checkov} is missing: run `make .venv-tools/.installed` (make test does)")
    started = time.monotonic()
    result = subprocess.run(
        [str(checkov), "-d", str(INFRA), "--framework", "bicep", "--compact", "--skip-download", "-o", "json"],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
        env={**os.environ, "BC_SKIP_MAPPING": "TRUE"},
    )
    report = json.loads(result.stdout)
    elapsed = time.monotonic() - started
    summary = report["summary"]
    failed = [(c["check_id"], c["resource"]) for c in report["results"]["failed_checks"]]
    assert summary["failed"] == 0, failed
    assert summary["parsing_errors"] == 0, report["results"]["parsing_errors"]  # checkov read every file
    assert summary["resource_count"] >= 30 and summary["passed"] >= 20
    skipped = {c["check_id"]: c["check_result"]["suppress_comment"] for c in report["results"]["skipped_checks"]}
    for check, reason in skipped.items():
        assert len(reason) > 40, f"{check}: a skip needs a real justification, got {reason!r}"
    written = {m for text in infra_texts().values() for m in re.findall(r"checkov:skip=([A-Z0-9_]+):", text)}
    assert written == set(skipped), f"unused skips: {written - set(skipped)}"
    assert elapsed < 60, f"checkov took {elapsed:.0f} s"


# --- azure-functions-doctor ----------------------------------------------------------------

# Doctor rules that do not pass on snapcopy, and why that is right.
DOCTOR_NOT_PASSING = {
    # It looks for `app.register_functions(blueprint)` by the Blueprint's variable name;
    # function_app.py registers `triggers.blueprint` and `api.blueprint` (module attributes).
    # That they are registered is asserted through app.get_functions() (function_names).
    "check_blueprint_registration": "warn",
    # It reads app settings from Bicep only as `name: '...'` / `value: '...'` literals; ours
    # is the component's ConnectionString property (see the app-settings test above).
    "check_app_insights": "warn",
    # host.json keeps the host at Warning and function logs at Information on purpose
    # (README, Monitoring).
    "check_host_json_log_level_conflict": "warn",
    # It reads functionAppConfig.runtime and .deployment.storage from ARM JSON only, never
    # Bicep; the Flex runtime and identity-based deployment storage are asserted above.
    "check_flex_runtime_config": "skip",
    "check_flex_deployment_storage": "skip",
    "check_functions_runtime_lifecycle": "skip",
    # Not applicable: Flex Consumption (no FUNCTIONS_EXTENSION_VERSION, no linuxFxVersion),
    # no Durable Functions, no local.settings.json in the repository, no ASGI/WSGI framework
    # in the package (FastAPI serves only local/, the offline world, which is not deployed).
    "check_functions_extension_version": "skip",
    "check_linux_fx_version": "skip",
    "check_durabletask_config": "skip",
    "check_local_settings_git_tracked": "skip",
    "check_asgi_wsgi_exposure": "skip",
}


def _deployed_package(destination: Path) -> set[str]:
    """Copy what `azd deploy` ships (the repository less .funcignore) and infra/ beside it."""
    patterns = [
        line.strip().rstrip("/")
        for line in (ROOT / ".funcignore").read_text().splitlines()
        if line.strip() and not line.startswith("#")
    ]

    def ignored(name: str) -> bool:
        return any(fnmatch.fnmatch(name, pattern) for pattern in patterns)

    shipped: set[str] = set()
    for folder, subfolders, files in os.walk(ROOT):
        subfolders[:] = [name for name in subfolders if not ignored(name)]  # never walk .venv
        for name in files:
            if ignored(name):
                continue
            relative = (Path(folder) / name).relative_to(ROOT)
            shipped.add(relative.as_posix())
            (destination / relative).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(ROOT / relative, destination / relative)
    shutil.copytree(INFRA, destination / "infra")  # the doctor reads the target config from it
    shutil.copy2(ROOT / ".funcignore", destination / ".funcignore")
    return shipped


def test_azure_functions_doctor_passes_on_the_package_azd_deploys(tmp_path):
    from azure_functions_doctor.doctor import Doctor

    shipped = _deployed_package(tmp_path)
    assert {"function_app.py", "host.json", "requirements.txt", "shared/triggers.py"} <= shipped
    assert {top.split("/")[0] for top in shipped} == {"function_app.py", "host.json", "requirements.txt", "shared"}

    results = Doctor(str(tmp_path), profile="deploy", target_python="3.11").run_all_checks()
    statuses = {item["rule_id"]: item["status"] for section in results for item in section["items"]}
    assert {"check_python_version", "check_requirements_txt", "check_host_json", "check_extension_bundle_v4"} <= set(
        statuses
    )
    problems = {
        rule: status for rule, status in statuses.items() if status != "pass" and DOCTOR_NOT_PASSING.get(rule) != status
    }
    assert not problems, problems
    # The doctor found the Flex Consumption app in infra/ (it checks Flex-only settings then).
    assert statuses["check_flex_deprecated_settings"] == "pass"


@pytest.fixture(scope="module")
def function_names() -> dict[str, str]:
    """The app's functions and their trigger types, as the Functions host indexes them."""
    from local.host import FunctionHost  # indexes function_app once per process

    names: dict[str, str] = {}
    for name, function in FunctionHost().functions.items():
        trigger = function.get_trigger()
        assert trigger is not None
        names[str(name)] = str(trigger.type)
    return names
