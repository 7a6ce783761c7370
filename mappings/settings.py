"""The settings, as one import: `from mappings.settings import load_settings, Settings, ...`.

The settings live in one module per idea; this module re-exports their public names:

* `mappings.models`: the pydantic models of `integration.yaml`, the field maps and the custom
  matches, and `Settings` (what the loader hands on);
* `mappings.loading`: THE loader, `load_settings(directory)` (YAML → models, every problem as
  `file:line:column: message` in one `SettingsError`);
* `mappings.checks`: the checks beyond the models (cron, time zone, templates, field rules);
* `mappings.translate`: pydantic's errors → located messages;
* `mappings.secrets`: token and password resolution, and the guard that keeps secrets out of
  the files and the messages.
"""

from __future__ import annotations

from mappings.checks import check_cron, parse_template
from mappings.loading import default_settings_dir, load_settings
from mappings.models import (
    CUSTOM_MATCHES_FILE,
    DATABASE_URL_ENV,
    DEFAULT_DIR,
    DEFAULT_STORE_URL,
    INTEGRATION_FILE,
    SETTINGS_DIR_ENV,
    BasicAuth,
    ConflictPolicy,
    Connection,
    ContactsSection,
    ConvertKind,
    CustomMatch,
    CustomMatches,
    DealsSection,
    FieldMap,
    FieldRule,
    Incremental,
    Integration,
    LicenseDefaults,
    NotesSection,
    OrganizationsSection,
    PipedriveConnection,
    PlanhatConnection,
    Receiver,
    RuleSpec,
    Settings,
    Store,
    TemplatePart,
)
from mappings.secrets import (
    looks_like_secret,
    pipedrive_token,
    planhat_token,
    receiver_password,
    resolve_secret,
    token_location,
)

__all__ = [
    "CUSTOM_MATCHES_FILE",
    "DATABASE_URL_ENV",
    "DEFAULT_DIR",
    "DEFAULT_STORE_URL",
    "INTEGRATION_FILE",
    "SETTINGS_DIR_ENV",
    "BasicAuth",
    "ConflictPolicy",
    "Connection",
    "ContactsSection",
    "ConvertKind",
    "CustomMatch",
    "CustomMatches",
    "DealsSection",
    "FieldMap",
    "FieldRule",
    "Incremental",
    "Integration",
    "LicenseDefaults",
    "NotesSection",
    "OrganizationsSection",
    "PipedriveConnection",
    "PlanhatConnection",
    "Receiver",
    "RuleSpec",
    "Settings",
    "Store",
    "TemplatePart",
    "check_cron",
    "default_settings_dir",
    "load_settings",
    "looks_like_secret",
    "parse_template",
    "pipedrive_token",
    "planhat_token",
    "receiver_password",
    "resolve_secret",
    "token_location",
]
