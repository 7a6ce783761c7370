"""The integration settings and field maps (YAML), their loader, and the mapping engine.

    from mappings import load_settings, compile_mappings, engine
    from mappings.account import open_pipedrive, open_planhat, fetch_account

    settings = load_settings()                        # $PDSYNC_SETTINGS_DIR or mappings/
    with open_pipedrive(settings) as pd, open_planhat(settings) as ph:
        mappings = compile_mappings(settings, fetch_account(pd, ph))   # once per run
    batch = engine.deal_to_license(deals, mappings, company_ids=company_ids)
    batch.records, batch.issues                       # Planhat items; skipped/left-empty, with why

* `settings.py`: the files' pydantic models and THE loader (`SettingsError`, every problem as
  `file:line:column: message`);
* `resolve.py`: names (pipelines, custom-field labels, users) resolved against the account;
* `values.py`: the empty-vs-null rule and every conversion, in one place;
* `engine.py`: the mapping functions (both directions), webhook normalisation, the three-way merge;
* `account.py`: the clients' reads the settings need (the only I/O here);
* `python -m mappings validate`: check the settings against the accounts, sync nothing.
"""

from mappings.errors import Location, Problem, SettingsError
from mappings.resolve import Account, FieldCatalog, Mappings, compile_mappings
from mappings.settings import Settings, load_settings
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
