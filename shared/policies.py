"""Replication policies: which snapshots are copied where, and how (COPY_POLICIES).

A policy selects source snapshots by scope and tags and names its targets: a region, a
resource group, a disk encryption set, a copy speed and how long copies are kept. The
JSON form is a contract other tools write (README, "Replication policies"); every field
is validated once, at start-up, with an error naming the policy, the field, the value and
what was expected. Without COPY_POLICIES, COPY_TARGET_REGIONS and COPY_TARGET_RESOURCE_GROUP
make one implicit policy that behaves exactly as they always did.

Pure: it must not read the environment, ARM or the table; config.py hands it the text.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any
from urllib.parse import urlparse

from shared.errors import ConfigError
from shared.ids import (
    REGION_RE,
    InvalidResourceId,
    Scope,
    TargetResourceGroup,
    disk_encryption_set_subscription,
)

SETTING = "COPY_POLICIES"
NAME_RE = re.compile(r"[a-z0-9-]{1,40}")
DEFAULT_NAME_TEMPLATE = "{source}-{region}"
TOKENS = ("source", "disk", "region", "time", "hash")
UNIQUE_TOKENS = ("source", "time", "hash")  # a name holds one of these, so sources do not share it
_LITERAL_RE = re.compile(r"[-A-Za-z0-9_.]*")
_TOKEN_RE = re.compile(r"\{([^{}]*)\}")
_FIELDS = {"name", "sources", "targets", "copyTags", "tags", "nameTemplate", "mode"}
_SOURCE_FIELDS = {"scopes", "tags"}
_TARGET_FIELDS = {"region", "resourceGroup", "diskEncryptionSetId", "copySpeed", "retain", "method", "storage"}
_RETAIN_FIELDS = {"count", "days"}
MAX_TAG_NAME, MAX_TAG_VALUE = 512, 256  # ARM's limits on a tag's name and value
MAX_COPY_TAGS = 49  # a policy's own tags on a copy: ARM's 50, less snapcopy's provenance tag


class CopySpeed(StrEnum):
    STANDARD = "Standard"
    ENHANCED = "Enhanced"  # creationData.provisionedBandwidthCopySpeed (API 2023-10-02 and later)


class Method(StrEnum):
    COPY_START = "copyStart"  # Azure copies (CopyStart); snapcopy orders and polls
    DIFF = "diff"  # snapcopy copies the changed pages onto a page blob in the target region


@dataclass(frozen=True)
class DiffStorage:
    """Where a diff target's page blobs live: a storage account in the target region."""

    blob_endpoint: str  # https://<account>.blob.core.windows.net
    container: str


class Mode(StrEnum):
    ALL = "all"  # every snapshot, in creation order
    LATEST = "latest"  # when several are queued, only the newest; the older ones are superseded


@dataclass(frozen=True)
class Retention:
    """Keep a completed copy if either rule keeps it (the newest copy is always kept)."""

    count: int | None = None
    days: int | None = None


@dataclass(frozen=True)
class Target:
    region: str
    resource_group: TargetResourceGroup = field(default_factory=TargetResourceGroup)
    disk_encryption_set_id: str | None = None
    copy_speed: CopySpeed = CopySpeed.STANDARD
    retain: Retention | None = None
    method: Method = Method.COPY_START
    storage: DiffStorage | None = None  # the diff method's (required for it, refused otherwise)


@dataclass(frozen=True)
class Policy:
    name: str
    targets: tuple[Target, ...]
    scopes: tuple[Scope, ...] = ()  # empty: COPY_SOURCE_SCOPES, else everything the identity sees
    source_tags: tuple[tuple[str, str], ...] = ()  # (lower-case name, exact value): all must be present
    copy_tags: bool = True
    tags: tuple[tuple[str, str], ...] = ()  # extra tags on every copy
    name_template: str = DEFAULT_NAME_TEMPLATE
    mode: Mode = Mode.ALL
    implicit: bool = False  # made from COPY_TARGET_REGIONS / COPY_TARGET_RESOURCE_GROUP


class PolicyError(ConfigError):
    """One policy field is wrong; the message names the policy, the field, the value and
    what was expected."""

    def __init__(self, policy: str, field: str, value: object, expected: str) -> None:
        shown = "<unset>" if value is None else json.dumps(value)
        ValueError.__init__(
            self, f"setting {SETTING} is invalid: policy {policy!r}, field {field}: got {shown}, expected {expected}"
        )
        self.setting = SETTING


