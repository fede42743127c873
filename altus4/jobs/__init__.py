"""Work run outside requests, beside the CLI: long jobs that use the same services as the API."""
