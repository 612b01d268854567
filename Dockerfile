# syntax=docker/dockerfile:1
# The achievements sidecar: one HTTP service, one SQLite file on the /data volume.
#   docker build -t achievements-sidecar .
#   docker run -d -p 127.0.0.1:8787:8787 --env-file achievements.env -v achievements-data:/data \
#       achievements-sidecar          (achievements.env: SIDECAR_TOKEN=<a long random secret>)

# Stage 1: build the wheel (schema.sql is packed into it as sidecar/schema.sql); the lock file
# goes along with it.
FROM python:3.12-slim AS build
WORKDIR /src
COPY pyproject.toml README.md schema.sql ./
COPY sidecar ./sidecar
COPY requirements.lock /wheels/
RUN python -m pip wheel --no-cache-dir --no-deps --wheel-dir /wheels .

# Stage 2: the wheel and its dependencies only; no sources, no build tools.
FROM python:3.12-slim
ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    SIDECAR_DB=/data/achievements.db \
    SIDECAR_HOST=0.0.0.0 \
    SIDECAR_PORT=8787
COPY --from=build /wheels /wheels
# The dependencies exactly as locked (versions and sha256 of every file, from pyproject.toml by
# the command at the top of requirements.lock), wheels only; then this project's own wheel, which
# pip cannot hash-check, alone; then pip check: the lock must satisfy the wheel's dependencies.
RUN python -m pip install --no-cache-dir --require-hashes --only-binary=:all: \
        -r /wheels/requirements.lock \
    && python -m pip install --no-cache-dir --no-deps /wheels/*.whl \
    && python -m pip check \
    && rm -rf /wheels \
    && groupadd --gid 10001 sidecar \
    && useradd --uid 10001 --gid 10001 --no-create-home --home-dir /nonexistent \
        --shell /usr/sbin/nologin sidecar \
    && mkdir /data \
    && chown 10001:10001 /data
# `docker exec <c> sidecar backup backup.db` then writes next to the database, on the volume.
WORKDIR /data
USER 10001:10001
VOLUME ["/data"]
EXPOSE 8787
# No curl in slim images: Python's urllib. urlopen raises on anything but a 2xx answer.
HEALTHCHECK --interval=30s --timeout=5s --start-period=10s --start-interval=1s --retries=3 \
    CMD ["python", "-c", "import os, urllib.request; urllib.request.urlopen('http://127.0.0.1:' + os.environ.get('SIDECAR_PORT', '8787') + '/health', timeout=4)"]
# SIGTERM (docker stop) lets open requests finish and checkpoints the WAL into the one .db file.
STOPSIGNAL SIGTERM
CMD ["sidecar", "serve"]
