"""The read models: one module each, declaring its tables and its handlers keyed by event schema class."""
