# JellyChat backend: Flask-SocketIO's own eventlet server (`python app.py`).
# Base image pinned by digest (python:3.11-slim, linux/amd64 + arm64 index); refresh it with
# `docker buildx imagetools inspect python:3.11-slim` and re-run the tests.
FROM python:3.11-slim@sha256:9c900dea9e8fb7e16277c179b555cc72d29a352dbc33cff48ad5a0412fd5bfc7

# HOST=0.0.0.0: inside a container the server must listen on every interface
# (outside one, `make run` keeps the default 127.0.0.1)
ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PORT=8080 \
    HOST=0.0.0.0 \
    DATA_DIR=/app/data

# libpq: psycopg's pure-Python implementation (which yields to eventlet) loads it with ctypes
RUN apt-get update && apt-get install -y --no-install-recommends libpq5 \
    && rm -rf /var/lib/apt/lists/*

WORKDIR /app
# the lock: every package pinned with its hashes, the same tree CI tested
COPY requirements.txt .
RUN pip install --require-hashes -r requirements.txt

RUN useradd --create-home --uid 10001 jelly && mkdir -p /app/data && chown jelly:jelly /app/data
COPY --chown=jelly:jelly . .
USER jelly

EXPOSE 8080
CMD ["python", "app.py"]
