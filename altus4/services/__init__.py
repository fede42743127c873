"""Domain services: users, API keys, connections, schema, rate limits, analytics, reports."""
