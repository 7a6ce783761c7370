"""The integration settings and field maps (YAML), their loader, and the mapping functions.
No I/O here: the account's lists (pipelines, fields, users) are read by `tasks.account` and
given to `compile_mappings` as data.

    from mappings import load_settings, compile_mappings
    from mappings.receive import deal_to_license

    settings = load_settings()                        # $PDSYNC_SETTINGS_DIR or mappings/
    mappings = compile_mappings(settings, account)    # once per run (tasks.account reads it)
    batch = deal_to_license(deals, mappings, company_ids=company_ids)
    batch.records, batch.issues                       # Planhat items; skipped/left-empty, with why

* `models.py`: the files' pydantic models; `loading.py`: THE loader (`SettingsError`, every
  problem as `file:line:column: message`, via `translate.py`); `checks.py`: the checks a
  model cannot express (cron, time zone, templates, pipelines, field rules); `secrets.py`:
  where tokens come from, and the guard that never lets one into a message;
* `resolve.py`: names (pipelines, custom-field labels, users) resolved against the account;
* `values.py`: the empty-vs-null rule and every conversion, in one place;
* `rows.py`: reading and writing fields of records, batches (`MappedBatch`, `Issue`);
* `receive.py` (Pipedrive → Planhat), `send.py` (Planhat → Pipedrive), `merge.py` (per-field
  hashes and the three-way merge);
* `python -m mappings validate`: check the settings against the accounts, sync nothing (the
  same check as `pdsync check`).
"""

from mappings.errors import Location, Problem, SettingsError
from mappings.loading import load_settings
from mappings.models import Settings
from mappings.resolve import Account, FieldCatalog, Mappings, compile_mappings
from mappings.values import ABSENT, field_hash

__all__ = [
    "ABSENT",
    "Account",
    "FieldCatalog",
    "Location",
    "Mappings",
    "Problem",
    "Settings",
    "SettingsError",
    "compile_mappings",
    "field_hash",
    "load_settings",
]
