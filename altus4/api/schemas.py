"""Request bodies and query strings of the management API, as pydantic models.

Unknown fields are ignored (older and newer clients keep working); known ones
are checked strictly, with the field named in the 400.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, EmailStr, Field, StringConstraints, field_validator

Permission = Literal["search", "analytics", "admin"]
Tier = Literal["free", "pro", "enterprise"]
_HOST = re.compile(r"^[A-Za-z0-9._:\[\]-]+$")
_HOST_PORT = r"^[A-Za-z0-9._\[\]:-]+:[0-9]{1,5}$"
HostPort = Annotated[str, StringConstraints(pattern=_HOST_PORT, max_length=100)]


class Body(BaseModel):
    model_config = ConfigDict(extra="ignore", str_strip_whitespace=True)


class RegisterBody(Body):
    email: EmailStr = Field(max_length=255)
    password: str = Field(min_length=8, max_length=256)
    name: str = Field(min_length=2, max_length=255)
    role: Literal["user", "admin"] = "user"

    @field_validator("role")
    @classmethod
    def no_self_made_admins(cls, role: str) -> str:
        if role == "admin":
            raise ValueError("admins cannot be created by registration; an operator runs `altus4 user:promote`")
        return role


class LoginBody(Body):
    email: EmailStr
    password: str = Field(min_length=1, max_length=256)


class ProfileBody(Body):
    name: str | None = Field(default=None, min_length=2, max_length=255)
    email: EmailStr | None = None


class ChangePasswordBody(Body):
    currentPassword: str = Field(min_length=1, max_length=256)
    newPassword: str = Field(min_length=8, max_length=256)


def _future(value: datetime | None) -> datetime | None:
    if value is None:
        return None
    if value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    if value <= datetime.now(UTC):
        raise ValueError("must be in the future")
    return value


class CreateKeyBody(Body):
    name: str = Field(min_length=3, max_length=255)
    environment: Literal["test", "live"]
    permissions: list[Permission] = Field(default=["search"], min_length=1)  # pydantic copies the default
    rateLimitTier: Tier = "free"
    expiresAt: datetime | None = None

    @field_validator("expiresAt")
    @classmethod
    def _expiry_in_future(cls, value: datetime | None) -> datetime | None:
        return _future(value)


class UpdateKeyBody(Body):
    name: str | None = Field(default=None, min_length=3, max_length=255)
    permissions: list[Permission] | None = Field(default=None, min_length=1)
    rateLimitTier: Tier | None = None
    expiresAt: datetime | None = None

    @field_validator("expiresAt")
    @classmethod
    def _expiry_in_future(cls, value: datetime | None) -> datetime | None:
        return _future(value)

    def changes(self) -> dict:
        """Only the fields the client sent; an explicit `expiresAt: null` clears the expiry."""
        sent = self.model_dump(exclude_unset=True)
        return {k: v for k, v in sent.items() if v is not None or k == "expiresAt"}


class UsageQuery(Body):
    days: int = Field(default=30, ge=1, le=365)


def _host(value: str | None) -> str | None:
    if value is not None and not _HOST.match(value):
        raise ValueError("must be a host name or IP address")
    return value


class CreateConnectionBody(Body):
    name: str = Field(min_length=1, max_length=255)
    host: str = Field(min_length=1, max_length=255)
    port: int = Field(default=3306, ge=1, le=65535)
    database: str = Field(min_length=1, max_length=64)
    username: str = Field(min_length=1, max_length=255)
    password: str | None = Field(default=None, max_length=1024)
    ssl: bool = False
    readReplicas: list[HostPort] = Field(default_factory=list, max_length=8)

    @field_validator("host")
    @classmethod
    def _valid_host(cls, value: str | None) -> str | None:
        return _host(value)


class UpdateConnectionBody(Body):
    name: str | None = Field(default=None, min_length=1, max_length=255)
    host: str | None = Field(default=None, min_length=1, max_length=255)
    port: int | None = Field(default=None, ge=1, le=65535)
    database: str | None = Field(default=None, min_length=1, max_length=64)
    username: str | None = Field(default=None, min_length=1, max_length=255)
    password: str | None = Field(default=None, max_length=1024)
    ssl: bool | None = None
    isActive: bool | None = None
    readReplicas: list[HostPort] | None = Field(default=None, max_length=8)

    @field_validator("host")
    @classmethod
    def _valid_host(cls, value: str | None) -> str | None:
        return _host(value)

    def changes(self) -> dict:
        return {k: v for k, v in self.model_dump(exclude_unset=True).items() if v is not None or k == "password"}


class SchemaQuery(Body):
    refresh: bool = False


_UUID = r"^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$"
Identifier = Annotated[str, StringConstraints(min_length=1, max_length=64)]
DatabaseId = Annotated[str, StringConstraints(pattern=_UUID)]


class SearchBody(Body):
    query: str = Field(min_length=1, max_length=500)
    databases: list[DatabaseId] | None = Field(default=None, min_length=1, max_length=50)
    tables: list[Identifier] | None = Field(default=None, min_length=1, max_length=50)
    columns: list[Identifier] | None = Field(default=None, min_length=1, max_length=100)
    searchMode: Literal["natural", "boolean", "semantic"] = "natural"
    limit: int = Field(default=20, ge=1, le=100)
    offset: int = Field(default=0, ge=0)
    includeAnalytics: bool = False

    @field_validator("query")
    @classmethod
    def _not_blank(cls, value: str) -> str:
        if not value.strip():
            raise ValueError("must contain a search term")
        return value


class SuggestionsQuery(Body):
    query: str = Field(min_length=1, max_length=100)
    databases: list[DatabaseId] | None = Field(default=None, max_length=50)
    tables: list[Identifier] | None = Field(default=None, max_length=50)
    limit: int = Field(default=10, ge=1, le=25)


class AnalyzeBody(Body):
    query: str = Field(min_length=1, max_length=500)
    databases: list[DatabaseId] = Field(min_length=1, max_length=50)
    searchMode: Literal["natural", "boolean"] = "natural"


class SearchHistoryQuery(Body):
    """`GET /search/history` (API key): a page of the key owner's searches, newest first."""

    limit: int = Field(default=20, ge=1, le=100)
    offset: int = Field(default=0, ge=0)


class AnalyticsHistoryQuery(SearchHistoryQuery):
    """`GET /analytics/search-history` (JWT): the same, in larger pages for dashboards."""

    limit: int = Field(default=100, ge=1, le=1000)
