"""The HTTP APIs' shapes as pure functions: requests checked into typed requests, answers shaped."""
