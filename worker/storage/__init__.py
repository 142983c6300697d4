"""Object storage: the real S3 one and an in-memory one, behind one interface."""
