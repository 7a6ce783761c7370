"""Deterministic sandbox data: `generate(size, seed, scale)` → `(PipedriveSeed, PlanhatSeed)`.

The same `(size, seed, scale)` gives identical records on every machine and run: everything comes
from one `random.Random(seed)` and from fixed tables, never from the wall clock. Times lie in the
three years before `REFERENCE_TIME` (2026-11-01T00:00:00Z).

`scale` (default 1) multiplies the record counts of the size: organizations, persons, deals and
notes each become `round(count × scale)` (at least 1); users, pipelines, stages and fields stay as
they are. `generate("large", scale=0.25)` has 5,000 organizations, 15,000 persons, 12,500 deals
and 25,000 notes (`scaled_counts` tells the counts without generating).

The records follow the shapes documented in `sandbox.dataset` (v2 deals / organizations / persons /
pipelines / stages / *Fields, v1 notes and users) and are deliberately awkward the way real
accounts are:

* non-ASCII names ("Müller & Søn GmbH", "株式会社テスト", "Łódź Logistics", "Zoë Lefèvre", ...);
* persons with several emails and phones (exactly one primary, not always the first one), and
  persons with no email or no phone at all; a few emails in mixed case;
* deals without an organization, some of them without a person too; persons without an
  organization; a few deals whose person belongs to another organization;
* every custom field type the product maps (varchar, text, double, monetary, enum, set, date,
  phone, address, user, org) on deals, organizations and persons, each with some null values;
  custom field codes are 40-character hashes that depend on the seed (like real accounts, where
  they differ per company);
* HTML notes (`<p>`, `<b>`, lists, `&amp;`, `&nbsp;`, escaped `&lt;script&gt;`, plain text, a few
  long ones);
* bursts of records updated in the same second (up to 600 at once in `large`: more than one page
  of the largest page size), and imports that add several records in the same second;
* ids increase with `add_time` but have gaps (deleted records), so id ≠ position;
* one owner is a deactivated user; one Pipedrive user has no Planhat team member; one Planhat team
  member's email differs from the Pipedrive one only in letter case; one Planhat team member has
  no Pipedrive account.
"""

from __future__ import annotations

import gc
import hashlib
import html
import math
import unicodedata
from bisect import bisect_left, bisect_right
from collections.abc import Callable
from dataclasses import asdict, dataclass
from datetime import UTC, date, datetime, timedelta
from functools import lru_cache
from itertools import accumulate, combinations
from random import Random
from typing import Any

from sandbox.dataset import PipedriveSeed, PlanhatSeed, Record

__all__ = ["REFERENCE_TIME", "SIZES", "generate", "scaled_counts", "summary"]

SIZES = ("small", "demo", "large")

#: The fixed "now" of every generated data set; all times lie in the 3 years before it.
REFERENCE_TIME = datetime(2026, 11, 1, tzinfo=UTC)

_REF = int(REFERENCE_TIME.timestamp())
_DAY = 86_400
_SPAN = 3 * 365 * _DAY
_START = _REF - _SPAN
_EPOCH = date(1970, 1, 1)


@dataclass(frozen=True)
class _Size:
    organizations: int
    persons: int
    deals: int
    notes: int
    pipelines: int


_SIZE_TABLE = {
    "small": _Size(organizations=40, persons=120, deals=80, notes=150, pipelines=2),
    "demo": _Size(organizations=200, persons=600, deals=500, notes=1_000, pipelines=4),
    "large": _Size(organizations=20_000, persons=60_000, deals=50_000, notes=100_000, pipelines=4),
}


# --------------------------------------------------------------------------------------------
# Public interface
# --------------------------------------------------------------------------------------------


def generate(
    size: str = "small", seed: int = 7, scale: float = 1.0
) -> tuple[PipedriveSeed, PlanhatSeed]:
    """Build the sandbox's starting data: the same `(size, seed, scale)` gives the same records.

    `scale` multiplies the counts of organizations, persons, deals and notes (see the module
    docstring); pipelines, stages, fields and users do not change.
    """
    counts = _scaled_size(size, scale)
    # The records hold no reference cycles; pausing the cyclic collector while hundreds of
    # thousands of containers are created roughly halves the time `large` takes.
    collecting = gc.isenabled()
    gc.disable()
    try:
        return _Generator(counts, seed).run()
    finally:
        if collecting:
            gc.enable()


def scaled_counts(size: str = "small", scale: float = 1.0) -> dict[str, int]:
    """The counts `generate(size, seed, scale)` produces, per collection, without generating."""
    return asdict(_scaled_size(size, scale))


def _scaled_size(size: str, scale: float) -> _Size:
    if size not in _SIZE_TABLE:
        raise ValueError(f"unknown data set size {size!r}; valid sizes: {', '.join(SIZES)}")
    if not (isinstance(scale, int | float) and math.isfinite(scale) and scale > 0):
        raise ValueError(f"scale must be a positive number, not {scale!r}")
    base = _SIZE_TABLE[size]
    if scale == 1:
        return base

    def times(n: int) -> int:
        return max(1, math.floor(n * scale + 0.5))

    return _Size(
        organizations=times(base.organizations),
        persons=times(base.persons),
        deals=times(base.deals),
        notes=times(base.notes),
        pipelines=base.pipelines,
    )


def summary(pd: PipedriveSeed) -> dict[str, int]:
    """Counts per collection, deals per status and deals per pipeline (`deals_in_pipeline_<id>`)."""
    out: dict[str, int] = {
        name: len(getattr(pd, name))
        for name in (
            "users",
            "pipelines",
            "stages",
            "deal_fields",
            "organization_fields",
            "person_fields",
            "organizations",
            "persons",
            "deals",
            "notes",
        )
    }
    for status in ("open", "won", "lost"):
        out[f"deals_{status}"] = 0
    per_pipeline = {p["id"]: 0 for p in pd.pipelines}
    for deal in pd.deals:
        out[f"deals_{deal['status']}"] = out.get(f"deals_{deal['status']}", 0) + 1
        per_pipeline[deal["pipeline_id"]] = per_pipeline.get(deal["pipeline_id"], 0) + 1
    for pipeline_id, count in per_pipeline.items():
        out[f"deals_in_pipeline_{pipeline_id}"] = count
    return out


# --------------------------------------------------------------------------------------------
# Fixed tables
# --------------------------------------------------------------------------------------------

# fmt: off

_COMPANY_DOMAIN = "sandbox-sales.example"

# (id, name, email local part, timezone, offset, locale, currency, active, admin, planhat)
# planhat: "same" (same email), "case" (same email, other letter case), None (no team member).
_USERS: tuple[tuple[Any, ...], ...] = (
    (10471201, "Dana Reyes", "dana.reyes", "Europe/Berlin", "+01:00", "en_US", "EUR", True, True,
     "same"),
    (10471213, "Jonas Berg", "jonas.berg", "Europe/Stockholm", "+01:00", "sv_SE", "EUR", True,
     False, "case"),
    (10471228, "Zoë Lefèvre", "zoe.lefevre", "Europe/Paris", "+01:00", "fr_FR", "EUR", True, False,
     "same"),
    (10471232, "Mateusz Wójcik", "mateusz.wojcik", "Europe/Warsaw", "+01:00", "pl_PL", "EUR", True,
     False, "same"),
    (10471240, "田中 愛子", "aiko.tanaka", "Asia/Tokyo", "+09:00", "ja_JP", "JPY", True, False,
     "same"),
    (10471255, "Søren Kjær", "soren.kjaer", "Europe/Copenhagen", "+01:00", "da_DK", "EUR", True,
     True, "same"),
    (10471261, "Priya Raman", "priya.raman", "America/New_York", "-05:00", "en_US", "USD", True,
     False, None),
    (10471270, "Tomasz Nowak", "tomasz.nowak", "Europe/Warsaw", "+01:00", "pl_PL", "EUR", False,
     False, "same"),
)
_ME_USER_ID = 10471201
# Planhat first/last names when they differ from a plain split of the Pipedrive name.
_PLANHAT_NAMES = {10471240: ("Aiko", "Tanaka")}
# A Planhat team member without a Pipedrive account: (first, last, email local part).
_PLANHAT_ONLY = ("Chiara", "Rossi", "chiara.rossi")
# Relative weight of each user as a record owner (the deactivated user owns only old records).
_OWNER_WEIGHTS = (10, 22, 16, 14, 6, 10, 12, 10)
_DEACTIVATED_AT = _REF - 420 * _DAY
_DEACTIVATED_USER = 10471270

