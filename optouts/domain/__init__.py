"""The rules of the gateway that hold whatever upstream and host: commands, phone numbers, problems, reports.

Nothing here imports an Azure package or a provider (tests/test_layers.py)."""
