"""Prefect flows, one module per flow (connect, deal sync, incremental sync, company resync).

Flows only orchestrate tasks. Importing this package sends the product's log lines to each
run's log in Prefect (`flows.runlog`), however the flow is started.
"""

from flows.runlog import attach_run_logging

attach_run_logging()
