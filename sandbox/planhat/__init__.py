"""The sandbox Planhat API (see `sandbox.planhat.app`)."""

from sandbox.planhat.app import PlanhatSandbox, error_body, token_of

__all__ = ["PlanhatSandbox", "error_body", "token_of"]