def implicit_policy(regions: tuple[str, ...], group: TargetResourceGroup) -> Policy:
    """COPY_TARGET_REGIONS and COPY_TARGET_RESOURCE_GROUP as the one policy they always were."""
    return Policy(
        "default", tuple(Target(region, group) for region in regions), copy_tags=False, implicit=True
    )  # as before policies: copies carry snapcopy's provenance tag only


def parse_policies(text: str) -> tuple[Policy, ...]:
    """COPY_POLICIES (a JSON array) into policies, or a PolicyError at the first bad field."""
    try:
        document = json.loads(text)
    except json.JSONDecodeError as error:
        raise ConfigError(SETTING, text[:80], f"a JSON array of policies ({error.msg} at {error.pos})") from None
    if not isinstance(document, list) or not document:
        raise ConfigError(SETTING, text[:80], "a non-empty JSON array of policy objects")
    policies: list[Policy] = []
    for index, item in enumerate(document):
        policy = _policy(item, index)
        if any(known.name == policy.name for known in policies):
            raise PolicyError(policy.name, "name", policy.name, "a name no other policy has")
        _one_way_per_region(policy, policies)
        policies.append(policy)
    return tuple(policies)


def _one_way_per_region(policy: Policy, known: list[Policy]) -> None:
    """A region's chains copy one way: a disk has one chain per region, whose method and
    (for the diff method) page blob are fixed when it is made."""
    for index, target in enumerate(policy.targets):
        for other in known:
            for theirs in other.targets:
                if theirs.region != target.region:
                    continue
                if (theirs.method, theirs.storage) != (target.method, target.storage):
                    raise PolicyError(
                        policy.name,
                        f"targets[{index}]",
                        target.region,
                        f"the method and storage policy {other.name!r} uses for {target.region} "
                        f"({theirs.method.value}): a region's copies are made one way",
                    )


def _object(value: Any, policy: str, field: str, allowed: set[str]) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise PolicyError(policy, field, value, "a JSON object")
    unknown = sorted(set(value) - allowed)
    if unknown:
        raise PolicyError(policy, f"{field}.{unknown[0]}", value[unknown[0]], "one of " + ", ".join(sorted(allowed)))
    return value


def _policy(item: Any, index: int) -> Policy:
    label = f"#{index}"
    if isinstance(item, dict) and isinstance(item.get("name"), str):
        label = item["name"]
    body = _object(item, label, f"[{index}]", _FIELDS)
    name = body.get("name")
    if not isinstance(name, str) or not NAME_RE.fullmatch(name):
        raise PolicyError(label, "name", name, "1 to 40 of a-z, 0-9 and -")
    sources = _object(body.get("sources", {}), name, "sources", _SOURCE_FIELDS)
    targets = body.get("targets")
    if not isinstance(targets, list) or not targets:
        raise PolicyError(name, "targets", targets, "a non-empty array of targets")
    parsed = tuple(_target(target, name, f"targets[{i}]") for i, target in enumerate(targets))
    regions = [target.region for target in parsed]
    if len(set(regions)) != len(regions):
        raise PolicyError(name, "targets", regions, "each region once in a policy")
    copy_tags = body.get("copyTags", True)
    if not isinstance(copy_tags, bool):
        raise PolicyError(name, "copyTags", copy_tags, "true or false")
    mode = body.get("mode", Mode.ALL.value)
    if mode not in {m.value for m in Mode}:
        raise PolicyError(name, "mode", mode, "'all' or 'latest'")
    template = body.get("nameTemplate", DEFAULT_NAME_TEMPLATE)
    _check_template(template, name, parsed)
    return Policy(
        name=name,
        targets=parsed,
        scopes=_scopes(sources.get("scopes", []), name),
        source_tags=tuple((key.lower(), value) for key, value in _tags(sources.get("tags", {}), name, "sources.tags")),
        copy_tags=copy_tags,
        tags=_tags(body.get("tags", {}), name, "tags"),
        name_template=template,
        mode=Mode(mode),
    )


def _scopes(value: Any, policy: str) -> tuple[Scope, ...]:
    if not isinstance(value, list):
        raise PolicyError(policy, "sources.scopes", value, "an array of subscription or resource group ids")
    scopes = []
    for i, text in enumerate(value):
        try:
            scopes.append(Scope.parse(text if isinstance(text, str) else ""))
        except InvalidResourceId:
            raise PolicyError(
                policy,
                f"sources.scopes[{i}]",
                text,
                "/subscriptions/<guid> or /subscriptions/<guid>/resourceGroups/<name>",
            ) from None
    return tuple(scopes)


