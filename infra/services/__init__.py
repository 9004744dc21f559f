"""Local real services started without Docker: PostgreSQL, Redis, Kafka, OpenSearch."""
