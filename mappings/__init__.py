"""The integration settings and field maps (YAML) and their loader and engine.

They land with the mappings issue (see README, Status).
"""
