# syntax=docker/dockerfile:1
# Build dso without cgo (pure-Go SQLite, no GPU toolkit) and run it as a
# non-root user. The binary is not fully static: to load an OpenCL runtime at
# run time (the GPU index, through purego) it links glibc's loader, so the
# runtime image is distroless/base (glibc, no shell) rather than /static.
FROM golang:1.26-bookworm AS build
# VERSION is what dso --version prints first (docker build --build-arg
# VERSION=v1.2.0 .); the commit comes from the build's VCS stamp.
ARG VERSION=devel
WORKDIR /src
COPY go.mod go.sum ./
RUN go mod download
COPY . .
RUN CGO_ENABLED=0 go build -trimpath -ldflags="-s -w -X main.version=${VERSION}" -o /out/dso ./cmd/dso \
 && mkdir -p /out/data

FROM gcr.io/distroless/base-debian12:nonroot
COPY --from=build /out/dso /usr/local/bin/dso
COPY --from=build --chown=65532:65532 /out/data /data
USER 65532:65532
# 0.0.0.0 is beyond loopback: with no keys, chat works and the experience
# API and feedback answer 403 until DSO_ADMIN_KEYS (or DSO_OPEN_LIBRARY=1) is set.
ENV DSO_LISTEN=0.0.0.0:8080 \
    DSO_DATA=/data
EXPOSE 8080
VOLUME ["/data"]
# No shell in the image: dso itself asks /healthz on DSO_LISTEN (0.0.0.0 is
# asked on loopback). A server started with another --listen needs its own
# check: dso health --addr HOST:PORT.
HEALTHCHECK --interval=10s --timeout=6s --start-period=20s --retries=3 \
  CMD ["/usr/local/bin/dso", "health"]
ENTRYPOINT ["/usr/local/bin/dso"]
CMD ["serve"]