def _tags(value: Any, policy: str, field: str) -> tuple[tuple[str, str], ...]:
    if not isinstance(value, dict):
        raise PolicyError(policy, field, value, "an object of tag names to string values")
    if field == "tags" and len(value) > MAX_COPY_TAGS:
        raise PolicyError(policy, field, len(value), f"at most {MAX_COPY_TAGS} tags (ARM allows 50; snapcopy adds one)")
    for key, tag in value.items():
        if not key or len(key) > MAX_TAG_NAME or any(c in key for c in "<>%&\\?/"):
            raise PolicyError(policy, f"{field}.{key}", key, "a tag name of 1 to 512 characters, none of <>%&\\?/")
        if not isinstance(tag, str) or len(tag) > MAX_TAG_VALUE:
            raise PolicyError(policy, f"{field}.{key}", tag, "a string of at most 256 characters")
    lowered = [key.lower() for key in value]
    if len(set(lowered)) != len(lowered):
        raise PolicyError(policy, field, sorted(value), "each tag name once (names are case-insensitive)")
    return tuple(value.items())


def _target(item: Any, policy: str, field: str) -> Target:
    body = _object(item, policy, field, _TARGET_FIELDS)
    region = body.get("region")
    if not isinstance(region, str) or not REGION_RE.fullmatch(region):
        raise PolicyError(policy, f"{field}.region", region, "a region name like 'westus3' (lower case)")
    method = body.get("method", Method.COPY_START.value)
    if method not in {m.value for m in Method}:
        raise PolicyError(policy, f"{field}.method", method, "'copyStart' or 'diff'")
    storage = None
    if method == Method.DIFF:
        storage = _diff_storage(body, policy, field)
    elif "storage" in body:
        raise PolicyError(policy, f"{field}.storage", body["storage"], "no storage (only the diff method uses one)")
    group = _target_group(body.get("resourceGroup"), policy, f"{field}.resourceGroup")
    des = body.get("diskEncryptionSetId")
    if des is not None:
        try:
            subscription = disk_encryption_set_subscription(des if isinstance(des, str) else "")
        except InvalidResourceId:
            raise PolicyError(
                policy,
                f"{field}.diskEncryptionSetId",
                des,
                "/subscriptions/<guid>/resourceGroups/<name>/providers/Microsoft.Compute/diskEncryptionSets/<name>",
            ) from None
        if group.group is not None and group.group.subscription.lower() != subscription.lower():
            raise PolicyError(
                policy, f"{field}.diskEncryptionSetId", des, "a disk encryption set in the target's subscription"
            )
    speed = body.get("copySpeed", CopySpeed.STANDARD.value)
    if speed not in {s.value for s in CopySpeed}:
        raise PolicyError(policy, f"{field}.copySpeed", speed, "'Standard' or 'Enhanced'")
    retain = _retention(body.get("retain"), policy, f"{field}.retain")
    return Target(region, group, des, CopySpeed(speed), retain, Method(method), storage)


def _target_group(value: Any, policy: str, field: str) -> TargetResourceGroup:
    if value is None:
        return TargetResourceGroup()
    try:
        return TargetResourceGroup.parse(value if isinstance(value, str) else "")
    except InvalidResourceId:
        raise PolicyError(
            policy, field, value, "a resource group name, or /subscriptions/<guid>/resourceGroups/<name>"
        ) from None


_CONTAINER_RE = re.compile(r"^(?!.*--)[a-z0-9][a-z0-9-]{1,61}[a-z0-9]$")
_LOOPBACK = ("127.0.0.1", "localhost")
_DIFF_ONLY_COPYSTART = ("diskEncryptionSetId", "copySpeed", "retain")


