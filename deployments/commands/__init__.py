"""The `pdsync` commands, one module per group: `check` (the settings against the accounts),
`runs` (connect, sync, resync: the flows, run in this process) and `local` (serve, sandbox,
demo: everything on this machine). `deployments.cli` assembles them into the Typer app;
`deployments.render` prints what they report."""
