"""ARM resource ids: strict parsing, case-insensitive comparison, table-safe keys.

Event Grid subjects often spell `resourcegroups` in lower case while ARM answers with
`resourceGroups`; every comparison in snapcopy goes through `ResourceId` so that the two
spellings are the same resource.

It must not do I/O: ids are values.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

GUID = r"[0-9A-Fa-f]{8}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{12}"  # subscriptions, families
REGION = r"[a-z][a-z0-9]{2,39}"  # an Azure region's name as ARM spells it: westus3, centralus
REGION_RE = re.compile(REGION)
_SUBSCRIPTION = GUID
_RESOURCE_GROUP = r"[-\w._()]{1,90}"
_RESOURCE_NAME = r"[A-Za-z0-9_][-A-Za-z0-9_.]{0,79}"  # snapshot and disk names are ASCII

_RESOURCE_RE = re.compile(
    rf"^/subscriptions/(?P<sub>{_SUBSCRIPTION})/resourceGroups/(?P<rg>{_RESOURCE_GROUP})"
    rf"/providers/Microsoft\.Compute/(?P<kind>snapshots|disks)/(?P<name>{_RESOURCE_NAME})$",
    re.IGNORECASE,
)
_DES_RE = re.compile(
    rf"^/subscriptions/(?P<sub>{_SUBSCRIPTION})/resourceGroups/{_RESOURCE_GROUP}"
    r"/providers/Microsoft\.Compute/diskEncryptionSets/[A-Za-z0-9_][-A-Za-z0-9_]{0,79}$",
    re.IGNORECASE,
)
_SCOPE_RE = re.compile(
    rf"^/subscriptions/(?P<sub>{_SUBSCRIPTION})(/resourceGroups/(?P<rg>{_RESOURCE_GROUP}))?$",
    re.IGNORECASE,
)


class InvalidResourceId(ValueError):
    """The text is not an ARM id of the kind expected."""


@dataclass(frozen=True)
class ResourceId:
    """A Compute snapshot or disk id; equality and hashing ignore case, as ARM does."""

    subscription: str
    resource_group: str
    kind: str  # "snapshots" or "disks"
    name: str

    @classmethod
    def parse(cls, text: str, *, kind: str | None = None) -> ResourceId:
        """Parse `text`; `kind` restricts it to snapshots or disks."""
        candidate = text.strip() if isinstance(text, str) else ""
        if candidate and not candidate.startswith("/"):
            candidate = "/" + candidate  # ARM examples sometimes omit the leading slash
        match = _RESOURCE_RE.match(candidate)
        if not match:
            wanted = f"a Microsoft.Compute/{kind} id" if kind else "a Microsoft.Compute snapshot or disk id"
            raise InvalidResourceId(f"{text!r} is not {wanted}")
        found_kind = match["kind"].lower()
        if kind is not None and found_kind != kind:
            raise InvalidResourceId(f"{text!r} is a {found_kind[:-1]} id, not a {kind[:-1]} id")
        return cls(match["sub"], match["rg"], found_kind, match["name"])

    def __str__(self) -> str:
        return (
            f"/subscriptions/{self.subscription}/resourceGroups/{self.resource_group}"
            f"/providers/Microsoft.Compute/{self.kind}/{self.name}"
        )

    @property
    def _folded(self) -> tuple[str, str, str, str]:
        return (self.subscription.lower(), self.resource_group.lower(), self.kind, self.name.lower())

    def __eq__(self, other: object) -> bool:
        return isinstance(other, ResourceId) and self._folded == other._folded

    def __hash__(self) -> int:
        return hash(self._folded)

    @property
    def group(self) -> ResourceGroupId:
        """The resource group the resource lives in."""
        return ResourceGroupId(self.subscription, self.resource_group)

    @property
    def resource_group_key(self) -> str:
        """`sub:rg`, lower-cased: a readable Table key for the resource group."""
        return f"{self.subscription.lower()}:{self.resource_group.lower()}"


@dataclass(frozen=True)
class ResourceGroupId:
    """A resource group, compared case-insensitively."""

    subscription: str
    resource_group: str

    def __str__(self) -> str:
        return f"/subscriptions/{self.subscription}/resourceGroups/{self.resource_group}"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, ResourceGroupId) and (
            self.subscription.lower(),
            self.resource_group.lower(),
        ) == (other.subscription.lower(), other.resource_group.lower())

    def __hash__(self) -> int:
        return hash((self.subscription.lower(), self.resource_group.lower()))


@dataclass(frozen=True)
class Scope:
    """A subscription or resource group that snapcopy may copy from (COPY_SOURCE_SCOPES)."""

    subscription: str
    resource_group: str | None = None

    @classmethod
    def parse(cls, text: str) -> Scope:
        match = _SCOPE_RE.match(text.strip().rstrip("/"))
        if not match:
            raise InvalidResourceId(
                f"{text!r} is not a scope: expected /subscriptions/<guid> or "
                "/subscriptions/<guid>/resourceGroups/<name>"
            )
        return cls(match["sub"], match["rg"])

    def contains(self, resource: ResourceId) -> bool:
        if self.subscription.lower() != resource.subscription.lower():
            return False
        return self.resource_group is None or self.resource_group.lower() == resource.resource_group.lower()

    def __str__(self) -> str:
        base = f"/subscriptions/{self.subscription}"
        return f"{base}/resourceGroups/{self.resource_group}" if self.resource_group else base


def parse_resource_group(text: str) -> ResourceGroupId:
    """Parse `/subscriptions/<guid>/resourceGroups/<name>`."""
    scope = Scope.parse(text)
    if scope.resource_group is None:
        raise InvalidResourceId(f"{text!r} names a subscription, not a resource group")
    return ResourceGroupId(scope.subscription, scope.resource_group)


def is_valid_resource_group_name(name: str) -> bool:
    return re.fullmatch(_RESOURCE_GROUP, name) is not None and not name.endswith(".")


@dataclass(frozen=True)
class TargetResourceGroup:
    """Where copies go: a resource group name in the source's subscription, or a full id."""

    name: str | None = None
    group: ResourceGroupId | None = None

    @classmethod
    def parse(cls, text: str) -> TargetResourceGroup:
        """A resource group name, or `/subscriptions/<guid>/resourceGroups/<name>`."""
        if text.startswith("/"):
            return cls(group=parse_resource_group(text))
        if not is_valid_resource_group_name(text):
            raise InvalidResourceId(f"{text!r} is not a resource group name")
        return cls(name=text)

    def for_source(self, subscription: str, source_resource_group: str) -> ResourceGroupId:
        if self.group is not None:
            return self.group
        return ResourceGroupId(subscription, self.name or source_resource_group)


def disk_encryption_set_subscription(text: str) -> str:
    """The subscription of a disk encryption set id (`InvalidResourceId` if it is not one)."""
    match = _DES_RE.match(text)
    if match is None:
        raise InvalidResourceId(f"{text!r} is not a Microsoft.Compute/diskEncryptionSets id")
    return match["sub"]
