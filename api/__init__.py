"""The business's own API (``/api/...``, ``Authorization: Bearer <API_TOKEN>``): Flask
blueprints, thin views over the services."""
