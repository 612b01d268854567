# syntax=docker/dockerfile:1
# Build the wheel in one stage, install only the wheel in the final one.
FROM python:3.12-slim AS build
WORKDIR /src
COPY pyproject.toml README.md schema.sql ./
COPY sidecar ./sidecar
RUN pip install --no-cache-dir build==1.2.2 \
    && python -m build --wheel --outdir /wheels .

FROM python:3.12-slim
ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    SIDECAR_DB=/data/achievements.db \
    SIDECAR_HOST=0.0.0.0 \
    SIDECAR_PORT=8787
COPY --from=build /wheels /wheels
RUN pip install --no-cache-dir /wheels/*.whl \
    && rm -rf /wheels \
    && useradd --uid 10001 --no-create-home --shell /usr/sbin/nologin sidecar \
    && mkdir /data \
    && chown sidecar /data
USER 10001
VOLUME ["/data"]
EXPOSE 8787
HEALTHCHECK --interval=30s --timeout=3s --start-period=5s --retries=3 \
    CMD ["python", "-c", "import os, urllib.request; urllib.request.urlopen('http://127.0.0.1:' + os.environ.get('SIDECAR_PORT', '8787') + '/health', timeout=2)"]
# SIGTERM makes the service finish requests and checkpoint the WAL into the one .db file.
STOPSIGNAL SIGTERM
CMD ["sidecar", "serve"]
