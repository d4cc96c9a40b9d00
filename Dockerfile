# JellyChat backend: Flask-SocketIO's own eventlet server (`python app.py`).
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PORT=8080 \
    HOST=0.0.0.0 \
    DATA_DIR=/app/data

# libpq: psycopg's pure-Python implementation (which yields to eventlet) loads it with ctypes
RUN apt-get update && apt-get install -y --no-install-recommends libpq5 \
    && rm -rf /var/lib/apt/lists/*

WORKDIR /app
COPY requirements.txt .
RUN pip install -r requirements.txt

RUN useradd --create-home --uid 10001 jelly && mkdir -p /app/data && chown jelly:jelly /app/data
COPY --chown=jelly:jelly . .
USER jelly

EXPOSE 8080
CMD ["python", "app.py"]
