# fleetwatch. Two targets from one build:
#   agent     (default) `fleetwatch run`: the production agent, without the emulator's packages
#   emulator  the emulated AWS fleet and the Slack and SMTP stand-ins, for the demo profile
FROM python:3.11-slim AS base
ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
WORKDIR /src
COPY pyproject.toml README.md ./
COPY fleetwatch ./fleetwatch
COPY collector ./collector
COPY detectors ./detectors
COPY alerts ./alerts
COPY web ./web
COPY simulator ./simulator
# The dashboard's chart library, from the npm registry, pinned by version and sha512 (web/assets.py).
RUN python -m web.assets uplot
RUN useradd --system --uid 10001 --home-dir /var/lib/fleetwatch fleetwatch \
    && mkdir -p /var/lib/fleetwatch /etc/fleetwatch && chown fleetwatch /var/lib/fleetwatch

FROM base AS emulator
RUN pip install '.[emulator]'
USER fleetwatch
EXPOSE 4590
ENTRYPOINT ["fleetwatch"]
CMD ["emulate", "--scenario", "tour", "--host", "0.0.0.0", "--port", "4590"]

FROM base AS agent
# psycopg's wheel carries libpq: store.url may name a PostgreSQL database (docs/store.md).
RUN pip install '.[postgres]'
USER fleetwatch
# Inside a container the servers listen on every interface; compose publishes the dashboard on
# the host's loopback only. Changes through the dashboard still need web.token or a password.
ENV FLEETWATCH_STORE_PATH=/var/lib/fleetwatch/fleetwatch.db FLEETWATCH_WEB_HOST=0.0.0.0 FLEETWATCH_OTLP_HOST=0.0.0.0
VOLUME /var/lib/fleetwatch
EXPOSE 8000 4318
STOPSIGNAL SIGTERM
HEALTHCHECK --interval=30s --timeout=5s --start-period=120s \
    CMD python -c "import urllib.request; urllib.request.urlopen('http://127.0.0.1:8000/healthz', timeout=4)"
ENTRYPOINT ["fleetwatch"]
CMD ["run", "--config", "/etc/fleetwatch/fleetwatch.toml"]
