# syntax=docker/dockerfile:1
# The sidecar as one static binary in an empty image: no shell, no package manager, no root.

# Builder: exactly the static build a developer runs (scripts/build-static.sh installs musl-tools itself).
FROM rust:1.95.0-bookworm AS build
WORKDIR /src
COPY . .
RUN scripts/build-static.sh > /tmp/binary-path \
    && cp "$(cat /tmp/binary-path)" /cdc-orchestrator \
    && echo 'nonroot:x:65532:65532:nonroot:/nonexistent:/sbin/nologin' > /etc/passwd.nonroot

FROM scratch
COPY --from=build /etc/ssl/certs/ca-certificates.crt /etc/ssl/certs/ca-certificates.crt
COPY --from=build /etc/passwd.nonroot /etc/passwd
COPY --from=build /cdc-orchestrator /cdc-orchestrator
USER 65532:65532
EXPOSE 8080
# scratch has no curl: the binary probes its own /healthz.
HEALTHCHECK --interval=15s --timeout=5s --start-period=10s --retries=3 CMD ["/cdc-orchestrator", "healthcheck"]
ENTRYPOINT ["/cdc-orchestrator"]
CMD ["run"]
