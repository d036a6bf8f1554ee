# Stepwise: one image for every process (web, worker, scheduler); the command picks the role.
# Everything is installed and collected at build time: nothing is downloaded when a container starts.
FROM python:3.13-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    DJANGO_SETTINGS_MODULE=stepwise.console.settings

WORKDIR /app
RUN useradd --create-home --uid 10001 stepwise

COPY requirements.txt ./
RUN pip install -r requirements.txt

COPY . .
# Editable, so that the folders import as stepwise.runs, stepwise.tasks and stepwise.console from /app too.
RUN pip install --no-deps -e .
# The console's and the API docs' static files, served by WhiteNoise from the image.
RUN DEBUG=0 SECRET_KEY=collectstatic-only python manage.py collectstatic --noinput --verbosity 0

USER stepwise
EXPOSE 8000
# The web role; docker-compose.yml and the Procfile name the others.
CMD ["uvicorn", "stepwise.console.asgi:application", "--host", "0.0.0.0", "--port", "8000", "--no-access-log"]
