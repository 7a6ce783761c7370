"""How flows get started: the webhook receiver (`receiver`), its Prefect events (`events`),
one-machine mode (`serve`), the `pdsync` CLI (`cli`) and the local demo (`demo`).

Every way in imports the `flows` package, which sends the product's log lines to each run's
log in Prefect (`flows.runlog`); prefect.yaml holds the same deployments for a worker.
"""
