"""How flows get started: the webhook receiver, the serve entry point and the `pdsync` CLI.

They land with the deployments issue (see README, Status).
"""
