"""Record models: what a centre writes, and the projection that is published.

Each kind has a *content* model (what staff send to their node), a *published* model (the
content plus the owner's metadata, carried as event data) and shares one private-detail
model that is stored by the node and never published. Limits are part of the contract:
the hub rejects an event whose data would not validate here.
"""

from __future__ import annotations

import re
from datetime import date, datetime
from typing import Annotated, ClassVar, Literal, Self

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    EmailStr,
    Field,
    StringConstraints,
    model_validator,
)

from ctta.protocol.taxonomy import (
    CENTRE_ID_PATTERN,
    TRL_MAX,
    TRL_MIN,
    ContractType,
    Currency,
    IpStatus,
    RecordKind,
    RecordStatus,
    TechnologyField,
    TransferMode,
    ValueBand,
    Visibility,
)

ULID_PATTERN = r"^[0-9A-HJKMNP-TV-Z]{26}$"
IPC_RE = re.compile(r"^[A-H]\d{2}[A-Z](?: ?\d{1,4}/\d{1,6})?$")

CentreId = Annotated[str, StringConstraints(pattern=CENTRE_ID_PATTERN, max_length=32)]
RecordId = Annotated[str, StringConstraints(pattern=ULID_PATTERN)]
Keyword = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=64)]
ShortText = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=200)]
Trl = Annotated[int, Field(ge=TRL_MIN, le=TRL_MAX, description="Technology readiness level 1–9")]
# Versions and sequences are INTEGER columns in every store (int4 on PostgreSQL): an event
# with a larger one is refused by its schema instead of failing in the database.
MAX_VERSION = 2**31 - 1
Version = Annotated[int, Field(ge=1, le=MAX_VERSION)]


def _check_ipc(code: str) -> str:
    code = code.strip().upper()
    if not IPC_RE.match(code):
        raise ValueError(f"{code!r} is not an IPC code such as 'H01M' or 'H01M 10/54'")
    return code


IpcCode = Annotated[str, AfterValidator(_check_ipc)]


def _unique(values: list) -> list:
    """Drop repeats but keep the author's order."""
    return list(dict.fromkeys(values))


class StrictModel(BaseModel):
    """Unknown fields are an error: a typo must not silently lose data."""

    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)


class BilingualText(StrictModel):
    """Text in Chinese and/or English, keyed by language; at least one is required."""

    max_length: ClassVar[int] = 20_000

    zh: str | None = None
    en: str | None = None

    @model_validator(mode="after")
    def _check(self) -> Self:
        for language in ("zh", "en"):
            value = getattr(self, language)
            if value == "":
                setattr(self, language, None)
            elif value is not None and len(value) > self.max_length:
                raise ValueError(
                    f"'{language}' text is {len(value)} characters; the limit is {self.max_length}"
                )
        if self.zh is None and self.en is None:
            raise ValueError("give the text in at least one language: {'zh': …} or {'en': …}")
        return self

    def joined(self) -> str:
        """Both languages as one string, for indexing."""
        return " ".join(text for text in (self.zh, self.en) if text)


class BilingualTitle(BilingualText):
    max_length: ClassVar[int] = 200


class BilingualSummary(BilingualText):
    max_length: ClassVar[int] = 2_000


class MoneyRange(StrictModel):
    """An amount range in whole currency units; either bound may be open."""

    min: int | None = Field(default=None, ge=0)
    max: int | None = Field(default=None, ge=0)
    currency: Currency = Currency.CNY

    @model_validator(mode="after")
    def _check(self) -> Self:
        if self.min is not None and self.max is not None and self.min > self.max:
            raise ValueError(f"min ({self.min}) is larger than max ({self.max})")
        return self


class RecordRef(StrictModel):
    """A pointer to a record anywhere in the federation."""

    centre: CentreId
    id: RecordId


class PrivateDetail(StrictModel):
    """Contact and confidential detail: stored by the owning node, never published."""

    contact_name: ShortText | None = None
    contact_email: EmailStr | None = None
    contact_phone: Annotated[str, StringConstraints(max_length=40)] | None = None
    notes: Annotated[str, StringConstraints(max_length=20_000)] | None = None


