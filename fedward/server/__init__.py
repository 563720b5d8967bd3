"""The aggregation server: strategies, evaluation and run folders."""
