"""Code shared by the hospital (client) and the aggregation server."""
