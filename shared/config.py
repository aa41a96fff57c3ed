"""Settings from app settings / environment variables, validated once at start-up.

Every error names the setting, the value it had and what was expected, so that a
misconfigured deployment says what to fix in the first log line it writes.

It must not read the environment or the file system: `load_settings` is handed a mapping
(shared/runtime.py reads `os.environ` and checks the CA bundle exists).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import timedelta
from functools import cached_property
from urllib.parse import urlparse

from shared.errors import ConfigError
from shared.ids import (
    REGION_RE,
    InvalidResourceId,
    ResourceId,
    Scope,
    TargetResourceGroup,
)
from shared.policies import Method, Policy, implicit_policy, parse_policies

DEFAULT_POLL_SCHEDULE = "0 */1 * * * *"
DEFAULT_SWEEP_SCHEDULE = "0 17 * * * *"  # hourly, off the top of the hour
DEFAULT_PRUNE_SCHEDULE = "0 41 * * * *"  # hourly, away from the sweep
DEFAULT_ARM_ENDPOINT = "https://management.azure.com"
AZURE_COPY_CAP = 100  # Azure's limit: copies in flight per subscription per target region
CREDENTIAL_KINDS = ("default", "managed-identity")
DEFAULT_PARALLEL_RANGES = 8  # DIFF_MAX_PARALLEL_RANGES: range copies at once per instance

_TABLE_RE = re.compile(r"^[A-Za-z][A-Za-z0-9]{2,62}$")
_NCRONTAB_FIELD_RE = re.compile(r"^[0-9*/,\-A-Za-z]+$")


@dataclass(frozen=True)
class Settings:
    """Everything snapcopy reads from its environment."""

    target_regions: tuple[str, ...]
    target_resource_group: TargetResourceGroup
    source_scopes: tuple[Scope, ...]
    table_endpoint: str | None
    connection_string: str | None
    table_name: str
    arm_endpoint: str
    arm_credential: str
    arm_ca_bundle: str | None
    poll_schedule: str
    max_copies_per_region: int
    max_start_attempts: int
    stuck_after: timedelta = timedelta(minutes=120)
    max_event_attempts: int = 10
    fair_wait: timedelta = timedelta(hours=12)
    copy_policies: tuple[Policy, ...] = ()  # COPY_POLICIES; empty: the implicit policy
    rpo_alert: timedelta = timedelta(minutes=1500)  # RPO_ALERT_MINUTES: a chain further behind is breached
    notify_endpoint: str | None = None  # NOTIFY_TOPIC_ENDPOINT: the Event Grid topic notices go to
    notify_ca_bundle: str | None = None  # NOTIFY_CA_BUNDLE: a CA to trust for it (offline topic only)
    app_id: str = ""  # the function app's resource id (from the platform's WEBSITE_* settings), if known
    diff_queue_endpoint: str | None = None  # DIFF_QUEUE_ENDPOINT: the chunk queue's service (the diff method)
    diff_parallel_ranges: int = DEFAULT_PARALLEL_RANGES  # DIFF_MAX_PARALLEL_RANGES

    @property
    def copies_by_diff(self) -> bool:
        """Whether any policy target copies by the diff method."""
        return any(target.method is Method.DIFF for policy in self.policies for target in policy.targets)

    @cached_property
    def policies(self) -> tuple[Policy, ...]:
        """COPY_POLICIES, or the one implicit policy of COPY_TARGET_REGIONS and
        COPY_TARGET_RESOURCE_GROUP (made once per Settings: every chain's plan asks)."""
        return self.copy_policies or (implicit_policy(self.target_regions, self.target_resource_group),)

    def in_scope(self, resource: ResourceId) -> bool:
        """Whether any policy may select `resource` by its scopes (its own, else
        COPY_SOURCE_SCOPES; none at all: everything the identity sees)."""
        for policy in self.policies:
            scopes = policy.scopes or self.source_scopes
            if not scopes or any(scope.contains(resource) for scope in scopes):
                return True
        return False


def _get(env: Mapping[str, str], name: str) -> str | None:
    value = env.get(name)
    if value is None:
        return None
    value = value.strip()
    return value or None


def _csv(value: str | None) -> list[str]:
    return [part.strip() for part in (value or "").split(",") if part.strip()]


def _int(env: Mapping[str, str], name: str, default: int, low: int, high: int) -> int:
    raw = _get(env, name)
    if raw is None:
        return default
    try:
        number = int(raw)
    except ValueError:
        raise ConfigError(name, raw, f"a whole number from {low} to {high}") from None
    if not low <= number <= high:
        raise ConfigError(name, raw, f"a whole number from {low} to {high}")
    return number


def _schedule(env: Mapping[str, str], name: str, default: str, example: str) -> str:
    raw = _get(env, name) or default
    fields = raw.split()
    if len(fields) != 6 or not all(_NCRONTAB_FIELD_RE.match(field) for field in fields):
        raise ConfigError(name, raw, f"an NCRONTAB expression with six fields, e.g. {example}")
    return raw


def poll_schedule(env: Mapping[str, str]) -> str:
    """The poll timer's NCRONTAB schedule (six fields, seconds first), read at import time."""
    return _schedule(env, "POLL_SCHEDULE", DEFAULT_POLL_SCHEDULE, "'0 */1 * * * *' (every minute)")


def prune_schedule(env: Mapping[str, str]) -> str:
    """The retention timer's NCRONTAB schedule (hourly by default), read at import time."""
    return _schedule(env, "PRUNE_SCHEDULE", DEFAULT_PRUNE_SCHEDULE, "'0 41 * * * *' (hourly)")


def sweep_schedule(env: Mapping[str, str]) -> str:
    """The reconciliation sweep's NCRONTAB schedule, read at import time."""
    return _schedule(env, "SWEEP_SCHEDULE", DEFAULT_SWEEP_SCHEDULE, "'0 17 * * * *' (hourly)")


def _regions(env: Mapping[str, str]) -> tuple[str, ...]:
    raw = _get(env, "COPY_TARGET_REGIONS")
    regions = [region.lower() for region in _csv(raw)]
    if not regions:
        raise ConfigError("COPY_TARGET_REGIONS", raw, "a comma-separated list of Azure regions, e.g. 'westus3'")
    for region in regions:
        if not REGION_RE.fullmatch(region):
            raise ConfigError("COPY_TARGET_REGIONS", raw, f"region names like 'westus3'; {region!r} is not one")
    if len(set(regions)) != len(regions):
        raise ConfigError("COPY_TARGET_REGIONS", raw, "each region once")
    return tuple(regions)


def _target_group(env: Mapping[str, str]) -> TargetResourceGroup:
    raw = _get(env, "COPY_TARGET_RESOURCE_GROUP")
    if raw is None:
        return TargetResourceGroup()
    try:
        return TargetResourceGroup.parse(raw)
    except InvalidResourceId as error:
        raise ConfigError(
            "COPY_TARGET_RESOURCE_GROUP",
            raw,
            f"a resource group name or /subscriptions/…/resourceGroups/… id ({error})",
        ) from None


def _scopes(env: Mapping[str, str]) -> tuple[Scope, ...]:
    raw = _get(env, "COPY_SOURCE_SCOPES")
    scopes = []
    for part in _csv(raw):
        try:
            scopes.append(Scope.parse(part))
        except InvalidResourceId as error:
            raise ConfigError("COPY_SOURCE_SCOPES", raw, f"comma-separated scopes ({error})") from None
    return tuple(scopes)


def load_settings(env: Mapping[str, str]) -> Settings:
    """Validate every setting in `env` (the app settings, as the composition root read them);
    raise ConfigError naming the first bad one. Pure: reads nothing else."""

    endpoint = _get(env, "STATE_TABLE_ENDPOINT")
    connection = _get(env, "STATE_CONNECTION_STRING")
    if (endpoint is None) == (connection is None):
        raise ConfigError(
            "STATE_TABLE_ENDPOINT/STATE_CONNECTION_STRING",
            None if endpoint is None else "both set",
            "exactly one: the Table endpoint (managed identity) or a connection string (Azurite)",
        )
    if endpoint is not None and urlparse(endpoint).scheme not in ("https", "http"):
        raise ConfigError("STATE_TABLE_ENDPOINT", endpoint, "an https:// Table service URL")

    table_name = _get(env, "STATE_TABLE_NAME") or "snapcopy"
    if not _TABLE_RE.match(table_name):
        raise ConfigError("STATE_TABLE_NAME", table_name, "3-63 letters and digits, starting with a letter")

    arm_endpoint = (_get(env, "ARM_ENDPOINT") or DEFAULT_ARM_ENDPOINT).rstrip("/")
    parsed = urlparse(arm_endpoint)
    if parsed.scheme != "https" or not parsed.hostname:
        raise ConfigError("ARM_ENDPOINT", arm_endpoint, "an https:// URL (ARM requires TLS)")

    credential = (_get(env, "ARM_CREDENTIAL") or "default").lower()
    if credential not in CREDENTIAL_KINDS:
        raise ConfigError("ARM_CREDENTIAL", credential, "one of " + ", ".join(CREDENTIAL_KINDS))

    ca_bundle = _get(env, "ARM_CA_BUNDLE")  # that the file exists is checked where files are read (runtime)

    policies = _policies(env)
    settings = Settings(
        target_regions=_regions(env) if not policies else _policy_regions(policies),
        target_resource_group=_target_group(env),
        source_scopes=_scopes(env),
        table_endpoint=endpoint,
        connection_string=connection,
        table_name=table_name,
        arm_endpoint=arm_endpoint,
        arm_credential=credential,
        arm_ca_bundle=ca_bundle,
        poll_schedule=poll_schedule(env),
        max_copies_per_region=_int(env, "MAX_COPIES_PER_REGION", AZURE_COPY_CAP, 1, AZURE_COPY_CAP),
        max_start_attempts=_int(env, "COPY_MAX_START_ATTEMPTS", 5, 1, 50),
        stuck_after=timedelta(minutes=_int(env, "STUCK_AFTER_MINUTES", 120, 5, 10080)),
        max_event_attempts=_int(env, "EVENT_MAX_ATTEMPTS", 10, 1, 100),
        fair_wait=timedelta(hours=_int(env, "FAIR_WAIT_HOURS", 12, 1, 168)),
        copy_policies=policies,
        rpo_alert=timedelta(minutes=_int(env, "RPO_ALERT_MINUTES", 1500, 5, 525600)),
        notify_endpoint=_topic_endpoint(env),
        notify_ca_bundle=_get(env, "NOTIFY_CA_BUNDLE"),
        app_id=_app_id(env),
        diff_queue_endpoint=_https(env, "DIFF_QUEUE_ENDPOINT", "https://<account>.queue.core.windows.net"),
        diff_parallel_ranges=_int(env, "DIFF_MAX_PARALLEL_RANGES", DEFAULT_PARALLEL_RANGES, 1, 64),
    )
    if settings.copies_by_diff and settings.diff_queue_endpoint is None and settings.connection_string is None:
        raise ConfigError(
            "DIFF_QUEUE_ENDPOINT",
            "",
            "the queue service URL of the app's storage account (https://<account>.queue.core.windows.net): "
            "a policy target copies by the diff method, whose chunks go through a queue",
        )
    return settings


def _https(env: Mapping[str, str], name: str, example: str) -> str | None:
    """An optional https:// service URL, without a path or query."""
    raw = _get(env, name)
    if raw is None:
        return None
    parsed = urlparse(raw)
    if parsed.scheme != "https" or not parsed.hostname or parsed.path.strip("/") or parsed.query:
        raise ConfigError(name, raw, f"an https:// service URL, e.g. {example}")
    return raw.rstrip("/")


def _topic_endpoint(env: Mapping[str, str]) -> str | None:
    raw = _get(env, "NOTIFY_TOPIC_ENDPOINT")
    if raw is None:
        return None
    parsed = urlparse(raw)
    if parsed.scheme != "https" or not parsed.hostname or parsed.path.rstrip("/") != "/api/events" or parsed.query:
        raise ConfigError(
            "NOTIFY_TOPIC_ENDPOINT",
            raw,
            "an Event Grid topic endpoint: https://<topic>.<region>-1.eventgrid.azure.net/api/events",
        )
    return raw


def _app_id(env: Mapping[str, str]) -> str:
    """The function app's resource id from what App Service sets in every app
    (WEBSITE_OWNER_NAME is `<subscription>+<webspace>`); "" when run elsewhere."""
    owner, group, site = (
        _get(env, name) for name in ("WEBSITE_OWNER_NAME", "WEBSITE_RESOURCE_GROUP", "WEBSITE_SITE_NAME")
    )
    subscription = (owner or "").split("+", 1)[0]
    if not (subscription and group and site):
        return ""
    return f"/subscriptions/{subscription}/resourceGroups/{group}/providers/Microsoft.Web/sites/{site}"


def _policies(env: Mapping[str, str]) -> tuple[Policy, ...]:
    """COPY_POLICIES, alone: with it, the two settings it replaces must not be set."""
    raw = _get(env, "COPY_POLICIES")
    if raw is None:
        return ()
    clashing = [name for name in ("COPY_TARGET_REGIONS", "COPY_TARGET_RESOURCE_GROUP") if _get(env, name)]
    if clashing:
        raise ConfigError(
            "COPY_POLICIES",
            raw[:80],
            "COPY_POLICIES alone: unset COPY_TARGET_REGIONS and COPY_TARGET_RESOURCE_GROUP "
            f"(set: {', '.join(clashing)}), whose meaning a policy's targets hold",
        )
    return parse_policies(raw)


def _policy_regions(policies: tuple[Policy, ...]) -> tuple[str, ...]:
    """Every target region of every policy, in order, once."""
    return tuple(dict.fromkeys(target.region for policy in policies for target in policy.targets))
