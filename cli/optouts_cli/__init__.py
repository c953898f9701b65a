"""`optouts`: the operator CLI of the SMS opt-out gateway, a client of its HTTP API (docs/cli.md)."""
