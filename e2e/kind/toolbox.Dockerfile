# The kind suite's in-cluster client: dig (bind9-dnsutils) and the concoord CLI copied
# from the replica image under test, plus the e2e-writer loop. Built by e2e/kind/run.sh:
#   docker build -f e2e/kind/toolbox.Dockerfile --build-arg REPLICA_IMAGE=concoord/replica:0.1.0 e2e/kind
ARG REPLICA_IMAGE=concoord/replica:dev
FROM ${REPLICA_IMAGE} AS concoord

FROM debian:bookworm-slim
RUN apt-get update \
 && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends bind9-dnsutils ca-certificates \
 && rm -rf /var/lib/apt/lists/*
# The replica binary is statically linked, so it runs on any base.
COPY --from=concoord /concoord /usr/local/bin/concoord
COPY writer.sh /usr/local/bin/e2e-writer
USER 65532:65532
CMD ["sleep", "infinity"]