# country: (name, currency, tld, phone prefix, legal forms, cities, streets, culture, weight,
#           street number first)
_COUNTRIES: dict[str, tuple[Any, ...]] = {
    "DE": ("Germany", "EUR", "de", "+49", ("GmbH", "GmbH", "AG", "GmbH & Co. KG", "SE"),
           (("Berlin", "Berlin", "10115"), ("Hamburg", "Hamburg", "20095"),
            ("München", "Bayern", "80331"), ("Köln", "Nordrhein-Westfalen", "50667"),
            ("Düsseldorf", "Nordrhein-Westfalen", "40213"), ("Leipzig", "Sachsen", "04109")),
           ("Hauptstraße", "Schloßallee", "Königstraße", "Bahnhofstraße", "Gartenweg",
            "Mühlenstraße"),
           "de", 20, False),
    "AT": ("Austria", "EUR", "at", "+43", ("GmbH", "AG"),
           (("Wien", "Wien", "1010"), ("Graz", "Steiermark", "8010"),
            ("Linz", "Oberösterreich", "4020")),
           ("Mariahilfer Straße", "Ringstraße", "Grabengasse"), "de", 4, False),
    "CH": ("Switzerland", "CHF", "ch", "+41", ("AG", "GmbH", "SA"),
           (("Zürich", "Zürich", "8001"), ("Genève", "Genève", "1201"), ("Basel", "Basel-Stadt",
                                                                        "4051")),
           ("Bahnhofstrasse", "Rue du Rhône", "Seestrasse"), "de", 4, False),
    "FR": ("France", "EUR", "fr", "+33", ("SAS", "SARL", "SA"),
           (("Paris", "Île-de-France", "75002"), ("Lyon", "Auvergne-Rhône-Alpes", "69002"),
            ("Marseille", "Provence-Alpes-Côte d'Azur", "13001"),
            ("Nantes", "Pays de la Loire", "44000")),
           ("rue de la Paix", "avenue des Champs-Élysées", "boulevard Saint-Germain",
            "rue Lafayette"),
           "fr", 10, True),
    "GB": ("United Kingdom", "GBP", "co.uk", "+44", ("Ltd", "Ltd", "PLC", "LLP"),
           (("London", "England", "EC1A 1BB"), ("Manchester", "England", "M1 1AE"),
            ("Edinburgh", "Scotland", "EH1 1YZ"), ("Cardiff", "Wales", "CF10 1EP")),
           ("High Street", "Station Road", "King's Road", "Church Lane"), "en", 10, True),
    "US": ("United States", "USD", "com", "+1", ("Inc.", "LLC", "Corp."),
           (("New York", "NY", "10001"), ("San Francisco", "CA", "94105"),
            ("Austin", "TX", "78701"), ("Chicago", "IL", "60601"), ("Boston", "MA", "02108")),
           ("Main Street", "Market Street", "5th Avenue", "Elm Street", "Broadway"), "en", 16,
           True),
    "NL": ("Netherlands", "EUR", "nl", "+31", ("B.V.", "N.V."),
           (("Amsterdam", "Noord-Holland", "1012 AB"), ("Rotterdam", "Zuid-Holland", "3011 AA"),
            ("Utrecht", "Utrecht", "3511 AA")),
           ("Keizersgracht", "Coolsingel", "Oudegracht"), "nl", 6, False),
    "PL": ("Poland", "PLN", "pl", "+48", ("Sp. z o.o.", "S.A."),
           (("Warszawa", "mazowieckie", "00-001"), ("Kraków", "małopolskie", "30-001"),
            ("Łódź", "łódzkie", "90-001"), ("Gdańsk", "pomorskie", "80-001")),
           ("ulica Marszałkowska", "ulica Długa", "aleja Jerozolimskie", "ulica Piotrkowska"),
           "pl", 6, False),
    "CZ": ("Czechia", "CZK", "cz", "+420", ("s.r.o.", "a.s."),
           (("Praha", "Hlavní město Praha", "110 00"), ("Brno", "Jihomoravský kraj", "602 00")),
           ("Václavské náměstí", "Národní třída", "Karlova"), "cs", 3, False),
    "SE": ("Sweden", "SEK", "se", "+46", ("AB",),
           (("Stockholm", "Stockholms län", "111 22"), ("Göteborg", "Västra Götaland", "411 01"),
            ("Malmö", "Skåne", "211 20")),
           ("Drottninggatan", "Kungsgatan", "Storgatan"), "nordic", 4, False),
    "DK": ("Denmark", "DKK", "dk", "+45", ("ApS", "A/S"),
           (("København", "Hovedstaden", "1050"), ("Aarhus", "Midtjylland", "8000")),
           ("Strøget", "Nørregade", "Østerbrogade"), "nordic", 3, False),
    "ES": ("Spain", "EUR", "es", "+34", ("S.L.", "S.A."),
           (("Madrid", "Comunidad de Madrid", "28013"), ("Barcelona", "Cataluña", "08002"),
            ("Sevilla", "Andalucía", "41001")),
           ("Calle Mayor", "Gran Vía", "Paseo de Gràcia"), "es", 5, False),
    "JP": ("Japan", "JPY", "co.jp", "+81", ("K.K.",),
           (("東京都", "東京都", "100-0005"), ("大阪市", "大阪府", "530-0001")),
           ("丸の内", "梅田"), "jp", 3, False),
}
_COUNTRY_CODES = tuple(_COUNTRIES)

_STEMS: dict[str, tuple[str, ...]] = {
    "de": ("Nordlicht", "Blauwal", "Sonnenberg", "Eichenhof", "Weißdorn", "Bergmann", "Grünfeld",
           "Falkenstein", "Rheinwerk", "Alpenglühen"),
    "fr": ("Lumière", "Bellevue", "Étoile", "Côte d'Or", "Mistral", "Beaulieu", "Rivière"),
    "en": ("Brightwater", "Northwind", "Blue Harbor", "Redwood", "Silverline", "Oakridge",
           "Ironbridge", "Clearpath", "Summit", "Foxglove", "Harbourside"),
    "nl": ("Dijkstra", "Oranjeboom", "Windmolen", "Tulpenveld"),
    "pl": ("Wisła", "Bursztyn", "Żuraw", "Mazowsze", "Sokół"),
    "cs": ("Vltava", "Dvořák", "Šumava", "Krkonoše"),
    "nordic": ("Fjordvik", "Norrsken", "Åkerlund", "Bjørnstad", "Havsbris"),
    "es": ("Sol y Mar", "Peñalara", "Almendro", "Brisa", "Montaña Azul"),
    "jp": ("Sakura", "Fuji", "Aozora", "Midori"),
}
_JP_STEMS = (("テスト", "test"), ("さくら", "sakura"), ("富士", "fuji"), ("青空", "aozora"),
             ("山田", "yamada"), ("みどり", "midori"))
_JP_SECTORS = (("物流", "logistics"), ("システム", "systems"), ("商事", "shoji"),
               ("製作所", "seisakusho"), ("", ""))
_SECTORS = ("Logistics", "Analytics", "Foods", "Robotics", "Health", "Energy", "Software",
            "Textiles", "Consulting", "Media", "Pharma", "Mobility", "Finance", "Systems",
            "Construction", "Retail", "Biotech", "Insurance", "Maritime", "Education")
_SECTORS_DE = ("Logistik", "Maschinenbau", "Bau", "Software", "Handel", "Medizintechnik",
               "Versicherung", "Energie")
_TAILS = ("Labs", "Group", "Works", "Solutions", "Collective", "Partners", "Studio", "Holdings")

# The first organizations of every data set (the awkward names tests look for).
_SPECIAL_ORGS = (
    ("Müller & Søn GmbH", "DE", "mueller-soen"),
    ("Škoda Partners", "CZ", "skoda-partners"),
    ("株式会社テスト", "JP", "test"),
    ("Łódź Logistics", "PL", "lodz-logistics"),
    ("Café Zürich AG", "CH", "cafe-zuerich"),
    ("O'Brien & Daughters Ltd", "GB", "obrien-daughters"),
)

_NAMES: dict[str, tuple[tuple[str, ...], tuple[str, ...]]] = {
    "de": (("Jürgen", "Anna", "Lukas", "Sophie", "Jörg", "Maximilian", "Lea", "Käthe", "Uwe",
            "Miriam", "Björn", "Frauke"),
           ("Müller", "Schröder", "Weiß", "Becker", "Groß", "Köhler", "Keller", "Hoffmann",
            "Schäfer", "Fuchs", "Lange-Möller")),
    "fr": (("François", "Amélie", "Hélène", "Jérôme", "Chloé", "Gaëlle", "Loïc", "Noémie"),
           ("Lefèvre", "Dubois", "Girard", "Rousseau", "Fontaine", "Côté", "Mercier")),
    "en": (("James", "Olivia", "Liam", "Emma", "Noah", "Amelia", "Oliver", "Grace", "Ethan",
            "Siobhán", "Seán"),
           ("Smith", "O'Connor", "Johnson", "Taylor-Brown", "Williams", "Clarke", "Nguyen",
            "Patel", "MacDonald")),
    "nl": (("Sanne", "Daan", "Femke", "Joris", "Eline"),
           ("de Vries", "van der Berg", "Jansen", "Bakker", "Visser")),
    "pl": (("Łukasz", "Małgorzata", "Paweł", "Zofia", "Wojciech", "Agnieszka", "Michał"),
           ("Wójcik", "Kowalczyk", "Nowak", "Zieliński", "Wiśniewska", "Dąbrowski")),
    "cs": (("Jiří", "Tereza", "Ondřej", "Kateřina", "Tomáš"),
           ("Dvořák", "Novotná", "Černý", "Procházka", "Svoboda")),
    "nordic": (("Søren", "Åsa", "Bjørn", "Ingrid", "Mikael", "Sigrún", "Jörmundur"),
               ("Kjær", "Lindqvist", "Ødegaard", "Håkansson", "Sørensen", "Nyström")),
    "es": (("José", "María", "Iñigo", "Lucía", "Álvaro", "Begoña"),
           ("Muñoz", "García", "Peña", "Ibáñez", "Rodríguez", "Núñez")),
    "jp": (("太郎", "花子", "健", "由美", "翔太", "さくら"),
           ("山田", "佐藤", "鈴木", "高橋", "田中", "伊藤")),
    "tr": (("Çağla", "Gökhan", "Ayşe", "Şükrü"), ("Öztürk", "Yılmaz", "Çelik", "Doğan")),
}
_JP_ROMAJI = {"太郎": "taro", "花子": "hanako", "健": "ken", "由美": "yumi", "翔太": "shota",
              "さくら": "sakura", "山田": "yamada", "佐藤": "sato", "鈴木": "suzuki",
              "高橋": "takahashi", "田中": "tanaka", "伊藤": "ito"}
