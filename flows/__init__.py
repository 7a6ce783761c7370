"""Prefect flows, one module per flow (connect, deal sync, incremental sync, company resync).

Flows only orchestrate tasks. They land with the receive-pipeline issue (see README, Status).
"""
