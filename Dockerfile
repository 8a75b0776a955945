FROM python:3.11-slim
WORKDIR /app
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1
COPY pyproject.toml README.md ./
COPY domain domain
COPY graph graph
COPY nodes nodes
COPY service service
COPY sqlsafety sqlsafety
COPY metricsql metricsql
COPY adapters adapters
COPY evals evals
COPY config config
RUN pip install --no-cache-dir .
# installed (not editable): point the service at the copied config
ENV HOST=0.0.0.0 PORT=8000 CONFIG_DIR=/app/config DATA_DIR=/tmp/resolver-data
EXPOSE 8000
USER nobody
CMD ["resolver", "serve"]
