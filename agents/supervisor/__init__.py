"""Supervisor tools: the audit history browser and the program reports (no models of their own)."""
