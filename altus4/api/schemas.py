"""Request bodies and query strings of the management API, as pydantic models.

Unknown fields are ignored (older and newer clients keep working); known ones
are checked strictly, with the field named in the 400.
"""

from __future__ import annotations

import re
from datetime import UTC, date, datetime
from typing import Annotated, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    EmailStr,
    Field,
    StringConstraints,
    field_validator,
)

from altus4.search.filters import filter_text

Permission = Literal["search", "analytics", "admin"]
Tier = Literal["free", "pro", "enterprise"]
_HOST = re.compile(r"^[A-Za-z0-9._:\[\]-]+$")
_HOST_PORT = r"^[A-Za-z0-9._\[\]:-]+:[0-9]{1,5}$"
HostPort = Annotated[str, StringConstraints(pattern=_HOST_PORT, max_length=100)]
# a MySQL user or database name: printable (a NUL or newline reaches the server's handshake otherwise)
_PRINTABLE = r"^[^\x00-\x1f\x7f]+$"
MySQLUser = Annotated[str, StringConstraints(min_length=1, max_length=255, pattern=_PRINTABLE)]
MySQLDatabase = Annotated[str, StringConstraints(min_length=1, max_length=64, pattern=_PRINTABLE)]


class Body(BaseModel):
    model_config = ConfigDict(extra="ignore", str_strip_whitespace=True)


# a password is taken exactly as sent: the model's whitespace stripping does not apply to it
Password = Annotated[str, StringConstraints(strip_whitespace=False, min_length=1, max_length=256)]
NewPassword = Annotated[str, StringConstraints(strip_whitespace=False, min_length=8, max_length=256)]


class RegisterBody(Body):
    email: EmailStr = Field(max_length=255)
    password: NewPassword
    name: str = Field(min_length=2, max_length=255)
    role: Literal["user", "admin"] = "user"

    @field_validator("role")
    @classmethod
    def no_self_made_admins(cls, role: str) -> str:
        if role == "admin":
            raise ValueError("admins cannot be created by registration; an operator runs `altus4 user:promote`")
        return role


class LoginBody(Body):
    # only looked up: an address that could never have registered simply matches no account (401)
    email: str = Field(min_length=1, max_length=255)
    password: Password


class ProfileBody(Body):
    """All optional; a field that is sent must have a value (the spec has no `null` for them). A new e-mail
    needs `currentPassword` (what signs in is changed only by whoever knows the password)."""

    name: str | None = Field(default=None, min_length=2, max_length=255)
    email: EmailStr | None = None
    currentPassword: Password | None = None

    @field_validator("name", "email", "currentPassword", mode="before")
    @classmethod
    def _not_null(cls, value: object) -> object:
        if value is None:
            raise ValueError("leave the field out instead of sending null")
        return value


class ChangePasswordBody(Body):
    currentPassword: Password
    newPassword: NewPassword


class TierBody(Body):
    tier: Literal["free", "pro", "enterprise"]


class DeleteAccountBody(Body):
    currentPassword: Password


# the days analytics can be asked about; outside them date arithmetic would overflow, and nothing was recorded
FIRST_DAY, LAST_DAY = date(1970, 1, 1), date(2999, 12, 31)
LATEST_EXPIRY = datetime(9998, 12, 31, tzinfo=UTC)  # DATETIME columns end at 9999-12-31
MAX_HISTORY_OFFSET = 1_000_000
_ISO_DAY = re.compile(r"^\d{4}-\d{2}-\d{2}$")


def _iso_day(value: object) -> object:
    """Only `YYYY-MM-DD`: pydantic would otherwise read `0` or `1700000000` as a Unix time."""
    if isinstance(value, str) and not _ISO_DAY.match(value.strip()):
        raise ValueError("must be a date as YYYY-MM-DD")
    return value


def _within_days(value: date) -> date:
    if not FIRST_DAY <= value <= LAST_DAY:
        raise ValueError(f"must be between {FIRST_DAY} and {LAST_DAY}")
    return value


Day = Annotated[date, BeforeValidator(_iso_day), AfterValidator(_within_days)]


