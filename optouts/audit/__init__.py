"""The audit trail: every change to an opt-out list, recorded durably (trail)."""
