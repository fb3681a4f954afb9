# Multi-stage build: wheels in a builder, a slim non-root runtime.
# `docker run IMAGE` serves; `docker run IMAGE worker` runs job workers.
FROM python:3.11-slim AS build
WORKDIR /src
COPY pyproject.toml README.md constraints.txt ./
COPY src ./src
RUN pip wheel --no-cache-dir --wheel-dir /wheels -c constraints.txt .

FROM python:3.11-slim
RUN useradd --system --uid 10001 --home /app vpsapi && mkdir -p /data && chown vpsapi /data
COPY --from=build /wheels /wheels
RUN pip install --no-cache-dir /wheels/* && rm -rf /wheels
USER vpsapi
WORKDIR /app
ENV DATA_DIR=/data HOST=0.0.0.0 PORT=8000 LOG_FORMAT=json
EXPOSE 8000
HEALTHCHECK --interval=15s --timeout=3s --retries=3 \
  CMD python -c "import os,sys,urllib.request; sys.exit(urllib.request.urlopen('http://127.0.0.1:%s/health/live' % ((os.environ.get('PORT') or '').strip() or '8000')).status != 200)"
ENTRYPOINT ["vpsapi"]
CMD ["serve"]
