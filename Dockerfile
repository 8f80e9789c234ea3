# syntax=docker/dockerfile:1
# Every image of the platform, one per component, built from the repository root:
#   docker build --build-arg SERVICE=contacts -t crm-contacts .
#   docker build --build-arg SERVICE=gateway -t crm-gateway .
# SERVICE is `gateway`, `stream`, `ami-connector`, `web` (the console) or a package under services/. An image holds crm_common/, contracts/
# and its own component only (a service also deploy/nameko.yaml); its CMD is the command
# `./crm up` and the tests run. tests/test_deploy.py checks both. Needs BuildKit (the
# default builder since Docker 23): it builds only the stages the chosen SERVICE uses.
ARG SERVICE

FROM python:3.11-slim AS build
RUN python -m venv /opt/venv
COPY requirements.txt /tmp/requirements.txt
RUN /opt/venv/bin/pip install --no-cache-dir -r /tmp/requirements.txt

FROM python:3.11-slim AS runtime
RUN useradd --system --uid 10001 --no-create-home crm
COPY --from=build /opt/venv /opt/venv
WORKDIR /app
COPY crm_common/ crm_common/
COPY contracts/ contracts/
ENV PATH=/opt/venv/bin:$PATH PYTHONPATH=/app PYTHONUNBUFFERED=1

FROM runtime AS gateway
COPY gateway/ gateway/
ENV GATEWAY_BIND=0.0.0.0:8000 PROMETHEUS_MULTIPROC_DIR=/tmp/prometheus
RUN mkdir -p /tmp/prometheus && chown crm /tmp/prometheus
USER crm
EXPOSE 8000
HEALTHCHECK --interval=10s --timeout=5s --start-period=15s --retries=3 \
    CMD ["python", "-c", "import urllib.request; urllib.request.urlopen('http://127.0.0.1:8000/healthz', timeout=3)"]
CMD ["gunicorn", "-c", "gateway/gunicorn.conf.py", "gateway.wsgi:app"]

# the live stream (gateway/stream/): Server-Sent Events from its own eventlet process,
# scaled on its own; a reverse proxy routes /api/v1/stream here (README, "Live stream")
FROM runtime AS stream
COPY gateway/ gateway/
ENV STREAM_BIND=0.0.0.0:8001
USER crm
EXPOSE 8001
HEALTHCHECK --interval=10s --timeout=5s --start-period=10s --retries=3 \
    CMD ["python", "-c", "import urllib.request; urllib.request.urlopen('http://127.0.0.1:8001/api/v1/stream/healthz', timeout=3)"]
CMD ["python", "-m", "gateway.stream"]

# the Asterisk AMI connector (connectors/asterisk/): AMI events -> the gateway; one replica
# (AMI sends every event to every client). Its spool file lives in /tmp (a volume keeps it)
FROM runtime AS ami-connector
COPY connectors/ connectors/
ENV CRM_HEARTBEAT_FILE=/tmp/crm.heartbeat CRM_AMI_CONNECTOR_SPOOL=/tmp/spool/ami.spool
RUN mkdir -p /tmp/spool && chown crm /tmp/spool
USER crm
HEALTHCHECK --interval=10s --timeout=5s --start-period=20s --retries=3 \
    CMD python -m crm_common.healthcheck ami-connector --ready
CMD ["python", "-m", "connectors.asterisk"]

# a nameko service: services/ holds its own package only (a namespace package, no __init__)
FROM runtime AS service
ARG SERVICE
COPY deploy/nameko.yaml deploy/nameko.yaml
COPY services/${SERVICE}/ services/${SERVICE}/
ENV CRM_SERVICE=${SERVICE} CRM_HEARTBEAT_FILE=/tmp/crm.heartbeat
USER crm
HEALTHCHECK --interval=10s --timeout=5s --start-period=20s --retries=3 \
    CMD python -m crm_common.healthcheck "$CRM_SERVICE" --ready

# each service's command (nameko names the service class)
FROM service AS contacts
CMD ["nameko", "run", "--config", "deploy/nameko.yaml", "services.contacts.service:ContactsService"]

FROM service AS deals
CMD ["nameko", "run", "--config", "deploy/nameko.yaml", "services.deals.service:DealsService"]

FROM service AS tasks
CMD ["nameko", "run", "--config", "deploy/nameko.yaml", "services.tasks.service:TasksService"]

FROM service AS notifications
CMD ["nameko", "run", "--config", "deploy/nameko.yaml", "services.notifications.service:NotificationsService"]

FROM service AS telephony
CMD ["nameko", "run", "--config", "deploy/nameko.yaml", "services.telephony.service:TelephonyService"]

FROM service AS conversations
CMD ["nameko", "run", "--config", "deploy/nameko.yaml", "services.conversations.service:ConversationsService"]

# its index lives in CRM_SEARCH_INDEX_DIR (default: the temp folder), one per replica
FROM service AS search
CMD ["nameko", "run", "--config", "deploy/nameko.yaml", "services.search.service:SearchService"]

FROM service AS notes
CMD ["nameko", "run", "--config", "deploy/nameko.yaml", "services.notes.service:NotesService"]

FROM service AS automation
CMD ["nameko", "run", "--config", "deploy/nameko.yaml", "services.automation.service:AutomationService"]

# quotes and invoices are drawn with DejaVu Sans (Latin, Cyrillic, Hebrew): Debian's fonts
FROM service AS sales
USER root
RUN apt-get update && apt-get install -y --no-install-recommends fonts-dejavu-core \
    && rm -rf /var/lib/apt/lists/*
USER crm
CMD ["nameko", "run", "--config", "deploy/nameko.yaml", "services.sales.service:SalesService"]

# the console (web/): built with Node (type check, bundle, first-load budget), served by
# nginx as static files; nginx proxies /api to the gateway and /api/v1/stream to the stream
# process (deploy/nginx/console.conf.template): one origin, port 8080, not root
FROM node:20-bookworm-slim AS web-build
WORKDIR /web
COPY web/package.json web/package-lock.json ./
RUN npm ci --no-audit --no-fund
COPY web/ ./
RUN npm run build

FROM nginxinc/nginx-unprivileged:1.27-alpine AS web
COPY deploy/nginx/console.conf.template /etc/nginx/templates/default.conf.template
COPY --from=web-build /web/dist /usr/share/nginx/html
ENV CRM_GATEWAY_UPSTREAM=http://gateway:8000 CRM_STREAM_UPSTREAM=http://stream:8001
EXPOSE 8080
HEALTHCHECK --interval=10s --timeout=5s --start-period=5s --retries=3 \
    CMD ["wget", "-q", "-O", "/dev/null", "http://127.0.0.1:8080/web-healthz"]

# the image: the stage named by SERVICE
FROM ${SERVICE}