class RecordContent(StrictModel):
    """Fields every kind shares and its author controls."""

    title: BilingualTitle
    summary: BilingualSummary
    description: BilingualText | None = None
    keywords: Annotated[list[Keyword], Field(max_length=30), AfterValidator(_unique)] = []
    fields: Annotated[list[TechnologyField], Field(max_length=5), AfterValidator(_unique)] = []
    ipc: Annotated[list[IpcCode], Field(max_length=20), AfterValidator(_unique)] = []
    status: Literal[RecordStatus.ACTIVE, RecordStatus.CLOSED] = RecordStatus.ACTIVE
    visibility: Visibility = Visibility.PUBLIC


class AchievementContent(RecordContent):
    """A scientific and technological achievement offered for transfer."""

    trl: Trl
    ip_status: IpStatus = IpStatus.NONE
    patent_numbers: Annotated[list[ShortText], Field(max_length=50)] = []
    transfer_modes: Annotated[list[TransferMode], Field(min_length=1), AfterValidator(_unique)]
    price_range: MoneyRange | None = None
    owner_institution: ShortText
    applications: BilingualSummary | None = None
    advantages: BilingualSummary | None = None


class DemandContent(RecordContent):
    """An enterprise's technology request."""

    enterprise: ShortText
    problem_statement: BilingualSummary
    min_trl: Trl | None = None
    budget: MoneyRange | None = None
    cooperation_modes: Annotated[list[TransferMode], AfterValidator(_unique)] = []
    response_deadline: date | None = None
    deployment_region: ShortText | None = None


class ProfessionalContent(RecordContent):
    """A technology manager or broker; `fields` are the areas of expertise."""

    name: BilingualTitle
    certifications: Annotated[list[ShortText], Field(max_length=20)] = []
    languages: Annotated[
        list[Annotated[str, StringConstraints(pattern=r"^[a-z]{2,3}$")]], Field(max_length=10)
    ] = ["zh"]


class CaseContent(RecordContent):
    """A closed transfer: the service experience other centres can learn from."""

    achievement: RecordRef | None = None
    demand: RecordRef | None = None
    contract_type: ContractType
    value_band: ValueBand | None = None
    centres_involved: Annotated[list[CentreId], Field(min_length=1, max_length=11)]
    contract_registration_no: ShortText | None = None


CONTENT_MODELS: dict[RecordKind, type[RecordContent]] = {
    RecordKind.ACHIEVEMENT: AchievementContent,
    RecordKind.DEMAND: DemandContent,
    RecordKind.PROFESSIONAL: ProfessionalContent,
    RecordKind.CASE: CaseContent,
}


class RecordMeta(StrictModel):
    """Fields the owning node manages."""

    id: RecordId
    centre: CentreId
    kind: RecordKind
    version: Version
    created_at: datetime
    updated_at: datetime


class PublishedAchievement(RecordMeta, AchievementContent):
    kind: Literal[RecordKind.ACHIEVEMENT] = RecordKind.ACHIEVEMENT


class PublishedDemand(RecordMeta, DemandContent):
    kind: Literal[RecordKind.DEMAND] = RecordKind.DEMAND


class PublishedProfessional(RecordMeta, ProfessionalContent):
    kind: Literal[RecordKind.PROFESSIONAL] = RecordKind.PROFESSIONAL


class PublishedCase(RecordMeta, CaseContent):
    kind: Literal[RecordKind.CASE] = RecordKind.CASE


PublishedRecord = PublishedAchievement | PublishedDemand | PublishedProfessional | PublishedCase

PUBLISHED_MODELS: dict[RecordKind, type[RecordMeta]] = {
    RecordKind.ACHIEVEMENT: PublishedAchievement,
    RecordKind.DEMAND: PublishedDemand,
    RecordKind.PROFESSIONAL: PublishedProfessional,
    RecordKind.CASE: PublishedCase,
}


class Tombstone(StrictModel):
    """Data of a withdrawal event: the record is gone from the federation catalogue."""

    id: RecordId
    centre: CentreId
    kind: RecordKind
    version: Version
    withdrawn_at: datetime
    reason: Literal["withdrawn", "private"]
