# detainer-watch container image.
#   docker build -t detainer-watch .
#   docker run -p 8080:8080 -v dw-data:/data detainer-watch
# Both stages use the same base, so the virtualenv built in the first runs unchanged in the second.

FROM python:3.12-slim AS build

# Optional package index settings, for builds behind a mirror (e.g. --build-arg PIP_INDEX_URL=...).
# Left unset they are not in the environment and pip uses its defaults.
ARG PIP_INDEX_URL
ARG PIP_EXTRA_INDEX_URL
ARG PIP_TRUSTED_HOST
# Optional dependency groups from pyproject.toml to include ("postgres": psycopg, for
# DW_DATABASE_URL=postgresql+psycopg://...); --build-arg DW_EXTRAS= builds without any.
ARG DW_EXTRAS=postgres
ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PYTHONDONTWRITEBYTECODE=1

RUN python -m venv /opt/venv
WORKDIR /src

# Dependencies first, from pyproject.toml alone (with an empty stand-in package and README), so
# that editing service code or docs reuses this layer. The stand-ins, build/ and egg-info are
# removed: setuptools would otherwise keep the newer stub files over the real ones copied below.
COPY pyproject.toml ./
RUN mkdir service && touch service/__init__.py README.md \
 && /opt/venv/bin/pip install --no-cache-dir ".${DW_EXTRAS:+[$DW_EXTRAS]}" \
 && /opt/venv/bin/pip uninstall --yes detainer-watch \
 && rm -rf service build *.egg-info README.md

# Then the package itself (no dependency resolution: they are all installed above).
COPY README.md ./
COPY service ./service
RUN /opt/venv/bin/pip install --no-cache-dir --no-deps . \
 && rm -rf build *.egg-info \
 && /opt/venv/bin/pip check \
 && /opt/venv/bin/detainer-watch --help >/dev/null

# pip is not needed at run time.
RUN /opt/venv/bin/pip uninstall --yes --quiet pip


FROM python:3.12-slim

ENV PATH=/opt/venv/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    DW_CONFIG=/app/config/detainer-watch.toml \
    DW_DATABASE_URL=sqlite:////data/detainer-watch.db \
    DW_HTTP_HOST=0.0.0.0 \
    DW_HTTP_PORT=8080

RUN groupadd --system --gid 10001 dw \
 && useradd --system --uid 10001 --gid dw --home-dir /home/dw --create-home --shell /usr/sbin/nologin dw \
 && mkdir -p /data \
 && chown dw:dw /data

COPY --from=build /opt/venv /opt/venv
WORKDIR /app
COPY config ./config
COPY seeds ./seeds

USER dw
VOLUME /data
EXPOSE 8080

HEALTHCHECK --interval=30s --timeout=5s --start-period=30s --retries=3 \
  CMD ["python", "-c", "import os, sys, urllib.request; r = urllib.request.urlopen('http://127.0.0.1:%s/healthz' % os.environ.get('DW_HTTP_PORT', '8080'), timeout=4); sys.exit(0 if r.status == 200 else 1)"]

CMD ["sh", "-c", "detainer-watch migrate && exec detainer-watch run"]
