"""Code shared by every state: configuration, AWS clients, names, errors, observability."""
