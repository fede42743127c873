"""Search: boolean parsing, planning, federated execution, results."""
