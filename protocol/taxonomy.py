"""The shared vocabulary of the federation: centres, technology fields and code lists.

Values are stable slugs that travel in events and URLs; labels are for people. Adding a
member is backwards compatible; renaming or removing one is a breaking protocol change.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from enum import StrEnum

CENTRE_ID_PATTERN = r"^[a-z][a-z0-9-]*$"
CENTRE_ID_RE = re.compile(CENTRE_ID_PATTERN)


@dataclass(frozen=True)
class Centre:
    """A regional technology-transfer centre of the alliance."""

    id: str
    name_zh: str
    name_en: str
    city: str


CENTRES: tuple[Centre, ...] = (
    Centre(
        "zhongguancun",
        "国家技术转移集聚区（中关村）",
        "Zhongguancun Technology Transfer Cluster",
        "Beijing",
    ),
    Centre(
        "southern",
        "国家技术转移南方中心",
        "National Technology Transfer Southern Center",
        "Shenzhen",
    ),
    Centre(
        "eastern", "国家技术转移东部中心", "National Technology Transfer Eastern Center", "Shanghai"
    ),
    Centre(
        "strait", "国家技术转移海峡中心", "National Technology Transfer Strait Center", "Fuzhou"
    ),
    Centre("sunan", "国家技术转移苏南中心", "National Technology Transfer Sunan Center", "Suzhou"),
    Centre(
        "zhengzhou",
        "国家技术转移郑州中心",
        "National Technology Transfer Zhengzhou Center",
        "Zhengzhou",
    ),
    Centre("ocean", "国家海洋技术转移中心", "National Ocean Technology Transfer Center", "Qingdao"),
    Centre(
        "central", "国家技术转移中部中心", "National Technology Transfer Central Center", "Wuhan"
    ),
    Centre(
        "southwest",
        "国家技术转移西南中心",
        "National Technology Transfer Southwest Center",
        "Chengdu",
    ),
    Centre(
        "northwest",
        "国家技术转移西北中心",
        "National Technology Transfer Northwest Center",
        "Xi'an",
    ),
    Centre(
        "northeast",
        "国家技术转移东北中心",
        "National Technology Transfer Northeast Center",
        "Changchun",
    ),
)
CENTRES_BY_ID: dict[str, Centre] = {centre.id: centre for centre in CENTRES}


class RecordKind(StrEnum):
    """The four elements of technology transfer that flow between regions."""

    ACHIEVEMENT = "achievement"  # scientific and technological achievement: a technology offer
    DEMAND = "demand"  # enterprise demand: a technology request
    PROFESSIONAL = "professional"  # technology manager or broker
    CASE = "case"  # closed transfer: the "service experience"


class Visibility(StrEnum):
    """Who may see a record. `private` records never leave the owning node."""

    PUBLIC = "public"
    ALLIANCE = "alliance"
    PRIVATE = "private"


class RecordStatus(StrEnum):
    """Life cycle of a record. `withdrawn` is final and published as a tombstone."""

    ACTIVE = "active"
    CLOSED = "closed"
    WITHDRAWN = "withdrawn"


class TechnologyField(StrEnum):
    """Technology fields, after the strategic emerging industries of the national catalogue."""

    INFORMATION_TECHNOLOGY = "information-technology"
    ARTIFICIAL_INTELLIGENCE = "artificial-intelligence"
    INTEGRATED_CIRCUITS = "integrated-circuits"
    BIOMEDICINE = "biomedicine"
    MEDICAL_DEVICES = "medical-devices"
    NEW_ENERGY = "new-energy"
    ENERGY_STORAGE = "energy-storage"
    NEW_MATERIALS = "new-materials"
    ADVANCED_MANUFACTURING = "advanced-manufacturing"
    ROBOTICS = "robotics"
    NEW_ENERGY_VEHICLES = "new-energy-vehicles"
    AGRICULTURE_FOOD = "agriculture-food"
    ENVIRONMENT = "environment"
    MARINE = "marine"
    AEROSPACE = "aerospace"
    CHEMICAL_ENGINEERING = "chemical-engineering"


FIELD_LABELS: dict[TechnologyField, tuple[str, str]] = {
    TechnologyField.INFORMATION_TECHNOLOGY: ("新一代信息技术", "Information technology"),
    TechnologyField.ARTIFICIAL_INTELLIGENCE: ("人工智能", "Artificial intelligence"),
    TechnologyField.INTEGRATED_CIRCUITS: ("集成电路", "Integrated circuits"),
    TechnologyField.BIOMEDICINE: ("生物医药", "Biomedicine"),
    TechnologyField.MEDICAL_DEVICES: ("医疗器械", "Medical devices"),
    TechnologyField.NEW_ENERGY: ("新能源", "New energy"),
    TechnologyField.ENERGY_STORAGE: ("储能与电池", "Energy storage and batteries"),
    TechnologyField.NEW_MATERIALS: ("新材料", "New materials"),
    TechnologyField.ADVANCED_MANUFACTURING: ("高端装备制造", "Advanced manufacturing"),
    TechnologyField.ROBOTICS: ("机器人", "Robotics"),
    TechnologyField.NEW_ENERGY_VEHICLES: ("新能源汽车", "New energy vehicles"),
    TechnologyField.AGRICULTURE_FOOD: ("现代农业与食品", "Agriculture and food"),
    TechnologyField.ENVIRONMENT: ("节能环保", "Environment and energy saving"),
    TechnologyField.MARINE: ("海洋技术", "Marine technology"),
    TechnologyField.AEROSPACE: ("航空航天", "Aerospace"),
    TechnologyField.CHEMICAL_ENGINEERING: ("化工", "Chemical engineering"),
}


class TransferMode(StrEnum):
    """How a technology changes hands; demands name the modes they would accept."""

    ASSIGNMENT = "assignment"  # 转让
    EXCLUSIVE_LICENCE = "exclusive-licence"  # 独占许可
    NON_EXCLUSIVE_LICENCE = "non-exclusive-licence"  # 普通许可
    EQUITY_CONTRIBUTION = "equity-contribution"  # 作价入股
    JOINT_DEVELOPMENT = "joint-development"  # 合作开发
    TECHNICAL_SERVICE = "technical-service"  # 技术服务


class IpStatus(StrEnum):
    GRANTED_PATENT = "granted-patent"
    PENDING_PATENT = "pending-patent"
    SOFTWARE_COPYRIGHT = "software-copyright"
    KNOW_HOW = "know-how"
    NONE = "none"


class ContractType(StrEnum):
    """The five technology-contract types of the Civil Code (技术开发/转让/许可/咨询/服务)."""

    DEVELOPMENT = "development"
    TRANSFER = "transfer"
    LICENCE = "licence"
    CONSULTING = "consulting"
    SERVICE = "service"


class ValueBand(StrEnum):
    """Contract value in CNY, banded so cases can be published without the exact price."""

    UNDER_1M = "under-1m"
    FROM_1M_TO_10M = "1m-10m"
    FROM_10M_TO_100M = "10m-100m"
    OVER_100M = "over-100m"


class Currency(StrEnum):
    CNY = "CNY"
    USD = "USD"
    EUR = "EUR"


TRL_MIN = 1
TRL_MAX = 9


class DeclineReason(StrEnum):
    """Why a centre declines a proposal (after IN-PART's structured industry feedback)."""

    TOO_EARLY = "too-early"
    BENEFIT_UNCLEAR = "benefit-unclear"
    COMMERCIAL_ROUTE_UNCLEAR = "commercial-route-unclear"
    PRICE = "price"
    IP = "ip"
    WRONG_FIELD = "wrong-field"
    OTHER = "other"


class MatchStage(StrEnum):
    """One side's position on a proposal; accepted matches move along the pipeline."""

    PROPOSED = "proposed"
    ACCEPTED = "accepted"
    DECLINED = "declined"
    CONTACTED = "contacted"
    NDA = "nda"
    NEGOTIATING = "negotiating"
    AGREEMENT = "agreement"
    CLOSED_WITHOUT_DEAL = "closed-without-deal"


MATCH_TRANSITIONS: dict[MatchStage, frozenset[MatchStage]] = {
    MatchStage.PROPOSED: frozenset({MatchStage.ACCEPTED, MatchStage.DECLINED}),
    MatchStage.ACCEPTED: frozenset({MatchStage.CONTACTED, MatchStage.CLOSED_WITHOUT_DEAL}),
    MatchStage.CONTACTED: frozenset(
        {MatchStage.NDA, MatchStage.NEGOTIATING, MatchStage.CLOSED_WITHOUT_DEAL}
    ),
    MatchStage.NDA: frozenset({MatchStage.NEGOTIATING, MatchStage.CLOSED_WITHOUT_DEAL}),
    MatchStage.NEGOTIATING: frozenset({MatchStage.AGREEMENT, MatchStage.CLOSED_WITHOUT_DEAL}),
    MatchStage.DECLINED: frozenset(),
    MatchStage.AGREEMENT: frozenset(),
    MatchStage.CLOSED_WITHOUT_DEAL: frozenset(),
}