def _future(value: datetime | None) -> datetime | None:
    """An expiry in UTC, in the future and before the year 9999 (any offset; naive means UTC)."""
    if value is None:
        return None
    if value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    try:
        value = value.astimezone(UTC)
    except OverflowError:
        raise ValueError(f"must be before {LATEST_EXPIRY:%Y-%m-%d}") from None
    if value > LATEST_EXPIRY:
        raise ValueError(f"must be before {LATEST_EXPIRY:%Y-%m-%d}")
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
    database: MySQLDatabase
    username: MySQLUser
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
    database: MySQLDatabase | None = None
    username: MySQLUser | None = None
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
# UUIDs are case-insensitive (RFC 9562) and stored in lower case, as Flask's uuid routes give them
DatabaseId = Annotated[str, StringConstraints(pattern=_UUID, to_lower=True)]


def _empty_means_all(value: list | None) -> list | None:
    return value or None


# an empty list filters nothing, as if it were not sent (the original contract accepts `[]`)
AnyOf = AfterValidator(_empty_means_all)


FilterText = Annotated[str, BeforeValidator(filter_text), StringConstraints(max_length=2000)]  # or Meilisearch's array
ColumnName = Annotated[str, StringConstraints(min_length=1, max_length=140)]  # `table.column`, backticks


class SearchBody(Body):
    # may be empty (browse) when a filter or sort says which rows (`altus4.search.structured`)
    query: str = Field(max_length=500)
    databases: Annotated[list[DatabaseId] | None, AnyOf] = Field(default=None, max_length=50)
    tables: Annotated[list[Identifier] | None, AnyOf] = Field(default=None, max_length=50)
    columns: Annotated[list[Identifier] | None, AnyOf] = Field(default=None, max_length=100)
    searchMode: Literal["natural", "boolean", "semantic"] = "natural"
    limit: int = Field(default=20, ge=1, le=100)
    offset: int = Field(default=0, ge=0, le=999)  # offset + limit <= 1000 (checked by the search)
    includeAnalytics: bool = False
    # false: not recorded in the search analytics (Algolia's `analytics`): previews while typing
    analytics: bool = True
    ranking: Literal["bm25", "mysql"] = "bm25"
    filter: FilterText | None = None
    facets: Annotated[list[ColumnName] | None, AnyOf] = Field(default=None, max_length=10)
    maxValuesPerFacet: int = Field(default=10, ge=1, le=100)
    sort: Annotated[list[Annotated[str, StringConstraints(min_length=1, max_length=150)]] | None, AnyOf] = Field(
        default=None, max_length=3
    )


class SuggestionsQuery(Body):
    query: str = Field(min_length=1, max_length=100)
    databases: list[DatabaseId] | None = Field(default=None, max_length=50)
    tables: list[Identifier] | None = Field(default=None, max_length=50)
    limit: int = Field(default=10, ge=1, le=25)
    filter: FilterText | None = None  # completions come only from rows it lets through


class AnalyzeBody(Body):
    query: str = Field(min_length=1, max_length=500)
    databases: list[DatabaseId] = Field(min_length=1, max_length=50)
    searchMode: Literal["natural", "boolean"] = "natural"


class SearchHistoryQuery(Body):
    """`GET /search/history` (API key): a page of the key owner's searches, newest first."""

    limit: int = Field(default=20, ge=1, le=100)
    offset: int = Field(default=0, ge=0, le=MAX_HISTORY_OFFSET)


class RangeQuery(Body):
    """A span of days for analytics: `startDate`/`endDate` (inclusive), or the last `period`."""

    startDate: Day | None = None
    endDate: Day | None = None
    period: Literal["day", "week", "month", "3months", "6months", "year"] = "week"


class ScopedRangeQuery(RangeQuery):
    """The span, and optionally one of the user's API keys or databases (another user's id finds nothing)."""

    apiKeyId: DatabaseId | None = None  # a UUID, as database ids are
    databaseId: DatabaseId | None = None


class PopularQuery(ScopedRangeQuery):
    limit: int = Field(default=20, ge=1, le=100)


class AnalyticsHistoryQuery(SearchHistoryQuery):
    """`GET /analytics/search-history` (JWT): the same in larger pages for dashboards, optionally narrowed to
    dates (no dates: all of it), a key or a database."""

    limit: int = Field(default=100, ge=1, le=1000)
    startDate: Day | None = None
    endDate: Day | None = None
    apiKeyId: DatabaseId | None = None
    databaseId: DatabaseId | None = None
