"""Pipedrive and Planhat HTTP clients (httpx): paging, limits, retries, typed errors.

They land with the clients issue (see README, Status).
"""
