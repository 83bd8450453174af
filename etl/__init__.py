"""Declarative batch import of donor data into Virtuous CRM+."""

__version__ = "0.1.0"
