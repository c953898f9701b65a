"""The API contract: the Swagger 2.0 document the HTTP API and the Power Automate connector share."""
