"""Selection methods: sparse subnetworks chosen on the DAG, returned as masks."""

from pathnet.select.registry import METHODS, register, resolve_density, select, target_count

__all__ = ["METHODS", "register", "resolve_density", "select", "target_count"]
