# editq's processes (api, worker, scheduler, emulators, migrations) in one image.
# The embedded services are for development and are not installed: in a container the
# stack's own PostgreSQL, Valkey and MinIO (docker-compose.yml) take their place.
FROM python:3.12-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

WORKDIR /app

# Only what the package needs, so an edit to the tests or docs does not rebuild the image.
COPY pyproject.toml README.md ./
COPY models ./models
COPY worker ./worker
COPY emulators ./emulators
COPY migrations ./migrations
RUN pip install .

# Celery and PostgreSQL clients run happily unprivileged; nothing here needs root.
RUN useradd --system --create-home --uid 10001 editq
USER editq
WORKDIR /home/editq

ENTRYPOINT ["editq"]
CMD ["--help"]
