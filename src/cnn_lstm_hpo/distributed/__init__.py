"""Storages, worker processes, fault handling: how a study spans processes and machines."""
