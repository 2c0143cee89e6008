FROM python:3.11-slim
ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 \
    GOVFLOW_DATA_DIR=/data GOVFLOW_BPMN_DIR=/app/bpmn
WORKDIR /app
COPY pyproject.toml README.md alembic.ini constraints.txt ./
COPY service ./service
COPY migrations ./migrations
COPY bpmn ./bpmn
# the versions in constraints.txt, so two builds install the same dependencies
RUN pip install --no-cache-dir -c constraints.txt . \
    && useradd --system --home /data govflow && mkdir -p /data && chown govflow /data && chmod 700 /data
USER govflow
VOLUME /data
EXPOSE 8000
# /readyz, not /healthz: a container whose database is unreachable or not migrated is not healthy
HEALTHCHECK --interval=30s --timeout=10s --start-period=60s --retries=3 \
    CMD python -c "import urllib.request; urllib.request.urlopen('http://127.0.0.1:8000/readyz', timeout=8)"
CMD ["govflow", "serve", "--host", "0.0.0.0", "--port", "8000"]
