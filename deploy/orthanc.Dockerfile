# A PACS for the compose consortium: Debian's Orthanc with its DICOMweb plugin.
#   podman build --build-arg BASE=localhost/fedward-base:bookworm \
#     -f deploy/orthanc.Dockerfile -t fedward-orthanc .
# The configuration (users, DICOMweb) is mounted at /etc/fedward-orthanc/.
ARG BASE=docker.io/library/debian:bookworm-slim
FROM ${BASE}
RUN apt-get update -qq \
 && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
      orthanc orthanc-dicomweb \
 && rm -rf /var/lib/apt/lists/* \
 && mkdir -p /var/lib/orthanc/db && chown orthanc /var/lib/orthanc/db
USER orthanc
EXPOSE 8042
ENTRYPOINT ["Orthanc", "/etc/fedward-orthanc/"]
