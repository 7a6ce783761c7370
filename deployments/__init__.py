"""How flows get started: the webhook receiver (`receiver`) and the one webhook parser with
its Prefect events (`events`); the four deployments (`definitions`), a local Prefect server
(`prefect_server`) and one-machine mode (`serve`); the `pdsync` CLI (`cli`, its command groups
in `commands/`, its tables and progress in `render`); the local demo (`demo`) and the sandbox
settings it runs with (`sandbox_settings`).

Every way in imports the `flows` package, which sends the product's log lines to each run's
log in Prefect (`flows.runlog`); prefect.yaml holds the same deployments for a worker.
"""
