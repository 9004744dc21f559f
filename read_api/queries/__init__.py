"""One module per query: plain SQL over the read tables of docs/READ_MODELS.md, never an aggregate."""
