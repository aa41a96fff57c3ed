"""ARM paths and resource ids: canonical casing, parsing, validation and request kinds.

ARM treats paths case-insensitively (clients and Event Grid often write `resourcegroups`),
so every incoming path is first rewritten to one canonical casing; ids are then compared
on their lower-cased form.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Literal

from .errors import ArmError, bad_request

ResourceKind = Literal["snapshots", "disks"]
RequestKind = Literal["snapshot", "snapshots_list", "disk", "disks_list", "operation", "other"]

_KEYWORDS = {
    word.lower(): word
    for word in (
        "subscriptions",
        "resourceGroups",
        "providers",
        "locations",
        "operations",
        "snapshots",
        "disks",
        "beginGetAccess",
        "endGetAccess",
    )
}
_NAMESPACES = {"microsoft.compute": "Microsoft.Compute"}

_SUB = r"/subscriptions/(?P<sub>[^/]+)"
_RG = r"/resourceGroups/(?P<rg>[^/]+)"
_NS = r"/providers/Microsoft\.Compute"
_RESOURCE_RE = re.compile(rf"^{_SUB}{_RG}{_NS}/(?P<kind>snapshots|disks)/(?P<name>[^/]+)$")
_LIST_RE = re.compile(rf"^{_SUB}(?:{_RG})?{_NS}/(?P<kind>snapshots|disks)$")
_OPERATION_RE = re.compile(rf"^{_SUB}{_NS}/locations/[^/]+/operations/[^/]+$")

_GUID_RE = re.compile(r"^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$")
# Disks and snapshots: letters, digits, `_ . -`; start alphanumeric; end alphanumeric or `_`; <= 80.
_NAME_RE = re.compile(r"^[A-Za-z0-9](?:[A-Za-z0-9_.-]{0,78}[A-Za-z0-9_])?$")
# Resource groups: <= 90 of letters, digits, `_ ( ) . -`, not ending with a period.
_RG_RE = re.compile(r"^[\w().-]{0,89}[\w()-]$")

# Public Azure regions the emulator accepts (ARM refuses locations it does not know).
KNOWN_LOCATIONS = frozenset({
    "eastus", "eastus2", "westus", "westus2", "westus3", "centralus", "northcentralus", "southcentralus",
    "westcentralus", "canadacentral", "canadaeast", "brazilsouth", "brazilsoutheast", "mexicocentral",
    "northeurope", "westeurope", "uksouth", "ukwest", "francecentral", "francesouth", "germanywestcentral",
    "germanynorth", "norwayeast", "norwaywest", "swedencentral", "switzerlandnorth", "switzerlandwest",
    "polandcentral", "italynorth", "spaincentral", "eastasia", "southeastasia", "japaneast", "japanwest",
    "koreacentral", "koreasouth", "australiaeast", "australiasoutheast", "australiacentral",
    "centralindia", "southindia", "westindia", "uaenorth", "uaecentral", "southafricanorth",
    "qatarcentral", "israelcentral", "newzealandnorth", "indonesiacentral", "malaysiawest",
})  # fmt: skip


@dataclass(frozen=True)
class ResourceId:
    """A disk or snapshot id; `arm_id` keeps the names' casing, `key` is what lookups compare."""

    subscription: str
    resource_group: str
    kind: ResourceKind
    name: str

    @property
    def arm_id(self) -> str:
        return (
            f"/subscriptions/{self.subscription}/resourceGroups/{self.resource_group}"
            f"/providers/Microsoft.Compute/{self.kind}/{self.name}"
        )

    @property
    def key(self) -> str:
        return self.arm_id.lower()

    @property
    def type(self) -> str:
        return f"Microsoft.Compute/{self.kind}"

    @property
    def subject(self) -> str:
        """The form Event Grid uses (`subject`, `resourceUri`): lower-case `resourcegroups`."""
        return self.arm_id.replace("/resourceGroups/", "/resourcegroups/", 1)

    def validate(self) -> None:
        """Refuse what ARM refuses in the URL: malformed subscription, group or resource name."""
        validate_subscription(self.subscription)
        if not _RG_RE.match(self.resource_group):
            raise bad_request(
                f"Resource group '{self.resource_group}' is invalid: up to 90 letters, digits, "
                "'_', '(', ')', '.', '-', not ending in a period.",
                "InvalidResourceGroup",
            )
        if not _NAME_RE.match(self.name):
            raise bad_request(
                f"The resource name '{self.name}' is invalid. It must be 1-80 letters, digits, '_', '.' "
                "or '-', start with a letter or digit and end with a letter, digit or '_'.",
                "InvalidResourceName",
            )


def validate_subscription(subscription: str) -> None:
    if not _GUID_RE.match(subscription):
        raise bad_request(
            f"The provided subscription identifier '{subscription}' is malformed or invalid.",
            "InvalidSubscriptionId",
        )


def canonical_path(path: str) -> str:
    """Rewrite ARM keywords (`resourcegroups`, `microsoft.compute`, ...) to canonical casing.

    ARM paths alternate keyword/value, except that `providers` is followed by a namespace;
    only keyword positions are rewritten, so names keep their casing.
    """
    parts = path.split("/")
    for index in range(1, len(parts), 2):
        word = parts[index].lower()
        parts[index] = _KEYWORDS.get(word, parts[index])
        if word == "providers" and index + 1 < len(parts):
            parts[index + 1] = _NAMESPACES.get(parts[index + 1].lower(), parts[index + 1])
    return "/".join(parts)


def request_kind(path: str) -> RequestKind:
    """What a canonical path addresses, for counters and fault matching."""
    if match := _RESOURCE_RE.match(path):
        return "snapshot" if match["kind"] == "snapshots" else "disk"
    if match := _LIST_RE.match(path):
        return "snapshots_list" if match["kind"] == "snapshots" else "disks_list"
    if _OPERATION_RE.match(path):
        return "operation"
    return "other"


def counter_key(method: str, kind: RequestKind) -> str:
    """`GET snapshot`, `LIST snapshots`, `GET operation`, ... as reported by the counters."""
    if kind.endswith("_list") and method.upper() == "GET":
        return f"LIST {kind.removesuffix('_list')}"
    return f"{method.upper()} {kind}"


def parse_resource_id(text: str, field: str) -> ResourceId:
    """Parse a disk or snapshot id from a request body, case-insensitively.

    A leading `/` is optional (Azure's own examples omit it).
    """
    path = canonical_path(text if text.startswith("/") else f"/{text}")
    match = _RESOURCE_RE.match(path)
    if match is None:
        raise ArmError(
            400,
            "LinkedInvalidPropertyId",
            f"Property id '{text}' at path '{field}' is invalid. Expect a fully qualified disk or snapshot "
            "id '/subscriptions/{subscriptionId}/resourceGroups/{resourceGroupName}/providers/"
            "Microsoft.Compute/{snapshots|disks}/{name}'.",
        )
    kind: ResourceKind = "snapshots" if match["kind"] == "snapshots" else "disks"
    return ResourceId(match["sub"], match["rg"], kind, match["name"])


def normalize_location(location: object, resource_type: str) -> str:
    """`West US 3` -> `westus3`; unknown regions are refused like ARM does."""
    if not isinstance(location, str) or not location.strip():
        raise bad_request("The location property is required for this definition.", "LocationRequired")
    normalized = location.replace(" ", "").lower()
    if normalized not in KNOWN_LOCATIONS:
        raise bad_request(
            f"The provided location '{location}' is not available for resource type '{resource_type}'.",
            "LocationNotAvailableForResourceType",
        )
    return normalized
