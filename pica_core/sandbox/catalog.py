"""The sandbox's static catalog: real connectors and real actions, from the data files.

`data/connectors.tsv` holds Pica's 294 connectors (categories marked `category_inferred`
where a public source gave none); `data/actions.tsv` holds 304 real actions on 20
platforms. Ids, names and paths are used as they are: nothing here invents an id.
"""

from __future__ import annotations

import csv
import random
import re
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path

DATA_DIR = Path(__file__).parent / "data"

# Connectors whose AuthKit integration a realistic account switches on first.
POPULAR = (
    "gmail", "slack", "hubspot", "google-calendar", "notion", "salesforce", "github", "stripe",
    "shopify", "zendesk", "jira", "airtable", "google-drive", "google-sheets", "linear", "asana",
    "intercom", "outlook-mail", "teams", "attio",
)

# A path's placeholder, {{var}} or ${var}; split on it, a segment's placeholders are at odd indices.
_PLACEHOLDER = re.compile(r"(\{\{[^}]+\}\}|\$\{[^}]+\})")
_VAR = re.compile(r"\{\{\s*([^}]+?)\s*\}\}")


@dataclass(frozen=True)
class CatalogAction:
    system_id: str
    platform: str
    title: str
    method: str
    path: str
    key: str
    base_url: str
    tags: tuple[str, ...]
    listed: bool  # rows without a method and path are legacy ids: accepted, not listed

    @property
    def segments(self) -> tuple[str, ...]:
        return tuple(s for s in self.path.strip("/").split("/") if s)

    @cached_property
    def _segment_patterns(self) -> tuple[re.Pattern[str], ...]:
        # A placeholder may share its segment with literal text: `{{order_id}}.json`, `{{range}}:append`.
        return tuple(re.compile("".join(f"(?P<v{n}>.+)" if n % 2 else re.escape(part)
                                        for n, part in enumerate(_PLACEHOLDER.split(segment))), re.DOTALL)
                     for segment in self.segments)

    def matches(self, method: str, path_segments: tuple[str, ...]) -> bool:
        return self.last_variable(method, path_segments) is not None

    def last_variable(self, method: str, path_segments: tuple[str, ...]) -> str | None:
        """The value of the last segment's last placeholder ("" if it has none); None if the path is not this
        action's."""
        if (self.method and self.method != method) or len(self.segments) != len(path_segments):
            return None
        found = [pattern.fullmatch(segment) for pattern, segment in zip(self._segment_patterns, path_segments)]
        if not all(found):
            return None
        values = list(found[-1].groups()) if found else []
        return values[-1] if values else ""

    @property
    def path_variables(self) -> list[str]:
        return _VAR.findall(self.path)

    @property
    def model_name(self) -> str:
        nouns = [s for s in self.segments if not _PLACEHOLDER.fullmatch(s) and not s.startswith("v")]
        noun = nouns[-1] if nouns else self.platform
        noun = re.split(r"[.:$]", noun)[0] or self.platform
        return "".join(part.capitalize() for part in re.split(r"[-_]", noun))

    @property
    def knowledge(self) -> str:
        lines = [f"# {self.title}", "", f"`{self.method} {self.path}`"]
        if self.base_url:
            lines.append(f"Base URL: {self.base_url}")
        variables = self.path_variables
        if variables:
            lines += ["", "## Path parameters"] + [f"- `{v}` (required, string)" for v in variables]
        if self.method in {"POST", "PUT", "PATCH"}:
            lines += ["", "## Body", "JSON object with the fields of the resource to write."]
        if "custom" in self.tags:
            lines += ["", "This is a Pica custom action: include `\"connectionKey\"` in the JSON body."]
        lines += ["", "Call it through `/v1/passthrough/<path>` with `x-pica-action-id` set to this action's id."]
        return "\n".join(lines)


def _camel_key(title: str) -> str:
    words = re.findall(r"[A-Za-z0-9]+", title.replace("’", "").replace("'", ""))
    if not words:
        return ""
    return words[0].lower() + "".join(w.capitalize() for w in words[1:])


@dataclass(frozen=True)
class CatalogConnector:
    id: int
    platform: str
    name: str
    category: str
    category_inferred: bool
    oauth: bool
    description: str
    status: str
    tools: int

    @property
    def key(self) -> str:
        return f"api::{self.platform}::v1"


@dataclass
class Catalog:
    connectors: list[CatalogConnector]
    actions: list[CatalogAction]
    authkit_enabled: dict[str, set[str]] = field(default_factory=dict)  # environment → platforms

    @cached_property
    def by_platform(self) -> dict[str, CatalogConnector]:
        return {c.platform: c for c in self.connectors}

    @cached_property
    def actions_by_id(self) -> dict[str, CatalogAction]:
        return {a.system_id: a for a in self.actions}

    @cached_property
    def actions_by_platform(self) -> dict[str, list[CatalogAction]]:
        grouped: dict[str, list[CatalogAction]] = {}
        for action in self.actions:
            grouped.setdefault(action.platform, []).append(action)
        return grouped


def _read_tsv(name: str) -> list[dict[str, str]]:
    with (DATA_DIR / name).open(encoding="utf-8", newline="") as fh:
        return list(csv.DictReader(fh, delimiter="\t", quoting=csv.QUOTE_NONE))


def _load_actions() -> list[CatalogAction]:
    actions = []
    for row in _read_tsv("actions.tsv"):
        method = (row["method"] or "").upper()
        path = row["path"] or ""
        title = row["title"] or (f"{method} {path}" if method and path else "")
        # Pica's own (custom) actions sit under the platform's name as a verb and a noun (/gmail/get-emails); a
        # platform's API does not (/gmail/v1/…, Notion's v1/pages, /teams/{{teamId}}).
        custom = bool(re.fullmatch(rf"/{re.escape(row['platform'])}/[a-z]+(-[a-z]+)+", path))
        actions.append(
            CatalogAction(
                system_id=row["system_id"],
                platform=row["platform"],
                title=title,
                method=method,
                path=path,
                key=row["key"] or _camel_key(title),
                base_url=row["base_url"] or "",
                tags=("custom",) if custom else (),
                listed=bool(method and path and title),
            )
        )
    return actions


def load_catalog(seed: int = 20250719) -> Catalog:
    actions = _load_actions()
    tools: dict[str, int] = {}
    for action in actions:
        if action.listed:
            tools[action.platform] = tools.get(action.platform, 0) + 1
    rng = random.Random(seed)
    connectors = []
    for number, row in enumerate(_read_tsv("connectors.tsv"), start=1):
        platform = row["platform"]
        # Status: mostly GA, as Pica's catalog is; the long tail is beta/alpha, a few withdrawn.
        roll = rng.random()
        status = "generally_available" if platform in POPULAR or roll < 0.78 else (
            "beta" if roll < 0.90 else "alpha" if roll < 0.97 else "not_available"
        )
        connectors.append(
            CatalogConnector(
                id=number,
                platform=platform,
                name=row["name"],
                category=row["category"],
                category_inferred=row["category_inferred"] == "yes",
                oauth=row["oauth"] == "true",
                description=row["description"],
                status=status,
                tools=tools.get(platform, 0),
            )
        )
    available = [c.platform for c in connectors if c.status != "not_available" and c.platform not in POPULAR]
    extra = rng.sample(sorted(available), 44)
    test_enabled = set(POPULAR) | set(extra)
    live_enabled = set(POPULAR[:12]) | set(extra[:14])
    return Catalog(connectors, actions, {"test": test_enabled, "live": live_enabled})
