"""The steps of a sync run as Prefect tasks, each a thin wrapper over plain functions: fetch,
select, enrich, convert + push (in that order: a child needs its company's Planhat id), report
and cursors; plus the run's context (settings, credentials, clients, store) and the account's
lists. Retrying is the clients' job, not the tasks' (one retry budget).
"""
