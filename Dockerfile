# The platform image: `dataops serve` with its state in the DATAOPS_HOME volume (/data).
# Built by docker-compose.yml; on its own: docker build -t dataops . && docker run -p 9108:9108 dataops
FROM python:3.11.10-slim-bookworm

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

WORKDIR /app
# Dependencies first, exact and hashed from the lock (its own layer: a code change does not reinstall them).
# The lock holds the `ray` extra, which makes the same image the ray-head service and lets
# `dataops backfill --executor ray` join it, and the `postgres` extra: psycopg2-binary, the driver of the
# postgresql+psycopg2:// URLs the stack uses for DATAOPS_CATALOG_URI and DATAOPS_OPS_DB_URL.
COPY requirements.lock ./
RUN pip install --require-hashes -r requirements.lock

COPY pyproject.toml README.md ./
COPY config/ config/
COPY pipelines/ pipelines/
COPY tools/ tools/
COPY policies/ policies/
COPY memory/ memory/
COPY agent/ agent/
COPY evals/ evals/

# The project itself, nothing else: every dependency came from the lock, and `pip check` proves it complete.
RUN pip install --no-deps ".[ray,postgres]" \
    && pip check \
    && useradd --system --uid 10001 --create-home --home-dir /home/dataops dataops \
    && mkdir /data \
    && chown dataops:dataops /data

USER dataops
ENV DATAOPS_HOME=/data \
    DATAOPS_METRICS_ADDR=0.0.0.0 \
    DATAOPS_METRICS_PORT=9108
VOLUME ["/data"]
# 9108: /metrics. 3000: Slack HTTP mode (/slack/events), only with DATAOPS_SLACK_ADDR=0.0.0.0 and no app token.
EXPOSE 9108 3000

CMD ["dataops", "serve"]
