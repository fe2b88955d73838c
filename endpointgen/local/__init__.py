"""Running a spec on this machine: serve it, test its route examples, document it as OpenAPI."""

# Read deadlines under `serve`: uvicorn cuts idle keep-alive connections, but waits
# forever for a request's head on a new connection and for a body sent a byte at a time.
# Here, not in serve.py, so the CLI names its defaults without importing the server.
HEAD_WITHIN = 10.0  # seconds from connecting (or from a request's first byte) to its headers
BODY_WITHIN = 60.0  # seconds from the headers to the body's last byte
KEEP_ALIVE = 5  # seconds a connection may idle between requests (uvicorn's own timer)
