# Test-only stand-in for the official nats:2.10-alpine image (no registry here):
# Debian's nats-server plus wget for the compose healthcheck.
FROM node:20-bookworm-slim
RUN apt-get update -qq \
 && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends nats-server wget >/dev/null \
 && rm -rf /var/lib/apt/lists/*
CMD ["nats-server", "--config", "/etc/nats/nats.conf"]
