# One image for the web app and the worker. Debian base with Debian's Chromium: no browser is
# downloaded at build time (Playwright's own download is neither needed nor reachable).
FROM python:3.11-slim-bookworm

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD=1 \
    FLOW_BROWSER_EXECUTABLE=/usr/bin/chromium \
    VEO_SQL_DIR=/app/sql \
    HOST=0.0.0.0 \
    PORT=8000

RUN apt-get update \
    && apt-get install -y --no-install-recommends chromium fonts-liberation xvfb xauth tini \
    && rm -rf /var/lib/apt/lists/*

RUN useradd --create-home --uid 10001 --shell /usr/sbin/nologin veo
WORKDIR /app

COPY pyproject.toml README.md ./
COPY src ./src
COPY sql ./sql
RUN pip install . && rm -rf /root/.cache

COPY docker/entrypoint.sh /usr/local/bin/veo-entrypoint
RUN chmod 0755 /usr/local/bin/veo-entrypoint

USER veo
EXPOSE 8000
ENTRYPOINT ["tini", "--", "/usr/local/bin/veo-entrypoint"]
CMD ["veo", "serve", "--host", "0.0.0.0"]
