"""The SQL store: jobs, shards, their inputs, every prediction and provenance (`store.Store`)."""
