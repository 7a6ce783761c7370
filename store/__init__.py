"""The state store (sqlmodel): links, cursors, inbox, connection, run log.

It lands with the receive-pipeline issue (see README, Status).
"""