_CULTURES = tuple(_NAMES)
_FREEMAIL = ("gmail.com", "outlook.com", "gmx.de", "web.de", "yahoo.co.jp", "icloud.com",
             "proton.me", "hotmail.fr", "wp.pl")

_CURRENCY_MIX = (("EUR", 48), ("USD", 30), ("GBP", 7), ("CHF", 4), ("SEK", 3), ("PLN", 3),
                 ("JPY", 2), ("DKK", 2), ("CZK", 1))

_PIPELINES = (
    ("New business", True, (("Qualified", 10), ("Contact made", 20), ("Demo scheduled", 40),
                            ("Proposal made", 60), ("Negotiations started", 80))),
    ("Renewals & upsell", True, (("Renewal due", 30), ("Offer sent", 60), ("Verbal yes", 90))),
    ("Partner channel", False, (("Partner lead", 10), ("Joint call", 30), ("Quote sent", 60),
                                ("Contract review", 80))),
    ("Enterprise – DACH", True, (("Discovery", 10), ("Workshop", 25), ("Security review", 50),
                                 ("Procurement", 75), ("Signature", 90))),
)
_PIPELINE_WEIGHTS = (55, 25, 10, 10)

_PRODUCTS = ("Platform Pro", "Platform Starter", "Analytics add-on", "Onboarding package",
             "Premium support", "API access", "SSO & SCIM", "Enterprise licence")
_LOST_REASONS = ("Price too high", "Chose a competitor", "No budget this year",
                 "Timing – revisit next year", "Kein Bedarf mehr", "Unresponsive",
                 "Missing feature: SSO", "Went with in-house solution")
_ORIGINS = (("ManuallyCreated", 70), ("API", 14), ("Import", 10), ("WebForms", 6))

_DEAL_LABELS = ("Hot", "Warm", "Cold", "Strategic")
_ORG_LABELS = ("Customer", "Prospect", "Partner", "Churned")
_PERSON_LABELS = ("Customer", "Hot lead", "Newsletter")
_INDUSTRIES = ("Software", "Manufacturing", "Retail", "Healthcare", "Logistics",
               "Financial services", "Public sector", "Education")

# Custom fields: (name, field_type, options or None, share of null values).
_CUSTOM_FIELDS: dict[str, tuple[tuple[str, str, tuple[str, ...] | None, float], ...]] = {
    "deal": (
        ("Contract tier", "enum", ("Starter", "Growth", "Enterprise", "Enterprise+"), 0.25),
        ("Modules", "set", ("CRM sync", "Analytics", "Automation", "API access", "SSO & SCIM",
                            "Premium support"), 0.3),
        ("Renewal date", "date", None, 0.35),
        ("Contract start", "date", None, 0.35),
        ("Implementation fee", "monetary", None, 0.4),
        ("Seats", "double", None, 0.3),
        ("Customer success manager", "user", None, 0.3),
        ("Reseller", "org", None, 0.7),
        ("PO number", "varchar", None, 0.5),
        ("Contract notes", "text", None, 0.6),
        ("Billing contact phone", "phone", None, 0.5),
        ("Delivery address", "address", None, 0.6),
    ),
    "organization": (
        ("Industry segment", "enum", ("SaaS", "Manufacturing", "Retail & E-commerce",
                                      "Healthcare", "Logistics", "Financial services",
                                      "Public sector", "Éducation"), 0.2),
        ("Tools in use", "set", ("Salesforce", "HubSpot", "Zendesk", "Jira", "Slack", "SAP"),
         0.35),
        ("Customer since", "date", None, 0.5),
        ("Annual budget", "monetary", None, 0.45),
        ("Employees (self-reported)", "double", None, 0.3),
        ("Health score", "double", None, 0.5),
        ("Customer success manager", "user", None, 0.3),
        ("Parent company", "org", None, 0.85),
        ("Account ID", "varchar", None, 0.2),
        ("Onboarding notes", "text", None, 0.6),
        ("Support hotline", "phone", None, 0.5),
        ("Billing address", "address", None, 0.4),
    ),
    "person": (
        ("Role in buying process", "enum", ("Decision maker", "Champion", "Influencer",
                                            "End user", "Billing contact"), 0.3),
        ("Preferred language", "enum", ("Deutsch", "English", "Français", "Polski", "日本語",
                                        "Español"), 0.4),
        ("Interests", "set", ("Webinars", "Product updates", "Beta programme", "Events"), 0.4),
        ("Last training date", "date", None, 0.6),
        ("NPS score", "double", None, 0.55),
        ("LinkedIn profile", "varchar", None, 0.5),
        ("Bio", "text", None, 0.7),
        ("Direct line", "phone", None, 0.5),
        ("Office address", "address", None, 0.65),
        ("Account manager", "user", None, 0.35),
        ("Previous employer", "org", None, 0.8),
        ("Personal budget", "monetary", None, 0.7),
    ),
}

_ADDRESS_KEYS = ("value", "country", "admin_area_level_1", "admin_area_level_2", "locality",
                 "sublocality", "route", "street_number", "subpremise", "postal_code")

_TEXTS = (
    "Kunde möchte SSO vor dem Rollout.\nNächster Termin: Q3-Review.",
    "Signed via DocuSign. Legal asked for a DPA addendum (GDPR art. 28).",
    "Budget owner: CFO. Procurement needs 3 quotes — ours is the cheapest.",
    "Migration from legacy CRM planned; ~12k contacts, some with duplicate e-mails.",
    "Réunion de lancement prévue ; l'équipe veut des rapports hebdomadaires.",
    "契約更新は毎年4月。担当者変更の可能性あり。",
    "Multi-line note:\n- onboarding in 2 phases\n- trainer speaks Polish & English\n- go-live TBD",
)
_BIOS = (
    "Head of Operations, 12 years in logistics.",
    "Leitet das Controlling; bevorzugt E-Mail statt Telefon.",
    "Former customer at a competitor — knows the product category well.",
    "Ancienne directrice commerciale, très orientée données.",
    "Our champion since the pilot; speaks at user groups.",
)

_NOTE_STEPS = ("send the proposal", "book a demo for the IT team", "loop in procurement",
               "share the security whitepaper", "schedule the kick-off", "confirm seat count")


# fmt: on

# --------------------------------------------------------------------------------------------
# Helpers
# --------------------------------------------------------------------------------------------

_FOLD = str.maketrans(
    {
        "ß": "ss",
        "ø": "oe",
        "Ø": "Oe",
        "ł": "l",
        "Ł": "L",
        "æ": "ae",
        "Æ": "AE",
        "đ": "d",
        "œ": "oe",
        "ı": "i",
        "å": "aa",
        "Å": "Aa",
        "ü": "ue",
        "ö": "oe",
        "ä": "ae",
        "Ü": "Ue",
        "Ö": "Oe",
        "Ä": "Ae",
    }
)


@lru_cache(maxsize=4096)
def _ascii(text: str) -> str:
    """A lowercase ASCII slug part of `text` ("Müller & Søn" → "mueller-soen")."""
    if text in _JP_ROMAJI:
        return _JP_ROMAJI[text]
    folded = unicodedata.normalize("NFKD", text.translate(_FOLD))
    folded = folded.encode("ascii", "ignore").decode("ascii").lower()
    out = []
    dash = False
    for ch in folded:
        if ch.isalnum():
            out.append(ch)
            dash = False
        elif ch in " -&/_" and out and not dash:
            out.append("-")
            dash = True
    return "".join(out).strip("-")


@lru_cache(maxsize=8192)
def _escape(text: str) -> str:
    return html.escape(text, quote=False)


