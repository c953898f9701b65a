"""Hardening: generated bad input, upstream faults, load-adjacent checks and security scans."""
