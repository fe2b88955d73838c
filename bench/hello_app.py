"""Baseline for route overhead: FastAPI's hello world, served as endpointgen serves.

`endpointgen serve` calls `uvicorn.run(app, host=..., port=..., log_level="warning",
proxy_headers=False)` with uvicorn's defaults otherwise (one worker, loop and http
"auto"); so does this.
Usage: python bench/hello_app.py PORT
"""

from __future__ import annotations

import sys

import uvicorn
from fastapi import FastAPI

app = FastAPI()


@app.get("/health")
async def health() -> dict[str, str]:
    return {"status": "ok"}


if __name__ == "__main__":
    uvicorn.run(
        app, host="127.0.0.1", port=int(sys.argv[1]), log_level="warning", proxy_headers=False
    )