def _diff_storage(body: dict[str, Any], policy: str, field: str) -> DiffStorage:
    """A diff target's storage: a blob endpoint (https; plain http only on this machine,
    for the local storage emulator) and a container name Azure accepts."""
    for name in _DIFF_ONLY_COPYSTART:
        if name in body:
            raise PolicyError(policy, f"{field}.{name}", body[name], f"no {name} with the diff method (CopyStart only)")
    storage = _object(body.get("storage"), policy, f"{field}.storage", {"blobEndpoint", "container"})
    endpoint = storage.get("blobEndpoint")
    parsed = urlparse(endpoint) if isinstance(endpoint, str) else None
    local = parsed is not None and parsed.scheme == "http" and parsed.hostname in _LOOPBACK
    if parsed is None or not parsed.hostname or parsed.query or not (parsed.scheme == "https" or local):
        raise PolicyError(policy, f"{field}.storage.blobEndpoint", endpoint, "https://<account>.blob.core.windows.net")
    container = storage.get("container")
    if not isinstance(container, str) or not _CONTAINER_RE.fullmatch(container):
        raise PolicyError(
            policy,
            f"{field}.storage.container",
            container,
            "a container name: 3-63 lower-case letters, digits and single hyphens, not starting or ending with one",
        )
    return DiffStorage(str(endpoint).rstrip("/"), container)


def _retention(value: Any, policy: str, field: str) -> Retention | None:
    if value is None:
        return None
    body = {key: number for key, number in _object(value, policy, field, _RETAIN_FIELDS).items() if number is not None}
    if not body:  # {} or only nulls: a rule that keeps nothing but the newest is never meant
        raise PolicyError(policy, field, value, "'count' and/or 'days' (a whole number of at least 1)")
    for key in ("count", "days"):
        number = body.get(key)
        if number is not None and (isinstance(number, bool) or not isinstance(number, int) or number < 1):
            raise PolicyError(policy, f"{field}.{key}", number, "a whole number of at least 1")
    return Retention(body.get("count"), body.get("days"))


def _check_template(template: Any, policy: str, targets: tuple[Target, ...]) -> None:
    """Known tokens only, ARM's charset around them, and names that cannot collide."""
    if not isinstance(template, str) or not template:
        raise PolicyError(policy, "nameTemplate", template, "a name template such as '{source}-{region}'")
    tokens = _TOKEN_RE.findall(template)
    unknown = [token for token in tokens if token not in TOKENS]
    if unknown:
        raise PolicyError(policy, "nameTemplate", template, "tokens among " + ", ".join(f"{{{t}}}" for t in TOKENS))
    literal = _TOKEN_RE.sub("", template)
    if not _LITERAL_RE.fullmatch(literal):
        raise PolicyError(policy, "nameTemplate", template, "letters, digits, '_', '.' and '-' around the tokens")
    if not template[0].isalnum() and not template.startswith("{"):
        raise PolicyError(policy, "nameTemplate", template, "a name that starts with a letter, a digit or a token")
    if not (template[-1].isalnum() or template[-1] in "_}"):
        raise PolicyError(policy, "nameTemplate", template, "a name that ends with a letter, a digit, '_' or a token")
    if not any(token in UNIQUE_TOKENS for token in tokens):
        raise PolicyError(
            policy, "nameTemplate", template, "{source}, {time} or {hash}, so that sources never share a name"
        )
    groups = [target.resource_group for target in targets]
    if "region" not in tokens and len(set(groups)) != len(groups):
        raise PolicyError(
            policy, "nameTemplate", template, "{region} when two targets put copies in the same resource group"
        )


def policy_document(policy: Policy) -> dict[str, Any]:
    """A policy in the COPY_POLICIES form (parse_policies reads it back to the same policy)."""
    targets = []
    for target in policy.targets:
        item: dict[str, Any] = {"region": target.region}
        group = target.resource_group
        if group.group is not None:
            item["resourceGroup"] = str(group.group)
        elif group.name is not None:
            item["resourceGroup"] = group.name
        if target.disk_encryption_set_id is not None:
            item["diskEncryptionSetId"] = target.disk_encryption_set_id
        item["method"] = target.method.value
        if target.method is Method.COPY_START:
            item["copySpeed"] = target.copy_speed.value
        if target.storage is not None:
            item["storage"] = {"blobEndpoint": target.storage.blob_endpoint, "container": target.storage.container}
        if target.retain is not None:
            item["retain"] = {
                key: value for key, value in (("count", target.retain.count), ("days", target.retain.days)) if value
            }
        targets.append(item)
    sources: dict[str, Any] = {}
    if policy.scopes:
        sources["scopes"] = [str(scope) for scope in policy.scopes]
    if policy.source_tags:
        sources["tags"] = dict(policy.source_tags)
    return {
        "name": policy.name,
        "sources": sources,
        "targets": targets,
        "copyTags": policy.copy_tags,
        "tags": dict(policy.tags),
        "nameTemplate": policy.name_template,
        "mode": policy.mode.value,
    }
