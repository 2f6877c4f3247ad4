"""The domain: models, specs, ports, relations, commands, events. Imports only pydantic."""
