# The daemon in a container. Not built in CI (no Docker engine on the build machines);
# it mirrors what `make run` does on a fresh machine.
FROM python:3.11-slim-bookworm

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    ENGINE_NODE_MODULES=/app/node_modules

RUN apt-get update \
    && apt-get install -y --no-install-recommends nodejs npm libgomp1 \
    && rm -rf /var/lib/apt/lists/*

WORKDIR /app
# npm packages first (anvil and the Uniswap V2 artifacts), then Python: both cached
# as layers until their lock files change.
COPY package.json package-lock.json ./
RUN npm ci --no-audit --no-fund --loglevel=error
COPY pyproject.toml README.md ./
COPY engine ./engine
COPY ml ./ml
COPY research ./research
COPY strategies ./strategies
COPY adapters ./adapters
RUN pip install .
COPY config ./config

RUN useradd --create-home --uid 10001 engine && mkdir -p /app/var /app/models \
    && chown -R engine /app/var /app/models
USER engine

EXPOSE 8080
# The API binds 127.0.0.1 by default; in a container publish it with a config whose
# api.host is 0.0.0.0 (then GET /status needs ENGINE_ADMIN_TOKEN as a bearer token too).
# SIGTERM from `docker stop` shuts the engine down cleanly.
ENTRYPOINT ["trade-engine"]
CMD ["run", "--config", "config/engine.yaml"]
