"""Prefect tasks (fetch, select, convert, enrich, push): thin, retryable wrappers over plain
functions. They land with the receive-pipeline issue (see README, Status).
"""
