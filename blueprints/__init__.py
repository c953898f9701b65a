"""Azure Functions adapters: translate triggers into `optouts` use-cases and back."""
