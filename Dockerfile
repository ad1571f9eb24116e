# syntax=docker/dockerfile:1
# Build a static dso binary (no cgo: the default build uses the CPU index and
# the pure-Go SQLite driver) and run it as a non-root user.
FROM golang:1.26-bookworm AS build
WORKDIR /src
COPY go.mod go.sum ./
RUN go mod download
COPY . .
RUN CGO_ENABLED=0 go build -trimpath -ldflags="-s -w" -o /out/dso ./cmd/dso \
 && mkdir -p /out/data

FROM gcr.io/distroless/static-debian12:nonroot
COPY --from=build /out/dso /usr/local/bin/dso
COPY --from=build --chown=65532:65532 /out/data /data
USER 65532:65532
ENV DSO_LISTEN=0.0.0.0:8080 \
    DSO_DATA=/data
EXPOSE 8080
VOLUME ["/data"]
ENTRYPOINT ["/usr/local/bin/dso"]
CMD ["serve"]
