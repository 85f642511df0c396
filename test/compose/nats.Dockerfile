# Test-only stand-in for the official nats:2.10-alpine image (no registry here):
# the host's Debian nats-server (it links only libc, which the base has) and a
# `wget` for the compose healthcheck (`wget -q -O /dev/null URL`) written in
# the base image's node. Copied rather than installed with apt-get inside the
# build: that took ~30 s of every fresh CI run.
FROM node:20-bookworm-slim
COPY nats-server /usr/local/bin/nats-server
COPY wget.js /usr/local/bin/wget
CMD ["nats-server", "--config", "/etc/nats/nats.conf"]
