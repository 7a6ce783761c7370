"""The settings for the local sandbox (`pdsync demo`, `pdsync check --sandbox`, `pdsync sandbox
--settings deployments/sandbox_settings`): `integration.yaml` pointed at the sandbox Pipedrive
and Planhat, and `custom_matches.yaml` for the sandbox data sets' custom fields (the field maps
come from the shipped defaults in `mappings/`).

    from deployments.sandbox_settings import SANDBOX_DIR, account_from_seed

    settings = load_settings(SANDBOX_DIR)
    mappings = compile_mappings(settings, account_from_seed(pipedrive_seed, planhat_seed.users))
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from mappings.resolve import Account

__all__ = ["SANDBOX_DIR", "account_from_seed"]

#: the sandbox settings directory (this package's)
SANDBOX_DIR = Path(__file__).resolve().parent


def account_from_seed(seed: Any, planhat_users: Sequence[dict[str, Any]] = ()) -> Account:
    """An `Account` from a sandbox `PipedriveSeed` (tests and benchmarks, no HTTP)."""
    return Account(
        pipelines=list(seed.pipelines),
        deal_fields=list(seed.deal_fields),
        organization_fields=list(seed.organization_fields),
        person_fields=list(seed.person_fields),
        pipedrive_users=list(seed.users),
        planhat_users=list(planhat_users),
    )
