"""The job's initial policy: its sources (path, Hub, GGUF package, generated), the cache, the export."""
