FROM python:3.11-slim
ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 \
    GOVFLOW_DATA_DIR=/data GOVFLOW_BPMN_DIR=/app/bpmn
WORKDIR /app
COPY pyproject.toml README.md alembic.ini ./
COPY service ./service
COPY migrations ./migrations
COPY bpmn ./bpmn
RUN pip install --no-cache-dir . \
    && useradd --system --home /data govflow && mkdir -p /data && chown govflow /data
USER govflow
VOLUME /data
EXPOSE 8000
HEALTHCHECK CMD python -c "import urllib.request; urllib.request.urlopen('http://127.0.0.1:8000/healthz')"
CMD ["govflow", "serve", "--host", "0.0.0.0", "--port", "8000"]