def _hash40(*parts: object) -> str:
    return hashlib.sha1(":".join(map(str, parts)).encode(), usedforsecurity=False).hexdigest()


def _uuid(*parts: object) -> str:
    h = _hash40(*parts)
    return f"{h[:8]}-{h[8:12]}-4{h[13:16]}-a{h[17:20]}-{h[20:32]}"


# Formatting tables: every calendar day from well before the data's first time to well after the
# reference instant, every hour and every "MM:SS" of an hour.
_FIRST_DAY = (_START - 1200 * _DAY) // _DAY
_DAYS = tuple(
    (_EPOCH + timedelta(days=d)).isoformat() for d in range(_FIRST_DAY, _REF // _DAY + 1200)
)
_HOURS = tuple(f"{h:02d}" for h in range(24))
_MINSEC = tuple(f"{m:02d}:{s:02d}" for m in range(60) for s in range(60))


class _Clock:
    """Fast, exact UTC formatting of epoch seconds (table lookups, no datetime objects)."""

    @staticmethod
    def day(t: int) -> str:
        return _DAYS[t // _DAY - _FIRST_DAY]

    @staticmethod
    def iso(t: int) -> str:
        d, rest = divmod(t, _DAY)
        h, ms = divmod(rest, 3600)
        return f"{_DAYS[d - _FIRST_DAY]}T{_HOURS[h]}:{_MINSEC[ms]}Z"

    @staticmethod
    def v1(t: int) -> str:
        d, rest = divmod(t, _DAY)
        h, ms = divmod(rest, 3600)
        return f"{_DAYS[d - _FIRST_DAY]} {_HOURS[h]}:{_MINSEC[ms]}"


class _Weighted:
    """Weighted choice with one `random()` call."""

    def __init__(self, items: tuple[Any, ...], weights: tuple[float, ...]) -> None:
        self.items = items
        self.cum = list(accumulate(weights))
        self.total = self.cum[-1]

    @classmethod
    def of(cls, pairs: tuple[tuple[Any, float], ...]) -> _Weighted:
        """From (item, weight) pairs."""
        return cls(tuple(item for item, _ in pairs), tuple(weight for _, weight in pairs))

    def pick(self, r: float) -> Any:
        return self.items[bisect_right(self.cum, r * self.total)]


# --------------------------------------------------------------------------------------------
# The generator
# --------------------------------------------------------------------------------------------


class _Generator:
    def __init__(self, size: _Size, seed: int) -> None:
        self.size = size
        self.seed = seed
        self.rng = Random(seed)
        self.clock = _Clock()
        self._option_id = 10
        self.pd = PipedriveSeed(me_user_id=_ME_USER_ID)
        self.ph = PlanhatSeed()
        self.owner_choice = _Weighted(tuple(u[0] for u in _USERS), _OWNER_WEIGHTS)
        self.active_owner_choice = _Weighted(
            tuple(u[0] for u in _USERS if u[7]),
            tuple(w for u, w in zip(_USERS, _OWNER_WEIGHTS, strict=True) if u[7]),
        )
        self.active_user_ids = tuple(u[0] for u in _USERS if u[7])
        self.country_choice = _Weighted(_COUNTRY_CODES, tuple(c[8] for c in _COUNTRIES.values()))
        self.currency_choice = _Weighted.of(_CURRENCY_MIX)
        self.origin_choice = _Weighted.of(_ORIGINS)

    # ---- small random helpers ---------------------------------------------------------------

    def _pick(self, seq: tuple[Any, ...] | list[Any]) -> Any:
        return seq[int(self.rng.random() * len(seq))]

    def _between(self, lo: int, hi: int) -> int:
        """A uniform integer second in [lo, hi] (hi < lo is treated as lo)."""
        if hi <= lo:
            return lo
        return lo + int(self.rng.random() * (hi - lo + 1))

    def _owner(self, t: int) -> int:
        r = self.rng.random()
        choice = self.active_owner_choice if t >= _DEACTIVATED_AT else self.owner_choice
        owner: int = choice.pick(r)
        return owner

    def _sorted_times(self, n: int, lo: int, hi: int, same_second: float) -> list[int]:
        """n sorted creation times; a share of them repeat the previous one (imports)."""
        rnd = self.rng.random
        times = sorted(lo + int(rnd() * (hi - lo)) for _ in range(n))
        for i in range(1, n):
            if rnd() < same_second:
                times[i] = times[i - 1]
        return times

    def _ids(self, n: int, first: int) -> list[int]:
        """Increasing ids with a few gaps (deleted records)."""
        rnd = self.rng.random
        ids = []
        nxt = first
        for _ in range(n):
            ids.append(nxt)
            nxt += 1 if rnd() >= 0.06 else 2 + int(rnd() * 3)
        return ids

    def _update_time(self, floor: int) -> int:
        """When a record created/last changed at `floor` was last updated."""
        r = self.rng.random()
        if r < 0.3:
            return floor
        if r < 0.7:
            later = floor + int(self.rng.expovariate(1 / (20 * _DAY)))
            return later if later < _REF else self._between(floor, _REF - 1)
        return self._between(floor, _REF - 1)

    def _bursts(self, floors: list[int], updates: list[int], salt: int) -> None:
        """Make groups of records share one update second: many small bursts and one bulk edit.

        The bulk edit touches up to 600 records at once: more than a page of the largest page size,
        so cursors must page through ties.
        """
        rng = self.rng
        n = len(updates)
        if n < 4:
            return
        for _ in range(max(3, n // 120)):
            t = self._between(_REF - 500 * _DAY, _REF - 1)
            want = 2 + int(rng.random() * 5)
            for _ in range(want * 4):
                i = int(rng.random() * n)
                if floors[i] <= t:
                    updates[i] = t
                    want -= 1
                    if want == 0:
                        break
        t = _REF - (17 + salt) * _DAY + 9 * 3600 + 30 * 60 + salt
        candidates = [i for i in range(n) if floors[i] <= t]
        size = min(max(8, n // 4), 600, len(candidates))
        for i in rng.sample(candidates, size):
            updates[i] = t

    def _option_ids(self, labels: tuple[str, ...]) -> list[int]:
        ids = []
        for _ in labels:
            self._option_id += 1 + int(self.rng.random() * 3)
            ids.append(self._option_id)
        return ids

    # ---- the run ----------------------------------------------------------------------------

    def run(self) -> tuple[PipedriveSeed, PlanhatSeed]:
        self._users()
        self._pipelines()
        self._fields()
        self._organizations()
        self._persons()
        self._deals()
        self._notes()
        return self.pd, self.ph

    # ---- users --------------------------------------------------------------------------------

    def _users(self) -> None:
        clock = self.clock
        for i, (uid, name, local, tz, offset, locale, cur, active, admin, ph) in enumerate(_USERS):
            created = _START - (400 - 37 * i) * _DAY + 3600 * (9 + i)
            modified = _DEACTIVATED_AT if not active else _REF - (3 + 11 * i) * _DAY - 4000 * i
            email = f"{local}@{_COMPANY_DOMAIN}"
            access = [
                {
                    "app": "sales",
                    "admin": admin,
                    "permission_set_id": _uuid(self.seed, "perm", "sales", admin),
                },
                {
                    "app": "global",
                    "admin": admin,
                    "permission_set_id": _uuid(self.seed, "perm", "global", admin),
                },
            ]
            if admin:
                access.append(
                    {
                        "app": "account_settings",
                        "admin": True,
                        "permission_set_id": _uuid(self.seed, "perm", "account"),
                    }
                )
            self.pd.users.append(
                {
                    "id": uid,
                    "name": name,
                    "default_currency": cur,
                    "locale": locale,
                    "lang": 1,
                    "email": email,
                    "phone": None if i % 3 == 2 else f"+49 30 5550{uid % 1000:03d}",
                    "activated": True,
                    "last_login": clock.v1(modified if not active else _REF - 3600 * (i + 2)),
                    "created": clock.v1(created),
                    "modified": clock.v1(modified),
                    "has_created_company": uid == _ME_USER_ID,
                    "access": access,
                    "active_flag": active,
                    "timezone_name": tz,
                    "timezone_offset": offset,
                    "role_id": 1,
                    "icon_url": None,
                    "is_you": uid == _ME_USER_ID,
                    "is_deleted": False,
                    "is_admin": admin,
                }
            )
            if ph is not None:
                first, last = _PLANHAT_NAMES.get(uid, tuple(name.split(" ", 1)))
                ph_email = email if ph == "same" else email.replace(local, local.title())
                self.ph.users.append(self._planhat_user(first, last, ph_email, created, i))
        first, last, local = _PLANHAT_ONLY
        self.ph.users.append(
            self._planhat_user(first, last, f"{local}@{_COMPANY_DOMAIN}", _REF - 200 * _DAY, 99)
        )

    def _planhat_user(self, first: str, last: str, email: str, created: int, n: int) -> Record:
        return {
            "_id": f"{created:08x}"[-8:] + _hash40(self.seed, "planhat-user", email)[:16],
            "email": email,
            "firstName": first,
            "lastName": last,
            "nickName": first,
            "externalId": f"emp-{1001 + n}",
        }

    # ---- pipelines and stages -----------------------------------------------------------------

    def _pipelines(self) -> None:
        clock = self.clock
        stage_id = 0
        self.stages_by_pipeline: dict[int, list[int]] = {}
        for p_index in range(self.size.pipelines):
            name, prob, stages = _PIPELINES[p_index]
            pid = p_index + 1
            added = _START - (300 - 60 * p_index) * _DAY + 3600 * 10
            self.pd.pipelines.append(
                {
                    "id": pid,
                    "name": name,
                    "order_nr": p_index + 1,
                    "is_deleted": False,
                    "is_deal_probability_enabled": prob,
                    "add_time": clock.iso(added),
                    "update_time": clock.iso(added + (40 + 13 * p_index) * _DAY),
                }
            )
            ids = []
            for s_index, (s_name, probability) in enumerate(stages):
                stage_id += 1
                rot = s_index in (1, 2)
                self.pd.stages.append(
                    {
                        "id": stage_id,
                        "order_nr": s_index + 1,
                        "name": s_name,
                        "is_deleted": False,
                        "deal_probability": probability,
                        "pipeline_id": pid,
                        "is_deal_rot_enabled": rot,
                        "days_to_rotten": 14 + 7 * s_index if rot else None,
                        "add_time": clock.iso(added + s_index),
                        "update_time": clock.iso(added + s_index + 30 * _DAY),
                    }
                )
                ids.append(stage_id)
            self.stages_by_pipeline[pid] = ids
        weights = _PIPELINE_WEIGHTS[: self.size.pipelines]
        self.pipeline_choice = _Weighted(tuple(range(1, self.size.pipelines + 1)), weights)

    # ---- field lists ----------------------------------------------------------------------------

    def _field(
        self,
        code: str,
        name: str,
        ftype: str,
        *,
        options: list[Record] | None = None,
        subfields: list[Record] | None = None,
        custom: bool = False,
        optional: bool = False,
        description: str = "",
    ) -> Record:
        return {
            "field_name": name,
            "field_code": code,
            "description": description,
            "field_type": ftype,
            "options": options,
            "subfields": subfields,
            "is_custom_field": custom,
            "is_optional_response_field": optional,
        }

    def _options(self, labels: tuple[str, ...], added: int) -> list[Record]:
        stamp = self.clock.iso(added)
        return [
            {"id": oid, "label": label, "color": None, "add_time": stamp, "update_time": stamp}
            for oid, label in zip(self._option_ids(labels), labels, strict=True)
        ]

    @staticmethod
    def _subfields(code: str, name: str, ftype: str) -> list[Record] | None:
        if ftype == "monetary":
            return [
                {"field_code": code, "field_name": f"Amount of {name}", "field_type": "double"},
                {
                    "field_code": f"{code}_currency",
                    "field_name": f"Currency of {name}",
                    "field_type": "varchar",
                },
            ]
        if ftype == "address":
            return [
                {
                    "field_code": code if key == "value" else f"{code}_{key}",
                    "field_name": f"{key.replace('_', ' ').capitalize()} of {name}",
                    "field_type": "varchar",
                }
                for key in _ADDRESS_KEYS
            ]
        return None

    def _fields(self) -> None:
        added = _START - 200 * _DAY
        f = self._field
        self.deal_label_ids = self._option_ids(_DEAL_LABELS)
        self.org_label_ids = self._option_ids(_ORG_LABELS)
        self.person_label_ids = self._option_ids(_PERSON_LABELS)
        self.industry_ids = self._option_ids(_INDUSTRIES)

        def opts(ids: list[int], labels: tuple[str, ...]) -> list[Record]:
            return [
                {"id": i, "label": label, "color": None}
                for i, label in zip(ids, labels, strict=True)
            ]

        visible = [
            {"id": k, "label": v}
            for k, v in (
                ("1", "Owner & followers"),
                ("3", "Entire company"),
                ("5", "Owner's visibility group"),
                ("7", "Owner's visibility group and sub-groups"),
            )
        ]
        self.pd.deal_fields = [
            f("title", "Title", "varchar", description="The title of the deal"),
            f("creator_user_id", "Creator", "user"),
            f("owner_id", "Owner", "user"),
            f(
                "value",
                "Value",
                "monetary",
                subfields=[
                    {
                        "field_code": "value",
                        "field_name": "Amount of Value",
                        "field_type": "double",
                    },
                    {
                        "field_code": "currency",
                        "field_name": "Currency of Value",
                        "field_type": "varchar",
                    },
                ],
                description="The monetary value of the deal",
            ),
            f("probability", "Probability", "double"),
            f("org_id", "Organization", "org"),
            f("person_id", "Contact person", "people"),
            f("pipeline_id", "Pipeline", "int"),
            f("stage_id", "Stage", "stage"),
            f(
                "status",
                "Status",
                "status",
                options=[
                    {"id": s, "label": s.capitalize()} for s in ("open", "won", "lost", "deleted")
                ],
            ),
            f("add_time", "Deal created", "date"),
            f("update_time", "Update time", "date"),
            f("stage_change_time", "Last stage change", "date"),
            f("won_time", "Won time", "date"),
            f("lost_time", "Lost time", "date"),
            f("close_time", "Deal closed on", "date"),
            f("expected_close_date", "Expected close date", "date"),
            f("lost_reason", "Lost reason", "varchar"),
            f("visible_to", "Visible to", "visible_to", options=visible),
            f("label_ids", "Label", "set", options=opts(self.deal_label_ids, _DEAL_LABELS)),
            f("origin", "Source origin", "varchar"),
            f("first_won_time", "First won time", "date", optional=True),
            f("products_count", "Products", "int", optional=True),
            f("notes_count", "Notes", "int", optional=True),
            f("smart_bcc_email", "Smart BCC email", "varchar", optional=True),
        ]
        self.pd.organization_fields = [
            f("name", "Name", "varchar", description="The name of the organization"),
            f("owner_id", "Owner", "user"),
            f(
                "address",
                "Address",
                "address",
                subfields=self._subfields("address", "Address", "address"),
            ),
            f("label_ids", "Labels", "set", options=opts(self.org_label_ids, _ORG_LABELS)),
            f("visible_to", "Visible to", "visible_to", options=visible),
            f("add_time", "Organization created", "date"),
            f("update_time", "Update time", "date"),
            f("website", "Website", "varchar"),
            f("linkedin", "LinkedIn profile", "varchar"),
            f("industry", "Industry", "enum", options=opts(self.industry_ids, _INDUSTRIES)),
            f("annual_revenue", "Annual revenue", "int"),
            f("employee_count", "Number of employees", "int"),
            f("people_count", "People", "int", optional=True),
            f("open_deals_count", "Open deals", "int", optional=True),
        ]
        self.pd.person_fields = [
            f("name", "Name", "varchar", description="The full name of the person"),
            f("first_name", "First name", "varchar"),
            f("last_name", "Last name", "varchar"),
            f("owner_id", "Owner", "user"),
            f("org_id", "Organization", "org"),
            f("emails", "Email", "varchar"),
            f("phones", "Phone", "phone"),
            f("label_ids", "Labels", "set", options=opts(self.person_label_ids, _PERSON_LABELS)),
            f("visible_to", "Visible to", "visible_to", options=visible),
            f("add_time", "Person created", "date"),
            f("update_time", "Update time", "date"),
            f("picture_id", "Profile picture", "picture"),
            f("open_deals_count", "Open deals", "int", optional=True),
            f("notes_count", "Notes", "int", optional=True),
        ]
        # Custom fields: (code, type, option ids, null rate) per entity, in definition order.
        self.custom: dict[str, list[tuple[str, str, list[int] | None, float]]] = {}
        for entity, target in (
            ("deal", self.pd.deal_fields),
            ("organization", self.pd.organization_fields),
            ("person", self.pd.person_fields),
        ):
            specs = []
            for n, (name, ftype, labels, nulls) in enumerate(_CUSTOM_FIELDS[entity]):
                code = _hash40("pipedrive-sandbox", self.seed, entity, name)
                options = self._options(labels, added + n * 3600) if labels else None
                target.append(
                    f(
                        code,
                        name,
                        ftype,
                        options=options,
                        subfields=self._subfields(code, name, ftype),
                        custom=True,
                        description="" if n % 3 else f"{name} (maintained by sales ops)",
                    )
                )
                specs.append((code, ftype, [o["id"] for o in options] if options else None, nulls))
            self.custom[entity] = specs

    # ---- custom field values ------------------------------------------------------------------

    def _address(self, country: str) -> Record:
        rnd = self.rng.random
        cname, _, _, _, _, cities, streets, _, _, number_first = _COUNTRIES[country]
        city, region, postal = cities[int(rnd() * len(cities))]
        street = streets[int(rnd() * len(streets))]
        number = str(1 + int(rnd() * 180))
        line = f"{number} {street}" if number_first else f"{street} {number}"
        return {
            "value": f"{line}, {postal} {city}, {cname}",
            "country": cname,
            "admin_area_level_1": region,
            "admin_area_level_2": None,
            "locality": city,
            "sublocality": None,
            "route": street,
            "street_number": number,
            "subpremise": f"{1 + int(rnd() * 5)}. OG" if rnd() < 0.15 else None,
            "postal_code": postal,
        }

    def _phone(self, country: str) -> str:
        rnd = self.rng.random
        prefix = _COUNTRIES[country][3]
        area = 20 + int(rnd() * 80)
        digits = f"{int(rnd() * 10_000_000):07d}"
        r = rnd()
        if r < 0.5:
            return f"{prefix} {area} {digits}"
        if r < 0.8:
            return f"{prefix}{area}{digits}"
        return f"0{area}-{digits[:3]} {digits[3:]}"

    def _custom_rows(
        self,
        entity: str,
        times: list[int],
        currencies: list[str],
        countries: list[str],
        other_org: Callable[[int], int | None],
        varchar: Callable[[int], str],
    ) -> list[Record]:
        """The `custom_fields` of n records (every custom field code, null or a v2 value).

        Built column by column (fast for `large`). Every field gets at least one null and, when
        there are two records or more, at least one value.
        """
        rng = self.rng
        rnd = rng.random
        day = self.clock.day
        n = len(times)
        user_ids = self.active_user_ids
        columns = []
        for _code, ftype, option_ids, nulls in self.custom[entity]:
            value: Callable[[int], Any]
            column: list[Any]
            opts = tuple(option_ids or ())
            combos = _subsets(opts) if ftype == "set" else ()
            if ftype == "enum":

                def value(i: int, opts: tuple[int, ...] = opts) -> Any:
                    return opts[int(rnd() * len(opts))]

            elif ftype == "set":

                def value(i: int, combos: tuple[tuple[int, ...], ...] = combos) -> Any:
                    return list(combos[int(rnd() * len(combos))])

            elif ftype == "date":

                def value(i: int) -> Any:
                    t = times[i]
                    return day(t - 200 * _DAY + int(rnd() * (_REF + 600 * _DAY - t)))

            elif ftype == "monetary":

                def value(i: int) -> Any:
                    amount = 500 + rnd() * 20_000
                    amount = round(amount, 2) if rnd() < 0.3 else float(int(amount))
                    return {"value": amount, "currency": currencies[i]}

            elif ftype == "double":

                def value(i: int) -> Any:
                    return round(rnd() * 500, 1) if rnd() < 0.5 else float(1 + int(rnd() * 250))

            elif ftype == "user":

                def value(i: int) -> Any:
                    return user_ids[int(rnd() * len(user_ids))]

            elif ftype == "org":
                value = other_org
            elif ftype == "varchar":
                value = varchar
            elif ftype == "text":
                texts = _BIOS if entity == "person" else _TEXTS

                def value(i: int, texts: tuple[str, ...] = texts) -> Any:
                    return texts[int(rnd() * len(texts))]

            elif ftype == "phone":

                def value(i: int) -> Any:
                    return self._phone(countries[i])

            elif ftype == "address":

                def value(i: int) -> Any:
                    return self._address(countries[i])

            else:  # pragma: no cover - every type in _CUSTOM_FIELDS has a generator
                raise AssertionError(f"no generator for custom field type {ftype}")
            # The common types are inlined (this runs for every record of `large`).
            if ftype == "enum":
                k = len(opts)
                column = [opts[int(rnd() * k)] if rnd() >= nulls else None for _ in range(n)]
            elif ftype == "set":
                m = len(combos)
                column = [
                    list(combos[int(rnd() * m)]) if rnd() >= nulls else None for _ in range(n)
                ]
            elif ftype == "date":
                column = [
                    day(t - 200 * _DAY + int(rnd() * (_REF + 600 * _DAY - t)))
                    if rnd() >= nulls
                    else None
                    for t in times
                ]
            elif ftype == "user":
                k = len(user_ids)
                column = [user_ids[int(rnd() * k)] if rnd() >= nulls else None for _ in range(n)]
            else:
                column = [value(i) if rnd() >= nulls else None for i in range(n)]
            filled = n - column.count(None)
            if n >= 2 and filled == n:
                column[-1] = None
            elif n >= 2 and filled == 0:
                for i in range(n - 1, -1, -1):
                    if (v := value(i)) is not None:
                        column[i] = v
                        break
            columns.append(column)
        codes = [spec[0] for spec in self.custom[entity]]
        return [dict(zip(codes, row, strict=True)) for row in zip(*columns, strict=True)]

    # ---- organizations ------------------------------------------------------------------------

    def _org_name(self, country: str, seen: set[str]) -> tuple[str, str]:
        """A new organization name and the ASCII stem of its domain."""
        rnd = self.rng.random
        pick = self._pick
        c = _COUNTRIES[country]
        culture = c[7]
        r = rnd()
        if culture == "jp" and r < 0.6:
            stem, stem_ro = pick(_JP_STEMS)
            sector, sector_ro = pick(_JP_SECTORS)
            name = f"株式会社{stem}{sector}"
            slug = "-".join(p for p in (stem_ro, sector_ro) if p)
        else:
            stems = _STEMS[culture]
            if r < 0.45:
                sectors = _SECTORS_DE if culture == "de" and rnd() < 0.5 else _SECTORS
                base = f"{pick(stems)} {pick(sectors)}"
                name = f"{base} {pick(c[4])}"
            elif r < 0.65:
                lasts = _NAMES[culture][1] if culture != "jp" else _NAMES["en"][1]
                a, b = pick(lasts), pick(lasts)
                base = f"{a} & {b}" if a != b else f"{a} & Partners"
                name = f"{base} {pick(c[4])}"
            elif r < 0.85:
                name = base = f"{pick(stems)} {pick(_SECTORS)}"
            else:
                name = base = f"{pick(stems)} {pick(_TAILS)}"
            slug = _ascii(base)
        if name in seen:
            city = pick(c[5])[0]
            name = f"{name} ({city})"
            slug = f"{slug}-{_ascii(city)}"
            if name in seen:
                k = 2
                while f"{name} #{k}" in seen:
                    k += 1
                name = f"{name} #{k}"
                slug = f"{slug}-{k}"
        seen.add(name)
        return name, slug

    def _organizations(self) -> None:
        n = self.size.organizations
        rng = self.rng
        rnd = rng.random
        iso = self.clock.iso
        adds = self._sorted_times(n, _START, _REF - 2 * _DAY, same_second=0.03)
        ids = self._ids(n, 1)
        updates = [self._update_time(t) for t in adds]
        self._bursts(adds, updates, salt=1)
        self.org_ids = ids
        self.org_adds = adds
        self.org_country: list[str] = []
        self.org_domain: list[str | None] = []
        self.org_names: list[str] = []
        self.org_owner: list[int] = []
        currencies = []
        seen: set[str] = set()
        records = self.pd.organizations
        org_labels, industries = self.org_label_ids, self.industry_ids
        for i in range(n):
            if i < len(_SPECIAL_ORGS):
                name, country, slug = _SPECIAL_ORGS[i]
                seen.add(name)
            else:
                country = self.country_choice.pick(rnd())
                name, slug = self._org_name(country, seen)
            c = _COUNTRIES[country]
            domain = f"{slug}.{c[2]}" if slug else None
            t = adds[i]
            owner = self._owner(t)
            vis = rnd()
            records.append(
                {
                    "id": ids[i],
                    "name": name,
                    "owner_id": owner,
                    "add_time": iso(t),
                    "update_time": iso(updates[i]),
                    "is_deleted": False,
                    "visible_to": 3 if vis < 0.85 else (1 if vis < 0.95 else 7),
                    "address": self._address(country) if rnd() < 0.88 else None,
                    "label_ids": [] if rnd() < 0.5 else [org_labels[int(rnd() * len(org_labels))]],
                    "website": f"https://www.{domain}" if domain and rnd() < 0.85 else None,
                    "linkedin": (
                        f"https://www.linkedin.com/company/{slug}" if slug and rnd() < 0.5 else None
                    ),
                    "industry": industries[int(rnd() * len(industries))] if rnd() < 0.7 else None,
                    "annual_revenue": int(rnd() * 50_000) * 1000 if rnd() < 0.4 else None,
                    "employee_count": 1 + int(rng.expovariate(1 / 250)) if rnd() < 0.6 else None,
                }
            )
            self.org_country.append(country)
            self.org_domain.append(domain)
            self.org_names.append(name)
            self.org_owner.append(owner)
            currencies.append(c[1])

        def parent(i: int) -> int | None:  # an older organization
            return ids[int(rnd() * i)] if i > 0 else None

        def account_id(i: int) -> str:
            return f"ACC-{ids[i]:06d}"

        rows = self._custom_rows(
            "organization", adds, currencies, self.org_country, parent, account_id
        )
        for record, row in zip(records, rows, strict=True):
            record["custom_fields"] = row

    # ---- persons ------------------------------------------------------------------------------

    def _emails(self, first: str, last: str, domain: str | None) -> list[Record]:
        rnd = self.rng.random
        r = rnd()
        if r < 0.12:
            return []
        count = 1 if r < 0.72 else (2 if r < 0.94 else 3)
        f, la = _ascii(first) or "contact", _ascii(last) or "x"
        style = rnd()
        local = (
            f"{f}.{la}"
            if style < 0.55
            else f"{f[0]}.{la}"
            if style < 0.75
            else f"{f}{la}"
            if style < 0.9
            else f
        )
        if rnd() < 0.04:  # typed in mixed case ("Anna.Mueller@nordlicht.de")
            local = local.title()
        freemail = _FREEMAIL
        emails = [
            {
                "value": f"{local}@{domain or freemail[int(rnd() * len(freemail))]}",
                "primary": True,
                "label": "work",
            }
        ]
        if count >= 2:
            emails.append(
                {
                    "value": f"{f}.{la}{int(rnd() * 99)}@{freemail[int(rnd() * len(freemail))]}",
                    "primary": False,
                    "label": "home",
                }
            )
            if count == 3:
                emails.append(
                    {
                        "value": f"{la}.{f}@{freemail[int(rnd() * len(freemail))]}",
                        "primary": False,
                        "label": "other",
                    }
                )
            if rnd() < 0.2:  # the primary address is not the first one
                emails[0]["primary"] = False
                emails[1 + int(rnd() * (count - 1))]["primary"] = True
        return emails

    def _phones(self, country: str) -> list[Record]:
        rnd = self.rng.random
        r = rnd()
        if r < 0.25:
            return []
        work, other = ("work", "mobile") if rnd() < 0.7 else ("mobile", "home")
        phones = [{"value": self._phone(country), "primary": True, "label": work}]
        if r >= 0.8:
            phones.append({"value": self._phone(country), "primary": False, "label": other})
            if rnd() < 0.15:
                phones[0]["primary"], phones[1]["primary"] = False, True
        return phones

    def _persons(self) -> None:
        n = self.size.persons
        rnd = self.rng.random
        iso = self.clock.iso
        adds = self._sorted_times(n, _START + 3 * _DAY, _REF - _DAY, same_second=0.04)
        ids = self._ids(n, 1)
        updates = [self._update_time(t) for t in adds]
        self._bursts(adds, updates, salt=2)
        org_adds, org_ids = self.org_adds, self.org_ids
        org_country, org_owner, org_domain = self.org_country, self.org_owner, self.org_domain
        labels = self.person_label_ids
        self.person_ids = ids
        self.person_adds = adds
        self.person_names: list[str] = []
        self.persons_of_org: dict[int, list[int]] = {}
        countries: list[str] = []
        currencies: list[str] = []
        existing_orgs: list[int] = []
        own_org: list[int | None] = []
        slugs: list[str] = []
        records = self.pd.persons
        for i in range(n):
            t = adds[i]
            existing = bisect_right(org_adds, t)
            org_index: int | None
            if existing and rnd() >= 0.1:
                org_index = int(rnd() * existing)
                country = org_country[org_index]
                culture = (
                    _COUNTRIES[country][7]
                    if rnd() < 0.8
                    else _CULTURES[int(rnd() * len(_CULTURES))]
                )
                owner = org_owner[org_index] if rnd() < 0.75 else self._owner(t)
                domain = org_domain[org_index]
                self.persons_of_org.setdefault(org_index, []).append(i)
            else:
                org_index = None
                culture = _CULTURES[int(rnd() * len(_CULTURES))]
                country = self.country_choice.pick(rnd())
                owner = self._owner(t)
                domain = None
            firsts, lasts = _NAMES[culture]
            first = firsts[int(rnd() * len(firsts))]
            last = lasts[int(rnd() * len(lasts))]
            name = f"{first} {last}"
            vis = rnd()
            records.append(
                {
                    "id": ids[i],
                    "name": name,
                    "first_name": first,
                    "last_name": last,
                    "owner_id": owner,
                    "org_id": org_ids[org_index] if org_index is not None else None,
                    "add_time": iso(t),
                    "update_time": iso(updates[i]),
                    "emails": self._emails(first, last, domain),
                    "phones": self._phones(country),
                    "is_deleted": False,
                    "visible_to": 3 if vis < 0.85 else (1 if vis < 0.95 else 7),
                    "label_ids": [] if rnd() < 0.6 else [labels[int(rnd() * len(labels))]],
                    "picture_id": 100 + ids[i] if rnd() < 0.12 else None,
                }
            )
            self.person_names.append(name)
            countries.append(country)
            currencies.append(_COUNTRIES[country][1])
            existing_orgs.append(existing)
            own_org.append(org_index)
            slugs.append(f"{_ascii(first)}-{_ascii(last)}")

        def previous_employer(i: int) -> int | None:
            k = int(rnd() * existing_orgs[i])
            return None if k == own_org[i] else org_ids[k]

        def linkedin(i: int) -> str:
            return f"https://www.linkedin.com/in/{slugs[i]}-{ids[i] % 997}"

        rows = self._custom_rows("person", adds, currencies, countries, previous_employer, linkedin)
        for record, row in zip(records, rows, strict=True):
            record["custom_fields"] = row

    # ---- deals --------------------------------------------------------------------------------

    def _deal_value(self, currency: str) -> int | float:
        rnd = self.rng.random
        r = rnd()
        if r < 0.04:
            return 0
        value = self.rng.lognormvariate(9.2, 0.9)
        if currency == "JPY":
            value *= 150
        elif currency in ("SEK", "DKK", "CZK", "PLN"):
            value *= 5
        if r < 0.25:
            return round(value, 2)  # with cents
        return int(round(value, -2 if value > 1000 else -1))

    def _deals(self) -> None:
        n = self.size.deals
        rng = self.rng
        rnd = rng.random
        iso, day = self.clock.iso, self.clock.day
        adds = self._sorted_times(n, _START + 5 * _DAY, _REF - 3600, same_second=0.01)
        ids = self._ids(n, 1)
        org_adds, person_adds = self.org_adds, self.person_adds
        org_ids, person_ids = self.org_ids, self.person_ids
        persons_of_org = self.persons_of_org
        stages_by_pipeline = self.stages_by_pipeline
        # Pass 1: the facts that decide the times (status, stage, links).
        facts = []
        floors = []
        for i in range(n):
            t = adds[i]
            p_closed = 0.25 + 0.6 * (_REF - t) / _SPAN  # older deals are more often closed
            r = rnd()
            status = "won" if r < p_closed * 0.545 else ("lost" if r < p_closed else "open")
            pipeline = self.pipeline_choice.pick(rnd())
            stages = stages_by_pipeline[pipeline]
            if status == "open":
                close = None
                stage = stages[int(rnd() * len(stages))]
            else:
                close = t + 3600 + int(rng.expovariate(1 / (50 * _DAY)))
                if close >= _REF - 60:  # no pile-up at the reference instant
                    close = self._between(t + 60, _REF - 60)
                stage = (
                    stages[-1]
                    if status == "won" and rnd() < 0.8
                    else stages[int(rnd() * len(stages))]
                )
            if stage == stages[0] or rnd() < 0.1:
                stage_change = t
            else:
                stage_change = self._between(t, close if close is not None else _REF - 60)
            # Links: usually an organization and one of its persons; sometimes neither.
            existing_orgs = bisect_right(org_adds, t)
            existing_people = bisect_right(person_adds, t)
            link = rnd()
            org_index = person_index = None
            if existing_orgs and link >= 0.08:
                org_index = int(rnd() * existing_orgs)
                if rnd() < 0.05:  # a contact from another organization
                    if existing_people:
                        person_index = int(rnd() * existing_people)
                else:
                    people = persons_of_org.get(org_index)
                    if people and rnd() < 0.9:
                        # Persons are in creation order: those existing at `t` are a prefix.
                        m = bisect_left(people, existing_people)
                        if m:
                            person_index = people[int(rnd() * m)]
            elif link < 0.05 and existing_people:
                person_index = int(rnd() * existing_people)
            facts.append(
                (
                    status,
                    pipeline,
                    stage,
                    close,
                    stage_change,
                    org_index,
                    person_index,
                    existing_orgs,
                )
            )
            floors.append(max(t if close is None else close, stage_change))
        updates = [self._update_time(f) for f in floors]
        self._bursts(floors, updates, salt=3)
        # Pass 2: the records.
        records = self.pd.deals
        countries: list[str] = []
        currencies: list[str] = []
        deal_labels = self.deal_label_ids
        for i in range(n):
            status, pipeline, stage, close, stage_change, org_index, person_index, _ = facts[i]
            t = adds[i]
            did = ids[i]
            if org_index is not None:
                country = self.org_country[org_index]
                owner = self.org_owner[org_index] if rnd() < 0.7 else self._owner(t)
            else:
                country = self.country_choice.pick(rnd())
                owner = self._owner(t)
            currency = _COUNTRIES[country][1] if rnd() < 0.75 else self.currency_choice.pick(rnd())
            product = _PRODUCTS[int(rnd() * len(_PRODUCTS))]
            if org_index is not None:
                title = f"{self.org_names[org_index]} – {product}"
            elif person_index is not None:
                title = f"{self.person_names[person_index]} – {product}"
            else:
                title = f"Inbound lead #{did} – {product}"
            close_iso = iso(close) if close is not None else None
            has_expected = rnd() < (0.8 if status == "open" else 0.6)
            vis = rnd()
            label_r = rnd()
            records.append(
                {
                    "id": did,
                    "title": title,
                    "creator_user_id": owner if rnd() < 0.8 else self._owner(t),
                    "owner_id": owner,
                    "person_id": person_ids[person_index] if person_index is not None else None,
                    "org_id": org_ids[org_index] if org_index is not None else None,
                    "pipeline_id": pipeline,
                    "stage_id": stage,
                    "value": self._deal_value(currency),
                    "currency": currency,
                    "add_time": iso(t),
                    "update_time": iso(updates[i]),
                    "stage_change_time": iso(stage_change),
                    "is_deleted": False,
                    "is_archived": False,
                    "archive_time": None,
                    "status": status,
                    "probability": None if rnd() < 0.85 else 10 * (1 + int(rnd() * 9)),
                    "lost_reason": (
                        _LOST_REASONS[int(rnd() * len(_LOST_REASONS))] if status == "lost" else None
                    ),
                    "visible_to": 3 if vis < 0.85 else (1 if vis < 0.95 else 7),
                    "close_time": close_iso,
                    "won_time": close_iso if status == "won" else None,
                    "lost_time": close_iso if status == "lost" else None,
                    "expected_close_date": (
                        day(t + 7 * _DAY + int(rnd() * 113 * _DAY)) if has_expected else None
                    ),
                    "label_ids": (
                        []
                        if label_r < 0.6
                        else [deal_labels[int(rnd() * len(deal_labels))]]
                        if label_r < 0.9
                        else sorted(rng.sample(deal_labels, 2))
                    ),
                    "origin": self.origin_choice.pick(rnd()),
                    "origin_id": None,
                    "channel": None,
                    "channel_id": None,
                    "source_lead_id": None,
                    "arr": None,
                    "mrr": None,
                    "acv": None,
                }
            )
            countries.append(country)
            currencies.append(currency)

        def reseller(i: int) -> int | None:
            existing, own = facts[i][7], facts[i][5]
            k = int(rnd() * existing) if existing else None
            return None if k is None or k == own else org_ids[k]

        def po_number(i: int) -> str:
            return f"PO-{day(adds[i])[:4]}-{ids[i]:05d}"

        rows = self._custom_rows("deal", adds, currencies, countries, reseller, po_number)
        renewal_code, start_code = self.custom["deal"][2][0], self.custom["deal"][3][0]
        for record, row, fact in zip(records, rows, facts, strict=True):
            record["custom_fields"] = row
            close = fact[3]
            if fact[0] == "won" and close is not None:
                # Won deals: the contract dates follow the won date when they are filled in.
                if row[start_code] is not None:
                    row[start_code] = day(close + 14 * _DAY)
                if row[renewal_code] is not None:
                    row[renewal_code] = day(close + (14 + 365) * _DAY)
        self.deal_adds = adds
        self.deal_facts = facts

    # ---- notes --------------------------------------------------------------------------------

    def _note_content(self, person: str | None, org: str | None, t: int) -> str:
        rnd = self.rng.random
        day = self.clock.day
        who = _escape(person) if person else "the customer"
        where = _escape(org) if org else "their team"
        k = int(rnd() * 12)
        step = _NOTE_STEPS[int(rnd() * len(_NOTE_STEPS))]
        if k == 0:
            return f"<p>Call with <b>{who}</b>: they want to {step} &amp; better reporting.</p>"
        if k == 1:
            return (
                f"<p>Meeting notes – {where}</p><ul><li>Budget approved for "
                f"{day(t)[:4]}</li><li>Needs SSO &amp; SCIM</li>"
                f"<li>Next step: {step}</li></ul>"
            )
        if k == 2:
            return f"Quick note: sent pricing to {who}."
        if k == 3:
            return (
                f"<p>Grüße aus dem Termin bei {where}! Kunde fragt nach Rabatt "
                f"(≥&nbsp;10&nbsp;%).</p>"
            )
        if k == 4:
            return (
                f"<p><b>Renewal risk:</b> champion left the company. New contact: {who}."
                f"</p><p>Follow up in Q{1 + int(rnd() * 4)}.</p>"
            )
        if k == 5:
            return (
                "<p>Customer wrote:</p><blockquote>&lt;script&gt; tags in our CSV export "
                "break the import — can you check?</blockquote>"
            )
        if k == 6:
            return (
                f"<p>Signed ✅ – kick-off on {day(t + 10 * _DAY)}.<br>"
                f"Attendees: {who}, {where}.</p>"
            )
        if k == 7:
            return (
                f"<ol><li>Demo done</li><li>Trial until {day(t + 30 * _DAY)}</li></ol>"
                f"<p>Contact: <i>{who}</i></p>"
            )
        if k == 8:
            return "<p>打ち合わせ済み。見積書を送付しました。</p>"
        if k == 9:
            return f"<p>Left a voicemail for {who}.&nbsp;Will try again Friday.</p>"
        if k == 10 and rnd() < 0.15:
            paragraph = (
                f"<p>Workshop with {where}: walked through the data model, permissions, "
                f"the import of historical deals &amp; the API limits.</p>"
            )
            return "<h3>Workshop summary</h3>" + paragraph * (8 + int(rnd() * 20))
        return (
            f"<p>Email from {who}: &quot;Can we move the go-live?&quot;</p>"
            f"<p>Answer: yes, we {step}.</p>"
        )

    def _notes(self) -> None:
        n = self.size.notes
        rnd = self.rng.random
        v1 = self.clock.v1
        # Every note is written after the first organization exists (the fallback target).
        first = max(_START + 6 * _DAY, self.org_adds[0] + 60)
        adds = self._sorted_times(n, first, _REF - 60, same_second=0.01)
        ids = self._ids(n, 1)
        updates = [t if rnd() < 0.7 else self._update_time(t) for t in adds]
        self._bursts(adds, updates, salt=4)
        deal_adds, org_adds, person_adds = self.deal_adds, self.org_adds, self.person_adds
        deals, persons, orgs = self.pd.deals, self.pd.persons, self.pd.organizations
        deal_facts, org_names, person_names = self.deal_facts, self.org_names, self.person_names
        records = self.pd.notes
        for i in range(n):
            t = adds[i]
            kind = rnd()
            deal_id = person_name = org_name = None
            if kind < 0.5 and (k := bisect_right(deal_adds, t)):
                j = int(rnd() * k)
                d = deals[j]
                deal_id, person_id, org_id, owner = (
                    d["id"],
                    d["person_id"],
                    d["org_id"],
                    d["owner_id"],
                )
                org_index, person_index = deal_facts[j][5:7]
                if org_index is not None:
                    org_name = org_names[org_index]
                if person_index is not None:
                    person_name = person_names[person_index]
            elif kind < 0.8 and (k := bisect_right(person_adds, t)):
                j = int(rnd() * k)
                p = persons[j]
                person_id, org_id, owner = p["id"], p["org_id"], p["owner_id"]
                person_name = person_names[j]
            else:
                j = int(rnd() * bisect_right(org_adds, t))
                o = orgs[j]
                person_id, org_id, owner = None, o["id"], o["owner_id"]
                org_name = org_names[j]
            if (t >= _DEACTIVATED_AT and owner == _DEACTIVATED_USER) or rnd() < 0.25:
                owner = self._owner(t)
            editor = owner if updates[i] == t or rnd() < 0.8 else self._owner(updates[i])
            records.append(
                {
                    "id": ids[i],
                    "user_id": owner,
                    "deal_id": deal_id,
                    "person_id": person_id,
                    "org_id": org_id,
                    "lead_id": None,
                    "project_id": None,
                    "task_id": None,
                    "content": self._note_content(person_name, org_name, t),
                    "add_time": v1(t),
                    "update_time": v1(updates[i]),
                    "active_flag": True,
                    "pinned_to_deal_flag": deal_id is not None and rnd() < 0.04,
                    "pinned_to_organization_flag": org_id is not None and rnd() < 0.02,
                    "pinned_to_person_flag": person_id is not None and rnd() < 0.02,
                    "pinned_to_lead_flag": False,
                    "pinned_to_project_flag": False,
                    "pinned_to_task_flag": False,
                    "last_update_user_id": editor,
                }
            )


@lru_cache(maxsize=64)
def _subsets(options: tuple[int, ...]) -> tuple[tuple[int, ...], ...]:
    """The non-empty subsets of up to three options (a `set` custom field's possible values)."""
    return tuple(combo for k in (1, 2, 3) for combo in combinations(options, k))
